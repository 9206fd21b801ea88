"""Copy a bundle keeping only some precisions: what goes into git is INT8 only, the rest is on demand.

    python -m hashtag.export.ship runs/bundle models --precisions int8
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Sequence

import click

from hashtag.export.bundle import previous_files
from hashtag.export.errors import ExportError
from hashtag.runtime.errors import HashtagError
from hashtag.runtime.files import write_text_atomically
from hashtag.runtime.manifest import MANIFEST_NAME, PRECISIONS, Bundle, load_bundle


def copy_bundle(src: Path, dst: Path, precisions: Sequence[str]) -> Bundle:
    """Write a bundle in ``dst`` with the files of ``precisions`` only; every model must keep at least one."""
    unknown = [p for p in precisions if p not in PRECISIONS]
    if unknown:
        raise ExportError(f"unknown precision(s) {unknown} (known: {', '.join(PRECISIONS)})")
    source = load_bundle(src)
    manifest = json.loads((source.root / MANIFEST_NAME).read_text(encoding="utf-8"))
    for model in manifest["models"]:  # check everything before dst is touched
        model["variants"] = [v for v in model["variants"] if v["precision"] in precisions]
        if not model["variants"]:
            raise ExportError(f"model {model['name']!r} has none of {list(precisions)} in {src}")
    dst.mkdir(parents=True, exist_ok=True)
    for path in previous_files(dst):
        path.unlink(missing_ok=True)
    for model in manifest["models"]:
        for variant in model["variants"]:
            shutil.copyfile(source.root / variant["file"], dst / variant["file"])
    write_text_atomically(dst / MANIFEST_NAME, json.dumps(manifest, indent=2))
    return load_bundle(dst)


@click.command()
@click.argument("src", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("dst", type=click.Path(file_okay=False, path_type=Path))
@click.option("--precisions", default="int8", show_default=True, help="Comma-separated precisions to keep.")
def main(src: Path, dst: Path, precisions: str) -> None:
    """Copy bundle SRC to DST keeping only the given precisions."""
    try:
        bundle = copy_bundle(src, dst, [p.strip() for p in precisions.split(",") if p.strip()])
    except (HashtagError, OSError) as exc:  # both end as one line
        raise click.ClickException(str(exc)) from None
    size = sum(v.path.stat().st_size for m in bundle.models for v in m.variants.values())
    click.echo(f"{dst}: {len(bundle.models)} models, {size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
