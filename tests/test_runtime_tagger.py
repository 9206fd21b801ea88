"""The ensemble tagger on real ONNX Runtime sessions of tiny models, checked against hand computations."""
from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hashtag.runtime import Options, ProviderError, Tagger, load_bundle
from hashtag.runtime.cpu import CpuFeatures, cpu_features, cpu_kind, faster_cpu_precision
from hashtag.runtime.images import load_image
from hashtag.runtime.manifest import Preprocessing
from hashtag.runtime.ov_session import openvino_installed
from hashtag.runtime.pipeline import decode_ahead
from hashtag.runtime.preprocess import input_key, normalize, prepare_batch, prepare_inputs, resize_rgb
from hashtag.runtime.providers import available_providers, default_threads
from hashtag.runtime.tagger import pick_variant
from tinybundle import CAFFE, TAGS, TF, expected_probabilities, make_bundle, make_photo


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
    tagger = Tagger(tiny_bundle, provider="cpu")
    pred = tagger.predict_one(photos[0], Options(threshold=0.0))
    ordered = sorted(TAGS, key=lambda t: -pred.scores[t])
    assert pred.hashtags == ["#" + t for t in ordered]
    assert tagger.predict_one(photos[0], Options(threshold=1.0)).hashtags == []
    assert tagger.predict_one(photos[0], Options(threshold=0.0, top_k=2)).hashtags == ["#" + t for t in ordered[:2]]


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


@pytest.mark.parametrize(("machine", "flags", "expected"), [
    ("x86_64", {"avx2", "fma", "avx512f", "avx512bw", "avx512_vnni"}, "int8"),
    ("x86_64", {"avx2", "fma", "avx_vnni"}, "int8"),
    ("x86_64", {"avx2", "fma", "amx_int8"}, "int8"),
    ("x86_64", {"avx2", "fma", "avx512f", "avx512bw"}, "fp32"),
    ("x86_64", {"avx2", "fma"}, "fp32"),
    ("aarch64", {"asimd", "asimddp"}, "int8"),
    ("aarch64", {"asimd"}, "fp32"),
])
def test_cpu_precision_rule(tiny_bundle: Path, machine: str, flags: set[str], expected: str) -> None:
    spec = load_bundle(tiny_bundle).model("vgg16")
    variant, why = pick_variant(spec, "cpu", None, CpuFeatures(machine, frozenset(flags)))
    assert variant.precision == expected
    assert ("has INT8 dot products" in why) == (expected == "int8")
    only_int8 = dataclasses.replace(spec, variants={"int8": spec.variants["int8"]})
    assert pick_variant(only_int8, "cpu", None, CpuFeatures(machine, frozenset(flags)))[0].precision == "int8"
    assert pick_variant(spec, "cuda", None, CpuFeatures(machine, frozenset(flags)))[0].precision == "fp32"
    assert pick_variant(spec, "cpu", "int8", CpuFeatures(machine, frozenset(flags)))[0].precision == "int8"
    # a precision measured faster on this kind of CPU wins over the flags
    kind = cpu_kind(CpuFeatures(machine, frozenset(flags)))
    other = "fp32" if expected == "int8" else "int8"
    measured = dataclasses.replace(spec, cpu_precision={kind: other})
    variant, why = pick_variant(measured, "cpu", None, CpuFeatures(machine, frozenset(flags)))
    assert variant.precision == other and f"measured faster for this model on {kind} CPUs" in why


def test_precision_on_this_cpu_and_forced(tiny_bundle: Path) -> None:
    tagger = Tagger(tiny_bundle, provider="cpu")
    assert tagger.provider == "cpu"
    here = faster_cpu_precision(cpu_features())[0]
    assert {d["precision"] for d in tagger.describe()} == {here}
    for precision in ("int8", "fp32"):
        forced = Tagger(tiny_bundle, provider="cpu", precision=precision).describe()
        assert {d["precision"] for d in forced} == {precision}
        assert {d["precision_reason"] for d in forced} == {"asked for (--precision)"}
    assert all(d["providers"] == ["CPUExecutionProvider"] for d in tagger.describe())


