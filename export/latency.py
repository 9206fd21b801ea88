"""Batch-1 CPU latency of several ONNX files, measured round-robin in one run.

Interleaving (A, B, C, A, B, C, ...) spreads load from other processes and CPU frequency changes
over every variant alike, so the ratios between them are fair even on a busy machine.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Hashable, Mapping

import numpy as np

from hashtag.runtime.providers import create_session


@dataclass(frozen=True)
class Latency:
    """Milliseconds per batch-1 run."""

    median_ms: float
    p90_ms: float
    runs: int

    def to_dict(self) -> dict[str, float | int]:
        """JSON form for the manifest."""
        return {"median_ms": self.median_ms, "p90_ms": self.p90_ms, "runs": self.runs}


def measure_latency(files: Mapping[Hashable, tuple[Path, np.ndarray]], runs: int, warmup: int,
                    threads: int | None = None) -> dict[Hashable, Latency]:
    """Median and p90 latency for each ``key: (onnx file, one preprocessed [1, S, S, 3] input)``."""
    sessions = {}
    for key, (path, x) in files.items():
        session, _ = create_session(Path(path), "cpu", threads)
        feed = {session.get_inputs()[0].name: np.ascontiguousarray(x[:1], dtype=np.float32)}
        sessions[key] = (session, feed)
    for _ in range(warmup):
        for session, feed in sessions.values():
            session.run(None, feed)
    times: dict[Hashable, list[float]] = {key: [] for key in sessions}
    for _ in range(runs):
        for key, (session, feed) in sessions.items():
            start = time.perf_counter()
            session.run(None, feed)
            times[key].append((time.perf_counter() - start) * 1000.0)
    return {key: Latency(float(np.median(t)), float(np.percentile(t, 90)), runs) for key, t in times.items()}
