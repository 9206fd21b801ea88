"""Put a distilled fast model into a bundle, next to its ensemble: ``hashtag predict --fast`` then runs it.

    python -m hashtag.export.add_fast runs/bundle-fast models --precisions int8,fp32 --cpu-precision x86_64=int8

SRC is the one-model bundle ``hashtag export`` wrote for the ``hashtag distill`` run; its model joins DST's
manifest with ``"role": "fast"`` (replacing an earlier fast model), its files are staged in a temporary folder
inside DST and checked (hashes, shapes as the manifest says, size limit) before they are moved beside the
others and manifest.json is replaced: a refused call leaves DST as it was.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Mapping, Sequence

import click

from hashtag.export.errors import ExportError
from hashtag.runtime.cpu import CPU_KINDS
from hashtag.runtime.errors import BundleError, HashtagError
from hashtag.runtime.files import write_text_atomically
from hashtag.runtime.manifest import MANIFEST_NAME, PRECISIONS, Bundle, load_bundle, parse_manifest
from hashtag.train.files import sha256_file

MAX_BUNDLE_MB = 100  # what the repository ships (models/LIMITS.md)


def add_fast_model(src: Path, dst: Path, precisions: Sequence[str],
                   cpu_precision: Mapping[str, str] | None = None) -> Bundle:
    """DST's bundle with SRC's single model added as the fast one, in ``precisions``; ``cpu_precision``: the
    precision measured faster per kind of CPU (``hashtag.runtime.cpu.cpu_kind``), for the runtime's choice."""
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
    if cpu_precision:
        entry["cpu_precision"] = dict(cpu_precision)
    entry["variants"] = [v for v in entry["variants"] if v["precision"] in precisions]
    if not entry["variants"]:
        raise ExportError(f"{src} has none of {list(precisions)}")
    manifest = json.loads((target.root / MANIFEST_NAME).read_text(encoding="utf-8"))
    old = [m for m in manifest["models"] if m.get("role") == "fast"]
    manifest["models"] = [m for m in manifest["models"] if m.get("role") != "fast"] + [entry]
    kept = {v["file"] for m in manifest["models"] if m is not entry for v in m["variants"]}
    clash = [v["file"] for v in entry["variants"] if v["file"] in kept]
    if clash:
        raise ExportError(f"{dst} already has {clash[0]}, which another model uses")
    size_mb = (sum((target.root / f).stat().st_size for f in kept)
               + sum((source.root / v["file"]).stat().st_size for v in entry["variants"])) / 1e6
    if size_mb > MAX_BUNDLE_MB:
        raise ExportError(f"the bundle would hold {size_mb:.1f} MB, over the {MAX_BUNDLE_MB} MB limit")
    with tempfile.TemporaryDirectory(prefix=".add-fast-", dir=target.root) as tmp:
        staged = Path(tmp)  # checked where it lies, then moved beside the others: a refusal changes nothing
        for variant in entry["variants"]:
            shutil.copyfile(source.root / variant["file"], staged / variant["file"])
            got = sha256_file(staged / variant["file"])
            if variant.get("sha256") not in (None, got):
                raise ExportError(f"{src / variant['file']}: sha256 {got} is not the manifest's {variant['sha256']}")
        try:
            parse_manifest({**manifest, "models": [{**entry, "role": "ensemble"}]}, staged)  # its files, alone
            parse_manifest({**manifest, "models": [m for m in manifest["models"] if m is not entry]}, target.root)
        except BundleError as exc:
            raise ExportError(f"the bundle with the fast model does not load: {exc}") from None
        for variant in entry["variants"]:
            os.replace(staged / variant["file"], target.root / variant["file"])
    write_text_atomically(target.root / MANIFEST_NAME, json.dumps(manifest, indent=2, allow_nan=False))
    for model in old:  # files of a replaced fast model that nothing names any more
        for variant in model["variants"]:
            if variant["file"] not in kept | {v["file"] for v in entry["variants"]}:
                (target.root / variant["file"]).unlink(missing_ok=True)
    return load_bundle(target.root)


@click.command()
@click.argument("src", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("dst", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--precisions", default="int8,fp32", show_default=True, help="Comma-separated precisions to ship.")
@click.option("--cpu-precision", "cpu_precision", multiple=True, metavar="KIND=PRECISION",
              help=f"The precision measured faster on a kind of CPU ({', '.join(CPU_KINDS)}), e.g. by hashtag "
                   "bench; repeatable. Kinds not given: INT8 with INT8 dot products, FP32 without.")
def main(src: Path, dst: Path, precisions: str, cpu_precision: Sequence[str]) -> None:
    """Add the fast model of bundle SRC to bundle DST."""
    measured = {}
    for item in cpu_precision:
        kind, _, precision = item.partition("=")
        if kind not in CPU_KINDS or precision not in PRECISIONS:
            raise click.BadParameter(f"{item!r}: give KIND=PRECISION, KIND one of {', '.join(CPU_KINDS)}",
                                     param_hint="--cpu-precision")
        measured[kind] = precision
    try:
        bundle = add_fast_model(src, dst, [p.strip() for p in precisions.split(",") if p.strip()], measured)
    except (HashtagError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    size = sum(v.path.stat().st_size for m in bundle.models for v in m.variants.values())
    click.echo(f"{dst}: fast model {bundle.fast_name}, {len(bundle.models)} models, {size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
