"""The runtime on its own, measured beside a front end (bot, server) in the same run so their ratio means something."""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Sequence

from hashtag.runtime.tagger import Tagger


@dataclass(frozen=True)
class RuntimeRound:
    """A few seconds of the runtime alone: sequential per-image latency, and throughput from ``parallel`` threads."""

    latencies_s: list[float]
    sequential_per_s: float
    parallel_per_s: float

    @property
    def throughput(self) -> float:
        """Images/s the runtime sustains: the better of one thread and ``parallel`` threads."""
        return max(self.sequential_per_s, self.parallel_per_s)


def measure_runtime(tagger: Tagger, photos: Sequence[bytes], parallel: int, seconds: float) -> RuntimeRound:
    """predict_one on the photos: sequentially for latency, then from ``parallel`` threads for throughput."""
    tagger.predict_one(photos[0])
    latencies: list[float] = []
    started = time.perf_counter()
    deadline = started + seconds / 2
    while time.perf_counter() < deadline or len(latencies) < 5:
        t0 = time.perf_counter()
        tagger.predict_one(photos[len(latencies) % len(photos)])
        latencies.append(time.perf_counter() - t0)
    sequential = len(latencies) / (time.perf_counter() - started)

    def worker(k: int) -> int:
        done = 0
        while time.perf_counter() < deadline or done == 0:
            tagger.predict_one(photos[(k + done) % len(photos)])
            done += 1
        return done

    started = time.perf_counter()
    deadline = started + seconds / 2
    with ThreadPoolExecutor(parallel) as pool:
        done = sum(pool.map(worker, range(parallel)))
    return RuntimeRound(latencies, sequential, done / (time.perf_counter() - started))
