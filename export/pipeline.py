"""The export pipeline: per model convert, check parity, make FP16/INT8, evaluate; then time all and write.

Nothing reaches the bundle folder but the report until every check passed: files are built in a
hidden work folder inside it and moved in at the end, manifest.json last.
"""
from __future__ import annotations

import importlib.metadata
import os
import platform
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import onnxruntime as ort

from hashtag.export.bundle import previous_files, write_bundle
from hashtag.export.config import ExportConfig
from hashtag.export.convert import INPUT_NAME, convert_in_subprocess
from hashtag.export.data import CALIBRATION, VAL, ExportImages
from hashtag.export.errors import ExportError
from hashtag.export.evaluate import Accuracy, accuracy, map_drop, predict
from hashtag.export.latency import measure_latency
from hashtag.export.parity import check_parity
from hashtag.export.quantize import (
    PixelReader,
    convert_fp16,
    count_nodes,
    prepare_for_quantization,
)
from hashtag.export.report import REPORT_NAME, write_report
from hashtag.export.results import ModelResult, VariantResult
from hashtag.export.run import TrainedModel, TrainingRun, load_run
from hashtag.export.search import SearchSettings, search_int8
from hashtag.runtime.manifest import Bundle
from hashtag.runtime.preprocess import normalize

Echo = Callable[[str], None]


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class ExportResult:
    """The written bundle and report, and what went into them."""

    bundle: Bundle
    report: Path
    models: list[ModelResult]
    problems: list[str]


class _ModelExport:
    """Exports one model into the work folder; ``run()`` returns its results and one timing input."""

    def __init__(self, model: TrainedModel, config: ExportConfig, images: ExportImages, work: Path,
                 echo: Echo) -> None:
        self.model, self.config, self.images, self.work = model, config, images, work
        self.echo = lambda msg: echo(f"[{model.name}] {msg}")
        prep = model.preprocessing
        self.val = images.pixels(VAL, model.input_size, prep.resize)
        self.labels = images.labels(model.tags)
        self.parity_inputs = normalize(self.val[: config.parity_images], prep)

    def evaluate(self, path: Path) -> Accuracy:
        """Val mAP of one ONNX file."""
        cfg = self.config
        probs = predict(path, self.val, self.model.preprocessing, cfg.threads, cfg.batch_size)
        return accuracy(self.labels, probs, self.model.tags)

    def variant(self, precision: str, path: Path, reference: np.ndarray, acc: Accuracy | None = None,
                **extra: Any) -> VariantResult:
        """Parity vs Keras (enforced for FP32, reported for the others), accuracy and node counts of one file."""
        tolerance = self.config.parity_tolerance if precision == "fp32" else None
        parity = check_parity(path, self.parity_inputs, reference, precision, tolerance, self.config.threads)
        acc = acc or self.evaluate(path)
        self.echo(f"{precision}: parity vs Keras max |diff| {parity.max_abs_diff:.2e}, val mAP {acc.map:.4f}")
        return VariantResult(precision, path, parity, acc, count_nodes(path, self.work),
                             kept=precision in self.config.precisions, **extra)

    def run(self) -> tuple[ModelResult, np.ndarray]:
        cfg, model = self.config, self.model
        self.echo(f"converting {model.keras_path} with tf2onnx (opset {cfg.opset}, separate process) ...")
        conv = convert_in_subprocess(model.keras_path, self.work / f"{model.name}.fp32.onnx", model.input_size,
                                     self.parity_inputs, cfg.opset, cfg.conversion_timeout_s)
        self.echo(f"converted in {conv.info['seconds']} s; checking parity on {len(self.parity_inputs)} "
                  f"real val images (tolerance {cfg.parity_tolerance:g}) ...")
        variants = {"fp32": self.variant("fp32", conv.onnx_path, conv.reference)}
        result = ModelResult(model, conv.info, variants)
        if "fp16" in cfg.precisions:
            self.echo("converting to FP16 (float32 input/output) ...")
            path = convert_fp16(conv.onnx_path, self.work / f"{model.name}.fp16.onnx")
            variants["fp16"] = self.variant("fp16", path, conv.reference)
        if "int8" in cfg.precisions:
            self._int8(result, conv.onnx_path, conv.reference)
        self._check_drops(result)
        return result, self.parity_inputs[:1]

    def _int8(self, result: ModelResult, fp32_path: Path, reference: np.ndarray) -> None:
        cfg, model = self.config, self.model
        prep = model.preprocessing
        calibration = self.images.pixels(CALIBRATION, model.input_size, prep.resize)
        result.calibration_images = len(calibration)
        prepared = prepare_for_quantization(fp32_path, self.work / f"{model.name}.prepared.onnx")
        reader = PixelReader(calibration, prep, INPUT_NAME, cfg.calibration_batch)
        names = ", ".join(c.name for c in cfg.candidates)
        self.echo(f"INT8 static QDQ on {len(calibration)} train images; recipes: {names}")
        settings = SearchSettings(cfg.search_stop_drop, cfg.search_tie, cfg.latency_runs, cfg.latency_warmup,
                                  cfg.threads)
        chosen, tried = search_int8(prepared, self.work, reader, cfg.candidates, self.evaluate,
                                    result.baseline.accuracy, self.parity_inputs[:1], settings, self.echo)
        result.search = tried
        self.echo(f"chose {chosen.config.name}")
        result.variants["int8"] = self.variant("int8", chosen.path, reference, chosen.accuracy,
                                               quantization=chosen.config, excluded_nodes=chosen.excluded)

    def _check_drops(self, result: ModelResult) -> None:
        for precision, v in result.variants.items():
            drop = map_drop(v.accuracy, result.baseline.accuracy)
            if precision != "fp32" and drop > self.config.max_map_drop:
                problem = (f"{self.model.name} {precision}: val mAP drops {100 * drop:.2f} points vs FP32 "
                           f"(limit {100 * self.config.max_map_drop:.2f})")
                self.echo(f"WARNING: {problem}")
                result.problems.append(problem)


