"""Presenting a benchmark result: terminal table, Markdown for the README, JSON, CSV and a PNG plot.

The CSV has one row per model x precision x provider x batch size.
"""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any, Sequence

JSON_NAME = "bench.json"
CSV_NAME = "bench.csv"
PNG_NAME = "bench.png"
MARKDOWN_NAME = "bench.md"
PRECISION_COLORS = {"int8": "tab:green", "fp16": "tab:orange", "fp32": "tab:blue"}


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned first column, right-aligned numbers, widths fitted to the content."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    return "\n".join([line(headers), line(["-" * w for w in widths]), *map(line, rows)])


def _variant_table(result: dict[str, Any]) -> str:
    batches = result["config"]["batch_sizes"]
    headers = ["variant", "create s", "cold ms", "p50 ms", "best ms", "p90 ms", "p99 ms", "min ms",
               *[f"img/s b{b}" for b in batches], "GMAC/img", "GMAC/s", "% peak", "RSS+ MB"]
    rows = []
    for v in result["variants"]:
        lat = v["latency_ms"]
        tp = v["throughput_ips_median_round"]
        frac = v["fraction_of_peak_at_p50"]
        rows.append([
            v["label"], _fmt(v["session_create_s"], 2), _fmt(v["cold_first_call_ms"]),
            _fmt(v["latency_ms_p50_median_round"], 2), _fmt(v["latency_ms_p50_best_round"], 2),
            _fmt(lat["p90"], 2), _fmt(lat["p99"], 2), _fmt(lat["min"], 2),
            *[_fmt(tp.get(b, tp.get(str(b)))) for b in batches],
            _fmt(v["macs_per_image"] / 1e9 if v["macs_per_image"] else None, 2),
            _fmt(v["gmacs_per_s_at_p50"]), _fmt(frac * 100 if frac is not None else None),
            _fmt(v["rss_delta_mb"], 0),
        ])
    return table(headers, rows)


def _ratio_line(name: str, r: dict[str, Any]) -> str:
    if r.get("ratio_median_of_rounds") is None:
        return f"  {name}: n/a ({r.get('reason')})"
    verdict = "met" if r["met"] else "NOT met"
    return (f"  {name}: {r['ratio_median_of_rounds']:.3f} (median of rounds; best rounds {r['ratio_best_rounds']:.3f}; "
            f"target <= {r['target_max']}: {verdict})  [{r['numerator']} / {r['denominator']}]")


def _e2e_lines(e2e: dict[str, Any] | None) -> list[str]:
    if not e2e:
        return ["End to end: skipped"]
    lines = [f"End to end, wall seconds (min / median of {e2e['repeats']}): {e2e['command']}"]
    for name, spread in e2e["wall_s"].items():
        rss = e2e["peak_rss_mb"].get(name)
        lines.append(f"  {name:12s} {spread['min']:.3f} / {spread['median']:.3f} s, peak RSS {_fmt(rss, 0)} MB")
    if "breakdown" in e2e:
        b = e2e["breakdown"]
        lines.append(f"  where time goes: python + imports + manifest {b['python_imports_manifest_s']:.3f} s, "
                     f"sessions + first prediction {b['sessions_and_first_prediction_s']:.3f} s, "
                     f"{b['per_extra_image_ms']:.1f} ms per further image")
    lines += [f"  error: {e}" for e in e2e["errors"]]
    return lines


def _end_to_end_table(result: dict[str, Any]) -> str:
    e2e = result["end_to_end"]
    speedups = e2e["pipelined_vs_full_decode"]
    rows = [[r["label"], _fmt(r["photos_per_s_median_round"], 2), _fmt(r["photos_per_s_best_round"], 2),
             _fmt(r["rss_growth_mb_max"], 0),
             _fmt(speedups.get(f"{r['size'][0]}x{r['size'][1]}", {}).get("speedup_median_of_rounds"), 2)
             if r["way"] == "pipelined" and not r["label"].endswith("/fast") else ""]
            for r in e2e["rows"]]
    return table(["photos (size/way)", "photos/s", "best photos/s", "RSS growth MB", "x full-decode"], rows)


def _predict_lines(summary: dict[str, Any]) -> list[str]:
    lines = [_ratio_line("`hashtag predict` wall, largest/smallest photos",
                         summary["predict_large_vs_small_wall_ratio"])]
    rss = summary["predict_peak_rss_mb"]
    if rss["max"] is None:
        lines.append("  `hashtag predict` peak RSS: n/a (not measured)")
    else:
        sizes = ", ".join(f"{k} {_fmt(v, 0)} MB" for k, v in rss["per_size"].items())
        lines.append(f"  `hashtag predict` peak RSS: {rss['max']:.0f} MB max ({sizes}; "
                     f"target <= {rss['target_max']:.0f} MB: {'met' if rss['met'] else 'NOT met'})")
    return lines


