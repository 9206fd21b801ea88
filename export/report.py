"""The markdown export report: size, parity, val mAP, latency and quantized nodes per model and precision."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

from hashtag.export.results import ModelResult
from hashtag.runtime.manifest import PRECISIONS

REPORT_NAME = "export_report.md"
WORST_TAGS = 5
MODEL_COLUMNS = ("model", "precision", "in bundle", "file size (MB)", "parity max abs diff vs Keras", "val mAP",
                 "Δ mAP vs FP32 (points)", "CPU latency b1 median (p90) ms", "speed-up vs FP32",
                 "quantized ops", "float ops left", "Q/DQ nodes")


def _table(header: Sequence[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|",
            *("| " + " | ".join(r) + " |" for r in rows)]


def _num(value: float | None, fmt: str) -> str:
    if value is None or math.isnan(value):
        return "n/a"
    return format(value + 0.0, fmt)  # + 0.0 turns -0.0 into 0.0


def _model_rows(results: list[ModelResult]) -> list[list[str]]:
    rows = []
    for r in results:
        fp32 = r.baseline.latency
        for precision in PRECISIONS:
            v = r.variants.get(precision)
            if v is None:
                continue
            speedup = fp32.median_ms / v.latency.median_ms if v.latency and fp32 else None
            rows.append([
                r.model.name, precision, "yes" if v.kept else "no (reference)",
                _num(v.path.stat().st_size / 1e6, ".2f"), _num(v.parity.max_abs_diff, ".2e"),
                _num(v.accuracy.map, ".4f"), _num(100 * r.delta(precision), "+.2f"),
                f"{v.latency.median_ms:.2f} ({v.latency.p90_ms:.2f})" if v.latency else "n/a",
                _num(speedup, ".2f") + ("x" if speedup else ""),
                str(v.nodes.quantized_ops), str(v.nodes.float_ops), str(v.nodes.qdq_nodes),
            ])
    return rows


def _ensemble_rows(results: list[ModelResult]) -> list[list[str]]:
    """Sum of per-model medians per precision, for precisions every model has."""
    totals: dict[str, float] = {}
    for precision in PRECISIONS:
        variants = [r.variants.get(precision) for r in results]
        if all(v is not None and v.latency for v in variants):
            totals[precision] = sum(v.latency.median_ms for v in variants)  # type: ignore[union-attr]
    base = totals.get("fp32")
    return [[p, f"{ms:.2f}", f"{base / ms:.2f}x" if base else "n/a"] for p, ms in totals.items()]


def _search_lines(r: ModelResult) -> list[str]:
    rows = []
    for c in r.search:
        rows.append([
            c.config.name, c.config.calibration, str(len(c.excluded)) if not c.error else "n/a",
            _num(c.accuracy.map if c.accuracy else None, ".4f"),
            _num(-100 * c.drop if c.drop is not None else None, "+.2f"),
            _num(c.latency.median_ms if c.latency else None, ".2f"),
            "**chosen**" if c.chosen else (c.error or ""),
        ])
    header = ("recipe", "calibration", "float nodes", "val mAP", "Δ mAP (points)", "latency ms", "")
    return [f"### INT8 recipes tried for {r.model.name} ({r.calibration_images} calibration images)", "",
            *_table(header, rows), ""]


def _worst_tags(results: list[ModelResult]) -> list[str]:
    rows = []
    for r in results:
        for precision, v in r.variants.items():
            if precision == "fp32":
                continue
            deltas = sorted(v.accuracy.per_tag_delta(r.baseline.accuracy).items(), key=lambda kv: kv[1])
            for tag, delta in deltas[:WORST_TAGS]:
                rows.append([r.model.name, precision, tag, _num(r.baseline.accuracy.per_tag[tag], ".4f"),
                             _num(v.accuracy.per_tag[tag], ".4f"), _num(100 * delta, "+.2f")])
    header = ("model", "precision", "tag", "AP FP32", "AP", "Δ AP (points)")
    return [f"## Largest per-tag AP changes vs FP32 (worst {WORST_TAGS} per variant)", "", *_table(header, rows), ""]


def _status(problems: list[str], failed: bool) -> str:
    if not problems:
        return "**Status: OK**"
    return ("**Status: FAILED, no bundle written** – " if failed else "**Status: WARNING** – ") + "; ".join(problems)


def render_report(results: list[ModelResult], info: dict[str, Any], problems: list[str], failed: bool) -> str:
    """The report's markdown text."""
    lines = ["# Export report", ""]
    lines += [f"- {key}: {value}" for key, value in info.items()]
    lines += ["", _status(problems, failed), ""]
    lines += ["## Models", "",
              ("Parity: max |probability difference| vs Keras on real val images (FP32 must be < tolerance). "
               "Latency: CPU, batch 1, all variants interleaved in one run after warm-up. "
               "Ops are counted after ONNX Runtime's QDQ fusion."), ""]
    lines += [*_table(MODEL_COLUMNS, _model_rows(results)), ""]
    ensemble = _ensemble_rows(results)
    if len(results) > 1 and ensemble:
        lines += ["## Ensemble latency (sum of per-model medians)", "",
                  *_table(("precision", "ms", "speed-up vs FP32"), ensemble), ""]
    for r in results:
        if r.search:
            lines += _search_lines(r)
    if any(p != "fp32" for r in results for p in r.variants):
        lines += _worst_tags(results)
    return "\n".join(lines)


def write_report(out_dir: Path, results: list[ModelResult], info: dict[str, Any], problems: list[str],
                 failed: bool = False) -> Path:
    """Write ``out_dir/export_report.md``; returns its path."""
    path = out_dir / REPORT_NAME
    path.write_text(render_report(results, info, problems, failed) + "\n", encoding="utf-8")
    return path
