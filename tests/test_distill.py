"""Distillation pieces: the target rule, threshold matching, the stable splits, and the teacher cache."""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from hashtag.runtime import Tagger
from hashtag.train.combination import MIN_TUNE_POSITIVES
from hashtag.train.distill import Rows, fold_of, hashtag_thresholds, soft_targets
from hashtag.train.metrics import threshold_for_recall
from hashtag.train.partial_labels import UNKNOWN
from hashtag.train.real_photos import real_split_of
from hashtag.train.teacher import teacher_probabilities
from tinybundle import TAGS, make_photo

NAN = math.nan


def test_targets_mix_labels_and_teacher_and_mask_what_neither_knows() -> None:
    labels = np.array([[1, 0, UNKNOWN, UNKNOWN]], dtype=np.int8)
    teacher = np.array([[0.8, 0.4, 0.3, NAN]], dtype=np.float32)
    rows = Rows(["a"], np.zeros((1, 2), np.float32), labels, teacher)
    target, weight = soft_targets(rows, alpha=0.25, teacher_weight=0.5)
    np.testing.assert_allclose(target, [[0.75 * 1 + 0.25 * 0.8, 0.25 * 0.4, 0.3, 0.0]], rtol=1e-6)
    np.testing.assert_allclose(weight, [[1.0, 1.0, 0.5, 0.0]])
    labels_only, _ = soft_targets(rows, alpha=0.0, teacher_weight=1.0)
    np.testing.assert_allclose(labels_only[0, :3], [1.0, 0.0, 0.3])  # the teacher still fills the unknown one


def test_threshold_for_recall_is_the_most_precise_cut_reaching_it() -> None:
    y = np.array([1, 1, 0, 1, 0, 0])
    s = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.1])
    assert threshold_for_recall(y, s, 2 / 3) == pytest.approx(0.8)
    assert threshold_for_recall(y, s, 1.0) == pytest.approx(0.6)
    assert threshold_for_recall(np.array([0, 0]), np.array([0.2, 0.3]), 0.5) == 0.5  # no positive: the default
    assert threshold_for_recall(np.array([1, UNKNOWN, 1]), np.array([0.9, 0.95, 0.4]), 0.5) == pytest.approx(0.9)


def test_default_thresholds_follow_the_ensembles_precision_first_rule(tmp_path: Path) -> None:
    """Per tag, precision first on the out-of-fold tune predictions where the tag has enough positives there,
    else on val."""
    rng = np.random.default_rng(1)
    n, tags = 300, ("a", "b", "c")
    labels = (rng.uniform(size=(n, 3)) < 0.3).astype(np.int8)
    labels[:, 1] = 0
    labels[:5, 1] = 1  # five positives: too few to place a threshold
    labels[:, 2] = UNKNOWN  # never labelled on these photos
    student = np.clip(labels + rng.normal(0, 0.4, (n, 3)), 0, 1).astype(np.float32)
    val_labels = (rng.uniform(size=(100, 3)) < 0.3).astype(np.int8)
    val_probs = np.clip(val_labels + rng.normal(0, 0.4, (100, 3)), 0, 1).astype(np.float32)
    thresholds, how = hashtag_thresholds(tags, student, labels, val_probs, val_labels, target=0.8)
    def precision_recall(cut: float) -> tuple[float, float]:
        chosen, positive = student[:, 0] >= cut, labels[:, 0] > 0
        return (positive[chosen].mean() if chosen.any() else 0.0), positive[chosen].sum() / positive.sum()

    reaching = [precision_recall(c)[1] for c in np.unique(student[:, 0]) if precision_recall(c)[0] >= 0.8]
    precision, recall = precision_recall(thresholds["a"])
    assert precision >= 0.8 and recall == max(reaching)  # the best recall at that precision, found by brute force
    assert how["decided_on"] == {"a": "tune half (out of fold)", "b": "corpus val", "c": "corpus val"}
    for tag, j in (("b", 1), ("c", 2)):
        assert (val_labels[val_probs[:, j] >= thresholds[tag], j] > 0).mean() >= 0.8
    assert how["precision_target"] == 0.8 and how["min_tune_positives"] == MIN_TUNE_POSITIVES


def test_splits_are_stable_and_about_half() -> None:
    ids = [f"mir{i:05d}" for i in range(4000)]
    tune = [i for i in ids if real_split_of(i) == "tune"]
    assert 0.45 < len(tune) / len(ids) < 0.55
    # pinned: the split is part of what every reported figure means, so it must never move
    assert [real_split_of(i) for i in ("mir00002", "mir00005", "mir00007", "mir00010")] == [
        "report", "report", "tune", "tune"]
    assert [fold_of(i) for i in ("mir00002", "mir00005", "mir00007", "mir00010")] == [1, 1, 0, 1]
    folds = [fold_of(i) for i in tune]
    assert set(folds) == {0, 1} and 0.4 < np.mean(folds) < 0.6
    # folds do not follow the tune/report split (a different hash input)
    assert 0.4 < np.mean([fold_of(i) for i in ids]) < 0.6


