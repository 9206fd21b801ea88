"""Click options every front end shares: ``--bundle DIR`` names a bundle folder, ``--models a,b`` model names.

``--models DIR`` used to name the bundle folder; it still works there, with a deprecation message.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, TypeVar

import click

from hashtag.models import BUNDLE_ENV, default_bundle

F = TypeVar("F", bound=Callable[..., object])
DEPRECATED_MODELS_DIR = "warning: '--models DIR' is deprecated, use '--bundle DIR' ('--models' now takes model names: a,b)"


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
    return bundle_dir or default_bundle(), parse_model_names(models_arg)
