"""Small, exact statistics for timings: percentiles, and summaries over interleaved rounds.

Timings on shared machines swing 2-4x with background load, so every variant is measured in
several rounds and reported twice: its best round (the least disturbed) and the median of rounds.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass
from typing import Sequence


def percentile(samples: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) with linear interpolation between order statistics (numpy's default)."""
    if not samples:
        raise ValueError("percentile of no samples")
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile must be in [0, 100], got {q}")
    ordered = sorted(samples)
    pos = (len(ordered) - 1) * q / 100.0
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


@dataclass(frozen=True)
class Summary:
    """Distribution of one set of samples (same unit as the samples)."""

    n: int
    min: float
    p50: float
    p90: float
    p99: float
    mean: float

    @classmethod
    def of(cls, samples: Sequence[float]) -> "Summary":
        """Summarize a non-empty sample."""
        if not samples:
            raise ValueError("summary of no samples")
        return cls(len(samples), min(samples), percentile(samples, 50), percentile(samples, 90),
                   percentile(samples, 99), statistics.fmean(samples))

    def scaled(self, factor: float) -> "Summary":
        """The same summary in another unit (e.g. seconds -> milliseconds)."""
        return Summary(self.n, self.min * factor, self.p50 * factor, self.p90 * factor, self.p99 * factor,
                       self.mean * factor)

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def best_round(values: Sequence[float], lower_is_better: bool = True) -> float:
    """The best of per-round values: the least disturbed round (min for times, max for rates)."""
    if not values:
        raise ValueError("best of no rounds")
    return min(values) if lower_is_better else max(values)


def median_of_rounds(values: Sequence[float]) -> float:
    """The median of per-round values: what a typical round under this machine's load gives."""
    if not values:
        raise ValueError("median of no rounds")
    return statistics.median(values)


def round_ratios(numerator: Sequence[float], denominator: Sequence[float]) -> list[float]:
    """Per-round ratios of two variants measured in the same rounds, i.e. under the same load."""
    if len(numerator) != len(denominator):
        raise ValueError(f"rounds differ: {len(numerator)} vs {len(denominator)}")
    return [a / b for a, b in zip(numerator, denominator) if b > 0]


def throughput(batch: int, call_seconds: Sequence[float]) -> float:
    """Images per second over back-to-back calls of ``batch`` images each."""
    total = math.fsum(call_seconds)
    if total <= 0:
        raise ValueError("throughput needs a positive total time")
    return batch * len(call_seconds) / total