@dataclass(frozen=True)
class Photo:
    photo_id: str
    path: Path


def test_teacher_cache_resumes_and_matches_the_runtime(tiny_bundle: Path, tmp_path: Path) -> None:
    photos = [Photo(f"p{i}", make_photo(tmp_path / f"p{i}.jpg", seed=i)) for i in range(5)]
    first = teacher_probabilities(tiny_bundle, tmp_path / "cache", "g", photos, limit=3, batch_size=2, progress=False)
    assert first.done.tolist() == [True, True, True, False, False]
    assert first.probs.shape == (5, 3, len(TAGS)) and first.models == ("vgg16", "inceptionv3", "xception")
    group = next((tmp_path / "cache").glob("teacher-*/g-*"))
    before = (group / "probs.npy").stat().st_mtime_ns
    again = teacher_probabilities(tiny_bundle, tmp_path / "cache", "g", photos, limit=3, progress=False)
    assert (group / "probs.npy").stat().st_mtime_ns == before  # nothing recomputed
    np.testing.assert_array_equal(again.probs[:3], first.probs[:3])
    full = teacher_probabilities(tiny_bundle, tmp_path / "cache", "g", photos, progress=False)
    assert full.done.all()
    tagger = Tagger(tiny_bundle, provider="cpu")
    for i, photo in enumerate(photos):
        expected = tagger.predict_one(photo.path)
        np.testing.assert_allclose(full.ensemble()[i], [expected.scores[t] for t in TAGS], atol=1e-5)


def test_distill_writes_a_run_export_reads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`hashtag distill` end to end on tiny data, with a tiny three-tag teacher bundle and random Lite0 weights."""
    import json

    from click.testing import CliRunner

    from hashtag.export.run import load_run
    from hashtag.runtime.cli import main
    from hashtag.train.weights.efficientnet_lite import efficientnet_lite0
    from tinybundle import DEFAULT_MODELS, make_bundle
    from trainkit import TAGS as TINY_TAGS
    from trainkit import make_dataset, write_tables

    monkeypatch.setenv("HASHTAG_PYPI_INDEX", "http://127.0.0.1:9/simple/")  # nothing may be fetched
    data = make_dataset(tmp_path / "data", counts=(24, 8, 8))
    everyday = write_tables(tmp_path / "everyday", range(100, 140))
    teacher = make_bundle(tmp_path / "teacher", DEFAULT_MODELS, tags=TINY_TAGS)
    manifest = json.loads((teacher / "manifest.json").read_text())
    manifest["ensemble"]["metrics"] = {"val": {"per_tag": {t: {"recall": 0.8} for t in TINY_TAGS}}}
    (teacher / "manifest.json").write_text(json.dumps(manifest))
    weights = tmp_path / "lite0.weights.h5"
    efficientnet_lite0(224).save_weights(weights)

    args = ["distill", "--data", str(data), "--everyday", str(everyday), "--bundle", str(teacher),
            "--out", str(tmp_path / "run"), "--cache", str(tmp_path / "cache"), "--weights-source", str(weights),
            "--alphas", "0,1", "--max-epochs", "3", "--input-size", "64", "--corpus-size", "48"]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    run = load_run(tmp_path / "run")
    (model,) = run.models
    assert model.name == "efficientnet_lite0" and model.input_size == 64 and model.tags == TINY_TAGS
    info = model.info
    assert info["role"] == "fast" and set(info["thresholds_source"]["decided_on"]) == set(TINY_TAGS)
    assert [c["alpha"] for c in info["distillation"]["candidates"]] == [0.0, 1.0]
    assert info["distillation"]["chosen"]["alpha"] in (0.0, 1.0) and 1 <= info["distillation"]["chosen"]["epochs"] <= 3
    assert {"val", "test", "everyday_report", "everyday_report_ensemble", "everyday_tune_out_of_fold"} <= set(
        info["metrics"])
    report = info["metrics"]["everyday_report"]["n_images"]
    tune = info["training_data"]["everyday_tune_photos"]
    assert report + tune == 40 and report == info["training_data"]["everyday_report_photos"]
    import keras

    saved = keras.models.load_model(model.keras_path, compile=False)
    assert saved.input_shape == (None, 64, 64, 3) and saved.output_shape == (None, 3)
    # a rerun reuses every cached feature and teacher probability
    cached = sorted(p.stat().st_mtime_ns for p in (tmp_path / "cache").rglob("*.npy"))
    assert CliRunner().invoke(main, args, catch_exceptions=False).exit_code == 0
    assert sorted(p.stat().st_mtime_ns for p in (tmp_path / "cache").rglob("*.npy")) == cached
