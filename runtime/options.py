"""Options every front end shares, each declared once: its flag, default, help and check.

``--bundle DIR`` names a bundle folder, ``--models a,b`` model names; ``--models DIR`` used to name the bundle
folder and still works there, with a deprecation message. ``--provider``, ``--threads``, ``--workers`` and
``--log-level`` are ``SharedOption``s: click commands are decorated with them, and the benchmarks' argparse
scripts add them to their parsers, with the same default, help and validation.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, TypeVar

import click

from hashtag.runtime.errors import HashtagError, ProviderError
from hashtag.runtime.providers import PROVIDER_CHOICES, check_provider
from hashtag.runtime.settings import BUNDLE_ENV, settings

F = TypeVar("F", bound=Callable[..., object])
LOG_LEVELS = ("debug", "info", "warning", "error")
DEPRECATED_MODELS_DIR = "warning: '--models DIR' is deprecated, use '--bundle DIR' ('--models' now takes model names: a,b)"


class ProviderType(click.Choice):
    """One of ``PROVIDER_CHOICES``, checked by ``providers.check_provider`` (the one place that knows them)."""

    def __init__(self) -> None:
        super().__init__(PROVIDER_CHOICES)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        try:
            return check_provider(value)
        except ProviderError as exc:
            self.fail(str(exc), param, ctx)


@dataclass(frozen=True)
class SharedOption:
    """A command-line option that means the same in every command that takes it, written once."""

    flag: str
    dest: str
    type: click.ParamType
    default: Any
    metavar: str  # for argparse's usage line (click writes its own)
    help: str

    def __call__(self, command: F) -> F:
        """Decorate a click command with this option."""
        show = self.default is not None
        return click.option(self.flag, self.dest, type=self.type, default=self.default, show_default=show,
                            help=self.help)(command)

    def described(self, help: str) -> SharedOption:
        """The same option with another help, for a command where it means something else (say why there)."""
        return dataclasses.replace(self, help=help)

    def add_to(self, parser: argparse.ArgumentParser) -> None:
        """Add this option to an argparse parser, converted and checked as click does."""
        def convert(text: str) -> Any:
            try:
                return self.type.convert(text, None, None)
            except click.BadParameter as exc:
                raise argparse.ArgumentTypeError(exc.message) from None

        default = f"  [default: {self.default}]" if self.default is not None else ""
        parser.add_argument(self.flag, dest=self.dest, type=convert, default=self.default, metavar=self.metavar,
                            help=self.help + default)


provider_option = SharedOption(
    "--provider", "provider", ProviderType(), "auto", "|".join(PROVIDER_CHOICES),
    "Where the models run (auto: CUDA when it really loads, else OpenVINO when installed, else ONNX Runtime on "
    "the CPU).")
threads_option = SharedOption(
    "--threads", "threads", click.IntRange(min=1), None, "N",
    "Intra-op threads per model (default: ONNX Runtime models share out the usable CPUs, OpenVINO's own choice).")
workers_option = SharedOption(
    "--workers", "workers", click.IntRange(min=1), None, "N",
    "Inference threads: images tagged at the same time (default: one per usable CPU).")
log_level_option = SharedOption(
    "--log-level", "log_level", click.Choice(LOG_LEVELS), "info", "|".join(LOG_LEVELS), "What is logged to stderr.")


def bundle_option(command: F) -> F:
    """``--bundle DIR``: the model bundle folder (default: the shipped bundle, or $HASHTAG_MODELS)."""
    return click.option("--bundle", "bundle_dir", type=click.Path(path_type=Path, file_okay=False), default=None,
                        help=f"Model bundle folder (default: the bundle shipped with hashtag, or ${BUNDLE_ENV}).")(command)


def models_option(command: F) -> F:
    """``--models a,b``: run only these models of the bundle (default: all)."""
    return click.option("--models", "models_arg", default=None, metavar="NAMES",
                        help="Comma-separated model names to run (default: every model in the bundle).")(command)


def deprecated_models_dir_option(command: F) -> F:
    """The old ``--models DIR`` on commands that take no model names: kept working, hidden from help."""
    return click.option("--models", "models_arg", default=None, hidden=True)(command)


def _looks_like_folder(value: str) -> bool:
    return os.sep in value or "/" in value or Path(value).is_dir()


def parse_model_names(value: str | None) -> tuple[str, ...] | None:
    """``"a, b"`` -> ``("a", "b")``; None or blank -> None (every model)."""
    names = tuple(dict.fromkeys(n.strip() for n in (value or "").split(",") if n.strip()))
    return names or None


def resolve_bundle(bundle_dir: Path | None, models_arg: str | None, names_allowed: bool = True,
                   ) -> tuple[Path, tuple[str, ...] | None]:
    """The bundle folder and model names from ``--bundle`` and ``--models``, honouring the old ``--models DIR``."""
    if models_arg is not None and (not names_allowed or _looks_like_folder(models_arg)):
        click.echo(DEPRECATED_MODELS_DIR, err=True)
        if bundle_dir is not None:
            raise click.UsageError("give the bundle folder once, with --bundle DIR")
        return Path(models_arg), None
    if bundle_dir is None:
        try:
            bundle_dir = settings().bundle
        except HashtagError as exc:
            raise click.ClickException(str(exc)) from None
    return bundle_dir, parse_model_names(models_arg)
