"""The builder on the real offline corpus (../shared/corpus); skipped when it is absent.

Known answers come from the corpus README: keyword counts at confidence >= 99.
"""
from __future__ import annotations

import csv
import itertools
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from hashtag.runtime.cli import main
from hashtag.train.dataset import load_dataset
from hashtag.train.splits import SPLITS, split_of
from hashtag.train.table_rows import KeywordFilter
from hashtag.train.tables import select
from hashtag.train.vocabulary import DEFAULT_TAGS, VocabularyRule

pytestmark = pytest.mark.corpus

README_COUNTS = {"human": 5536, "person": 5536, "people": 5455, "outdoors": 4512, "nature": 3492, "female": 2753,
                 "portrait": 2664, "male": 2500, "plant": 1465, "tree": 936, "water": 753, "animal": 684, "sea": 648,
                 "mountain": 500}


# What the vocabulary rule gives on the corpus at its defaults (checked by hand against the README's counts).
RULE_TAGS = (*DEFAULT_TAGS, "architecture", "bird", "car", "city", "clouds", "dog", "flower", "forest", "glacier",
             "night", "portrait")


def test_vocabulary_rule_on_the_corpus(corpus: Path) -> None:
    result = CliRunner().invoke(main, ["data", "vocab", "--tables", str(corpus)])
    assert result.exit_code == 0, result.output
    sel = select(corpus, KeywordFilter(99), rule=VocabularyRule())
    assert sel.tags == RULE_TAGS
    dropped = {d["keyword"]: (d["reason"], d.get("synonym_of")) for d in sel.vocabulary["dropped"]}
    assert dropped == {"people": ("synonym", "human"), "female": ("gender", None), "male": ("gender", None),
                       "sky": ("synonym", "clouds"), "building": ("synonym", "architecture"),
                       "landscape": ("synonym", "mountain"), "ice": ("synonym", "glacier"),
                       "road": ("synonym", "city"), "street": ("synonym", "city")}
    assert [b["keyword"] for b in sel.vocabulary["below_min_positives"]["largest"]] == ["river", "baby"]
    # Flickr photos were never labelled with scenes, the scene photos never with Flickr's concepts.
    assert sel.unknown_for()["glacier"] == ["mirflickr"] and sel.unknown_for()["dog"] == ["intel-scenes"]
    assert sel.unknown_for()["sea"] == []
    counts = sel.split_counts(sel.photos)
    for tag in RULE_TAGS:
        line = next(line.split() for line in result.output.splitlines() if line.startswith(f"{tag} "))
        assert line[1:4] == [str(counts["positives"][s][tag]) for s in SPLITS]
    assert sum(counts["positives"][s]["glacier"] for s in SPLITS) == 500
    assert counts["unknown"]["train"]["glacier"] == sum(
        1 for p in sel.photos if p.photo_source == "mirflickr" and split_of(p.photo_id) == "train")


def test_top_n_matches_the_readme(corpus: Path) -> None:
    sel = select(corpus, KeywordFilter(99), top_n=10)
    top10 = sorted(README_COUNTS, key=lambda k: (-README_COUNTS[k], k))[:10]
    assert sel.tags == tuple(sorted(top10))
    assert len(sel.photos) == 12742 and sel.stats.duplicate_photo_rows == 0
    for tag in sel.tags:
        assert sum(tag in tags for tags in sel.tags_of.values()) == README_COUNTS[tag]


def test_subset_build_matches_the_keyword_table(corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "ds"
    result = CliRunner().invoke(main, ["data", "build", "--tables", str(corpus), "--out", str(out),
                                       "--limit", "600", "--workers", "4"])
    assert result.exit_code == 0, result.output
    ds = load_dataset(out)
    assert len(ds.records) == 600 and ds.tags == RULE_TAGS
    with (corpus / "photos.tsv000").open(newline="") as fh:
        first = list(itertools.islice(csv.DictReader(fh, delimiter="\t"), 600))
    assert [r.photo_id for r in ds.records] == [row["photo_id"] for row in first]
    source = {row["photo_id"]: row["photo_source"] for row in first}
    expected: dict[str, set[str]] = {}
    with (corpus / "keywords.tsv000").open(newline="") as fh:
        for row in csv.DictReader(fh, delimiter="\t"):
            if row["keyword"] in ds.tags and float(row["ai_service_1_confidence"] or 0) >= 99:
                expected.setdefault(row["photo_id"], set()).add(row["keyword"])
    unknown_for = json.loads((out / "dataset.json").read_text())["partial_labels"]["unknown_for"]
    for rec in ds.records:
        assert {t for t, v in zip(ds.tags, rec.targets, strict=True) if v == 1} == expected.get(rec.photo_id, set())
        unknown = {t for t, v in zip(ds.tags, rec.targets, strict=True) if v == -1}
        assert unknown == {t for t, sources in unknown_for.items() if source[rec.photo_id] in sources}
    assert {source[r.photo_id] for r in ds.records} == {"mirflickr"}  # the first rows: Flickr, never scenes
    assert {t for t, v in zip(ds.tags, ds.records[0].targets, strict=True) if v == -1} == {
        "mountain", "architecture", "city", "forest", "glacier"}
    # 128-150 px JPEGs are never upscaled; plain RGB ones are stored byte for byte.
    for rec in ds.records[:50]:
        src = corpus / "images" / f"{rec.photo_id}.jpg"
        with Image.open(src) as a, Image.open(rec.path) as b:
            assert b.size == a.size and b.mode == "RGB"
            if a.mode == "RGB":
                assert rec.path.read_bytes() == src.read_bytes()


@pytest.mark.slow
def test_full_build_counts_match_the_readme(corpus: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["data", "build", "--tables", str(corpus), "--out", str(tmp_path / "ds")])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "ds" / "dataset.json").read_text())["summary"]
    assert summary["stored"] == 12742 and summary["failed"] == 0
    for tag in DEFAULT_TAGS:
        assert sum(summary["positives"][s][tag] for s in SPLITS) == README_COUNTS[tag]
    sel = select(corpus, KeywordFilter(99), rule=VocabularyRule())
    assert summary["positives"] == sel.split_counts(sel.photos)["positives"]  # every photo stored
    assert abs(summary["splits"]["test"] / 12742 - 0.2) < 0.015
