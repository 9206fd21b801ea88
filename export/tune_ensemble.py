"""Retune a bundle's ensemble on real photos: its combination, a stack against people on empty scenes, and
precision-first thresholds, written into the manifest.

    python -m hashtag.export.tune_ensemble --bundle models --everyday ../shared/everyday-photos \\
        --data data/corpus-v2 --json runs/eval/tune_ensemble.json

What each decision reads (the everyday photos' *report* half is never read here; bundle_eval scores it):

- combination (mean, or weighted member logits): mAP on the everyday *tune* half;
- stack for the people tags: the tune half and the corpus *val* split (their labels), plus the scene photos
  of buildings, forest, glaciers, mountains and sea of the corpus *train* and *val* splits, counted as showing
  no person (``WeakNegatives``); training photos only there, where the members never saw a people label;
- thresholds: precision first on the tune half, on corpus val for tags it does not label enough;
- the ``#human`` rate on scene photos before and after, and the ensemble's metrics in the manifest: corpus
  val and test splits.

The members' probabilities are the runtime's own (the shipped files, decoded and preprocessed as users run
them), cached by ``hashtag.train.teacher``; nothing is retrained. With ``--fast-run`` (the ``hashtag distill``
run folder of the bundle's fast model) the fast model's thresholds follow the same precision-first rule, on
its out-of-fold *tune* predictions (``train.distill.hashtag_thresholds``). The manifest is replaced atomically.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import click
import numpy as np

from hashtag.export.errors import ExportError
from hashtag.runtime.cache import cache_dir as user_cache
from hashtag.runtime.ensemble import Combination, combine, combined_logits
from hashtag.runtime.errors import HashtagError
from hashtag.runtime.manifest import MANIFEST_NAME, Bundle, load_bundle, parse_manifest
from hashtag.train.combination import (PRECISION_TARGET, STACK_FOLDS, base_tags, choose_combination,
                                       out_of_fold_stack, precision_first_thresholds, stack_layers)
from hashtag.train.dataset import load_dataset
from hashtag.train.distill import PREDICTIONS_NAME, hashtag_thresholds
from hashtag.runtime.files import json_ready, write_json_atomically
from hashtag.train.metrics import split_metrics
from hashtag.train.partial_labels import WeakNegatives
from hashtag.train.real_photos import real_photos
from hashtag.train.run_folder import RunFolder
from hashtag.train.teacher import teacher_probabilities

TUNE_NAME, VAL_NAME = "everyday tune half", "corpus val"


def _rate(probs: np.ndarray, rows: np.ndarray, column: int, threshold: float) -> float:
    return float(np.mean(probs[rows, column] >= threshold)) if rows.any() else float("nan")


def people_on_scenes(tags: Sequence[str], labels: np.ndarray, probs: np.ndarray, thresholds: Mapping[str, float],
                     rule: WeakNegatives) -> dict[str, Any]:
    """How often each of the rule's tags is printed on the scene photos it applies to."""
    rows = rule.rows(labels, tags)
    return {"photos": int(rows.sum()),
            **{t: _rate(probs, rows, list(tags).index(t), thresholds[t]) for t in rule.tags}}


@dataclass(frozen=True)
class Scored:
    """Photos' labels [n, tags] (1, 0 or UNKNOWN) and each member's probabilities [n, tags] on them."""

    labels: np.ndarray
    probs: Mapping[str, np.ndarray]


