"""The measurement: variants interleaved in rounds, preprocessing on its own, then the CLI end to end.

Every round runs every variant (and the preprocessing) once, starting one task later each round so no
variant always runs first. Each variant is reported by its best round and by the median of rounds,
and ratios between variants are taken round by round, i.e. under the same load.
"""
from __future__ import annotations

import gc
import math
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from hashtag.benchmarks import envinfo, stats
from hashtag.benchmarks.e2e import measure_cli
from hashtag.benchmarks.macs import onnx_available, peak_gmacs
from hashtag.benchmarks.memory import peak_rss_mb
from hashtag.benchmarks.photo_runs import (
    FULL_DECODE,
    PIPELINED,
    EndToEnd,
    PhotoSet,
    fast_vs_ensemble,
    make_photo_sets,
    pipelined_vs_full,
)
from hashtag.benchmarks.variants import ENSEMBLE, KERAS, STOCK_OPENVINO, Inputs, Variant, load_keras, load_onnx
from hashtag.runtime.images import load_image
from hashtag.runtime.manifest import PRECISIONS, Bundle, load_bundle
from hashtag.runtime.preprocess import input_key, prepare_inputs
from hashtag.runtime.providers import auto_providers, check_provider
from hashtag.runtime.cpu import cpu_features
from hashtag.runtime.tagger import Tagger, pick_variant

RESULT_VERSION = 2
MIN_CALLS = 3  # per variant, batch size and round, even when the time budget is spent
TARGETS = {"int8_fp32_ensemble_p50_ratio": 0.4, "int8_keras_ensemble_p50_ratio": 0.3, "predict_cold_start_s": 1.5,
           "default_vs_openvino_ensemble_p50_ratio": 1.0, "predict_large_vs_small_wall_ratio": 1.25,
           "predict_peak_rss_mb": 450.0,
           # the fast model (issue 23): model time, `hashtag predict` on 12-Mpx photos (by CPU kind), cold start
           "fast_vs_ensemble_model_p50_ratio": 1 / 15, "fast_vs_ensemble_predict_wall_ratio_vnni": 1 / 3,
           "fast_vs_ensemble_predict_wall_ratio_no_vnni": 1 / 8, "fast_predict_cold_start_s": 0.5}
CPU_PROVIDERS = ("cpu", "openvino", STOCK_OPENVINO, KERAS)  # measured on the CPU cores (for the GMAC/s peak)
PHOTO_SIZES = ((4000, 3000), (1280, 960), (320, 240))  # 12 Mpx as phones take them, Telegram's size, small
Progress = Callable[[str], None]


