"""Memory figures, one function and one unit (MB = 10^6 bytes) for this process and for children."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from hashtag.benchmarks.memory import current_rss_mb, peak_rss_mb, reset_peak_rss, run_to_peak_rss


def test_peak_follows_an_allocation_and_can_be_reset() -> None:
    if not reset_peak_rss():
        pytest.skip("this kernel cannot reset the RSS high-water mark")
    base = peak_rss_mb()
    block = bytearray(120_000_000)  # touched: bytearray zero-fills its memory
    grown = peak_rss_mb()
    del block
    assert grown - base >= 110  # 120 MB in MB, not MiB (which would read ~114)
    assert abs(current_rss_mb() - base) < 30  # freed again
    assert reset_peak_rss()
    assert peak_rss_mb() < grown - 90


def test_peak_of_another_process_in_the_same_unit() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; b = bytearray(150_000_000); time.sleep(3)"])
    try:
        deadline = time.monotonic() + 30
        peak = None
        while time.monotonic() < deadline:
            peak = peak_rss_mb(child.pid)
            if peak and peak > 150:
                break
            time.sleep(0.05)
        assert peak is not None and 150 < peak < 220
    finally:
        child.kill()
        child.wait()
    assert peak_rss_mb(child.pid) is None  # gone: no figure rather than a wrong one


def test_peak_of_a_command_run_to_its_end(tmp_path: Path) -> None:
    """Exit status, stdout and the kernel's peak at exit; asserted from below only, since the figure also
    covers what this (large) test process held when it spawned the command."""
    out = tmp_path / "stdout.txt"
    script = "b = bytearray(150_000_000); print(len(b)); raise SystemExit(4)"
    code, peak = run_to_peak_rss([sys.executable, "-c", script], out)
    assert code == 4 and out.read_text() == "150000000\n"
    assert peak > 150
