"""Resident memory of this process: now (psutil when installed, else /proc) and at its peak (getrusage)."""
from __future__ import annotations

import os
import sys


def current_rss_mb() -> float | None:
    """Resident set size now, in MB, or None where neither psutil nor /proc is available."""
    try:
        import psutil
    except ImportError:
        try:
            with open("/proc/self/statm", encoding="ascii") as fh:
                return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6
        except (OSError, ValueError, IndexError):
            return None
    return psutil.Process().memory_info().rss / 1e6


def peak_rss_mb() -> float | None:
    """Peak resident set size of this process so far, in MB."""
    try:
        import resource
    except ImportError:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1e6 if sys.platform == "darwin" else peak * 1024 / 1e6  # macOS reports bytes, Linux KiB
