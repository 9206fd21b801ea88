"""End-to-end cost of the CLI as users pay it: `hashtag predict` in a fresh process, wall time and peak RSS.

After one untimed run that warms the file cache, the commands are repeated round-robin:
`hashtag models` (interpreter + imports + manifest), `hashtag predict` on one image (cold start: that
plus session creation and one prediction) and on N images, whose differences show where the time goes,
then `hashtag predict --json` on folders of the same photo at several sizes (wall time and peak RSS).
"""
from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from hashtag.benchmarks.memory import peak_rss_mb

TIMEOUT_S = 600.0
STDERR_TAIL = 400
HWM_INTERVAL_S = 0.02


@dataclass(frozen=True)
class Timed:
    """One finished command."""

    wall_s: float
    peak_rss_mb: float | None
    returncode: int
    stderr_tail: str


def hashtag_command() -> list[str]:
    """The installed `hashtag` script beside this interpreter (no pyenv shim in the timing), else via python."""
    beside = Path(sys.executable).with_name("hashtag")
    if beside.is_file() and os.access(beside, os.X_OK):
        return [str(beside)]
    found = shutil.which("hashtag")
    if found:
        return [found]
    return [sys.executable, "-c", "from hashtag.runtime.cli import main; main()"]


def run_timed(cmd: Sequence[str], timeout_s: float = TIMEOUT_S) -> Timed:
    """Run ``cmd`` with stdout discarded: wall time from spawn to exit, and its peak RSS sampled every 20 ms."""
    with tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(list(cmd), stdout=subprocess.DEVNULL, stderr=err)
        done: list[float] = []

        def wait() -> None:  # blocks in its own thread so the end time is exact while this one samples VmHWM
            proc.wait()
            done.append(time.perf_counter() - start)

        waiter = threading.Thread(target=wait, daemon=True)
        waiter.start()
        peak: float | None = None
        while waiter.is_alive() and time.perf_counter() - start < timeout_s:
            hwm = peak_rss_mb(proc.pid)
            if hwm is not None:
                peak = max(peak or 0.0, hwm)
            waiter.join(HWM_INTERVAL_S)
        if waiter.is_alive():
            proc.kill()
            waiter.join(10)
            raise TimeoutError(f"{' '.join(cmd[:3])}... took longer than {timeout_s:.0f} s")
        err.seek(0)
        tail = err.read().decode("utf-8", "replace")[-STDERR_TAIL:].strip()
    return Timed(done[0], peak, proc.returncode, tail)


def _spread(values: Sequence[float]) -> dict[str, Any]:
    return {"min": min(values), "median": statistics.median(values), "runs": list(values)}


def measure_cli(
    bundle: Path, images: Sequence[Path], many: int, repeats: int, threads: int | None, provider: str,
    folders: Mapping[str, Path] | None = None, fast: bool = False,
) -> dict[str, Any]:
    """Time `hashtag models`, `hashtag predict IMG`, `hashtag predict IMG x many` and, for each of
    ``folders`` (label -> folder), `hashtag predict --json FOLDER`, ``repeats`` times each, round-robin; with
    ``fast``, the one-image and folder commands also with ``--fast`` (``predict_fast_...``), in the same rounds."""
    base = hashtag_command()
    predict = [*base, "predict", "--bundle", str(bundle), "--provider", provider]
    if threads:
        predict += ["--threads", str(threads)]
    many_images = [str(images[i % len(images)]) for i in range(many)]
    commands = {
        "startup": [*base, "models", "--bundle", str(bundle)],
        "predict_1": [*predict, str(images[0])],
        f"predict_{many}": [*predict, *many_images],
        **{f"predict_{label}": [*predict, "--json", str(folder)] for label, folder in (folders or {}).items()},
    }
    if fast:
        commands["predict_fast_1"] = [*predict, "--fast", str(images[0])]
        commands.update({f"predict_fast_{label}": [*predict, "--fast", "--json", str(folder)]
                         for label, folder in (folders or {}).items()})
    walls: dict[str, list[float]] = {name: [] for name in commands}
    rss: dict[str, list[float]] = {name: [] for name in commands}
    errors = []
    try:
        run_timed(commands["startup"])  # untimed: fill the file cache so the first timed command is not penalised
    except TimeoutError as exc:
        errors.append(f"warm-up: {exc}")
    for _ in range(repeats):
        for name, cmd in commands.items():
            try:
                timed = run_timed(cmd)
            except TimeoutError as exc:
                errors.append(f"{name}: {exc}")
                continue
            if timed.returncode != 0:
                errors.append(f"{name}: exit {timed.returncode}: {timed.stderr_tail}")
                continue
            walls[name].append(timed.wall_s)
            if timed.peak_rss_mb is not None:
                rss[name].append(timed.peak_rss_mb)
    result: dict[str, Any] = {
        "command": " ".join([*predict, "IMAGE..."]),
        "images_many": many,
        "repeats": repeats,
        "wall_s": {name: _spread(v) for name, v in walls.items() if v},
        "peak_rss_mb": {name: max(v) for name, v in rss.items() if v},
        "errors": errors,
    }
    if all(walls[n] for n in list(commands)[:3]):
        startup, cold, bulk = (min(walls[n]) for n in list(commands)[:3])
        result["breakdown"] = {
            "python_imports_manifest_s": startup,
            "sessions_and_first_prediction_s": cold - startup,
            "per_extra_image_ms": (bulk - cold) / max(many - 1, 1) * 1e3,
        }
    return result
