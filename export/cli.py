"""``hashtag export``: a training run folder -> a verified model bundle and its report.

Only click and the light config modules load at import, so ``hashtag export --help`` stays quick; the
pipeline (onnxruntime quantization, the dataset reader) loads when the command runs. Option defaults are
the config dataclasses' own.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import click

from hashtag.export.config import (
    CALIBRATION_METHODS,
    MAX_OPSET,
    MIN_LATENCY_RUNS,
    MIN_OPSET,
    ON_MAP_DROP,
    QUANT_TYPES,
    ExportConfig,
    QuantizationConfig,
)
from hashtag.runtime.errors import HashtagError
from hashtag.train.config import field_defaults

EXPORT, QUANT = field_defaults(ExportConfig), field_defaults(QuantizationConfig)


def _split(values: Sequence[str]) -> tuple[str, ...]:
    return tuple(v.strip() for value in values for v in value.split(",") if v.strip())


def _echo(message: str) -> None:
    if message.startswith("WARNING") or "] WARNING" in message:
        click.secho(message, err=True, fg="yellow", bold=True)
    else:
        click.echo(message, err=True)


@click.command("export")
@click.option("--run", "run_dir", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Training run folder (written by hashtag train --out).")
@click.option("--data", "data_dir", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Dataset folder (hashtag data build --out): val split for checks, train split for calibration.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Bundle folder to write (manifest.json, ONNX files, export_report.md).")
@click.option("--models", multiple=True, help="Models to export, comma-separated or repeated (default: all).")
@click.option("--precisions", default=",".join(EXPORT["precisions"]), show_default=True,
              help="Precisions to keep in the bundle (FP32 is always built as the reference).")
@click.option("--calibration-images", type=click.IntRange(min=1), default=EXPORT["calibration_images"],
              show_default=True, help="Train-split images for INT8 calibration.")
@click.option("--calibration", type=click.Choice(CALIBRATION_METHODS), default=QUANT["calibration"],
              show_default=True, help="Calibration of the first INT8 recipe tried.")
@click.option("--percentile", type=click.FloatRange(50, 100, min_open=True), default=QUANT["percentile"],
              show_default=True, help="Percentile for --calibration percentile.")
@click.option("--per-channel/--per-tensor", default=QUANT["per_channel"], show_default=True,
              help="Weight quantization granularity.")
@click.option("--activation-type", type=click.Choice(QUANT_TYPES), default=QUANT["activation_type"],
              show_default=True)
@click.option("--weight-type", type=click.Choice(QUANT_TYPES), default=QUANT["weight_type"], show_default=True)
@click.option("--exclude-first-conv", is_flag=True, help="Keep the first conv in float.")
@click.option("--exclude-head", is_flag=True, help="Keep the dense head in float.")
@click.option("--exclude-residual-adds", is_flag=True, help="Keep residual Adds in float.")
@click.option("--exclude-op-type", multiple=True, help="Keep every node of this op type in float (repeatable).")
@click.option("--exclude-node", multiple=True, help="Keep this node in float (repeatable).")
@click.option("--quant-search/--no-quant-search", default=EXPORT["quant_search"], show_default=True,
              help="Also try the other INT8 recipes and keep the best by val mAP, then latency.")
@click.option("--max-map-drop", type=click.FloatRange(0, 1), default=EXPORT["max_map_drop"], show_default=True,
              help="Largest val mAP loss vs FP32 allowed for INT8/FP16, as a fraction (0.01 = 1 point).")
@click.option("--on-map-drop", type=click.Choice(ON_MAP_DROP), default=EXPORT["on_map_drop"], show_default=True,
              help="What a larger drop does: fail the export, or warn and write the bundle anyway.")
@click.option("--val-images", type=click.IntRange(min=1), default=EXPORT["val_images"],
              help="Use a sample of the val split.")
@click.option("--parity-images", type=click.IntRange(min=1), default=EXPORT["parity_images"], show_default=True)
@click.option("--parity-tolerance", type=float, default=EXPORT["parity_tolerance"], show_default=True,
              help="Largest FP32 |probability difference| vs Keras allowed.")
@click.option("--threads", type=click.IntRange(min=1), default=EXPORT["threads"],
              help="ONNX Runtime threads per session.")
@click.option("--latency-runs", type=click.IntRange(min=MIN_LATENCY_RUNS), default=EXPORT["latency_runs"],
              show_default=True)
@click.option("--opset", type=click.IntRange(MIN_OPSET, MAX_OPSET), default=EXPORT["opset"], show_default=True)
@click.option("--seed", type=int, default=EXPORT["seed"], show_default=True, help="Seed for the image samples.")
def export(run_dir: Path, data_dir: Path, out_dir: Path, models: Sequence[str], precisions: str,
           calibration_images: int, calibration: str, percentile: float, per_channel: bool, activation_type: str,
           weight_type: str, exclude_first_conv: bool, exclude_head: bool, exclude_residual_adds: bool,
           exclude_op_type: Sequence[str], exclude_node: Sequence[str], quant_search: bool, max_map_drop: float,
           on_map_drop: str, val_images: int | None, parity_images: int, parity_tolerance: float,
           threads: int | None, latency_runs: int, opset: int, seed: int) -> None:
    """Export trained Keras models to ONNX (FP32, FP16, INT8), verified against Keras, as a model bundle."""
    try:
        quantization = QuantizationConfig(
            calibration=calibration, percentile=percentile, per_channel=per_channel,
            activation_type=activation_type, weight_type=weight_type, exclude_first_conv=exclude_first_conv,
            exclude_head=exclude_head, exclude_residual_adds=exclude_residual_adds,
            exclude_op_types=tuple(exclude_op_type), exclude_nodes=tuple(exclude_node))
        config = ExportConfig(
            run_dir, data_dir, out_dir, models=_split(models) or None, precisions=_split([precisions]),
            opset=opset, parity_images=parity_images, parity_tolerance=parity_tolerance,
            calibration_images=calibration_images, val_images=val_images, quantization=quantization,
            quant_search=quant_search, max_map_drop=max_map_drop, on_map_drop=on_map_drop,
            latency_runs=latency_runs, threads=threads, seed=seed)
        from hashtag.export.pipeline import run_export

        result = run_export(config, echo=_echo)
    except HashtagError as exc:
        raise click.ClickException(str(exc)) from None
    for problem in result.problems:
        _echo(f"WARNING: {problem}")