@dataclass(frozen=True)
class BenchConfig:
    """What to measure and how long; see `hashtag bench --help` for each field's meaning."""

    bundle: Path
    images: tuple[Path, ...]
    provider: str = "auto"
    precisions: tuple[str, ...] = PRECISIONS
    threads: int | None = None
    rounds: int = 3
    runs: int = 30
    budget_s: float = 10.0
    warmup: int = 3
    batch_sizes: tuple[int, ...] = (1, 4, 8, 16)
    throughput_images: int = 32
    keras_run: Path | None = None
    e2e_images: int = 100
    e2e_repeats: int = 3
    e2e: bool = True
    photo_sizes: tuple[tuple[int, int], ...] = PHOTO_SIZES
    photo_count: int = 100  # photos per size for `hashtag predict FOLDER`
    e2e_photos: int = 16  # photos per size and round for the in-process end-to-end rows

    def __post_init__(self) -> None:
        if not self.images:
            raise ValueError("no images to benchmark with")
        check_provider(self.provider)
        unknown = [p for p in self.precisions if p not in PRECISIONS]
        if unknown or not self.precisions:
            raise ValueError(f"precisions must be some of {', '.join(PRECISIONS)}, got {list(self.precisions)}")
        if not self.batch_sizes or 1 not in self.batch_sizes or any(b < 1 for b in self.batch_sizes):
            raise ValueError(f"batch sizes must be positive and include 1, got {list(self.batch_sizes)}")
        if list(self.batch_sizes) != sorted(set(self.batch_sizes)):
            raise ValueError(f"batch sizes must be increasing without repeats, got {list(self.batch_sizes)}")
        if any(len(s) != 2 or min(s) < 1 for s in self.photo_sizes):
            raise ValueError(f"photo sizes must be positive (width, height) pairs, got {list(self.photo_sizes)}")
        for name in ("rounds", "runs", "warmup", "throughput_images", "e2e_images", "e2e_repeats", "photo_count",
                     "e2e_photos"):
            minimum = 0 if name == "warmup" else 1
            if getattr(self, name) < minimum:
                raise ValueError(f"{name} must be at least {minimum}, got {getattr(self, name)}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be at least 1, got {self.threads}")
        if self.budget_s <= 0:
            raise ValueError(f"budget must be positive, got {self.budget_s}")

    def calls(self, batch: int) -> int:
        """Timed calls per round at ``batch``: ``runs`` at batch 1, else enough for ``throughput_images``."""
        return self.runs if batch == 1 else max(MIN_CALLS, math.ceil(self.throughput_images / batch))

    def to_dict(self) -> dict[str, Any]:
        return {
            "bundle": str(self.bundle), "provider": self.provider, "precisions": list(self.precisions),
            "threads": self.threads, "rounds": self.rounds, "runs": self.runs, "budget_s": self.budget_s,
            "warmup": self.warmup, "batch_sizes": list(self.batch_sizes), "throughput_images": self.throughput_images,
            "keras_run": str(self.keras_run) if self.keras_run else None, "e2e_images": self.e2e_images,
            "e2e_repeats": self.e2e_repeats if self.e2e else 0,
            "photo_sizes": [list(s) for s in self.photo_sizes], "photo_count": self.photo_count,
            "e2e_photos": min(self.e2e_photos, self.photo_count),
        }


@contextmanager
def _no_gc() -> Iterator[None]:
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
    with _no_gc():
        for k in range(calls):
            start = time.perf_counter()
            call(batch, k)
            end = time.perf_counter()
            times.append(end - start)
            if end > deadline and len(times) >= min(MIN_CALLS, calls):
                break
    return times


