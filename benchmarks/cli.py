"""`hashtag bench`: latency, throughput and end-to-end cost of the runtime on this machine."""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

import click

from hashtag.benchmarks import report
from hashtag.benchmarks.config import PHOTO_SIZES, BenchConfig
from hashtag.benchmarks.photos import write_photos
from hashtag.benchmarks.runner import run_benchmark
from hashtag.runtime.errors import HashtagError
from hashtag.runtime.images import IMAGE_SUFFIXES, find_images
from hashtag.runtime.manifest import PRECISIONS
from hashtag.runtime.options import (
    bundle_option, deprecated_models_dir_option, provider_option, resolve_bundle, threads_option,
)

SYNTHETIC = {"count": 8, "size": (1280, 960)}
# --quick: a smoke run for tests and CI; explicit options still win.
QUICK = {"rounds": 2, "runs": 5, "warmup": 1, "throughput_images": 8, "e2e_repeats": 1, "budget_s": 2.0,
         "photo_sizes": ((640, 480), (160, 120)), "photo_count": 3, "e2e_photos": 3}
QUICK_SYNTHETIC = {"count": 3, "size": (160, 120)}
DEFAULTS = {"rounds": 3, "runs": 30, "warmup": 3, "throughput_images": 32, "e2e_repeats": 3, "budget_s": 10.0,
            "photo_sizes": PHOTO_SIZES, "photo_count": 100, "e2e_photos": 16}


