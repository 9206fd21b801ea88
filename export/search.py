"""Choosing an INT8 recipe per model by measured val mAP, then latency.

Candidates run in order (fully quantized first); the search stops at the first one whose mAP drop
is negligible. Of the rest, those within ``tie`` mAP of the best are timed together and the fastest
wins: more float nodes cost speed without buying accuracy.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from hashtag.export.config import QuantizationConfig
from hashtag.export.errors import ExportError
from hashtag.export.evaluate import Accuracy, map_drop
from hashtag.export.latency import Latency, measure_latency
from hashtag.export.quantize import PixelReader, quantize_int8


@dataclass
class Candidate:
    """One tried recipe: its file and how it did (``error`` when quantization itself failed)."""

    config: QuantizationConfig
    path: Path
    excluded: list[str] = field(default_factory=list)
    accuracy: Accuracy | None = None
    drop: float | None = None
    latency: Latency | None = None
    error: str | None = None
    chosen: bool = False


@dataclass(frozen=True)
class SearchSettings:
    """How hard to look: stop once a drop is at most ``stop_drop``; mAPs within ``tie`` are equal."""

    stop_drop: float
    tie: float
    latency_runs: int
    latency_warmup: int
    threads: int | None


def search_int8(prepared: Path, work_dir: Path, reader: PixelReader, candidates: Sequence[QuantizationConfig],
                evaluate: Callable[[Path], Accuracy], baseline: Accuracy, latency_input: np.ndarray,
                settings: SearchSettings, log: Callable[[str], None]) -> tuple[Candidate, list[Candidate]]:
    """Quantize and evaluate ``candidates`` in order; returns the chosen one and all that were tried."""
    tried: list[Candidate] = []
    for config in candidates:
        cand = Candidate(config, work_dir / f"{prepared.stem}.{config.name}.int8.onnx")
        tried.append(cand)
        try:
            cand.excluded = quantize_int8(prepared, cand.path, reader, config, work_dir)
        except ExportError as exc:
            cand.error = str(exc)
            log(f"{config.name}: {exc}")
            continue
        cand.accuracy = evaluate(cand.path)
        cand.drop = map_drop(cand.accuracy, baseline)
        log(f"{config.name}: val mAP {cand.accuracy.map:.4f} ({0.0 - 100 * cand.drop:+.2f} points vs FP32), "
            f"{len(cand.excluded)} node(s) kept float")
        if cand.drop <= settings.stop_drop:
            break
    scored = [c for c in tried if c.accuracy is not None]
    if not scored:
        raise ExportError(f"every INT8 recipe failed; first error: {tried[0].error}")
    best_map = max(c.accuracy.map for c in scored)  # type: ignore[union-attr]
    near = [c for c in scored if c.accuracy.map >= best_map - settings.tie]  # type: ignore[union-attr]
    if len(near) > 1:
        timings = measure_latency({i: (c.path, latency_input) for i, c in enumerate(near)},
                                  settings.latency_runs, settings.latency_warmup, settings.threads)
        for i, c in enumerate(near):
            c.latency = timings[i]
        chosen = min(near, key=lambda c: c.latency.median_ms)  # type: ignore[union-attr]
    else:
        chosen = near[0]
    chosen.chosen = True
    return chosen, tried
