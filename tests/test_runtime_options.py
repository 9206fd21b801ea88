"""Options per call: one Tagger's probabilities under a request's options give what a Tagger of just those models gives."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from hashtag.runtime import ModelSelectionError, Options, Tagger
from hashtag.runtime.prediction import ensemble_thresholds, hashtags
from tinybundle import make_bundle

MODEL_THRESHOLDS = {"vgg16": 0.2, "inceptionv3": 0.45, "xception": 0.6}
ENSEMBLE_THRESHOLD = 0.52


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny bundle with different thresholds per model and for the ensemble, so each rule shows."""
    root = make_bundle(tmp_path_factory.mktemp("thresholds"))
    manifest = json.loads((root / "manifest.json").read_text())
    for model in manifest["models"]:
        model["thresholds"] = {t: MODEL_THRESHOLDS[model["name"]] for t in model["tags"]}
    manifest["ensemble"]["thresholds"] = {t: ENSEMBLE_THRESHOLD for t in manifest["ensemble"]["thresholds"]}
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def _select(tagger: Tagger, photos: list[Path], options: Options) -> list[dict]:
    """What a server does for a batch: the models once, then this request's options."""
    images = [tagger.decode(p) for p in photos]
    return [p.to_json() for p in tagger.predictions(tagger.probabilities(images), [str(p) for p in photos], options)]


@pytest.mark.parametrize("options", [
    {},
    {"threshold": 0.3},
    {"top_k": 1, "threshold": 0.0},
    {"models": ("vgg16",)},
    {"models": ("xception", "vgg16"), "top_k": 2},
])
def test_same_as_a_tagger_built_with_the_options(bundle: Path, photos: list[Path], options: dict) -> None:
    served = Tagger(bundle, provider="cpu")
    dedicated = Tagger(bundle, provider="cpu", models=options.get("models"))
    per_call = {k: v for k, v in options.items() if k != "models"}
    expected = [p.to_json() for p in dedicated.predict(photos, Options(**per_call))]
    got = _select(served, photos, Options(**options))
    assert [r["hashtags"] for r in got] == [r["hashtags"] for r in expected]
    for g, e in zip(got, expected):
        assert list(g["models"]) == list(e["models"])
        assert g["scores"] == pytest.approx(e["scores"], abs=1e-6)
        for name in e["models"]:
            assert g["models"][name]["hashtags"] == e["models"][name]["hashtags"]


def test_ensemble_thresholds_rules(bundle: Path) -> None:
    loaded = Tagger(bundle, provider="cpu").bundle
    every = ["xception", "vgg16", "inceptionv3"]
    assert set(ensemble_thresholds(loaded, every, None).values()) == {ENSEMBLE_THRESHOLD}
    assert ensemble_thresholds(loaded, ["vgg16", "xception"], None) == pytest.approx({t: 0.4 for t in loaded.tags})
    assert set(ensemble_thresholds(loaded, ["vgg16"], 0.7).values()) == {0.7}


def test_hashtags_order_ties_and_cut() -> None:
    scores = {"sea": 0.9, "big tree": 0.9, "cat": 0.4, "dog": 0.1}
    thresholds = {t: 0.3 for t in scores}
    assert hashtags(scores, thresholds, None) == ["#bigtree", "#sea", "#cat"]
    assert hashtags(scores, thresholds, 2) == ["#bigtree", "#sea"]


@pytest.mark.parametrize(("options", "message"), [
    ({"threshold": 1.5}, "threshold"),
    ({"threshold": -0.1}, "threshold"),
    ({"top_k": 0}, "top-k"),
    ({"models": ()}, "at least one model"),
])
def test_bad_options_are_refused(options: dict, message: str) -> None:
    with pytest.raises(ModelSelectionError, match=message):
        Options(**options)


def test_unknown_model_names_the_served_ones(tiny_bundle: Path, photos: list[Path]) -> None:
    tagger = Tagger(tiny_bundle, provider="cpu", models=["vgg16", "xception"])
    with pytest.raises(ModelSelectionError, match=r"unknown model 'inceptionv3' \(served: vgg16, xception\)"):
        tagger.predict(photos, Options(models=("inceptionv3",)))