def _batch_sizes(ctx: click.Context, param: click.Parameter, value: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got {value!r}") from None
    if not sizes or any(s < 1 for s in sizes) or 1 not in sizes:
        raise click.BadParameter(f"batch sizes must be positive and include 1, got {value!r}")
    return tuple(sorted(set(sizes)))


def _photo_sizes(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[tuple[int, int], ...] | None:
    if value is None:
        return None
    try:
        sizes = tuple((int(w), int(h)) for w, h in (v.lower().split("x") for v in value.split(",") if v.strip()))
    except ValueError:
        raise click.BadParameter(f"expected sizes like 4000x3000,320x240, got {value!r}") from None
    if len(sizes) < 2 or any(min(s) < 1 for s in sizes):
        raise click.BadParameter(f"give at least two positive sizes, largest first, got {value!r}")
    return sizes


def _images(folder: Path | None, quick: bool, tmp: Path) -> tuple[tuple[Path, ...], dict[str, Any]]:
    """The given photos in sorted order, or deterministic synthetic ones written to ``tmp``."""
    if folder is not None:
        found = [p for p in find_images([folder]) if p.suffix.lower() in IMAGE_SUFFIXES]
        if not found:
            raise click.ClickException(f"no image files in {folder}")
        return tuple(found), {"source": str(folder), "count": len(found), "files": [p.name for p in found]}
    spec = QUICK_SYNTHETIC if quick else SYNTHETIC
    paths = write_photos(tmp, spec["count"], spec["size"])
    w, h = spec["size"]
    return tuple(paths), {"source": f"synthetic {w}x{h} JPEG", "count": len(paths), "files": [p.name for p in paths]}


def _progress(message: str) -> None:
    if sys.stderr.isatty():
        click.echo(f"[bench] {message}", err=True)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@bundle_option
@deprecated_models_dir_option
@click.option("--images", "images_dir", type=click.Path(path_type=Path, exists=True), default=None,
              help="Folder of photos (searched recursively, sorted); default: synthetic photos.")
@click.option("--out", "out_dir", type=click.Path(path_type=Path, file_okay=False), default=None,
              help=f"Write {report.JSON_NAME}, {report.CSV_NAME}, {report.PNG_NAME} and {report.MARKDOWN_NAME} here.")
@provider_option.described("Providers to measure (auto: ONNX Runtime's CPU provider, OpenVINO when installed and "
                            "CUDA when it really loads, each in its own rows).")
@click.option("--precision", "precisions", multiple=True, type=click.Choice(PRECISIONS),
              help="Only this precision (repeatable; default: every precision in the bundle).")
@threads_option
@click.option("--rounds", type=click.IntRange(min=1), default=None, help="Interleaved rounds [3; quick 2].")
@click.option("--runs", type=click.IntRange(min=1), default=None, help="Batch-1 calls per variant per round [30].")
@click.option("--budget", "budget_s", type=click.FloatRange(min=0.01), default=None,
              help="Seconds per variant, batch size and round before stopping early [10].")
@click.option("--warmup", type=click.IntRange(min=0), default=None, help="Warm-up calls per batch size [3].")
@click.option("--batch-sizes", default="1,4,8,16", show_default=True, callback=_batch_sizes,
              help="Batch sizes for throughput (must include 1).")
@click.option("--keras-run", type=click.Path(path_type=Path, file_okay=False, exists=True), default=None,
              help="Training run folder (<model>/model.keras): also time Keras FP32 (needs tensorflow).")
@click.option("--e2e-images", type=click.IntRange(min=2), default=100, show_default=True,
              help="Images for the end-to-end `hashtag predict` run.")
@click.option("--skip-e2e", is_flag=True, help="Do not time the `hashtag predict` subprocesses.")
@click.option("--photo-sizes", default=None, callback=_photo_sizes,
              help="Photo sizes, largest first, for the end-to-end rows and `hashtag predict FOLDER` "
                   "[4000x3000,1280x960,320x240; quick 640x480,160x120].")
@click.option("--photo-count", type=click.IntRange(min=1), default=None,
              help="Photos per size (the same photo, generated at run time) [100; quick 3].")
@click.option("--quick", is_flag=True, help="A short smoke run (fewer rounds, runs and smaller photos).")
def bench(
    bundle_dir: Path | None, models_arg: str | None, images_dir: Path | None, out_dir: Path | None, provider: str,
    precisions: tuple[str, ...], threads: int | None, rounds: int | None, runs: int | None, budget_s: float | None,
    warmup: int | None, batch_sizes: tuple[int, ...], keras_run: Path | None, e2e_images: int, skip_e2e: bool,
    photo_sizes: tuple[tuple[int, int], ...] | None, photo_count: int | None, quick: bool,
) -> None:
    """Benchmark every model and the ensemble, per precision and provider, interleaved in rounds.

    Also times decode + preprocess + ensemble end to end on photos of several sizes, OpenVINO on the same
    files when it is installed, and `hashtag predict` in fresh processes. Prints a table and a summary
    (ensemble latency ratios INT8/FP32, INT8/Keras and default path/OpenVINO; `hashtag predict` cold start,
    wall time on large vs small photos and peak RSS); with --out also writes JSON, CSV, Markdown and a PNG plot.
    """
    preset = QUICK if quick else DEFAULTS
    given = {"rounds": rounds, "runs": runs, "warmup": warmup, "budget_s": budget_s, "photo_sizes": photo_sizes,
             "photo_count": photo_count}
    settings = {**preset, **{k: v for k, v in given.items() if v is not None}}
    with tempfile.TemporaryDirectory(prefix="hashtag-bench-") as tmp:
        images, images_meta = _images(images_dir, quick, Path(tmp))
        try:
            config = BenchConfig(
                bundle=resolve_bundle(bundle_dir, models_arg, names_allowed=False)[0], images=images, provider=provider,
                precisions=precisions or PRECISIONS, threads=threads, batch_sizes=batch_sizes, keras_run=keras_run,
                e2e_images=e2e_images, e2e=not skip_e2e, **settings,
            )
        except ValueError as exc:
            raise click.UsageError(str(exc)) from None
        try:
            result = run_benchmark(config, images_meta, _progress, Path(tmp))
        except HashtagError as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(report.render_text(result))
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        written = [report.write_json(result, out_dir / report.JSON_NAME),
                   report.write_csv(result["rows"], out_dir / report.CSV_NAME)]
        (out_dir / report.MARKDOWN_NAME).write_text(report.render_markdown(result), encoding="utf-8")
        written.append(out_dir / report.MARKDOWN_NAME)
        plot = report.write_plot(result, out_dir / report.PNG_NAME)
        if plot is None:
            click.echo("warning: matplotlib is not installed; no plot written", err=True)
        else:
            written.append(plot)
        click.echo("\nwrote " + ", ".join(map(str, written)))
