"""Writing the model bundle: ONNX files plus a manifest.json the runtime validates on load."""
from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from hashtag.export.errors import ExportError
from hashtag.export.results import ModelResult
from hashtag.export.run import TrainingRun
from hashtag.runtime.errors import BundleError
from hashtag.runtime.files import write_json_atomically
from hashtag.runtime.manifest import (
    FORMAT_NAME,
    FORMAT_VERSION,
    MANIFEST_NAME,
    PRECISIONS,
    Bundle,
    load_bundle,
)
from hashtag.train.files import sha256_file


def _model_metadata(result: ModelResult, run: TrainingRun, dataset_summary: dict[str, Any]) -> dict[str, Any]:
    info = result.model.info
    chosen = result.variants.get("int8")
    return {
        "backbone": info.get("backbone"),
        "weights_source": info.get("weights_source"),
        "head": info.get("head"),
        "loss": info.get("loss"),
        "training": info.get("training"),
        **{key: info[key] for key in ("distillation", "thresholds_source") if key in info},  # the fast model's
        "metrics": info.get("metrics"),
        "training_data": {"run_dataset": run.info.get("dataset"), "run_seed": run.info.get("seed"),
                          "summary": dataset_summary},
        "export": {
            "source": str(result.model.keras_path),
            "keras_sha256": sha256_file(result.model.keras_path),
            "conversion": result.conversion,
            "parity_vs_keras": {p: v.parity.to_dict() for p, v in result.variants.items()},
            "validation": {p: {**v.accuracy.to_dict(), "map_delta_vs_fp32": result.delta(p)}
                           for p, v in result.variants.items()},
            "latency_ms_batch1_cpu": {p: v.latency.to_dict() for p, v in result.variants.items() if v.latency},
            "nodes": {p: v.nodes.to_dict() for p, v in result.variants.items()},
            "quantization": None if chosen is None else {
                "config": chosen.quantization.to_dict() if chosen.quantization else None,
                "float_nodes": chosen.excluded_nodes,
                "calibration_images": result.calibration_images,
                "candidates": [{"name": c.config.name, "map": c.accuracy.map if c.accuracy else None,
                                "map_drop": c.drop, "error": c.error, "chosen": c.chosen} for c in result.search],
            },
            "problems": result.problems,
        },
    }


def previous_files(out_dir: Path) -> list[Path]:
    """The manifest and ONNX files of an earlier bundle in ``out_dir`` (replaced, so no stale precision
    stays); checked before exporting so a foreign manifest.json fails fast."""
    manifest = out_dir / MANIFEST_NAME
    if not manifest.is_file():
        return []
    try:
        old = json.loads(manifest.read_text(encoding="utf-8"))
        files = [out_dir / Path(v["file"]).name for m in old["models"] for v in m["variants"]]
    except (OSError, json.JSONDecodeError, AttributeError, KeyError, TypeError):
        raise ExportError(f"{manifest} exists but is not a bundle manifest; choose another --out") from None
    return [*files, manifest]


def write_bundle(out_dir: Path, run: TrainingRun, results: list[ModelResult], dataset_summary: dict[str, Any],
                 export_info: dict[str, Any]) -> Bundle:
    """Move the kept files into ``out_dir``, write manifest.json last, and load it back as the runtime will."""
    for path in previous_files(out_dir):
        path.unlink(missing_ok=True)
    entries = []
    for result in results:
        spec = result.model
        variants = []
        for precision in PRECISIONS:
            variant = result.variants.get(precision)
            if variant is None or not variant.kept:
                continue
            dest = out_dir / f"{spec.name}.{precision}.onnx"
            os.replace(variant.path, dest)
            variant.path = dest
            variants.append({"precision": precision, "file": dest.name, "sha256": sha256_file(dest),
                             "bytes": dest.stat().st_size})
        entries.append({
            "name": spec.name,
            "input_size": spec.input_size,
            "preprocessing": spec.preprocessing.to_dict(),
            "tags": list(spec.tags),
            "thresholds": spec.thresholds,
            "variants": variants,
            "metadata": _model_metadata(result, run, dataset_summary),
        })
    thresholds, source = run.ensemble_thresholds()
    manifest = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "ensemble": {"thresholds": thresholds, "thresholds_source": source,
                     "metrics": run.ensemble.get("metrics")},
        "models": entries,
        # how the tags were chosen and which labels were unknown in training: from dataset.json via run.json
        **{key: run.info.get(key) for key in ("vocabulary", "partial_labels") if run.info.get(key)},
        "export": {"created": datetime.now(timezone.utc).isoformat(timespec="seconds"), **export_info},
    }
    write_json_atomically(out_dir / MANIFEST_NAME, manifest)
    try:
        return load_bundle(out_dir)
    except BundleError as exc:
        raise ExportError(f"the written bundle does not load: {exc}") from None