def tune(bundle: Bundle, tune_half: Scored, val: Scored, test: Scored, train_scenes: Scored,
         target: float = PRECISION_TARGET, rule: WeakNegatives = WeakNegatives()
         ) -> tuple[Combination, dict[str, float], dict[str, Any]]:
    """(combination, thresholds, record) for ``bundle``'s ensemble from its members' probabilities;
    ``train_scenes``: the training photos ``rule`` applies to."""
    tags = bundle.tags
    tune_labels, tune_probs, val_labels, val_probs = tune_half.labels, tune_half.probs, val.labels, val.probs
    choice = choose_combination(tune_labels, tune_probs, [tags.index(t) for t in base_tags(bundle)])
    plain = Combination(choice.combination.method, choice.combination.weights, members=bundle.ensemble_names)
    z_tune = combined_logits(tune_probs, plain)
    z_other = np.vstack([combined_logits(p, plain) for p in (val_probs, train_scenes.probs)])
    y_other = np.vstack([rule.apply(val_labels, tags), rule.apply(train_scenes.labels, tags)])
    layers = stack_layers(tags, np.vstack([z_tune, z_other]), np.vstack([tune_labels, y_other]), rule.tags)
    stacked = Combination(plain.method, plain.weights, layers, tags, bundle.ensemble_names)
    tune_oof = out_of_fold_stack(tags, z_tune, tune_labels, z_other, y_other, rule.tags)
    probs = {name: combine(p, stacked) for name, p in (("val", val_probs), ("test", test.probs))}
    chosen = precision_first_thresholds(tags, tune_labels, tune_oof, val_labels, probs["val"], target,
                                        TUNE_NAME, VAL_NAME)
    previous = (bundle.raw["ensemble"].get("tuning") or {}).get("people_on_scene_test_photos")
    before = (previous["before"] if previous else  # the bundle as it was before its first retuning
              people_on_scenes(tags, test.labels, combine(test.probs, bundle.combination), bundle.ensemble_thresholds,
                               rule))
    record = {
        "combination": choice.record(f"{TUNE_NAME} ({len(tune_labels)} photos)"),
        "stack": {"tags": list(rule.tags),
                  "fitted_on": f"{TUNE_NAME} and {VAL_NAME} (labels), corpus train and val scene photos (weak negatives)",
                  "weak_negatives": {"scenes": list(rule.scenes), "unless": list(rule.unless),
                                     "val_photos": int(rule.rows(val_labels, tags).sum()),
                                     "train_photos": int(rule.rows(train_scenes.labels, tags).sum())}},
        "thresholds": {**chosen.record(), "tune_probabilities": f"the stack out of fold ({STACK_FOLDS} folds)"},
        "people_on_scene_test_photos": {
            "before": before, "after": people_on_scenes(tags, test.labels, probs["test"], chosen.thresholds, rule)},
    }
    return stacked, chosen.thresholds, record


def fast_thresholds(bundle: Bundle, run: Path, target: float) -> tuple[dict[str, float], dict[str, Any]]:
    """The fast model's precision-first thresholds from its distill run's out-of-fold tune predictions."""
    path = RunFolder(run).model_dir(bundle.fast_name) / PREDICTIONS_NAME
    if not path.is_file():
        raise ExportError(f"{path} does not exist: --fast-run takes the hashtag distill run of the fast model")
    with np.load(path) as saved:
        missing = [k for k in ("tags", "tune_out_of_fold", "tune_labels", "val", "val_labels") if k not in saved]
        if missing:
            raise ExportError(f"{path} lacks {missing}: not the predictions hashtag distill writes")
        if [str(t) for t in saved["tags"]] != list(bundle.tags):
            raise ExportError(f"{path} is for tags {list(saved['tags'])}, the bundle has {list(bundle.tags)}")
        return hashtag_thresholds(bundle.tags, saved["tune_out_of_fold"], saved["tune_labels"].astype(np.int64),
                                  saved["val"], saved["val_labels"].astype(np.int64), target)


def write_manifest(bundle: Bundle, combination: Combination, thresholds: Mapping[str, float],
                   record: Mapping[str, Any], metrics: Mapping[str, Any],
                   fast: tuple[Mapping[str, float], Mapping[str, Any]] | None = None) -> Bundle:
    """Replace the bundle's manifest with the retuned ensemble (and the fast model's thresholds), validated
    before it is written."""
    path = bundle.root / MANIFEST_NAME
    manifest = json.loads(path.read_text(encoding="utf-8"))
    if fast is not None:
        entry = next(m for m in manifest["models"] if m["name"] == bundle.fast_name)
        entry["thresholds"] = {t: float(fast[0][t]) for t in bundle.tags}
        entry.setdefault("metadata", {})["thresholds_source"] = dict(fast[1])
    ensemble = manifest["ensemble"]
    ensemble["combination"] = combination.to_manifest()
    ensemble["thresholds"] = {t: float(thresholds[t]) for t in bundle.tags}
    ensemble["thresholds_source"] = "hashtag.export.tune_ensemble"
    ensemble["tuning"] = record
    ensemble["metrics"] = dict(metrics)
    manifest = json_ready(manifest)
    checked = parse_manifest(manifest, bundle.root)
    write_json_atomically(path, manifest)
    return checked


