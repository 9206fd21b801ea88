"""Put a distilled fast model into a bundle, next to its ensemble: ``hashtag predict --fast`` then runs it.

    python -m hashtag.export.add_fast runs/fast-bundle models --precisions int8,fp32

SRC is the one-model bundle ``hashtag export`` wrote for the ``hashtag distill`` run; its model joins DST's
manifest with ``"role": "fast"`` (replacing an earlier fast model), its files are copied beside the others,
and the result must load as the runtime loads it before manifest.json is replaced.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Sequence

import click

from hashtag.export.errors import ExportError
from hashtag.runtime.errors import BundleError, HashtagError
from hashtag.runtime.manifest import MANIFEST_NAME, PRECISIONS, Bundle, load_bundle, parse_manifest
from hashtag.train.files import write_text_atomically

MAX_BUNDLE_MB = 100  # what the repository ships (models/LIMITS.md)


def add_fast_model(src: Path, dst: Path, precisions: Sequence[str]) -> Bundle:
    """DST's bundle with SRC's single model added as the fast one, in ``precisions``."""
    unknown = [p for p in precisions if p not in PRECISIONS]
    if unknown:
        raise ExportError(f"unknown precision(s) {unknown} (known: {', '.join(PRECISIONS)})")
    source, target = load_bundle(src), load_bundle(dst)
    if len(source.models) != 1:
        raise ExportError(f"{src} holds {len(source.models)} models; export the fast model alone")
    if set(source.tags) != set(target.tags):
        raise ExportError(f"{src} tags {list(source.tags)} differ from {dst}'s {list(target.tags)}")
    entry = json.loads((source.root / MANIFEST_NAME).read_text(encoding="utf-8"))["models"][0]
    if entry["name"] in target.ensemble_names:
        raise ExportError(f"{dst} already has an ensemble model named {entry['name']!r}")
    entry["role"] = "fast"
    entry["variants"] = [v for v in entry["variants"] if v["precision"] in precisions]
    if not entry["variants"]:
        raise ExportError(f"{src} has none of {list(precisions)}")
    manifest = json.loads((target.root / MANIFEST_NAME).read_text(encoding="utf-8"))
    old = [m for m in manifest["models"] if m.get("role") == "fast"]
    manifest["models"] = [m for m in manifest["models"] if m.get("role") != "fast"] + [entry]
    for variant in entry["variants"]:
        shutil.copyfile(source.root / variant["file"], target.root / variant["file"])
    try:
        bundle = parse_manifest(manifest, target.root)
    except BundleError as exc:
        raise ExportError(f"the bundle with the fast model does not load: {exc}") from None
    size_mb = sum(v.path.stat().st_size for m in bundle.models for v in m.variants.values()) / 1e6
    if size_mb > MAX_BUNDLE_MB:
        raise ExportError(f"the bundle would hold {size_mb:.1f} MB, over the {MAX_BUNDLE_MB} MB limit")
    write_text_atomically(target.root / MANIFEST_NAME, json.dumps(manifest, indent=2, allow_nan=False))
    kept = {v["file"] for m in manifest["models"] for v in m["variants"]}
    for model in old:  # files of a replaced fast model that nothing names any more
        for variant in model["variants"]:
            if variant["file"] not in kept:
                (target.root / variant["file"]).unlink(missing_ok=True)
    return load_bundle(target.root)


@click.command()
@click.argument("src", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("dst", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--precisions", default="int8,fp32", show_default=True, help="Comma-separated precisions to ship.")
def main(src: Path, dst: Path, precisions: str) -> None:
    """Add the fast model of bundle SRC to bundle DST."""
    try:
        bundle = add_fast_model(src, dst, [p.strip() for p in precisions.split(",") if p.strip()])
    except (HashtagError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    size = sum(v.path.stat().st_size for m in bundle.models for v in m.variants.values())
    click.echo(f"{dst}: fast model {bundle.fast_name}, {len(bundle.models)} models, {size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