def test_fp16_model_with_float32_io(tmp_path: Path, photos: list[Path]) -> None:
    root = make_bundle(tmp_path / "b", precisions=("fp16", "fp32"))
    fp16 = Tagger(root, provider="cpu", precision="fp16").predict_one(photos[0])
    fp32 = Tagger(root, provider="cpu", precision="fp32").predict_one(photos[0])
    for tag in TAGS:
        assert fp16.scores[tag] == pytest.approx(fp32.scores[tag], abs=2e-3)


def test_auto_provider_prefers_openvino_then_onnxruntime_cpu(tiny_bundle: Path) -> None:
    tagger = Tagger(tiny_bundle, provider="auto")
    if "CUDAExecutionProvider" not in available_providers():
        assert tagger.provider == ("openvino" if openvino_installed() else "cpu")
    assert tagger.provider in ("cpu", "cuda", "openvino")


def test_cuda_fails_clearly_when_unavailable(tiny_bundle: Path) -> None:
    if "CUDAExecutionProvider" in available_providers():
        pytest.skip("this onnxruntime has a CUDA provider; the failure path needs a CPU-only build")
    with pytest.raises(ProviderError, match="CUDA was requested"):
        Tagger(tiny_bundle, provider="cuda")


def test_invalid_options(tiny_bundle: Path) -> None:
    from hashtag.runtime import HashtagError

    for kwargs in ({"provider": "tpu"}, {"precision": "int4"}, {"batch_size": 0}):
        with pytest.raises(HashtagError):
            Tagger(tiny_bundle, **kwargs)
    for options in ({"threshold": 2.0}, {"top_k": 0}, {"models": ()}):
        with pytest.raises(HashtagError):
            Options(**options)


def test_shared_size_is_preprocessed_once(tiny_bundle: Path, photos: list[Path]) -> None:
    """inceptionv3 and xception share 40 px and the tf scheme: one batch serves both."""
    specs = load_bundle(tiny_bundle).models
    images = [load_image(p) for p in photos]
    batches = prepare_inputs(images, [input_key(s) for s in specs])
    assert sorted(b.shape for b in batches.values()) == [(3, 32, 32, 3), (3, 40, 40, 3)]
    for spec in specs:
        expected = normalize(np.stack([resize_rgb(img, spec.input_size) for img in images]), spec.preprocessing)
        np.testing.assert_array_equal(batches[input_key(spec)], expected)
        np.testing.assert_array_equal(prepare_batch(images, spec.input_size, spec.preprocessing), expected)


def test_min_decode_size_is_the_largest_input(tiny_bundle: Path) -> None:
    assert Tagger(tiny_bundle, provider="cpu").min_decode_size == 40
    assert Tagger(tiny_bundle, provider="cpu", models=["vgg16"]).min_decode_size == 32


def test_predict_decodes_no_larger_than_the_models_need(tiny_bundle: Path, tmp_path: Path) -> None:
    """A 1600x1200 JPEG for 40 px inputs: DCT-scaled by 8 (200x150), then reduced by 3; scores stay close."""
    path = make_photo(tmp_path / "big.jpg", size=(1600, 1200), seed=4)
    tagger = Tagger(tiny_bundle, provider="cpu")
    assert load_image(path, min_side=tagger.min_decode_size).size == (67, 50)
    drafted = tagger.predict_one(path)
    full = tagger.predict_images([load_image(path)])[0]
    for tag in TAGS:
        assert drafted.scores[tag] == pytest.approx(full.scores[tag], abs=2e-3)


def test_predict_stream_keeps_order_and_error_records(tiny_bundle: Path, tmp_path: Path) -> None:
    good = [make_photo(tmp_path / f"p{i}.jpg", seed=i) for i in range(5)]
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff not a jpeg")
    sources = [good[0], broken, good[1], good[2], tmp_path / "missing.png", good[3], good[4]]
    tagger = Tagger(tiny_bundle, provider="cpu", batch_size=2)
    results = list(tagger.predict_stream(sources))
    assert [type(r).__name__ for r in results] == ["Prediction", "ImageError", "Prediction", "Prediction",
                                                   "ImageError", "Prediction", "Prediction"]
    assert [r.image if hasattr(r, "image") else r.source for r in results] == [str(s) for s in sources]
    assert "no such file" in results[4].reason
    expected = tagger.predict(good)
    for got, want in zip([r for r in results if hasattr(r, "scores")], expected):
        assert got.scores == pytest.approx(want.scores, abs=1e-6) and got.hashtags == want.hashtags


