"""The bundle shipped in models/: it loads, tags a real photo, and scores what its model card says."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from hashtag.models import DEFAULT_BUNDLE
from hashtag.runtime import Tagger, load_bundle

CARD = DEFAULT_BUNDLE / "README.md"
# Rows of the card's runtime table: | model | precision | test mAP | ...
CARD_ROW = re.compile(r"^\| (vgg16|inceptionv3|xception|ensemble) \| (int8|fp32|fp16) \| ([0-9.]+) \|", re.M)

pytestmark = pytest.mark.skipif(not (DEFAULT_BUNDLE / "manifest.json").is_file(),
                                reason="no shipped bundle in models/ yet")


def card_figures() -> dict[tuple[str, str], float]:
    """(model, precision) -> test mAP as the model card states it."""
    return {(m, p): float(v) for m, p, v in CARD_ROW.findall(CARD.read_text())}


def test_bundle_is_complete_and_small() -> None:
    bundle = load_bundle(DEFAULT_BUNDLE)
    assert [m.name for m in bundle.models] == ["vgg16", "inceptionv3", "xception"]
    assert all("int8" in m.variants for m in bundle.models)
    total = sum(v.path.stat().st_size for m in bundle.models for v in m.variants.values())
    assert total < 100e6
    assert {m.input_size for m in bundle.models} == {224, 299}
    assert CARD.is_file() and ("ensemble", "int8") in card_figures()


def test_tags_a_real_photo() -> None:
    """Grace Hopper's portrait (shipped by matplotlib) is a person, as the README's first command shows."""
    cbook = pytest.importorskip("matplotlib.cbook")
    photo = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    pred = Tagger(DEFAULT_BUNDLE, provider="cpu").predict_one(photo)
    assert "#person" in pred.hashtags or "#human" in pred.hashtags
    assert "#sea" not in pred.hashtags and "#animal" not in pred.hashtags


@pytest.mark.slow
def test_card_matches_the_bundle_on_the_corpus_test_split(corpus: Path) -> None:
    from hashtag.export.bundle_eval import evaluate_bundle, split_photos

    bundle = load_bundle(DEFAULT_BUNDLE)
    photos = split_photos(corpus, bundle.tags, "test")
    assert len(photos.paths) > 2000
    results = evaluate_bundle(DEFAULT_BUNDLE, photos, precision="int8", progress=False)
    stated = card_figures()
    for name in ("vgg16", "inceptionv3", "xception", "ensemble"):
        assert results[name]["mAP"] == pytest.approx(stated[(name, "int8")], abs=0.01), name
