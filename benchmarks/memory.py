"""Resident memory, now and at its peak, of this process or another one; every figure in MB (10^6 bytes).

The peak is the kernel's high-water mark (VmHWM in /proc/PID/status): unlike getrusage's ru_maxrss it
starts afresh at exec (a child's figure is its own, not the benchmark's that spawned it) and can be
reset (``reset_peak_rss``). Where /proc is missing, ru_maxrss of this process is the fallback. A command
run to its end (``run_to_peak_rss``) is measured by the figure the kernel hands over when it exits.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Sequence

BYTES_PER_MB = 1e6


def _status_kib(field: str, pid: int | str = "self") -> int | None:
    """A ``kB`` field of /proc/PID/status (the kernel's kB are KiB), or None where it cannot be read."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def current_rss_mb() -> float | None:
    """Resident set size of this process now, or None where neither psutil nor /proc is available."""
    try:
        import psutil
    except ImportError:
        kib = _status_kib("VmRSS")
        return None if kib is None else kib * 1024 / BYTES_PER_MB
    return psutil.Process().memory_info().rss / BYTES_PER_MB


def peak_rss_mb(pid: int | None = None) -> float | None:
    """Peak resident set size so far of process ``pid`` (default: this one); None if it cannot be read."""
    kib = _status_kib("VmHWM", pid if pid is not None else "self")
    if kib is not None:
        return kib * 1024 / BYTES_PER_MB
    if pid is not None:
        return None
    try:
        import resource
    except ImportError:
        return None
    return _maxrss_mb(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def _maxrss_mb(maxrss: int) -> float:
    """getrusage's ru_maxrss in MB: bytes on macOS, KiB on Linux."""
    return maxrss / BYTES_PER_MB if sys.platform == "darwin" else maxrss * 1024 / BYTES_PER_MB


def run_to_peak_rss(cmd: Sequence[str], stdout: Path | None = None) -> tuple[int, float]:
    """Run ``cmd`` to its end (stdout to a file, else discarded); its exit status and peak RSS in MB.

    The peak is the child's ru_maxrss from wait4, the kernel's own record, so no spike between samples is
    missed (``peak_rss_mb(pid)`` reads a live process) and no process run before counts (RUSAGE_CHILDREN
    would). Being ru_maxrss, it is at least what this process held when it spawned the child: call it from a
    small process. Under qemu-user it is the emulator's figure, the guest's memory plus qemu's own.
    """
    with open(stdout if stdout else os.devnull, "wb") as out:
        child = subprocess.Popen(list(cmd), stdout=out)
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait for it again
    return child.returncode, _maxrss_mb(usage.ru_maxrss)


def reset_peak_rss() -> bool:
    """Restart this process's high-water mark at its current RSS (Linux >= 4.0); False where unsupported."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True

