"""The measurement: variants interleaved in rounds, preprocessing on its own, then the CLI end to end.

Every round runs every variant (and the preprocessing) once, starting one task later each round so no
variant always runs first. Each variant is reported by its best round and by the median of rounds,
and ratios between variants are taken round by round, i.e. under the same load.
"""
from __future__ import annotations

import gc
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from hashtag.benchmarks import envinfo
from hashtag.benchmarks.config import BenchConfig
from hashtag.benchmarks.e2e import measure_cli
from hashtag.benchmarks.figures import rows_and_summary
from hashtag.benchmarks.macs import onnx_available
from hashtag.benchmarks.memory import peak_rss_mb
from hashtag.benchmarks.photo_runs import (
    FULL_DECODE,
    PIPELINED,
    EndToEnd,
    fast_vs_ensemble,
    make_photo_sets,
    pipelined_vs_full,
)
from hashtag.benchmarks.preprocessing import PreprocessingCost
from hashtag.benchmarks.timing import Measured, time_calls
from hashtag.benchmarks.variants import STOCK_OPENVINO, Inputs, load_keras, load_onnx
from hashtag.benchmarks.verdicts import summarize
from hashtag.runtime.cpu import cpu_features
from hashtag.runtime.images import load_image
from hashtag.runtime.manifest import load_bundle
from hashtag.runtime.tagger import Tagger

RESULT_VERSION = 2
Progress = Callable[[str], None]


def run_benchmark(config: BenchConfig, images_meta: dict[str, Any], progress: Progress, scratch: Path,
                  ) -> dict[str, Any]:
    """Measure everything in ``config``; generated photos go under ``scratch``; returns the JSON-ready result."""
    started = datetime.now(timezone.utc)
    bundle = load_bundle(config.bundle)
    progress("collecting environment")
    env = envinfo.collect(bundle.root)
    notes: list[str] = []
    if not onnx_available():
        notes.append("MACs n/a: the onnx package is not installed (pip install 'hashtag[train]')")
    encoded = [p.read_bytes() for p in config.images]
    decoded = [load_image(data) for data in encoded]
    inputs = Inputs(decoded, bundle.models, config.batch_sizes)
    macs_cache: dict[Path, int | None] = {}
    progress("creating sessions, first calls and warm-up")
    variants = load_onnx(bundle, config.provider, config.threads, config.precisions, inputs, config.batch_sizes,
                         config.warmup, macs_cache, notes)
    if config.keras_run is not None:
        progress("loading Keras models (tensorflow)")
        fp32_macs = {s.name: macs_cache.get(s.variants["fp32"].path) if "fp32" in s.variants else None
                     for s in bundle.models}
        variants += load_keras(config.keras_run, bundle, config.threads, inputs, config.batch_sizes, config.warmup,
                               fp32_macs, notes)
    progress(f"writing {config.photo_count} photos at " + ", ".join(f"{w}x{h}" for w, h in config.photo_sizes))
    photo_sets = make_photo_sets(scratch, config.photo_sizes, config.photo_count)
    tagger = Tagger(bundle, provider=config.provider, threads=config.threads)
    e2e_tasks = [EndToEnd(tagger, s, way, min(config.e2e_photos, config.photo_count))
                 for s in photo_sets for way in (PIPELINED, FULL_DECODE)]
    has_fast = bundle.fast is not None
    if has_fast:  # the fast model on the same photos, in the same rounds
        fast_tagger = Tagger(bundle, provider=config.provider, threads=config.threads, models=[bundle.fast_name])
        e2e_tasks += [EndToEnd(fast_tagger, s, PIPELINED, min(config.e2e_photos, config.photo_count))
                      for s in photo_sets]
    for task in e2e_tasks:  # warm-up: first calls, file cache
        if task.way == PIPELINED:
            list(task.tagger.predict_stream(task.photos.paths[: task.tagger.batch_size]))
    measured = [Measured(v) for v in variants]
    prep = PreprocessingCost(encoded, bundle)
    tasks: list[Measured | PreprocessingCost | EndToEnd] = [prep, *measured, *e2e_tasks]
    schedule = []
    process_peak = peak_rss_mb() or 0.0
    for r in range(config.rounds):
        progress(f"round {r + 1}/{config.rounds}")
        gc.collect()
        order = tasks[r % len(tasks):] + tasks[: r % len(tasks)]
        schedule.append([t.variant.label if isinstance(t, Measured) else getattr(t, "label", "preprocessing")
                         for t in order])
        for task in order:
            if isinstance(task, Measured):
                for batch in config.batch_sizes:
                    task.add(batch, time_calls(task.variant.call, batch, config.calls(batch), config.budget_s))
                continue
            process_peak = max(process_peak, peak_rss_mb() or 0.0)  # EndToEnd resets the high-water mark
            task.measure_round()
    rows, summaries = [], []
    for m in measured:
        r, s = rows_and_summary(m, config, env)
        rows += r
        summaries.append(s)
    process = {"peak_rss_mb": max(process_peak, peak_rss_mb() or 0.0), "load_average_end": envinfo.load_average()}
    e2e = None
    if config.e2e:
        progress(f"end to end: hashtag predict on 1 and {config.e2e_images} images and on each photo folder, "
                 f"{config.e2e_repeats}x")
        e2e = measure_cli(bundle.root, config.images, config.e2e_images, config.e2e_repeats, config.threads,
                          config.provider, {s.label: s.folder for s in photo_sets}, fast=has_fast)
        notes += [f"end-to-end error: {e}" for e in e2e["errors"]]
    notes.append("ensemble/*/cpu and ensemble/*/openvino are the runtime's own path (one Tagger, models side by "
                 "side); for openvino-stock and keras the ensemble runs its members in turn and its session_create_s, "
                 "cold_first_call_ms and rss_delta_mb are sums over them")
    notes.append("peak GMAC/s is an ESTIMATE: usable CPUs x clock x 2 FMA units x MACs per unit per cycle")
    notes.append(f"{STOCK_OPENVINO}: the INT8 files compiled by OpenVINO with its default settings, "
                 "as a user who picks OpenVINO instead would run them")
    return {
        "version": RESULT_VERSION,
        "created": started.isoformat(timespec="seconds"),
        "duration_s": (datetime.now(timezone.utc) - started).total_seconds(),
        "hardware": envinfo.hardware_line(env),
        "environment": env,
        "process": process,
        "config": config.to_dict(),
        "images": images_meta,
        "schedule": schedule,
        "variants": summaries,
        "rows": rows,
        "preprocessing": prep.result(),
        "end_to_end": {"provider": tagger.provider, "batch_size": tagger.batch_size,
                       "rows": [t.result() for t in e2e_tasks],
                       "pipelined_vs_full_decode": pipelined_vs_full(e2e_tasks),
                       "fast_vs_ensemble_time": fast_vs_ensemble(e2e_tasks)},
        "e2e": e2e,
        "summary": summarize(measured, bundle, e2e, photo_sets, cpu_features().int8_flags),
        "notes": notes,
    }