def test_decode_ahead_is_bounded(photos: list[Path]) -> None:
    """With ahead=2, taking the first image has pulled exactly three sources: memory cannot grow with the input."""
    pulled: list[Path] = []

    def sources():  # noqa: ANN202 - a generator that records what was taken from it
        for i in range(50):
            pulled.append(photos[i % len(photos)])
            yield photos[i % len(photos)]

    stream = decode_ahead(sources(), min_side=None, ahead=2)
    name, first = next(stream)
    assert name == str(photos[0]) and first.size == (64, 48)
    assert len(pulled) == 3
    stream.close()
    assert len(pulled) == 3


def test_openvino_provider_matches_onnxruntime(tiny_bundle: Path, photos: list[Path]) -> None:
    pytest.importorskip("openvino")
    ov_tagger = Tagger(tiny_bundle, provider="openvino")
    assert ov_tagger.provider == "openvino"
    here = faster_cpu_precision(cpu_features())[0]
    assert all(d["providers"] == ["OpenVINO CPU"] and d["precision"] == here for d in ov_tagger.describe())
    ort_preds = Tagger(tiny_bundle, provider="cpu").predict(photos)
    for got, want in zip(ov_tagger.predict(photos), ort_preds):
        assert got.scores == pytest.approx(want.scores, abs=1e-4)
        for name in want.models:
            assert got.models[name].scores == pytest.approx(want.models[name].scores, abs=1e-4)


def test_openvino_runs_from_several_threads(tiny_bundle: Path, photos: list[Path]) -> None:
    """Front ends share one Tagger between worker threads; each thread gets its own OpenVINO request."""
    pytest.importorskip("openvino")
    from concurrent.futures import ThreadPoolExecutor

    tagger = Tagger(tiny_bundle, provider="openvino")
    expected = [p.scores for p in tagger.predict(photos)]
    with ThreadPoolExecutor(4) as pool:
        runs = list(pool.map(lambda _: [p.scores for p in tagger.predict(photos)], range(12)))
    for run in runs:
        for got, want in zip(run, expected):
            assert got == pytest.approx(want, abs=1e-6)


def test_without_openvino_auto_uses_onnxruntime_and_openvino_names_the_extra(tiny_bundle: Path) -> None:
    code = ("import sys; sys.modules['openvino'] = None\n"
            "from hashtag.runtime import Tagger, ProviderError\n"
            f"print(Tagger({str(tiny_bundle)!r}, provider='auto').provider)\n"
            "try:\n"
            f"    Tagger({str(tiny_bundle)!r}, provider='openvino')\n"
            "except ProviderError as exc:\n"
            "    print(exc)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    if "CUDAExecutionProvider" not in available_providers():
        assert lines[0] == "cpu"
    assert "OpenVINO was requested but is not installed; pip install 'hashtag[openvino]'" in lines[1]


def test_models_share_the_cores_unless_threads_are_given(tiny_bundle: Path) -> None:
    """ONNX Runtime: each of the three models gets the usable cores divided by three (at least one)."""
    import os

    per_model = max(1, len(os.sched_getaffinity(0)) // 3)
    assert default_threads("cpu", 3) == per_model
    shared = Tagger(tiny_bundle, provider="cpu")
    assert {m.session.get_session_options().intra_op_num_threads for m in shared.models} == {per_model}
    given = Tagger(tiny_bundle, provider="cpu", threads=2)
    assert {m.session.get_session_options().intra_op_num_threads for m in given.models} == {2}
    alone = Tagger(tiny_bundle, provider="cpu", models=["vgg16"])
    assert alone.models[0].session.get_session_options().intra_op_num_threads == default_threads("cpu", 1)


def test_openvino_models_use_all_cores_unpinned(tiny_bundle: Path) -> None:
    pytest.importorskip("openvino")
    import os

    tagger = Tagger(tiny_bundle, provider="openvino")
    for m in tagger.models:
        assert m.session.get_property("ENABLE_CPU_PINNING") is False
        assert m.session.get_property("INFERENCE_NUM_THREADS") == len(os.sched_getaffinity(0))
        assert str(m.session.get_property("INFERENCE_PRECISION_HINT")) == "<Type: 'float32'>"
    given = Tagger(tiny_bundle, provider="openvino", threads=1)
    assert {m.session.get_property("INFERENCE_NUM_THREADS") for m in given.models} == {1}
