"""rss.json: the peak memory of the commands each side runs (``hashtag predict`` and a bare interpreter).

Imports nothing but the benchmarks' memory module: the figure includes what the measuring process held when
it spawned the command (``run_to_peak_rss``), so that process stays as small as Python itself.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from hashtag.benchmarks.memory import run_to_peak_rss


def record_peak_rss(out: Path, key: str, cmd: Sequence[str], stdout: Path | None = None) -> int:
    """Run cmd (its stdout to a file) and merge {key: its exit status and peak RSS in MB} into the JSON file
    out; returns the exit status."""
    returncode, peak_mb = run_to_peak_rss(cmd, stdout)
    data = json.loads(out.read_text()) if out.is_file() else {}
    data[key] = {"cmd": list(cmd), "returncode": returncode, "peak_rss_mb": round(peak_mb, 1)}
    out.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    return returncode