def render_text(result: dict[str, Any]) -> str:
    """The readable report printed at the end of `hashtag bench`."""
    cfg, env, images = result["config"], result["environment"], result["images"]
    prep = result["preprocessing"]
    summary = result["summary"]
    threads = cfg["threads"] or "onnxruntime default"
    lines = [
        f"hashtag bench, {result['created']} ({result['duration_s']:.0f} s)",
        f"hardware: {result['hardware']}",
        f"bundle: {env['bundle']['path']} (manifest sha256 {env['bundle']['manifest_sha256'][:16]})",
        f"intra-op threads: {threads}; {cfg['rounds']} interleaved rounds; {cfg['runs']} batch-1 runs per round; "
        f"images: {images['count']} {images['source']}; load average {env['load_average_start']} -> "
        f"{result['process']['load_average_end']}",
        "",
        "Inference (batch-1 latency; p50 = median of rounds, best = best round; img/s = median round; "
        "GMAC/s at p50 vs an estimated peak)",
        _variant_table(result),
        "",
        "Preprocessing, ms per image (decode once, then resize and normalize per input): "
        + ", ".join(f"{k} {v:.2f}" for k, v in prep["steps"].items()),
        "  per model: " + ", ".join(f"{k} {v:.2f}" for k, v in prep["per_model"].items())
        + f"; ensemble {prep['ensemble']:.2f}",
        "",
        f"End to end in-process (decode + preprocess + ensemble, provider {result['end_to_end']['provider']}, "
        f"batch {result['end_to_end']['batch_size']}; photos/s = median of rounds)",
        _end_to_end_table(result),
        "",
        *_e2e_lines(result["e2e"]),
        "",
        f"Summary ({summary['provider']}; default CPU path: {summary['default_cpu_provider']})",
        _ratio_line("INT8/FP32 ensemble p50", summary["int8_fp32_ensemble_p50_ratio"]),
        _ratio_line("INT8/Keras FP32 ensemble p50", summary["int8_keras_ensemble_p50_ratio"]),
        _ratio_line("default path/OpenVINO stock ensemble p50", summary["default_vs_openvino_ensemble_p50_ratio"]),
        *_predict_lines(summary),
    ]
    cold = summary["predict_cold_start_s"]
    if cold["median"] is None:
        lines.append(f"  predict cold start: n/a ({cold['reason']})")
    else:
        lines.append(f"  predict cold start (1 image): {cold['min']:.3f} s min, {cold['median']:.3f} s median "
                     f"(target < {cold['target_max']} s: {'met' if cold['met'] else 'NOT met'})")
    lines += _fast_lines(summary)
    lines += ["", "Notes:", *[f"  - {n}" for n in result["notes"]]]
    return "\n".join(lines)


def _fast_lines(summary: dict[str, Any]) -> list[str]:
    """The fast model against the ensemble (issue 23's targets), when the bundle has one."""
    if "fast_model" not in summary:
        return []
    flags = ", ".join(summary["int8_dot_product_flags"]) or "none"
    lines = [f"  fast model {summary['fast_model']} ({summary['fast_precision_here']} on this CPU; "
             f"INT8 dot-product flags: {flags}):",
             "  " + _ratio_line("fast/ensemble model p50", summary["fast_vs_ensemble_model_p50_ratio"]).strip(),
             "  " + _ratio_line("`predict --fast`/`predict` wall, largest photos",
                                summary["fast_vs_ensemble_predict_wall_ratio"]).strip()]
    cold = summary["fast_predict_cold_start_s"]
    lines.append(f"    `predict --fast` cold start (1 image): {_fmt(cold.get('median'), 3)} s median "
                 f"(target <= {cold['target_max']} s: {'n/a' if cold['met'] is None else 'met' if cold['met'] else 'NOT met'})")
    return lines


def _summary_cells(summary: dict[str, Any]) -> list[str]:
    cells = []
    for key, name in (("int8_fp32_ensemble_p50_ratio", "INT8/FP32 ensemble p50"),
                      ("int8_keras_ensemble_p50_ratio", "INT8/Keras FP32 ensemble p50"),
                      ("default_vs_openvino_ensemble_p50_ratio",
                       f"default path ({summary['default_cpu_provider']})/stock OpenVINO ensemble p50"),
                      ("predict_large_vs_small_wall_ratio", "`hashtag predict` wall largest/smallest photos")):
        r = summary[key]
        value = r.get("ratio_median_of_rounds")
        cells.append(f"{name} {_fmt(value, 2)} (target <= {r['target_max']})")
    cold = summary["predict_cold_start_s"]
    cells.append(f"`hashtag predict` cold start {_fmt(cold['median'], 2)} s (target < {cold['target_max']} s)")
    if "fast_model" in summary:
        for key, name in (("fast_vs_ensemble_model_p50_ratio", "fast/ensemble model p50"),
                          ("fast_vs_ensemble_predict_wall_ratio", "`predict --fast`/`predict` wall, largest photos")):
            r = summary[key]
            cells.append(f"{name} {_fmt(r.get('ratio_median_of_rounds'), 3)} (target <= {r['target_max']:.3f})")
        fast_cold = summary["fast_predict_cold_start_s"]
        cells.append(f"`predict --fast` cold start {_fmt(fast_cold.get('median'), 2)} s "
                     f"(target <= {fast_cold['target_max']} s)")
    rss = summary["predict_peak_rss_mb"]
    cells.append(f"`hashtag predict` peak RSS {_fmt(rss['max'], 0)} MB (target <= {rss['target_max']:.0f} MB)")
    return cells


