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
from hashtag.train.splits import SPLITS
from hashtag.train.tables import DEFAULT_TAGS, KeywordFilter, select

pytestmark = pytest.mark.corpus

README_COUNTS = {"human": 5536, "person": 5536, "people": 5455, "outdoors": 4512, "nature": 3492, "female": 2753,
                 "portrait": 2664, "male": 2500, "plant": 1465, "tree": 936, "water": 753, "animal": 684, "sea": 648,
                 "mountain": 500}


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
    assert len(ds.records) == 600
    with (corpus / "photos.tsv000").open(newline="") as fh:
        first = [row["photo_id"] for row in itertools.islice(csv.DictReader(fh, delimiter="\t"), 600)]
    assert [r.photo_id for r in ds.records] == first
    expected: dict[str, set[str]] = {}
    with (corpus / "keywords.tsv000").open(newline="") as fh:
        for row in csv.DictReader(fh, delimiter="\t"):
            if row["keyword"] in DEFAULT_TAGS and float(row["ai_service_1_confidence"] or 0) >= 99:
                expected.setdefault(row["photo_id"], set()).add(row["keyword"])
    for rec in ds.records:
        assert {t for t, v in zip(ds.tags, rec.labels, strict=True) if v} == expected.get(rec.photo_id, set())
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
    assert abs(summary["splits"]["test"] / 12742 - 0.2) < 0.015
