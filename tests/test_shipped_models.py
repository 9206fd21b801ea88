"""The bundle shipped in models/: it loads, tags a real photo, and scores what its model card says."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

from hashtag.export.add_fast import MAX_BUNDLE_MB
from hashtag.models import DEFAULT_BUNDLE
from hashtag.runtime import Tagger, load_bundle
from hashtag.runtime.manifest import manifest_sha256
from shipped_reference import REFERENCE, probabilities, sample_photos

CARD = DEFAULT_BUNDLE / "README.md"
# Rows of the card's runtime table: | model | precision | test mAP | original ten mAP | added tags mAP | ...
CARD_ROW = re.compile(r"^\| (vgg16|inceptionv3|xception|ensemble) \| (int8|fp32|fp16) \| ([0-9.]+) \| ([0-9.]+) \| "
                      r"([0-9.]+) \|", re.M)

pytestmark = pytest.mark.skipif(not (DEFAULT_BUNDLE / "manifest.json").is_file(),
                                reason="no shipped bundle in models/ yet")


def card_figures() -> dict[tuple[str, str], tuple[float, float, float]]:
    """(model, precision) -> test mAP over all tags, the original ten and the added ones, as the card states in
    its test-split results (the fast model's section has tables of the same shape, on other photos)."""
    results = CARD.read_text().split("## Results on the test split", 1)[1].split("\n## ", 1)[0]
    return {(m, p): (float(a), float(b), float(c)) for m, p, a, b, c in CARD_ROW.findall(results)}


# The lead section's corpus test table: | model | original ten mAP | added tags mAP | all tags mAP | precision | recall |
LEAD_ROW = re.compile(r"^\| (ensemble) \| ([0-9.]+) \| ([0-9.]+) \| ([0-9.]+) \| [0-9.]+ \| [0-9.]+ \|$", re.M)


def retuned_ensemble_figures() -> tuple[float, float, float]:
    """The ensemble's test mAP (all, ten, added) with the shipped combination and thresholds, as the card's
    real-photo section states it (the test-split section was scored before the ensemble was retuned)."""
    lead = CARD.read_text().split("<!-- real photos", 1)[1].split("<!-- /real photos -->", 1)[0]
    (_, ten, added, all_), = LEAD_ROW.findall(lead)
    return float(all_), float(ten), float(added)


def test_bundle_is_complete_and_small() -> None:
    bundle = load_bundle(DEFAULT_BUNDLE)
    assert bundle.ensemble_names == ("vgg16", "inceptionv3", "xception")
    assert bundle.fast_name == "efficientnet_lite0"
    assert set(bundle.model(bundle.fast_name).variants) == {"int8", "fp32"}  # the runtime picks per CPU
    assert all("int8" in m.variants for m in bundle.models)
    total = sum(v.path.stat().st_size for m in bundle.models for v in m.variants.values())
    assert total < MAX_BUNDLE_MB * 1e6
    assert {bundle.model(n).input_size for n in bundle.ensemble_names} == {224, 299}
    assert bundle.fast.input_size == 320
    assert CARD.is_file() and ("ensemble", "int8") in card_figures()
    assert "## The fast model (`--fast`)" in CARD.read_text() and len(retuned_ensemble_figures()) == 3


def test_bundle_says_how_its_vocabulary_was_chosen() -> None:
    """The wider vocabulary: the original ten first, the rule's parameters and the partial labels in the manifest."""
    bundle = load_bundle(DEFAULT_BUNDLE)
    vocabulary = bundle.raw["vocabulary"]
    base = vocabulary["base_tags"]
    assert len(base) == 10 and list(bundle.tags[:10]) == base and len(bundle.tags) > 15
    assert vocabulary["min_positives"] >= 100 and not set(bundle.tags) & set(vocabulary["gender_words"])
    assert set(bundle.raw["partial_labels"]["unknown_for"]) <= set(bundle.tags)
    for name in [m.name for m in bundle.models]:
        assert set(bundle.model(name).thresholds) == set(bundle.tags)


def test_tags_a_real_photo() -> None:
    """Grace Hopper's portrait (shipped by matplotlib) is a person, as the README's first command shows."""
    cbook = pytest.importorskip("matplotlib.cbook")
    photo = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    for models in (None, ["efficientnet_lite0"]):  # the ensemble, and the fast model alone
        pred = Tagger(DEFAULT_BUNDLE, provider="cpu", models=models).predict_one(photo)
        assert "#person" in pred.hashtags or "#human" in pred.hashtags
        assert "#sea" not in pred.hashtags and "#animal" not in pred.hashtags


# INT8 kernels round differently across instruction sets (VNNI, AVX2, NEON): up to 0.061 seen on one
# xception output between x86 and ARM (benchmarks/results/arm64-emulated-2026-11-30); a retrained or
# swapped bundle moves them by far more.
MAX_DIFF, MEAN_DIFF = 0.1, 0.01
RESCORE = "HASHTAG_CARD_RESCORE"


def test_the_bundle_reproduces_its_reference_probabilities(corpus: Path) -> None:
    """A fixed sample of the test split scores as when the bundle shipped (tests/shipped_reference.py)."""
    reference = json.loads(REFERENCE.read_text())
    assert reference["bundle_manifest_sha256"] == manifest_sha256(DEFAULT_BUNDLE), \
        "models/ changed: write the reference again with python tests/shipped_reference.py ../shared/corpus"
    assert reference["tags"] == list(load_bundle(DEFAULT_BUNDLE).tags)
    photos = sample_photos(corpus)
    assert [p.name for p in photos] == list(reference["probabilities"])
    got = probabilities(photos)
    for name in ("vgg16", "inceptionv3", "xception", "efficientnet_lite0"):
        diff = np.abs(np.array([got[p][name] for p in got]) - np.array([reference["probabilities"][p][name] for p in got]))
        assert diff.max() <= MAX_DIFF and diff.mean() <= MEAN_DIFF, (name, diff.max(), diff.mean())


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get(RESCORE) != "1",
                    reason=f"re-scores all 2,547 test photos (11 min on 2 AVX2 cores): opt in with {RESCORE}=1")
def test_card_matches_the_bundle_on_the_corpus_test_split(corpus: Path) -> None:
    from hashtag.export.bundle_eval import evaluate_bundle, split_photos

    bundle = load_bundle(DEFAULT_BUNDLE)
    photos = split_photos(corpus, bundle.tags, "test")
    assert len(photos.paths) > 2000
    results = evaluate_bundle(DEFAULT_BUNDLE, photos, precision="int8", progress=False)
    stated = {**card_figures(), ("ensemble", "int8"): retuned_ensemble_figures()}
    for name in ("vgg16", "inceptionv3", "xception", "ensemble"):
        got = (results[name]["mAP"], results[name]["mAP_base"], results[name]["mAP_added"])
        assert got == pytest.approx(stated[(name, "int8")], abs=0.01), name
