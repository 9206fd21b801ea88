"""Each variant's figures from its measured rounds: latency percentiles, throughput per batch size, and MACs
per second against an estimate of the cores' peak."""
from __future__ import annotations

from typing import Any

from hashtag.benchmarks import stats
from hashtag.benchmarks.config import BenchConfig
from hashtag.benchmarks.macs import peak_gmacs
from hashtag.benchmarks.timing import Measured
from hashtag.benchmarks.variants import KERAS, STOCK_OPENVINO, Variant

CPU_PROVIDERS = ("cpu", "openvino", STOCK_OPENVINO, KERAS)  # measured on the CPU cores (for the GMAC/s peak)


def peak_estimate(variant: Variant, env: dict[str, Any], threads: int | None) -> float | None:
    """Estimated peak GMAC/s of the CPU cores this variant may use (None on GPU)."""
    if variant.provider not in CPU_PROVIDERS:
        return None
    cpu = env["cpu"]
    cores = min(threads, cpu["usable_cpus"]) if threads else cpu["usable_cpus"]
    return peak_gmacs("int8" if variant.precision == "int8" else "fp32", cpu["flags"], cores, cpu["clock_mhz"])


def rows_and_summary(m: Measured, config: BenchConfig, env: dict[str, Any]) -> tuple[list[dict], dict]:
    """One result row per batch size (the CSV's) and the variant's summary (its batch-1 figures)."""
    v = m.variant
    peak = peak_estimate(v, env, config.threads)
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
