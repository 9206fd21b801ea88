"""Scoring a bundle through the runtime on a split of photo tables (what the model card reports)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from click.testing import CliRunner

from hashtag.export.bundle_eval import evaluate_bundle, main, split_photos
from hashtag.runtime import Tagger
from hashtag.runtime.images import load_image
from hashtag.train.metrics import mean_average_precision
from hashtag.train.splits import split_of
from tinybundle import TAGS, make_photo


def _tables(root: Path, n: int = 60) -> dict[str, set[str]]:
    """Photos whose tags follow a rule; returns photo id -> tags, for all splits."""
    ids = [f"p{i:03d}" for i in range(n)]
    tags_of = {pid: {TAGS[i % len(TAGS)], TAGS[(i // 2) % len(TAGS)]} for i, pid in enumerate(ids)}
    photos = ["photo_id\tphoto_image_url"]
    keywords = ["photo_id\tkeyword\tai_service_1_confidence"]
    for i, pid in enumerate(ids):
        make_photo(root / "images" / f"{pid}.jpg", size=(48, 40), seed=i)
        photos.append(f"{pid}\timages/{pid}.jpg")
        keywords += [f"{pid}\t{t.upper()}\t100" for t in tags_of[pid]] + [f"{pid}\tsea\t50"]
    (root / "photos.tsv000").write_text("\n".join(photos) + "\n")
    (root / "keywords.tsv000").write_text("\n".join(keywords) + "\n")
    return tags_of


def test_split_photos_and_metrics_match_a_direct_computation(tmp_path: Path, tiny_bundle: Path) -> None:
    tags_of = _tables(tmp_path)
    photos = split_photos(tmp_path, TAGS, "test")
    expected_ids = sorted(pid for pid in tags_of if split_of(pid) == "test")
    assert sorted(p.stem for p in photos.paths) == expected_ids and expected_ids
    for path, row in zip(photos.paths, photos.labels):
        assert {t for t, v in zip(TAGS, row) if v} == tags_of[path.stem]  # the 50-confidence 'sea' is dropped
    results = evaluate_bundle(tiny_bundle, photos, precision="fp32", batch_size=4, progress=False)
    tagger = Tagger(tiny_bundle, provider="cpu", precision="fp32")
    probs = tagger.probabilities([load_image(p) for p in photos.paths])
    for name, p in probs.items():
        assert results[name]["mAP"] == pytest.approx(mean_average_precision(photos.labels, p), abs=1e-9)
    ensemble = np.mean(list(probs.values()), axis=0)
    assert results["ensemble"]["mAP"] == pytest.approx(mean_average_precision(photos.labels, ensemble), abs=1e-9)
    assert results["precision"] == {"vgg16": "fp32", "inceptionv3": "fp32", "xception": "fp32"}


def test_tag_mismatch_is_refused(tmp_path: Path, tiny_bundle: Path) -> None:
    _tables(tmp_path, 10)
    photos = split_photos(tmp_path, ("animal", "nature"), "train")
    with pytest.raises(ValueError, match="differ"):
        evaluate_bundle(tiny_bundle, photos, progress=False)


def test_a_wider_vocabulary_is_scored_as_original_and_added_tags(tmp_path: Path, tiny_bundle: Path) -> None:
    import json
    import shutil

    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    manifest = json.loads((bundle / "manifest.json").read_text())
    base = list(TAGS[:2])
    manifest["vocabulary"] = {"mode": "rule", "base_tags": base}
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    _tables(tmp_path / "tables")
    photos = split_photos(tmp_path / "tables", TAGS, "test")
    results = evaluate_bundle(bundle, photos, precision="fp32", batch_size=4, progress=False)
    probs = Tagger(bundle, provider="cpu", precision="fp32").probabilities([load_image(p) for p in photos.paths])
    cols = [TAGS.index(t) for t in base]
    rest = [i for i in range(len(TAGS)) if i not in cols]
    for name, p in probs.items():
        assert results[name]["mAP_base"] == pytest.approx(
            mean_average_precision(photos.labels[:, cols], p[:, cols]), abs=1e-9)
        assert results[name]["mAP_added"] == pytest.approx(
            mean_average_precision(photos.labels[:, rest], p[:, rest]), abs=1e-9)
    plain = evaluate_bundle(tiny_bundle, photos, precision="fp32", batch_size=4, progress=False)
    assert "mAP_base" not in plain["ensemble"]


def test_real_photo_halves_and_a_subset_of_models(tmp_path: Path) -> None:
    """--split tune/report reads everyday-photos style tables; --models scores those models (no ensemble
    unless all its members are there)."""
    from hashtag.train.real_photos import real_split_of
    from tinybundle import DEFAULT_MODELS, make_bundle
    from trainkit import TAGS as TINY_TAGS
    from trainkit import write_tables

    tables = write_tables(tmp_path / "everyday", range(200, 230))
    bundle = make_bundle(tmp_path / "bundle", DEFAULT_MODELS, tags=TINY_TAGS)
    report = split_photos(tables, TINY_TAGS, "report")
    expected = sorted(f"mir{s:05d}.jpg" for s in range(200, 230) if real_split_of(f"mir{s:05d}") == "report")
    assert sorted(p.name for p in report.paths) == expected and report.labels.shape == (len(expected), 3)
    out = tmp_path / "report.json"
    result = CliRunner().invoke(main, ["--bundle", str(bundle), "--tables", str(tables), "--split", "report",
                                       "--models", "vgg16", "--json", str(out)])
    assert result.exit_code == 0, result.output
    scored = json.loads(out.read_text())
    assert set(scored) == {"vgg16", "precision"} and scored["vgg16"]["n_images"] == len(expected)
    assert "micro_precision" in scored["vgg16"] and "hashtags precision" in result.output

    # a tag no photo here carries has no AP: the original/added split of a wider vocabulary still scores
    keywords = tables / "keywords.tsv000"
    keywords.write_text("".join(line for line in keywords.read_text().splitlines(keepends=True)
                                if "\tvery_blue\t" not in line))
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["vocabulary"] = {"base_tags": ["blue", "very_blue"]}
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    results = evaluate_bundle(bundle, split_photos(tables, TINY_TAGS, "report"), progress=False)
    assert results["ensemble"]["per_tag"]["very_blue"]["ap"] is None
    assert results["ensemble"]["mAP_base"] == pytest.approx(results["ensemble"]["per_tag"]["blue"]["ap"])
    assert results["ensemble"]["mAP_added"] == pytest.approx(results["ensemble"]["per_tag"]["odd"]["ap"])
