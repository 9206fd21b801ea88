"""The ``hashtag`` command: ``predict`` and ``models`` here; the other subcommands load from their extras."""
from __future__ import annotations

import json
import sys
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Sequence

import click

from hashtag.runtime.cpu import cpu_features
from hashtag.runtime.errors import HashtagError, ImageError
from hashtag.runtime.images import find_images
from hashtag.runtime.manifest import PRECISIONS, load_bundle
from hashtag.runtime.options import bundle_option, models_option, provider_option, resolve_bundle, threads_option
from hashtag.runtime.contract import hashtag, tag_names
from hashtag.runtime.prediction import Options, model_choice
from hashtag.runtime.progress import progress
from hashtag.runtime.providers import available_providers
from hashtag.runtime.tagger import DEFAULT_BATCH_SIZE, Tagger, pick_variant

COMMAND_GROUP = "hashtag.commands"  # entry points of the packages that add subcommands (see setup.cfg)


def _plugin_commands() -> dict[str, EntryPoint]:
    """Subcommands other packages register: this layer does not need to know its users."""
    return {ep.name: ep for ep in entry_points(group=COMMAND_GROUP)}


class PluginGroup(click.Group):
    """A click group that adds the registered subcommands, imported only when used so `predict` stays light."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *_plugin_commands()})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        plugin = _plugin_commands().get(name)
        if name in self.commands or plugin is None:
            return super().get_command(ctx, name)
        try:
            return plugin.load()
        except ImportError as exc:
            if (exc.name or "").startswith("hashtag."):
                raise
            return _missing_extra_command(name, plugin.extras, exc)


def _missing_extra_command(name: str, extras: list[str], exc: ImportError) -> click.Command:
    """A stand-in that says which extra to install, exit code 2."""
    hint = f"pip install 'hashtag[{','.join(extras)}]'" if extras else "reinstall hashtag"

    @click.command(name, help=f"(not installed: {hint})", context_settings={"ignore_unknown_options": True})
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    def missing(args: tuple[str, ...]) -> None:
        click.echo(f"Error: 'hashtag {name}' needs {exc.name or exc}; install it with: {hint}", err=True)
        sys.exit(2)

    return missing


@click.group(cls=PluginGroup, context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Suggest hashtags for photos with an ensemble of ONNX image taggers."""


def _scores_line(scores: dict[str, float], hashtags: list[str]) -> str:
    return " ".join(f"{hashtag(t)} {scores[t]:.2f}" for t in tag_names(hashtags, scores)) or "(no tag above threshold)"


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@bundle_option
@models_option
@provider_option
@click.option("--precision", type=click.Choice(PRECISIONS), default=None,
              help="Force a precision (default: on CPU the faster of int8/fp32 for this CPU, see 'hashtag models'; "
                   "fp16 on CUDA).")
@click.option("--fast", is_flag=True, help="Run the bundle's fast model alone (distilled from the ensemble).")
@click.option("--model", "model_names", multiple=True, hidden=True, help="Same as --models, one name at a time.")
@click.option("--top-k", type=click.IntRange(min=1), default=None, help="At most this many hashtags per image.")
@click.option("--threshold", type=click.FloatRange(0.0, 1.0), default=None,
              help="One threshold for every tag instead of the tuned per-tag thresholds.")
@threads_option
@click.option("--batch-size", type=click.IntRange(min=1), default=DEFAULT_BATCH_SIZE, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="JSON Lines output, one object per image.")
@click.option("-v", "--verbose", is_flag=True, help="Also show each model's own suggestions with scores.")
def predict(
    paths: Sequence[Path], bundle_dir: Path | None, models_arg: str | None, provider: str, precision: str | None,
    fast: bool, model_names: Sequence[str], top_k: int | None, threshold: float | None, threads: int | None,
    batch_size: int, as_json: bool, verbose: bool,
) -> None:
    """Suggest hashtags for image files and folders of images (searched recursively)."""
    bundle_path, names = resolve_bundle(bundle_dir, models_arg)
    try:
        bundle = load_bundle(bundle_path)
        chosen = model_choice(bundle, [*(names or ()), *model_names], fast)
        tagger = Tagger(bundle, provider=provider, threads=threads, models=chosen, precision=precision,
                        batch_size=batch_size)
    except HashtagError as exc:
        raise click.ClickException(str(exc)) from None
    files = find_images(list(paths))
    if not files:
        raise click.ClickException("no image files found in " + ", ".join(map(str, paths)))
    failed = 0
    with progress(len(files), "Tagging") as advance:
        for result in tagger.predict_stream(files, Options(threshold=threshold, top_k=top_k)):
            advance()
            if isinstance(result, ImageError):
                failed += 1
                if as_json:
                    click.echo(json.dumps({"image": result.source, "error": result.reason}))
                else:
                    click.echo(f"error: {result}", err=True)
                continue
            if as_json:
                click.echo(json.dumps(result.to_json()))
            else:
                click.echo(f"{result.image}: {' '.join(result.hashtags) or '(no hashtag)'}")
                if verbose:
                    for name, mp in result.models.items():
                        click.echo(f"    {name}: {_scores_line(mp.scores, mp.hashtags)}")
    if failed:
        sys.exit(1)


@main.command("models")
@bundle_option
@click.option("--models", "models_arg", default=None, hidden=True)
def models_command(bundle_dir: Path | None, models_arg: str | None) -> None:
    """List the bundle's models, files, precisions, tags and thresholds, and this machine's providers."""
    try:
        bundle = load_bundle(resolve_bundle(bundle_dir, models_arg, names_allowed=False)[0])
    except HashtagError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"bundle: {bundle.root}")
    cpu = cpu_features()
    click.echo(f"this CPU: {cpu.machine}, INT8 dot products: {', '.join(cpu.int8_flags) or 'none'}")
    for spec in bundle.models:
        prep = spec.preprocessing
        role = "fast model (--fast), not in the ensemble" if spec.role == "fast" else "ensemble member"
        click.echo(f"\n{spec.name}: {role}; input {spec.input_size}x{spec.input_size}, preprocessing {prep.family} "
                   f"({prep.color_order}, mean {list(prep.mean)}, std {list(prep.std)})")
        for v in spec.variants.values():
            size = v.path.stat().st_size / 1e6
            click.echo(f"    {v.precision:5s} {v.path.name} ({size:.1f} MB)")
        variant, why = pick_variant(spec, "cpu", None)
        click.echo(f"    on this CPU: {variant.precision} ({why}; --precision overrides)")
        click.echo("    thresholds: " + ", ".join(f"{t} {spec.thresholds[t]:.2f}" for t in spec.tags))
    click.echo(f"\nensemble ({', '.join(bundle.ensemble_names)}) thresholds: " + ", ".join(f"{t} {bundle.ensemble_thresholds[t]:.2f}" for t in bundle.tags))
    click.echo("onnxruntime providers on this machine: " + ", ".join(available_providers()))
