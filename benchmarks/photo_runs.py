"""End to end in this process: decode + preprocess + ensemble on folders of real-sized photos.

Each photo set holds the same photo at one size (12 Mpx as phones take them, 1280 px as Telegram
sends them, 320 px), generated at run time (see ``photos.write_sized_photos``). Two ways are timed
per set, interleaved in the benchmark's rounds: the runtime's (``Tagger.predict_stream``: draft
decoding in a worker thread, overlapped with inference) and the one it replaced (full-size decoding,
then inference, one batch after the other), with the memory each needed above what was loaded.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from hashtag.benchmarks import stats
from hashtag.benchmarks.memory import current_rss_mb, peak_rss_mb, reset_peak_rss
from hashtag.benchmarks.photos import write_sized_photos
from hashtag.runtime.images import load_image
from hashtag.runtime.contract import Prediction
from hashtag.runtime.tagger import Tagger

PIPELINED = "pipelined"  # what `hashtag predict` does
FULL_DECODE = "full-decode"  # full-size decoding, no overlap: the way before draft decoding


@dataclass(frozen=True)
class PhotoSet:
    """``count`` JPEGs of one size in a folder."""

    size: tuple[int, int]
    folder: Path
    paths: tuple[Path, ...]

    @property
    def label(self) -> str:
        return f"{self.size[0]}x{self.size[1]}"


def make_photo_sets(root: Path, sizes: Sequence[tuple[int, int]], count: int) -> list[PhotoSet]:
    """One folder of ``count`` photos per size under ``root``."""
    sets = []
    for w, h in sizes:
        folder = root / f"photos-{w}x{h}"
        sets.append(PhotoSet((w, h), folder, tuple(write_sized_photos(folder, count, (w, h)))))
    return sets


def _full_decode(tagger: Tagger, paths: Sequence[Path]) -> list[Prediction]:
    out = []
    for start in range(0, len(paths), tagger.batch_size):
        chunk = paths[start : start + tagger.batch_size]
        out += tagger.predict_images([load_image(p) for p in chunk], [str(p) for p in chunk])
    return out


@dataclass
class EndToEnd:
    """Photos per second and memory growth of one way on one photo set, per round."""

    tagger: Tagger
    photos: PhotoSet
    way: str
    count: int
    ips: list[float] = field(default_factory=list)
    rss_growth_mb: list[float] = field(default_factory=list)

    @property
    def fast(self) -> bool:
        """Whether this runs the bundle's fast model alone (else the ensemble)."""
        return self.tagger.names == (self.tagger.bundle.fast.name,) if self.tagger.bundle.fast else False

    @property
    def label(self) -> str:
        return f"e2e/{self.photos.label}/{self.way}" + ("/fast" if self.fast else "")

    def measure_round(self) -> None:
        paths = self.photos.paths[: self.count]
        reset_peak_rss()
        before = current_rss_mb()
        start = time.perf_counter()
        if self.way == PIPELINED:
            results = list(self.tagger.predict_stream(paths))
        else:
            results = _full_decode(self.tagger, paths)
        seconds = time.perf_counter() - start
        if len(results) != len(paths) or not all(isinstance(r, Prediction) for r in results):
            raise RuntimeError(f"{self.label}: expected {len(paths)} predictions")
        self.ips.append(len(paths) / seconds)
        peak = peak_rss_mb()
        if peak is not None and before is not None:
            self.rss_growth_mb.append(max(peak - before, 0.0))

    def result(self) -> dict[str, Any]:
        return {
            "label": self.label, "size": list(self.photos.size), "way": self.way, "photos": self.count,
            "models": list(self.tagger.names),
            "provider": self.tagger.provider, "batch_size": self.tagger.batch_size,
            "photos_per_s_median_round": stats.median_of_rounds(self.ips),
            "photos_per_s_best_round": stats.best_round(self.ips, lower_is_better=False),
            "photos_per_s_per_round": self.ips,
            "rss_growth_mb_max": max(self.rss_growth_mb) if self.rss_growth_mb else None,
        }


def fast_vs_ensemble(tasks: Sequence[EndToEnd]) -> dict[str, Any]:
    """Per photo set: wall time per photo of the fast model over the ensemble's (pipelined), round by round."""
    by_set: dict[str, dict[bool, EndToEnd]] = {}
    for t in tasks:
        if t.way == PIPELINED:
            by_set.setdefault(t.photos.label, {})[t.fast] = t
    out = {}
    for label, kinds in by_set.items():
        if {True, False} <= set(kinds):
            ratios = stats.round_ratios([1 / x for x in kinds[True].ips], [1 / x for x in kinds[False].ips])
            out[label] = {"time_ratio_median_of_rounds": stats.median_of_rounds(ratios), "per_round": ratios}
    return out


def pipelined_vs_full(tasks: Sequence[EndToEnd]) -> dict[str, Any]:
    """Per photo set: photos/s of the runtime's way over the full-decode way, round by round."""
    by_set: dict[str, dict[str, EndToEnd]] = {}
    for t in tasks:
        if not t.fast:
            by_set.setdefault(t.photos.label, {})[t.way] = t
    out = {}
    for label, ways in by_set.items():
        if {PIPELINED, FULL_DECODE} <= set(ways):
            ratios = stats.round_ratios(ways[PIPELINED].ips, ways[FULL_DECODE].ips)
            out[label] = {"speedup_median_of_rounds": stats.median_of_rounds(ratios), "per_round": ratios}
    return out
