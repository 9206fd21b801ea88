"""Copying a bundle down to the precisions that ship in git."""
from __future__ import annotations

from pathlib import Path

import pytest

from hashtag.export.errors import ExportError
from hashtag.export.ship import copy_bundle
from hashtag.runtime import Tagger, load_bundle


def test_keeps_only_int8_and_still_runs(tiny_bundle: Path, tmp_path: Path, photos: list[Path]) -> None:
    out = tmp_path / "shipped"
    bundle = copy_bundle(tiny_bundle, out, ["int8"])
    assert all(set(m.variants) == {"int8"} for m in bundle.models)
    assert sorted(p.name for p in out.glob("*.onnx")) == ["inceptionv3.int8.onnx", "vgg16.int8.onnx",
                                                           "xception.int8.onnx"]
    assert Tagger(out, provider="cpu").predict_one(photos[0]).scores == pytest.approx(
        Tagger(tiny_bundle, provider="cpu", precision="int8").predict_one(photos[0]).scores)


def test_replaces_an_older_bundle_and_refuses_missing_precisions(tiny_bundle: Path, tmp_path: Path) -> None:
    out = tmp_path / "shipped"
    copy_bundle(tiny_bundle, out, ["int8", "fp32"])
    copy_bundle(tiny_bundle, out, ["fp32"])
    assert not list(out.glob("*.int8.onnx"))
    with pytest.raises(ExportError, match="has none of"):
        copy_bundle(tiny_bundle, out, ["fp16"])
    assert all(set(m.variants) == {"fp32"} for m in load_bundle(out).models)  # a refused copy loses nothing
    with pytest.raises(ExportError, match="unknown precision"):
        copy_bundle(tiny_bundle, tmp_path / "y", ["int4"])