def _labels(records: Sequence[Any]) -> np.ndarray:
    """Targets of dataset records or real photos, [n, tags]."""
    return np.asarray([r.targets for r in records], dtype=np.int64)


@click.command()
@click.option("--bundle", "bundle_dir", type=click.Path(path_type=Path, file_okay=False), required=True)
@click.option("--everyday", type=click.Path(path_type=Path, file_okay=False, exists=True), required=True,
              help="The everyday-photos tables (../shared/everyday-photos); only the tune half is read.")
@click.option("--data", "data_dir", type=click.Path(path_type=Path, file_okay=False, exists=True), required=True,
              help="The dataset the bundle was trained on (hashtag data build): its val and test splits.")
@click.option("--precision-target", type=click.FloatRange(0.05, 1.0), default=PRECISION_TARGET, show_default=True,
              help="Precision each tag's default hashtag should reach on the tune half.")
@click.option("--cache", "cache_root", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Probability cache (default: $HASHTAG_CACHE or ~/.cache/hashtag).")
@click.option("--fast-run", type=click.Path(path_type=Path, file_okay=False, exists=True), default=None,
              help="The hashtag distill run of the bundle's fast model: its thresholds follow the same rule.")
@click.option("--json", "json_out", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Also write the tuning record here.")
def main(bundle_dir: Path, everyday: Path, data_dir: Path, precision_target: float, cache_root: Path | None,
         fast_run: Path | None, json_out: Path | None) -> None:
    """Choose the ensemble's combination and thresholds on real photos and write them into the manifest."""
    try:
        bundle = load_bundle(bundle_dir)
        dataset = load_dataset(data_dir)
        if dataset.tags != bundle.tags:
            raise ExportError(f"dataset tags {list(dataset.tags)} differ from the bundle's {list(bundle.tags)}")
        fast = fast_thresholds(bundle, fast_run, precision_target) if fast_run else None  # refused before any work
        teacher_dir = cache_root / "distill" if cache_root else user_cache("distill")
        rule = WeakNegatives()
        train = dataset.split("train")
        tune_photos = real_photos(everyday, bundle.tags, "tune")
        groups = {"everyday-tune": tune_photos, "corpus-val": dataset.split("val"),
                  "corpus-test": dataset.split("test"),
                  "corpus-train-scenes": [r for r, keep in zip(train, rule.rows(_labels(train), bundle.tags)) if keep]}
        scored = {g: Scored(_labels(photos), teacher_probabilities(bundle_dir, teacher_dir, g, photos).per_model())
                  for g, photos in groups.items()}
        combination, thresholds, record = tune(bundle, scored["everyday-tune"], scored["corpus-val"],
                                               scored["corpus-test"], scored["corpus-train-scenes"],
                                               precision_target, rule)
        metrics = {split: split_metrics(scored[f"corpus-{split}"].labels,
                                        combine(scored[f"corpus-{split}"].probs, combination), bundle.tags, thresholds)
                   for split in ("val", "test")}
        write_manifest(bundle, combination, thresholds, record, metrics, fast)
        if json_out:
            write_json_atomically(json_out, record)
    except HashtagError as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(f"cannot write {exc.filename or 'a file'}: {exc.strerror}") from None
    c = record["combination"]
    click.echo(f"combination: {combination.method} {dict(combination.weights)}; tune mAP ten/all "
               f"{c['mAP_ten_all'][0]:.4f}/{c['mAP_ten_all'][1]:.4f} (mean {c['mean_mAP_ten_all'][0]:.4f}/"
               f"{c['mean_mAP_ten_all'][1]:.4f}; best member {c['best_member_ten']} {c['best_member_ten_mAP']:.4f})")
    people = record["people_on_scene_test_photos"]
    click.echo(f"#human on {people['before']['photos']} scene test photos: {people['before']['human']:.3f} -> "
               f"{people['after']['human']:.3f}; tags below precision {precision_target:g}: "
               f"{record['thresholds']['below_target'] or 'none'}")
    click.echo(f"{bundle_dir / MANIFEST_NAME}: ensemble retuned")


if __name__ == "__main__":
    main()