class PreprocessingCost:
    """Decoding (full size and as the runtime does it) and ``prepare_inputs`` timed per image."""

    def __init__(self, encoded: Sequence[bytes], bundle: Bundle) -> None:
        self.encoded = encoded
        self.bundle = bundle
        self.min_side = max(s.input_size for s in bundle.models)
        self.keys = {s.name: [input_key(s)] for s in bundle.models}
        self.keys[ENSEMBLE] = [input_key(bundle.model(n)) for n in bundle.ensemble_names]
        self.rounds: dict[str, list[float]] = {}  # step -> per-round median ms per image

    def measure_round(self) -> None:
        steps: dict[str, list[float]] = {}

        def timed(step: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            value = fn(*args, **kwargs)
            steps.setdefault(step, []).append((time.perf_counter() - start) * 1e3)
            return value

        with _no_gc():
            for data in self.encoded:
                timed("decode full size", load_image, data)
                img = timed("decode", load_image, data, min_side=self.min_side)
                for name, keys in self.keys.items():
                    timed(f"prepare {name}", prepare_inputs, [img], keys)
        for step, values in steps.items():
            self.rounds.setdefault(step, []).append(stats.percentile(values, 50))

    def result(self) -> dict[str, Any]:
        """Median-of-rounds ms per image for each step, and decode + prepare per model and for the ensemble."""
        med = {step: stats.median_of_rounds(v) for step, v in self.rounds.items()}
        totals = {name: med["decode"] + med[f"prepare {name}"] for name in self.keys}
        return {
            "unit": "ms per image, median of per-round medians",
            "images": len(self.encoded),
            "decode_min_side": self.min_side,
            "steps": med,
            "steps_best_round": {step: stats.best_round(v) for step, v in self.rounds.items()},
            "per_model": {name: v for name, v in totals.items() if name != ENSEMBLE},
            "ensemble": totals[ENSEMBLE],
        }


@dataclass
class Measured:
    """Per-round call times (seconds) of one variant at each batch size."""

    variant: Variant
    rounds: dict[int, list[list[float]]] = field(default_factory=dict)

    def add(self, batch: int, times: list[float]) -> None:
        self.rounds.setdefault(batch, []).append(times)

    def round_p50_ms(self, batch: int = 1) -> list[float]:
        return [stats.percentile(t, 50) * 1e3 for t in self.rounds[batch]]


def _peak(variant: Variant, env: dict[str, Any], threads: int | None) -> float | None:
    """Estimated peak GMAC/s of the CPU cores this variant may use (None on GPU)."""
    if variant.provider not in CPU_PROVIDERS:
        return None
    cpu = env["cpu"]
    cores = min(threads, cpu["usable_cpus"]) if threads else cpu["usable_cpus"]
    return peak_gmacs("int8" if variant.precision == "int8" else "fp32", cpu["flags"], cores, cpu["clock_mhz"])


def _rows_and_summary(m: Measured, config: BenchConfig, env: dict[str, Any]) -> tuple[list[dict], dict]:
    v = m.variant
    peak = _peak(v, env, config.threads)
    rows = []
    for batch in config.batch_sizes:
        per_round = m.rounds[batch]
        lat = stats.Summary.of([t for r in per_round for t in r]).scaled(1e3)
        p50s = [stats.percentile(t, 50) * 1e3 for t in per_round]
        tps = [stats.throughput(batch, t) for t in per_round]
        tp_median = stats.median_of_rounds(tps)
        gmacs = v.macs * tp_median / 1e9 if v.macs else None
        rows.append({
            "model": v.model, "precision": v.precision, "provider": v.provider, "batch": batch,
            "threads": config.threads, "rounds": len(per_round), "calls": lat.n,
            "latency_ms_p50": lat.p50, "latency_ms_p90": lat.p90, "latency_ms_p99": lat.p99,
            "latency_ms_min": lat.min, "latency_ms_mean": lat.mean,
            "latency_ms_p50_best_round": stats.best_round(p50s),
            "latency_ms_p50_median_round": stats.median_of_rounds(p50s),
            "throughput_ips_best_round": stats.best_round(tps, lower_is_better=False),
            "throughput_ips_median_round": tp_median,
            "session_create_s": v.create_s, "cold_first_call_ms": v.cold_ms, "rss_delta_mb": v.rss_delta_mb,
            "macs_per_image": v.macs, "gmacs_per_s": gmacs, "peak_gmacs_per_s_estimate": peak,
            "fraction_of_peak": gmacs / peak if gmacs and peak else None,
        })
    first = rows[0]
    p50_med = first["latency_ms_p50_median_round"]
    gmacs_p50 = v.macs / (p50_med / 1e3) / 1e9 if v.macs else None
    summary = {
        "label": v.label, "model": v.model, "precision": v.precision, "provider": v.provider,
        "members": list(v.members), "session_create_s": v.create_s, "cold_first_call_ms": v.cold_ms,
        "rss_delta_mb": v.rss_delta_mb, "macs_per_image": v.macs,
        "latency_ms": {k: first[f"latency_ms_{k}"] for k in ("p50", "p90", "p99", "min", "mean")},
        "latency_ms_p50_best_round": first["latency_ms_p50_best_round"],
        "latency_ms_p50_median_round": p50_med,
        "latency_ms_p50_per_round": m.round_p50_ms(1),
        "throughput_ips_median_round": {r["batch"]: r["throughput_ips_median_round"] for r in rows},
        "gmacs_per_s_at_p50": gmacs_p50, "peak_gmacs_per_s_estimate": peak,
        "fraction_of_peak_at_p50": gmacs_p50 / peak if gmacs_p50 and peak else None,
    }
    return rows, summary


def _ratio(num: Measured | None, den: Measured | None, target: float, missing: str) -> dict[str, Any]:
    """``num``/``den`` batch-1 p50, round by round (same load), with the issue's target."""
    if num is None or den is None:
        return {"ratio_median_of_rounds": None, "reason": missing, "target_max": target, "met": None}
    per_round = stats.round_ratios(num.round_p50_ms(), den.round_p50_ms())
    ratio = stats.median_of_rounds(per_round)
    return {
        "numerator": num.variant.label, "denominator": den.variant.label,
        "ratio_median_of_rounds": ratio,
        "ratio_best_rounds": stats.best_round(num.round_p50_ms()) / stats.best_round(den.round_p50_ms()),
        "per_round": per_round, "target_max": target, "met": ratio <= target,
    }


def _default_cpu_provider() -> str:
    """What `Tagger(provider='auto')` runs on a machine without a GPU."""
    return next(p for p in auto_providers() if p != "cuda")


def _predict_targets(e2e: dict[str, Any] | None, photo_sets: Sequence[PhotoSet]) -> dict[str, Any]:
    """`hashtag predict FOLDER`: wall time on the largest photos over the smallest, per repeat; peak RSS."""
    walls = (e2e or {}).get("wall_s", {})
    large, small = (f"predict_{s.label}" for s in (photo_sets[0], photo_sets[-1])) if photo_sets else ("", "")
    rss = {s.label: (e2e or {}).get("peak_rss_mb", {}).get(f"predict_{s.label}") for s in photo_sets}
    out: dict[str, Any] = {}
    target = TARGETS["predict_large_vs_small_wall_ratio"]
    if large in walls and small in walls and len(walls[large]["runs"]) == len(walls[small]["runs"]):
        per_repeat = stats.round_ratios(walls[large]["runs"], walls[small]["runs"])
        ratio = stats.median_of_rounds(per_repeat)
        out["predict_large_vs_small_wall_ratio"] = {
            "numerator": large, "denominator": small, "ratio_median_of_rounds": ratio, "per_round": per_repeat,
            "ratio_best_rounds": min(walls[large]["runs"]) / min(walls[small]["runs"]),
            "target_max": target, "met": ratio <= target}
    else:
        out["predict_large_vs_small_wall_ratio"] = {
            "ratio_median_of_rounds": None, "target_max": target, "met": None,
            "reason": "needs `hashtag predict` runs on two photo sizes (not --skip-e2e)"}
    peaks = [v for v in rss.values() if v is not None]
    target = TARGETS["predict_peak_rss_mb"]
    out["predict_peak_rss_mb"] = {"max": max(peaks) if peaks else None, "per_size": rss, "target_max": target,
                                  "met": max(peaks) <= target if peaks else None}
    return out


def summarize(measured: list[Measured], bundle: Bundle, e2e: dict[str, Any] | None,
              photo_sets: Sequence[PhotoSet] = (), env_int8_flags: Sequence[str] = ()) -> dict[str, Any]:
    """The figures the project is judged by: INT8 vs FP32, Keras and OpenVINO ensemble p50, `hashtag predict`."""
    whole = ENSEMBLE if len(bundle.ensemble_names) > 1 else bundle.ensemble_names[0]
    found = {(m.variant.model, m.variant.precision, m.variant.provider): m for m in measured}
    providers = [p for p in ("cpu", "cuda") if any(k[2] == p for k in found)]
    provider = providers[0] if providers else "cpu"
    int8 = found.get((whole, "int8", provider))
    fp32 = found.get((whole, "fp32", provider))
    keras = found.get((whole, "fp32", KERAS))
    default = _default_cpu_provider()
    summary: dict[str, Any] = {
        "provider": provider,
        "default_cpu_provider": default,
        "int8_fp32_ensemble_p50_ratio": _ratio(int8, fp32, TARGETS["int8_fp32_ensemble_p50_ratio"],
                                               f"needs {whole} int8 and fp32 on {provider}"),
        "int8_keras_ensemble_p50_ratio": _ratio(int8, keras, TARGETS["int8_keras_ensemble_p50_ratio"],
                                                "needs --keras-run with tensorflow installed" if keras is None
                                                else f"needs {whole} int8 on {provider}"),
        "default_vs_openvino_ensemble_p50_ratio": _ratio(
            found.get((whole, "int8", default)), found.get((whole, "int8", STOCK_OPENVINO)),
            TARGETS["default_vs_openvino_ensemble_p50_ratio"],
            f"needs {whole} int8 on {default} and on {STOCK_OPENVINO} (pip install 'hashtag[openvino]')"),
    }
    cold = (e2e or {}).get("wall_s", {}).get("predict_1")
    target = TARGETS["predict_cold_start_s"]
    summary["predict_cold_start_s"] = (
        {"min": cold["min"], "median": cold["median"], "target_max": target, "met": cold["median"] < target}
        if cold else {"min": None, "median": None, "target_max": target, "met": None,
                      "reason": "end-to-end CLI run skipped or failed"}
    )
    summary.update(_predict_targets(e2e, photo_sets))
    summary.update(_fast_targets(found, bundle, provider, env_int8_flags, e2e, photo_sets))
    return summary


def _fast_targets(found: dict[tuple[str, str, str], Measured], bundle: Bundle, provider: str,
                  int8_flags: Sequence[str], e2e: dict[str, Any] | None, photo_sets: Sequence[PhotoSet],
                  ) -> dict[str, Any]:
    """The fast model against the ensemble, measured in the same rounds: model p50 at the precision the runtime
    picks on this CPU, `hashtag predict --fast` vs `hashtag predict` wall time on the largest photos, cold start."""
    fast = bundle.fast
    if fast is None:
        return {}
    chosen = pick_variant(fast, provider, None)[0].precision
    out: dict[str, Any] = {"fast_model": fast.name, "fast_precision_here": chosen,
                           "int8_dot_product_flags": list(int8_flags)}
    out["fast_vs_ensemble_model_p50_ratio"] = _ratio(
        found.get((fast.name, chosen, provider)), found.get((ENSEMBLE, "int8", provider)),
        TARGETS["fast_vs_ensemble_model_p50_ratio"],
        f"needs {fast.name} {chosen} (the runtime's pick on this CPU) and the int8 ensemble on {provider}")
    walls = (e2e or {}).get("wall_s", {})
    kind = "vnni" if int8_flags else "no_vnni"
    target = TARGETS[f"fast_vs_ensemble_predict_wall_ratio_{kind}"]
    large = photo_sets[0].label if photo_sets else ""
    ours, theirs = walls.get(f"predict_fast_{large}"), walls.get(f"predict_{large}")
    if ours and theirs and len(ours["runs"]) == len(theirs["runs"]):
        per_round = stats.round_ratios(ours["runs"], theirs["runs"])
        ratio = stats.median_of_rounds(per_round)
        out["fast_vs_ensemble_predict_wall_ratio"] = {
            "numerator": f"predict_fast_{large}", "denominator": f"predict_{large}", "cpu_kind": kind,
            "ratio_median_of_rounds": ratio, "ratio_best_rounds": min(ours["runs"]) / min(theirs["runs"]),
            "per_round": per_round, "target_max": target, "met": ratio <= target}
    else:
        out["fast_vs_ensemble_predict_wall_ratio"] = {"ratio_median_of_rounds": None, "target_max": target,
                                                      "met": None, "reason": "needs the end-to-end CLI runs"}
    cold = walls.get("predict_fast_1")
    target = TARGETS["fast_predict_cold_start_s"]
    out["fast_predict_cold_start_s"] = (
        {"min": cold["min"], "median": cold["median"], "target_max": target, "met": cold["median"] <= target}
        if cold else {"median": None, "target_max": target, "met": None, "reason": "needs the end-to-end CLI runs"})
    return out


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
        r, s = _rows_and_summary(m, config, env)
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
