"""The ensemble tagger on real ONNX Runtime sessions of tiny models, checked against hand computations."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hashtag.runtime import ProviderError, Tagger, load_bundle
from hashtag.runtime.images import load_image
from hashtag.runtime.manifest import Preprocessing
from hashtag.runtime.preprocess import normalize, resize_rgb
from hashtag.runtime.providers import available_providers
from tinybundle import CAFFE, TAGS, TF, expected_probabilities, make_bundle


def test_caffe_preprocessing_by_hand() -> None:
    """caffe = RGB->BGR then subtract the ImageNet BGR means, no scaling."""
    pixel = np.array([[[[10, 20, 30]]]], np.uint8)
    prep = load_bundle_prep("caffe")
    out = normalize(pixel, prep)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out[0, 0, 0], [30 - 103.939, 20 - 116.779, 10 - 123.68], rtol=1e-6)


def test_tf_preprocessing_by_hand() -> None:
    """tf = x / 127.5 - 1, RGB order kept."""
    pixel = np.array([[[[0, 127, 255]]]], np.uint8)
    out = normalize(pixel, load_bundle_prep("tf"))
    np.testing.assert_allclose(out[0, 0, 0], [-1.0, 127 / 127.5 - 1, 1.0], rtol=1e-6)


def load_bundle_prep(family: str) -> Preprocessing:
    return Preprocessing.from_dict(CAFFE if family == "caffe" else TF)


def test_resize_squashes_to_square() -> None:
    img = Image.new("RGB", (64, 16), (1, 2, 3))
    arr = resize_rgb(img, 32)
    assert arr.shape == (32, 32, 3) and arr.dtype == np.uint8
    assert (arr == [1, 2, 3]).all()


def test_predictions_match_hand_computation(tiny_bundle: Path, photos: list[Path]) -> None:
    tagger = Tagger(tiny_bundle, provider="cpu")
    pred = tagger.predict_one(photos[0])
    img = load_image(photos[0])
    per_model = {}
    for spec, seed in zip(load_bundle(tiny_bundle).models, (1, 2, 3)):
        x = normalize(resize_rgb(img, spec.input_size)[None], spec.preprocessing)
        per_model[spec.name] = expected_probabilities(x, len(TAGS), seed)[0]
        got = [pred.models[spec.name].scores[t] for t in TAGS]
        np.testing.assert_allclose(got, per_model[spec.name], atol=1e-5)
    ensemble = np.mean(list(per_model.values()), axis=0)
    np.testing.assert_allclose([pred.scores[t] for t in TAGS], ensemble, atol=1e-5)
    assert set(pred.scores) == set(TAGS)


def test_batch_equals_single(tiny_bundle: Path, photos: list[Path]) -> None:
    tagger = Tagger(tiny_bundle, provider="cpu", batch_size=2)
    batch = tagger.predict(photos)
    for path, pred in zip(photos, batch):
        single = tagger.predict_one(path)
        assert pred.image == str(path)
        for tag in TAGS:
            assert pred.scores[tag] == pytest.approx(single.scores[tag], abs=1e-5)


def test_hashtags_follow_thresholds_best_first(tiny_bundle: Path, photos: list[Path]) -> None:
    tagger = Tagger(tiny_bundle, provider="cpu", threshold=0.0)
    pred = tagger.predict_one(photos[0])
    ordered = sorted(TAGS, key=lambda t: -pred.scores[t])
    assert pred.hashtags == ["#" + t for t in ordered]
    assert Tagger(tiny_bundle, provider="cpu", threshold=1.0).predict_one(photos[0]).hashtags == []
    assert Tagger(tiny_bundle, provider="cpu", threshold=0.0, top_k=2).predict_one(photos[0]).hashtags == [
        "#" + t for t in ordered[:2]
    ]


def test_per_tag_thresholds_from_manifest(tmp_path: Path, photos: list[Path]) -> None:
    """Lowering one tag's manifest threshold to 0 makes exactly that tag appear."""
    import json

    root = make_bundle(tmp_path / "b", threshold=1.0)
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["ensemble"]["thresholds"]["sea"] = 0.0
    manifest["models"][0]["thresholds"]["person"] = 0.0
    (root / "manifest.json").write_text(json.dumps(manifest))
    pred = Tagger(root, provider="cpu").predict_one(photos[0])
    assert pred.hashtags == ["#sea"]
    assert pred.models["vgg16"].hashtags == ["#person"]
    assert pred.models["xception"].hashtags == []


def test_model_selection(tiny_bundle: Path, photos: list[Path]) -> None:
    full = Tagger(tiny_bundle, provider="cpu").predict_one(photos[1])
    only = Tagger(tiny_bundle, provider="cpu", models=["xception"]).predict_one(photos[1])
    assert list(only.models) == ["xception"]
    assert only.scores == pytest.approx(full.models["xception"].scores)


def test_precision_defaults_to_int8_on_cpu(tiny_bundle: Path) -> None:
    tagger = Tagger(tiny_bundle, provider="cpu")
    assert tagger.provider == "cpu"
    assert {d["precision"] for d in tagger.describe()} == {"int8"}
    assert {d["precision"] for d in Tagger(tiny_bundle, provider="cpu", precision="fp32").describe()} == {"fp32"}
    assert all(d["providers"] == ["CPUExecutionProvider"] for d in tagger.describe())


def test_fp16_model_with_float32_io(tmp_path: Path, photos: list[Path]) -> None:
    root = make_bundle(tmp_path / "b", precisions=("fp16", "fp32"))
    fp16 = Tagger(root, provider="cpu", precision="fp16").predict_one(photos[0])
    fp32 = Tagger(root, provider="cpu", precision="fp32").predict_one(photos[0])
    for tag in TAGS:
        assert fp16.scores[tag] == pytest.approx(fp32.scores[tag], abs=2e-3)


def test_auto_provider_uses_cpu_without_cuda(tiny_bundle: Path) -> None:
    tagger = Tagger(tiny_bundle, provider="auto")
    if "CUDAExecutionProvider" not in available_providers():
        assert tagger.provider == "cpu"
    assert tagger.provider in ("cpu", "cuda")


def test_cuda_fails_clearly_when_unavailable(tiny_bundle: Path) -> None:
    if "CUDAExecutionProvider" in available_providers():
        pytest.skip("this onnxruntime has a CUDA provider; the failure path needs a CPU-only build")
    with pytest.raises(ProviderError, match="CUDA was requested"):
        Tagger(tiny_bundle, provider="cuda")


def test_invalid_options(tiny_bundle: Path) -> None:
    from hashtag.runtime import HashtagError

    for kwargs in ({"provider": "tpu"}, {"precision": "int4"}, {"threshold": 2.0}, {"top_k": 0},
                   {"batch_size": 0}):
        with pytest.raises(HashtagError):
            Tagger(tiny_bundle, **kwargs)


def test_shared_size_is_preprocessed_once(tiny_bundle: Path, photos: list[Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """inceptionv3 and xception share 40 px and the tf scheme: one resize+normalize serves both."""
    import hashtag.runtime.tagger as tagger_module

    calls: list[tuple[int, ...]] = []
    real = tagger_module.normalize

    def counting(batch: np.ndarray, prep: Preprocessing) -> np.ndarray:
        calls.append(batch.shape)
        return real(batch, prep)

    monkeypatch.setattr(tagger_module, "normalize", counting)
    Tagger(tiny_bundle, provider="cpu").predict(photos)
    assert len(calls) == 2  # vgg16@32 caffe, and one for both 40 px tf models
