"""Manifest validation: every malformed bundle is refused with a message that says what is wrong."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Callable

import pytest

from hashtag.runtime import BundleError, ModelSelectionError, Tagger, load_bundle
from tinybundle import TAGS, make_bundle


@pytest.fixture()
def bundle_dir(tmp_path: Path, tiny_bundle: Path) -> Path:
    """A private copy of the tiny bundle that a test may break."""
    return Path(shutil.copytree(tiny_bundle, tmp_path / "bundle"))


def _edit(bundle_dir: Path, change: Callable[[dict[str, Any]], None]) -> None:
    path = bundle_dir / "manifest.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def test_valid_bundle_loads(tiny_bundle: Path) -> None:
    bundle = load_bundle(tiny_bundle)
    assert [m.name for m in bundle.models] == ["vgg16", "inceptionv3", "xception"]
    assert bundle.tags == TAGS
    assert bundle.model("vgg16").preprocessing.color_order == "BGR"
    assert set(bundle.model("xception").variants) == {"int8", "fp32"}


def test_missing_folder() -> None:
    with pytest.raises(BundleError, match="no model bundle"):
        load_bundle("/nonexistent/bundle")


def test_invalid_json(bundle_dir: Path) -> None:
    (bundle_dir / "manifest.json").write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        load_bundle(bundle_dir)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(format="other"), "format must be"),
        (lambda d: d.update(version=99), "version 99 is not supported"),
        (lambda d: d.update(models=[]), "lists no models"),
        (lambda d: d["models"][0].pop("input_size"), "lacks 'input_size'"),
        (lambda d: d["models"][0].update(input_size="224"), "input_size must be an integer"),
        (lambda d: d["models"][0]["preprocessing"].update(family="magic"), "unknown preprocessing family 'magic'"),
        (lambda d: d["models"][0]["preprocessing"].update(color_order="RGB"), "uses colour order BGR"),
        (lambda d: d["models"][0]["preprocessing"].update(std=[1, 0, 1]), "std must be positive"),
        (lambda d: d["models"][0]["preprocessing"].pop("mean"), "lacks 'mean'"),
        (lambda d: d["models"][0]["thresholds"].pop("sea"), "missing: \\['sea'\\]"),
        (lambda d: d["models"][0]["thresholds"].update(sea=1.5), "must be a number in \\[0, 1\\]"),
        (lambda d: d["models"][0]["variants"][0].update(precision="int4"), "unknown precision 'int4'"),
        (lambda d: d["models"][0]["variants"][0].update(file="gone.onnx"), "gone.onnx does not exist"),
        (lambda d: d["models"][1].update(name="vgg16"), "model names must be unique"),
        (lambda d: d["models"][1].update(tags=["a", "b", "c", "d"], thresholds=dict.fromkeys("abcd", 0.5)),
         "has tags"),
        (lambda d: d["models"][0].update(tags=["a", "a"]), "duplicates"),
        (lambda d: d.pop("ensemble"), "ensemble.thresholds"),
    ],
)
def test_malformed_manifest(bundle_dir: Path, change: Callable[[dict[str, Any]], None], message: str) -> None:
    _edit(bundle_dir, change)
    with pytest.raises(BundleError, match=message):
        load_bundle(bundle_dir)


def test_tag_count_must_match_output_shape(tmp_path: Path) -> None:
    """A manifest listing 5 tags for a model whose graph outputs 4 is refused when the session loads."""
    root = make_bundle(tmp_path / "b")
    tags = [*TAGS, "extra"]

    def add_tag(data: dict[str, Any]) -> None:
        for model in data["models"]:
            model.update(tags=tags, thresholds=dict.fromkeys(tags, 0.5))
        data["ensemble"]["thresholds"] = dict.fromkeys(tags, 0.5)

    _edit(root, add_tag)
    with pytest.raises(BundleError, match="output shape .* does not match the 5 tags"):
        Tagger(root, provider="cpu")


def test_input_size_must_match_graph(tmp_path: Path) -> None:
    root = make_bundle(tmp_path / "b")
    _edit(root, lambda d: d["models"][0].update(input_size=64))
    with pytest.raises(BundleError, match="does not match input_size 64"):
        Tagger(root, provider="cpu")


def test_corrupt_onnx_file(bundle_dir: Path) -> None:
    (bundle_dir / "vgg16.int8.onnx").write_bytes(b"this is not protobuf")
    with pytest.raises(BundleError, match="cannot load vgg16.int8.onnx"):
        Tagger(bundle_dir, provider="cpu", precision="int8")


def test_unknown_model_and_precision(tiny_bundle: Path) -> None:
    with pytest.raises(ModelSelectionError, match="no model named 'resnet'"):
        Tagger(tiny_bundle, provider="cpu", models=["resnet"])
    with pytest.raises(ModelSelectionError, match="has no fp16 file"):
        Tagger(tiny_bundle, provider="cpu", precision="fp16")