def render_markdown(result: dict[str, Any]) -> str:
    """A README-ready table headed by the date and the hardware line."""
    batches = result["config"]["batch_sizes"]
    cfg = result["config"]
    lines = [
        f"Measured {result['created'][:10]} on {result['hardware']}; intra-op threads "
        f"{cfg['threads'] or 'default'}, {cfg['rounds']} interleaved rounds (p50 = median of rounds).",
        "",
        "| variant | p50 ms | best round ms | p90 ms | " + " | ".join(f"img/s b{b}" for b in batches)
        + " | session s | GMAC/s (% est. peak) |",
        "|---" * (6 + len(batches)) + "|",
    ]
    for v in result["variants"]:
        tp = v["throughput_ips_median_round"]
        frac = v["fraction_of_peak_at_p50"]
        peak = f" ({frac * 100:.0f}%)" if frac is not None else ""
        lines.append(
            f"| {v['label']} | {_fmt(v['latency_ms_p50_median_round'])} | {_fmt(v['latency_ms_p50_best_round'])} | "
            f"{_fmt(v['latency_ms']['p90'])} | " + " | ".join(_fmt(tp.get(b, tp.get(str(b)))) for b in batches)
            + f" | {_fmt(v['session_create_s'], 2)} | {_fmt(v['gmacs_per_s_at_p50'])}{peak} |")
    e2e = result["end_to_end"]
    lines += ["", f"End to end (decode + preprocess + ensemble, {e2e['provider']}, batch {e2e['batch_size']}):", "",
              "| photos | way | photos/s | best round | RSS growth MB |", "|---|---|---|---|---|"]
    for r in e2e["rows"]:
        way = r["way"] + (" (fast model)" if r["label"].endswith("/fast") else "")
        lines.append(f"| {r['size'][0]}x{r['size'][1]} | {way} | {_fmt(r['photos_per_s_median_round'], 2)} | "
                     f"{_fmt(r['photos_per_s_best_round'], 2)} | {_fmt(r['rss_growth_mb_max'], 0)} |")
    lines += ["", "; ".join(_summary_cells(result["summary"])) + "."]
    return "\n".join(lines) + "\n"


def write_json(result: dict[str, Any], path: Path) -> Path:
    path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return path


def write_csv(rows: Sequence[dict[str, Any]], path: Path) -> Path:
    """One row per model x precision x provider x batch."""
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]) if rows else [])
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_plot(result: dict[str, Any], path: Path) -> Path | None:
    """Batch-1 latency per variant (p50, whiskers min..p90) and throughput vs batch; None without matplotlib."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        return None
    variants = result["variants"]
    batches = result["config"]["batch_sizes"]
    fig = Figure(figsize=(14, max(5.0, 0.35 * len(variants) + 2)), layout="constrained")
    left, right = fig.subplots(1, 2, width_ratios=[1, 1.2])
    labels = [v["label"] for v in variants]
    p50 = [v["latency_ms_p50_median_round"] for v in variants]
    low = [max(p - v["latency_ms"]["min"], 0) for p, v in zip(p50, variants)]
    high = [max(v["latency_ms"]["p90"] - p, 0) for p, v in zip(p50, variants)]
    colors = ["tab:red" if v["provider"] == "keras" else PRECISION_COLORS.get(v["precision"], "tab:gray")
              for v in variants]
    left.barh(range(len(variants)), p50, xerr=[low, high], color=colors, capsize=3)
    left.set_yticks(range(len(variants)), labels, fontsize=8)
    left.invert_yaxis()
    left.set_xlabel("batch-1 latency, ms (p50 median of rounds; whiskers min..p90)")
    for v in variants:
        tp = v["throughput_ips_median_round"]
        right.plot(batches, [tp.get(b, tp.get(str(b))) for b in batches], marker="o", label=v["label"])
    right.set_xscale("log", base=2)
    right.set_xticks(batches, [str(b) for b in batches])
    right.set_xlabel("batch size")
    right.set_ylabel("images / s (median of rounds)")
    right.legend(fontsize=7, loc="best")
    right.grid(alpha=0.3)
    fig.suptitle(f"hashtag bench {result['created'][:10]}: {result['hardware']}", fontsize=9)
    fig.savefig(path, dpi=100)
    return path
