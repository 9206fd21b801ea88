"""Score a finished bundle through the runtime on a split of photo tables, as users will run it.

    python -m hashtag.export.bundle_eval --bundle models --tables ../shared/corpus --json test.json

The model card's figures come from here, and a test recomputes them on the shipped bundle, so the card
cannot drift from the files. Needs no TensorFlow: tables, splits and metrics are plain Python/numpy.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import click
import numpy as np

from hashtag.runtime.errors import HashtagError
from hashtag.runtime.images import load_image
from hashtag.runtime.manifest import PRECISIONS, load_bundle
from hashtag.runtime.options import bundle_option, models_option, resolve_bundle, threads_option
from hashtag.runtime.prediction import ensemble_thresholds, model_thresholds
from hashtag.runtime.tagger import Tagger
from hashtag.train.errors import SettingsError
from hashtag.train.metrics import mean_ap, split_metrics
from hashtag.train.progress import Progress
from hashtag.train.real_photos import REAL_SPLITS, real_photos
from hashtag.train.splits import SPLITS, split_of
from hashtag.train.table_rows import KeywordFilter
from hashtag.train.tables import select


@dataclass(frozen=True)
class SplitPhotos:
    """Image paths and multi-hot labels (in ``tags`` order) of one split of a tables folder."""

    paths: list[Path]
    labels: np.ndarray
    tags: tuple[str, ...]


def split_photos(tables: Path, tags: tuple[str, ...], split: str = "test",
                 min_confidence: float = KeywordFilter.min_confidence) -> SplitPhotos:
    """The photos of ``split`` with local image files, and their labels: a corpus split (the dataset builder's
    hash split), or a half of the everyday photos (``tune``/``report``, see ``hashtag.train.real_photos``)."""
    if split in REAL_SPLITS:
        real = real_photos(Path(tables), tags, split)
        return SplitPhotos([p.path for p in real], np.asarray([p.targets for p in real], dtype=np.int64)
                           .reshape(-1, len(tags)), tags)
    selection = select(Path(tables), KeywordFilter(min_confidence), tags)
    paths, labels = [], []
    for photo in selection.photos:
        if split_of(photo.photo_id) != split or "://" in photo.source:
            continue
        paths.append(Path(tables) / photo.source)
        labels.append(selection.labels(photo.photo_id))
    return SplitPhotos(paths, np.asarray(labels, dtype=np.int64).reshape(-1, len(tags)), tags)


def evaluate_bundle(bundle: Path, photos: SplitPhotos, precision: str | None = None, threads: int | None = None,
                    batch_size: int = 16, progress: bool = True, models: Sequence[str] | None = None,
                    ) -> dict[str, Any]:
    """Metrics of each model (``models``, default every one, the fast one too) and, when all its members are
    among them, of the ensemble (with the manifest's thresholds) on ``photos``."""
    tagger = Tagger(bundle, provider="cpu", precision=precision, threads=threads, batch_size=batch_size,
                    models=list(models) if models else [m.name for m in load_bundle(bundle).models])
    if tagger.bundle.tags != photos.tags:
        raise SettingsError(f"bundle tags {tagger.bundle.tags} differ from the photos' tags {photos.tags}")
    per_model: dict[str, list[np.ndarray]] = {m.spec.name: [] for m in tagger.models}
    with Progress(len(photos.paths), f"evaluating {bundle.name or bundle}", enabled=progress) as bar:
        for start in range(0, len(photos.paths), batch_size):
            chunk = [load_image(p) for p in photos.paths[start:start + batch_size]]
            for name, probs in tagger.probabilities(chunk).items():
                per_model[name].append(probs)
            bar.update(len(chunk))
    probs = {name: np.concatenate(parts) for name, parts in per_model.items()}
    results = {name: split_metrics(photos.labels, p, photos.tags, model_thresholds(tagger.bundle, name, None))
               for name, p in probs.items()}
    members = tagger.bundle.ensemble_names
    if set(members) <= set(probs):
        results["ensemble"] = split_metrics(photos.labels, tagger.ensemble({n: probs[n] for n in members}),
                                            photos.tags, ensemble_thresholds(tagger.bundle, members, None))
    base = tuple((tagger.bundle.raw.get("vocabulary") or {}).get("base_tags", ()))
    if base and set(base) < set(photos.tags):  # a wider vocabulary: score the original tags and the added apart
        for name in [n for n in results if n in probs or n == "ensemble"]:
            aps = {t: math.nan if results[name]["per_tag"][t]["ap"] is None else results[name]["per_tag"][t]["ap"]
                   for t in photos.tags}  # no AP where a tag has no positive on these photos
            results[name]["mAP_base"] = mean_ap(aps[t] for t in base)
            results[name]["mAP_added"] = mean_ap(aps[t] for t in photos.tags if t not in base)
    results["precision"] = {m.spec.name: m.variant.precision for m in tagger.models}
    return results


@click.command()
@bundle_option
@models_option
@click.option("--tables", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Tables folder with local images (e.g. ../shared/corpus).")
@click.option("--split", type=click.Choice([*SPLITS, *REAL_SPLITS]), default="test", show_default=True,
              help="A corpus split, or a half of the everyday photos (tune, report) with --tables of those.")
@click.option("--precision", type=click.Choice(PRECISIONS), default=None, help="Default: the runtime's CPU choice.")
@threads_option
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path), default=None)
def main(bundle_dir: Path | None, models_arg: str | None, tables: Path, split: str, precision: str | None,
         threads: int | None, json_out: Path | None) -> None:
    """Print each model's and the ensemble's mAP on a split, scored through the runtime."""
    bundle_dir, names = resolve_bundle(bundle_dir, models_arg)
    try:
        photos = split_photos(tables, load_bundle(bundle_dir).tags, split)
        results = evaluate_bundle(bundle_dir, photos, precision, threads, models=names)
    except HashtagError as exc:
        raise click.ClickException(str(exc)) from None
    for name in [n for n in (*results["precision"], "ensemble") if n in results]:
        r = results[name]
        groups = (f"  original tags {r['mAP_base']:.4f}  added tags {r['mAP_added']:.4f}"
                  if "mAP_base" in r else "")
        click.echo(f"{name:18s} {split} mAP {r['mAP']:.4f}{groups}  hashtags precision {r['micro_precision']:.3f} "
                   f"recall {r['micro_recall']:.3f}  micro F1 {r['micro_f1']:.4f}  ({r['n_images']} photos)")
    if json_out:
        json_out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