def _time_all(results: list[ModelResult], samples: list[np.ndarray], config: ExportConfig) -> None:
    files = {(i, p): (v.path, samples[i]) for i, r in enumerate(results) for p, v in r.variants.items()}
    timings = measure_latency(files, config.latency_runs, config.latency_warmup, config.threads)
    for (i, p), latency in timings.items():
        results[i].variants[p].latency = latency


def _cpu_name() -> str:
    """The CPU model (INT8 speed depends on VNNI), from /proc/cpuinfo where there is one."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _export_info(config: ExportConfig, run: TrainingRun, images: ExportImages,
                 results: list[ModelResult], seconds: float) -> dict[str, Any]:
    versions = dict(results[0].conversion.get("versions", {})) if results else {}
    return {
        "tool": f"hashtag export {importlib.metadata.version('hashtag')}",
        "run": str(run.root),
        "dataset": str(config.data_dir),
        "val_images": len(images.val),
        "calibration_images": len(images.calibration),
        "precisions": list(config.precisions),
        "opset": config.opset,
        "parity_tolerance": config.parity_tolerance,
        "max_map_drop": config.max_map_drop,
        "on_map_drop": config.on_map_drop,
        "quant_search": config.quant_search,
        "versions": {**versions, "onnxruntime": ort.__version__},
        "machine": f"{_cpu_name()}, {os.cpu_count()} CPUs",
        "threads": config.threads or "onnxruntime default",
        "seconds": round(seconds, 1),
        "report": REPORT_NAME,
        **config.extra_metadata,
    }


def run_export(config: ExportConfig, echo: Echo = _stderr, progress: bool = True) -> ExportResult:
    """Export every selected model of ``config.run_dir`` into the bundle ``config.out_dir``."""
    start = time.monotonic()
    run = load_run(config.run_dir, config.models)
    previous_files(config.out_dir)
    echo(f"exporting {', '.join(m.name for m in run.models)} from {run.root} as {', '.join(config.precisions)}")
    images = ExportImages(config.data_dir, run.tags, config.calibration_images, config.val_images, config.seed,
                          progress)
    echo(f"dataset {config.data_dir}: {len(images.val)} val images, {len(images.calibration)} calibration images")
    config.out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".export-", dir=config.out_dir) as tmp:
        results, samples = [], []
        for i, model in enumerate(run.models):
            result, sample = _ModelExport(model, config, images, Path(tmp), echo).run()
            results.append(result)
            samples.append(sample)
            images.keep_only({(m.input_size, m.preprocessing.resize) for m in run.models[i + 1 :]})
        echo(f"timing every variant: batch 1, {config.latency_runs} interleaved runs after {config.latency_warmup} "
             "warm-up runs ...")
        _time_all(results, samples, config)
        problems = [p for r in results for p in r.problems]
        failed = bool(problems) and config.on_map_drop == "fail"
        info = _export_info(config, run, images, results, time.monotonic() - start)
        report = write_report(config.out_dir, results, info, problems, failed)
        if failed:
            raise ExportError(f"{problems[0]}; no bundle written (report: {report}; --on-map-drop warn keeps it)")
        bundle = write_bundle(config.out_dir, run, results, images.dataset_summary, info)
    echo(f"bundle written to {config.out_dir} ({len(results)} models); report: {report}")
    return ExportResult(bundle, report, results, problems)
