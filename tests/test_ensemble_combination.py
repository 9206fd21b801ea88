"""The ensemble's combination: parsed from the manifest, applied by the runtime (real ONNX Runtime sessions on
tiny bundles), chosen on real-photo probabilities, and precision-first thresholds and the people stack."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from hashtag.export.errors import ExportError
from hashtag.runtime import Tagger
from hashtag.runtime.ensemble import Combination, TagStack, combine, logit
from hashtag.runtime.errors import BundleError
from hashtag.runtime.manifest import load_bundle
from hashtag.runtime.prediction import Options
from hashtag.train.combination import (MIN_TUNE_POSITIVES, choose_combination, fit_stack, precision_first_thresholds, stack_layers,
                                       weight_grid)
from hashtag.train.metrics import threshold_for_precision
from hashtag.train.partial_labels import UNKNOWN, WeakNegatives
from tinybundle import DEFAULT_MODELS, TAGS, make_bundle, make_photo

MEMBERS = tuple(m["name"] for m in DEFAULT_MODELS)


def with_combination(root: Path, combination: dict) -> Path:
    """A tiny bundle whose manifest carries ``combination``."""
    make_bundle(root)
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["ensemble"]["combination"] = combination
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def weighted(weights: list[float]) -> dict:
    return {"method": "weighted_logit", "weights": dict(zip(MEMBERS, weights))}


def test_tagger_applies_the_manifests_weighted_logits_and_the_mean_for_other_model_sets(tmp_path: Path) -> None:
    weights = [0.2, 0.5, 0.3][:len(MEMBERS)]
    weights[-1] = 1 - sum(weights[:-1])
    bundle = with_combination(tmp_path / "b", weighted(weights))
    photo = make_photo(tmp_path / "p.jpg", seed=3)
    tagger = Tagger(bundle, provider="cpu")
    prediction = tagger.predict([photo], Options(threshold=0.0))[0]
    for tag in TAGS:
        z = sum(w * logit(np.array(prediction.models[n].scores[tag])) for n, w in zip(MEMBERS, weights))
        assert prediction.scores[tag] == pytest.approx(float(1 / (1 + np.exp(-z))), abs=1e-6)
    pair = tagger.predict([photo], Options(models=MEMBERS[:2]))[0]
    own = {n: load_bundle(bundle).model(n).thresholds for n in MEMBERS[:2]}
    for tag in TAGS:  # not the whole ensemble: the plain mean, at the mean of the models' own thresholds
        assert pair.scores[tag] == pytest.approx(np.mean([pair.models[n].scores[tag] for n in MEMBERS[:2]]), abs=1e-6)
        assert (f"#{tag}" in pair.hashtags) == (pair.scores[tag] >= np.mean([own[n][tag] for n in own]))


def test_a_stack_rewrites_only_its_tag_from_other_tags_logits(tmp_path: Path) -> None:
    stack = {"person": {"bias": -1.0, "weights": {"person": 1.0, "sea": -2.0}}}
    bundle = with_combination(tmp_path / "b", {"method": "mean", "stack": stack})
    photo = make_photo(tmp_path / "p.jpg", seed=5)
    prediction = Tagger(bundle, provider="cpu").predict([photo], Options(threshold=0.0))[0]
    mean = {t: np.mean([prediction.models[n].scores[t] for n in MEMBERS]) for t in TAGS}
    z = -1.0 + logit(np.array(mean["person"])) - 2.0 * logit(np.array(mean["sea"]))
    assert prediction.scores["person"] == pytest.approx(float(1 / (1 + np.exp(-z))), abs=1e-5)
    for tag in ("animal", "nature", "sea"):
        assert prediction.scores[tag] == pytest.approx(mean[tag], abs=1e-5)


@pytest.mark.parametrize("combination, message", [
    ({"method": "median"}, "unknown method"),
    ({"method": "mean", "weights": dict.fromkeys(MEMBERS, 0.5)}, "takes no weights"),
    ({"method": "weighted_logit", "weights": dict.fromkeys(MEMBERS, 0.9)}, "sum to 1"),
    ({"method": "weighted_logit", "weights": {**dict.fromkeys(MEMBERS[1:], 0.5), "other": 0.0}}, "members"),
    ({"method": "weighted_logit", "weights": {MEMBERS[0]: -0.5, **dict.fromkeys(MEMBERS[1:], 1.5 / (len(MEMBERS) - 1))}},
     "non-negative"),
    ({"method": "mean", "stack": {"dog": {"bias": 0, "weights": {}}}}, "unknown tags"),
    ({"method": "mean", "stack": {"sea": {"bias": 0, "weights": {"dog": 1.0}}}}, r"unknown: \['dog'\]"),
    ({"method": "mean", "stack": {"sea": {"weights": {"sea": 1.0}}}}, "numeric 'bias'"),
    ({"method": "weighted_logit", "weights": {MEMBERS[0]: float("nan"), **dict.fromkeys(MEMBERS[1:], 0.5)}}, "finite"),
    ({"method": "mean", "stacks": {}}, r"unknown keys \['stacks'\]"),
    ({"method": "mean", "stack": {"sea": {"bias": 0, "weights": {}, "scale": 2}}}, "numeric 'bias'"),
])
def test_bad_combinations_are_refused_when_the_bundle_loads(tmp_path: Path, combination: dict, message: str) -> None:
    with pytest.raises(BundleError, match=message):
        load_bundle(with_combination(tmp_path / "b", combination))


def test_combination_round_trips_through_the_manifest_record() -> None:
    c = Combination("weighted_logit", {"a": 0.25, "b": 0.75}, {"x": TagStack(0.5, {"x": 1.0, "y": -0.5})},
                    ("x", "y"), ("a", "b"))
    assert Combination.from_manifest(c.to_manifest(), ("a", "b"), ("x", "y")) == c
    assert Combination.from_manifest(None, ("a", "b"), ("x", "y")) == Combination()


def test_weight_grid_keeps_every_member_in_the_ensemble() -> None:
    grid = weight_grid(3)
    assert all(abs(sum(w) - 1) < 1e-9 and min(w) >= 0.05 - 1e-9 for w in grid)
    assert (0.05, 0.05, 0.9) in grid and len(grid) == len(set(grid)) == 171


def test_choose_combination_weighs_down_a_member_that_is_noise() -> None:
    rng = np.random.default_rng(0)
    labels = (rng.random((400, 3)) < 0.3).astype(np.int64)
    def member() -> np.ndarray:  # the labels seen through its own noise: two of them together see better
        return np.clip(labels * 0.5 + rng.random((400, 3)) * 0.7, 0.01, 0.99)

    per_model = {"good": member(), "also_good": member(), "noise": rng.random((400, 3))}
    choice = choose_combination(labels, per_model, base=[0, 1])
    assert choice.combination.method == "weighted_logit"
    assert choice.combination.weights["noise"] == pytest.approx(0.05)
    assert sum(choice.scores) > sum(choice.mean)
    record = choice.record("toy")
    assert record["beats_best_member"] is True
    assert record["best_member_ten"] in ("good", "also_good") and record["candidates"] == 1 + len(weight_grid(3))


def test_threshold_for_precision_takes_the_best_recall_that_reaches_the_target() -> None:
    y = np.array([1, 1, 0, 1, 0, 0, 1, 0])
    s = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2])
    # precision at each cut: 1, 1, .67, .75, .6, .5, .57, .5 -> the lowest cut with >= .7 is 0.6
    assert threshold_for_precision(y, s, 0.7) == pytest.approx(0.55)
    assert threshold_for_precision(y, s, 0.95) == pytest.approx(0.75)
    assert threshold_for_precision(np.zeros(4), s[:4], 0.5) is None
    assert threshold_for_precision(np.array([0, 1]), np.array([0.9, 0.1]), 0.9) is None


def test_precision_first_thresholds_fall_back_to_val_and_list_tags_below_target() -> None:
    tune_y = np.array([[1, UNKNOWN, 0]] * 10 + [[0, UNKNOWN, 1]] * 10)
    tune_p = np.tile(np.linspace(0.95, 0.05, 20)[:, None], (1, 3))
    val_y = np.array([[0, 1, 0], [0, 1, 0], [0, 0, 0]])
    val_p = np.array([[0.1, 0.8, 0.1], [0.1, 0.6, 0.1], [0.1, 0.4, 0.1]])
    chosen = precision_first_thresholds(("a", "b", "c"), tune_y, tune_p, val_y, val_p, 0.7, "tune", "val")
    assert chosen.source == {"a": "tune", "b": "val", "c": "tune"}
    # every positive of "a" ranks first: the best recall at >= 0.7 is reached at the 10th score, cut midway down
    assert chosen.thresholds["a"] == pytest.approx((tune_p[9, 0] + tune_p[10, 0]) / 2)
    assert chosen.thresholds["b"] == pytest.approx(0.5)
    assert chosen.below_target == ["c"]  # its positives rank last: precision never reaches 0.7


def test_corpus_val_cuts_never_sink_below_their_f1_cut() -> None:
    """On val (easy negatives), precision first would take a lower cut than F1: the F1 cut is kept there."""
    y = np.array([1, 1, 1, 1, 0, 0, 1, 0, 0, 0])
    p = np.linspace(0.95, 0.05, 10)
    # precision first at 0.5: all five positives at 5/7; F1 is best after the first four (0.889 vs 0.833)
    on_tune = precision_first_thresholds(("t",), np.array([y] * 2).T[:, :1].repeat(2, 0),
                                         np.array([p] * 2).T[:, :1].repeat(2, 0), y[:, None], p[:, None], 0.5)
    on_val = precision_first_thresholds(("t",), np.zeros((4, 1), int), np.zeros((4, 1)), y[:, None], p[:, None], 0.5)
    assert on_tune.source == {"t": "tune"} and on_tune.thresholds["t"] == pytest.approx((p[6] + p[7]) / 2)
    assert on_val.source == {"t": "val"} and on_val.thresholds["t"] == pytest.approx((p[3] + p[4]) / 2)


def test_weak_negatives_apply_to_unlabelled_scene_photos_but_not_streets() -> None:
    tags = ("human", "person", "portrait", "architecture", "forest", "glacier", "mountain", "sea", "city")
    u = UNKNOWN
    labels = np.array([[u, u, u, 1, 0, 0, 0, 0, 0],    # buildings, people unknown: a weak negative
                       [u, u, u, 1, 0, 0, 0, 0, 1],    # a street: people likely, left unknown
                       [1, 1, 0, 0, 0, 0, 0, 1, 0],    # labelled people at sea: kept
                       [u, u, u, 0, 0, 0, 0, 0, 0]])   # no scene label: left unknown
    rule = WeakNegatives()
    assert rule.rows(labels, tags).tolist() == [True, False, False, False]
    applied = rule.apply(labels, tags)
    assert applied[0, :3].tolist() == [0, 0, 0] and (applied[1:] == labels[1:]).all()


def test_fit_stack_learns_a_cross_tag_correction_without_diverging() -> None:
    rng = np.random.default_rng(1)
    n = 600
    scene = rng.random(n) < 0.4                       # scene photos: the "person" model fires at random there
    person = (~scene) & (rng.random(n) < 0.5)
    z_person = np.where(person, 2.0, -2.0) + np.where(scene, rng.normal(1.5, 1.0, n), 0) + rng.normal(0, 0.5, n)
    z_scene = np.where(scene, 4.0, -4.0) + rng.normal(0, 0.5, n)
    z = np.stack([z_person, z_scene], axis=1)
    bias, w = fit_stack(z, person.astype(float), column=0)
    assert np.isfinite([bias, *w]).all() and w[0] > 0 and w[1] < -0.1
    separable = fit_stack(np.stack([np.where(person, 9.0, -9.0), z_scene], 1), person.astype(float), 0)
    assert np.isfinite([separable[0], *separable[1]]).all()
    layers = stack_layers(("person", "scene"), z, np.stack([person, scene], 1).astype(np.int64), ["person"])
    stacked = Combination("mean", {}, layers, ("person", "scene"), ("m",))
    probs = combine({"m": 1 / (1 + np.exp(-z))}, stacked)
    assert np.mean(probs[scene, 0] >= 0.5) < np.mean(1 / (1 + np.exp(-z_person[scene])) >= 0.5)


SCENE_TAGS = ("human", "person", "portrait", "architecture", "forest", "glacier", "mountain", "sea", "city", "dog")


def scored_photos(rng: np.random.Generator, n: int, scene_share: float, people_known: bool):
    """Synthetic labels and member probabilities: members fire ``human``/``person`` at random on scenes."""
    from hashtag.export.tune_ensemble import Scored

    labels = np.zeros((n, len(SCENE_TAGS)), dtype=np.int64)
    scene = rng.random(n) < scene_share
    labels[scene, 3 + rng.integers(0, 5, n)[scene]] = 1
    people = ~scene & (rng.random(n) < 0.5)
    labels[:, 0] = labels[:, 1] = people
    labels[:, 2] = people & (rng.random(n) < 0.5)
    labels[:, 9] = ~scene & ~people & (rng.random(n) < 0.3)
    if not people_known:
        labels[scene, :3] = UNKNOWN
    z = np.where(labels > 0, 2.0, -2.0) + rng.normal(0, 1.0, labels.shape)
    z[scene, :2] += rng.normal(2.0, 1.0, (int(scene.sum()), 2))  # the members' mistake on scene photos
    probs = {m: 1 / (1 + np.exp(-(z + rng.normal(0, 0.3 * (k + 1), z.shape)))) for k, m in enumerate(MEMBERS)}
    return Scored(labels, probs)


def test_tune_writes_a_manifest_the_runtime_reads_and_fewer_people_on_scenes(tmp_path: Path) -> None:
    from hashtag.export.tune_ensemble import tune, write_manifest

    root = make_bundle(tmp_path / "b", tags=SCENE_TAGS)
    bundle = load_bundle(root)
    rng = np.random.default_rng(7)
    tune_half = scored_photos(rng, 300, 0.2, True)  # everyday photos: some scenery, labelled without people
    val, test, train = (scored_photos(rng, n, 0.4, False) for n in (300, 400, 300))
    train_scenes = type(train)(train.labels[WeakNegatives().rows(train.labels, SCENE_TAGS)],
                               {m: p[WeakNegatives().rows(train.labels, SCENE_TAGS)] for m, p in train.probs.items()})
    combination, thresholds, record = tune(bundle, tune_half, val, test, train_scenes, target=0.7)
    assert set(combination.stack) == {"human", "person", "portrait"}
    assert record["stack"]["weak_negatives"]["train_photos"] == len(train_scenes.labels) > 0
    people = record["people_on_scene_test_photos"]
    assert people["after"]["photos"] == people["before"]["photos"] > 100
    scenes = WeakNegatives().rows(test.labels, SCENE_TAGS)
    plain = Combination(combination.method, combination.weights, members=combination.members)
    rate = {name: np.mean(combine(test.probs, c)[scenes, 0] >= 0.5) for name, c in (("plain", plain),
                                                                                     ("stacked", combination))}
    assert rate["stacked"] < rate["plain"] / 2  # the stack, not a threshold, takes people off empty scenes
    few = {t for j, t in enumerate(SCENE_TAGS) if np.sum(tune_half.labels[:, j] > 0) < MIN_TUNE_POSITIVES}
    assert few and {t for t, where in record["thresholds"]["decided_on"].items() if where == "corpus val"} == few
    written = write_manifest(bundle, combination, thresholds, record, {"val": {}, "test": {}})
    reloaded = load_bundle(root)
    assert reloaded.combination == written.combination == combination
    assert dict(reloaded.ensemble_thresholds) == pytest.approx(thresholds)
    prediction = Tagger(reloaded, provider="cpu").predict([make_photo(tmp_path / "p.jpg")], Options(threshold=0.0))[0]
    per_model = {n: np.array([[prediction.models[n].scores[t] for t in SCENE_TAGS]]) for n in MEMBERS}
    expected = combine(per_model, reloaded.combination)[0]
    assert [prediction.scores[t] for t in SCENE_TAGS] == pytest.approx(expected.tolist(), abs=1e-5)


def test_card_section_leads_the_card_judges_the_targets_and_rewrites_the_thresholds(tmp_path: Path) -> None:
    from hashtag.export.ensemble_card import SECTION, real_photos_section, replace_thresholds
    from hashtag.export.tune_ensemble import tune, write_manifest

    root = make_bundle(tmp_path / "b", tags=SCENE_TAGS)
    rng = np.random.default_rng(3)
    val, test, train = (scored_photos(rng, n, 0.4, False) for n in (200, 200, 200))
    combination, thresholds, record = tune(load_bundle(root), scored_photos(rng, 200, 0.2, True), val, test, train)
    record["people_on_scene_test_photos"]["after"]["human"] = 0.03
    bundle = write_manifest(load_bundle(root), combination, thresholds, record, {})

    def result(ten: float, all_: float, p: float, r: float) -> dict:
        return {"mAP_base": ten, "mAP_added": all_, "mAP": all_, "micro_precision": p, "micro_recall": r,
                "n_images": 9, "per_tag": {t: {"ap": ten, "support": 3} for t in SCENE_TAGS}}

    members = dict(zip(MEMBERS, (result(0.68, 0.70, 0.6, 0.8), result(0.75, 0.78, 0.7, 0.8),
                                 result(0.70, 0.73, 0.6, 0.8))))
    report = {**members, "ensemble": result(0.765, 0.795, 0.71, 0.83), "precision": dict.fromkeys(MEMBERS, "int8")}
    test_results = {**members, "ensemble": result(0.945, 0.93, 0.9, 0.9)}
    section = real_photos_section(bundle, report, test_results)
    assert "- ensemble, original ten tags >= 0.76: **met** (0.765)" in section
    assert "- ensemble >= best member + 0.01 (ten tags): **met** (0.765 vs inceptionv3 0.750)" in section
    assert "- default hashtags: precision >= 0.70 with recall >= 0.80: **met** (0.710 / 0.830)" in section
    assert "- `#human` on at most 4% of the scene test photos: **met** (3.0% of" in section
    assert "**Stack** for `human`, `person`, `portrait`" in section
    card = tmp_path / "README.md"
    card.write_text("# card\n\nintro\n\n## Vocabulary\n\nv\n\n## Thresholds\n\nold table\n\n## Results\n\nr\n")
    SECTION.write(card, section, transform=lambda text: replace_thresholds(text, bundle))
    SECTION.write(card, section, transform=lambda text: replace_thresholds(text, bundle))  # replaced, not added
    text = card.read_text()
    assert text.count(SECTION.begin) == 1 and text.index(SECTION.end) < text.index("## Vocabulary")
    assert "old table" not in text and f"| human | 0.500 | 0.500 | 0.500 | {thresholds['human']:.3f} |" in text
    assert text.endswith("## Results\n\nr\n")


def test_fast_run_gives_the_fast_model_the_same_precision_first_rule(tmp_path: Path) -> None:
    from hashtag.export.tune_ensemble import fast_thresholds, write_manifest
    from hashtag.train.distill import PREDICTIONS_NAME
    from hashtag.train.run_folder import RunFolder
    from tinybundle import FAST_MODEL

    root = make_bundle(tmp_path / "b", (*DEFAULT_MODELS, FAST_MODEL))
    bundle = load_bundle(root)
    rng = np.random.default_rng(2)
    labels = (rng.random((200, len(TAGS))) < 0.3).astype(np.int8)
    oof = np.clip(labels + rng.normal(0, 0.4, labels.shape), 0, 1).astype(np.float32)
    folder = RunFolder(tmp_path / "run").model_dir(bundle.fast_name)
    folder.mkdir(parents=True)
    np.savez(folder / PREDICTIONS_NAME, tags=np.array(TAGS), tune_out_of_fold=oof, tune_labels=labels,
             val=oof[:50], val_labels=labels[:50])
    thresholds, record = fast_thresholds(bundle, tmp_path / "run", 0.8)
    for j, tag in enumerate(TAGS):
        chosen = oof[:, j] >= thresholds[tag]
        assert (labels[chosen, j] > 0).mean() >= 0.8
    write_manifest(bundle, bundle.combination, dict(bundle.ensemble_thresholds), {}, {}, (thresholds, record))
    reloaded = load_bundle(root)
    assert dict(reloaded.fast.thresholds) == pytest.approx(thresholds)
    assert reloaded.fast.metadata["thresholds_source"]["precision_target"] == 0.8
    np.savez(folder / PREDICTIONS_NAME, tags=np.array(TAGS[::-1]), tune_out_of_fold=oof, tune_labels=labels,
             val=oof[:50], val_labels=labels[:50])
    with pytest.raises(ExportError, match="is for tags"):
        fast_thresholds(bundle, tmp_path / "run", 0.8)
