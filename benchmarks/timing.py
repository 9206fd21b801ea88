"""Timed calls: wall time per call with the garbage collector held off, and the per-round times of a variant."""
from __future__ import annotations

import gc
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator

from hashtag.benchmarks import stats
from hashtag.benchmarks.variants import Variant

MIN_CALLS = 3  # per variant, batch size and round, even when the time budget is spent


@contextmanager
def no_gc() -> Iterator[None]:
    """Keep the garbage collector from landing inside a timed call."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def time_calls(call: Callable[[int, int], object], batch: int, calls: int, budget_s: float) -> list[float]:
    """Seconds per call for calls k = 0..calls-1; stops early once ``budget_s`` is spent (after MIN_CALLS)."""
    times: list[float] = []
    deadline = time.perf_counter() + budget_s
    with no_gc():
        for k in range(calls):
            start = time.perf_counter()
            call(batch, k)
            end = time.perf_counter()
            times.append(end - start)
            if end > deadline and len(times) >= min(MIN_CALLS, calls):
                break
    return times


@dataclass
class Measured:
    """Per-round call times (seconds) of one variant at each batch size."""

    variant: Variant
    rounds: dict[int, list[list[float]]] = field(default_factory=dict)

    def add(self, batch: int, times: list[float]) -> None:
        self.rounds.setdefault(batch, []).append(times)

    def round_p50_ms(self, batch: int = 1) -> list[float]:
        return [stats.percentile(t, 50) * 1e3 for t in self.rounds[batch]]
