"""Unsplash Lite table parsing: shards, CSV, missing columns, empty confidences, duplicates, odd keywords,
the confidence filter and top-N vocabulary on crafted tables with known answers."""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Sequence

import pytest

from hashtag.train.table_rows import KeywordFilter, TableError, TableStats, read_keywords, read_photos, table_files
from hashtag.train.tables import select, top_keywords
from hashtag.train.vocabulary import DEFAULT_TAGS, normalize_keyword

PHOTO_HEADER = ("photo_id", "photo_url", "photo_image_url", "photo_width", "photo_height", "photo_description")
KEYWORD_HEADER = ("photo_id", "keyword", "ai_service_1_confidence", "ai_service_2_confidence", "suggested_by_user")


def write_table(path: Path, header: Sequence[str], rows: Sequence[Sequence[object]]) -> Path:
    delimiter = "," if ".csv" in path.name else "\t"
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, delimiter=delimiter, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    return path


def photo_row(pid: str, w: int = 640, h: int = 480, desc: str = "") -> tuple[object, ...]:
    return (pid, f"https://unsplash.com/photos/{pid}", f"images/{pid}.jpg", w, h, desc)


# Known answers at min confidence 99 (ai 1 only), counted once per photo:
#   sea: p1, p2, p3 (3)   tree: p1, p2 (2)   dog: p3, p4 (2)   cat: p4 (1)
#   dropped: p1 'car' 98.99, p2 'mountain' empty ai1 (ai2 99.5), p3 'sky' user 't' only, p9 not in photos.
KEYWORDS = [
    ("p1", "sea", "100", "", "f"),
    ("p1", " Sea ", "99.2", "", "f"),  # duplicate after normalisation
    ("p1", "tree", "99", "", "f"),
    ("p1", "car", "98.99", "", "f"),
    ("p2", "SEA", "99.9", "", "f"),
    ("p2", "Tree", "99.5", "", "f"),
    ("p2", "mountain", "", "99.5", "f"),
    ("p3", "sea", "100.000000", "", "f"),
    ("p3", "dog", "99.1", "", "f"),
    ("p3", "sky", "40", "", "t"),
    ("p4", "Dog", "100", "", "f"),
    ("p4", "dog", "100", "", "f"),  # exact duplicate row
    ("p4", "cat", "99.7", "", "f"),
    ("p9", "sea", "100", "", "f"),  # photo missing from the photos table
]


@pytest.fixture()
def tables(tmp_path: Path) -> Path:
    write_table(tmp_path / "photos.tsv000", PHOTO_HEADER, [photo_row(p) for p in ("p1", "p2", "p3")])
    write_table(tmp_path / "photos.tsv001", PHOTO_HEADER, [photo_row("p4"), photo_row("p2"), photo_row("p5")])
    write_table(tmp_path / "keywords.tsv000", KEYWORD_HEADER, KEYWORDS[:7])
    write_table(tmp_path / "keywords.tsv001", KEYWORD_HEADER, KEYWORDS[7:])
    return tmp_path


def test_normalize_keyword() -> None:
    assert normalize_keyword("  Sea   Water\t") == "sea water"
    assert normalize_keyword("OUTDOORS") == "outdoors"
    assert normalize_keyword("   ") == ""


def test_shards_are_read_in_order_with_duplicates_dropped(tables: Path) -> None:
    (tables / "photos.tsv.bak").write_text("not a shard")
    assert [p.name for p in table_files(tables, "photos")] == ["photos.tsv000", "photos.tsv001"]
    stats = TableStats()
    photos = read_photos(tables, stats)
    assert [p.photo_id for p in photos] == ["p1", "p2", "p3", "p4", "p5"]
    assert (photos[0].source, photos[0].width, photos[0].height) == ("images/p1.jpg", 640, 480)
    assert stats.photo_rows == 6 and stats.duplicate_photo_rows == 1


def test_shard_numbers_sort_numerically(tmp_path: Path) -> None:
    for shard in ("010", "002", "001"):
        write_table(tmp_path / f"photos.tsv{shard}", PHOTO_HEADER, [photo_row(f"x{shard}")])
    assert [p.photo_id for p in read_photos(tmp_path, TableStats())] == ["x001", "x002", "x010"]


def test_csv_variant_with_quoted_fields(tmp_path: Path) -> None:
    write_table(tmp_path / "photos.csv", PHOTO_HEADER,
                [photo_row("c1", desc='a "quoted", multi\nline description'), photo_row("c2")])
    write_table(tmp_path / "keywords.csv000", KEYWORD_HEADER, [("c1", "Sea", "99.5", "", "f")])
    sel = select(tmp_path, KeywordFilter(), tags=["sea"])
    assert [p.photo_id for p in sel.photos] == ["c1", "c2"]
    assert sel.labels("c1") == [1] and sel.labels("c2") == [0]


def test_both_formats_or_no_table_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(TableError, match="no photos.tsv"):
        table_files(tmp_path, "photos")
    write_table(tmp_path / "photos.tsv000", PHOTO_HEADER, [])
    write_table(tmp_path / "photos.csv000", PHOTO_HEADER, [])
    with pytest.raises(TableError, match="both photos.tsv"):
        table_files(tmp_path, "photos")
    with pytest.raises(TableError, match="does not exist"):
        table_files(tmp_path / "nope", "photos")


def test_missing_column_names_the_shard_and_column(tables: Path) -> None:
    write_table(tables / "keywords.tsv002", ("photo_id", "keyword", "suggested_by_user"), [("p1", "sea", "t")])
    with pytest.raises(TableError, match=r"keywords\.tsv002: missing column\(s\) ai_service_1_confidence"):
        read_keywords(tables, KeywordFilter(), TableStats())


def test_photos_without_image_column_is_an_error(tmp_path: Path) -> None:
    write_table(tmp_path / "photos.tsv000", ("photo_id", "photo_url"), [("a", "u")])
    with pytest.raises(TableError, match="missing column.*photo_image_url"):
        read_photos(tmp_path, TableStats())


def test_optional_evidence_columns_are_required_only_when_asked(tmp_path: Path) -> None:
    write_table(tmp_path / "keywords.tsv000", KEYWORD_HEADER[:3], [("p1", "sea", "99")])
    assert read_keywords(tmp_path, KeywordFilter(), TableStats()) == {"p1": {"sea"}}
    with pytest.raises(TableError, match="ai_service_2_confidence"):
        read_keywords(tmp_path, KeywordFilter(accept_ai2=True), TableStats())
    with pytest.raises(TableError, match="suggested_by_user"):
        read_keywords(tmp_path, KeywordFilter(accept_user=True), TableStats())


def test_confidence_filter_known_answers(tables: Path) -> None:
    stats = TableStats()
    kept = read_keywords(tables, KeywordFilter(99), stats)
    assert kept == {"p1": {"sea", "tree"}, "p2": {"sea", "tree"}, "p3": {"sea", "dog"}, "p4": {"dog", "cat"},
                    "p9": {"sea"}}
    assert stats.keyword_rows == len(KEYWORDS)
    assert read_keywords(tables, KeywordFilter(98.9), TableStats())["p1"] == {"sea", "tree", "car"}
    assert read_keywords(tables, KeywordFilter(99, accept_ai2=True), TableStats())["p2"] == {"sea", "tree", "mountain"}
    assert read_keywords(tables, KeywordFilter(99, accept_user=True), TableStats())["p3"] == {"sea", "dog", "sky"}
    # At 99.6 only 100, 99.9 and 99.7 survive.
    assert read_keywords(tables, KeywordFilter(99.6), TableStats()) == {
        "p1": {"sea"}, "p2": {"sea"}, "p3": {"sea"}, "p4": {"dog", "cat"}, "p9": {"sea"}}


def test_empty_or_garbage_confidence_never_passes() -> None:
    anything = KeywordFilter(0)
    assert anything.passes("0")
    assert not anything.passes("")
    assert not anything.passes("  ")
    assert not anything.passes("n/a")
    assert KeywordFilter(99, accept_ai2=True).passes("", "99")
    assert not KeywordFilter(99, accept_ai2=True).passes("", "")
    assert KeywordFilter(99, accept_user=True).passes("", "", "t")
    assert not KeywordFilter(99, accept_user=True).passes("", "", "f")
    assert not KeywordFilter(99).passes("", "100", "t")


def test_filter_validates_its_range() -> None:
    with pytest.raises(ValueError, match="0..100"):
        KeywordFilter(101)


def test_top_n_counts_each_photo_once_and_breaks_ties_alphabetically(tables: Path) -> None:
    kept = read_keywords(tables, KeywordFilter(), TableStats())
    assert top_keywords(kept, 10) == [("sea", 4), ("dog", 2), ("tree", 2), ("cat", 1)]
    assert top_keywords(kept, 2, {"p1", "p2", "p3", "p4"}) == [("sea", 3), ("dog", 2)]
    sel = select(tables, KeywordFilter(), top_n=3)
    assert sel.tags == ("dog", "sea", "tree")  # p9 is not a photo, so sea counts 3; cat (1) is out
    assert sel.labels("p4") == [1, 0, 0]
    assert sel.labels("p5") == [0, 0, 0]


def test_select_fixed_tags_keeps_order_and_normalises(tables: Path) -> None:
    sel = select(tables, KeywordFilter(), tags=[" Tree", "sea", "mountain"])
    assert sel.tags == ("tree", "sea", "mountain")
    assert [sel.labels(p.photo_id) for p in sel.photos] == [[1, 1, 0], [1, 1, 0], [0, 1, 0], [0, 0, 0], [0, 0, 0]]
    assert sel.stats.keyword_rows_kept == 7  # rows: sea x5 (incl. a duplicate and p9), tree x2
    assert select(tables, KeywordFilter(accept_ai2=True), tags=["mountain"]).labels("p2") == [1]


def test_default_vocabulary_is_the_original_ten(tables: Path) -> None:
    assert select(tables, KeywordFilter()).tags == DEFAULT_TAGS
    assert DEFAULT_TAGS == ("animal", "human", "mountain", "nature", "outdoors", "person", "plant", "sea", "tree",
                            "water")


def test_bad_rows_are_counted_not_fatal(tmp_path: Path) -> None:
    (tmp_path / "photos.tsv000").write_text(
        "\t".join(PHOTO_HEADER) + "\n"
        "ok1\tu\timages/ok1.jpg\t10\t10\t\n"
        "short\n"
        "../evil\tu\timages/x.jpg\t10\t10\t\n"
        "noimg\tu\t\t10\t10\t\n"
        "ok2\tu\timages/ok2.jpg\tnan\t\t\n")
    stats = TableStats()
    photos = read_photos(tmp_path, stats)
    assert [(p.photo_id, p.width, p.height) for p in photos] == [("ok1", 10, 10), ("ok2", None, None)]
    assert (stats.malformed_rows, stats.invalid_photo_ids, stats.photos_without_image) == (1, 1, 1)


def test_top_n_without_any_passing_keyword_is_an_error(tmp_path: Path) -> None:
    write_table(tmp_path / "photos.tsv000", PHOTO_HEADER, [photo_row("p1")])
    write_table(tmp_path / "keywords.tsv000", KEYWORD_HEADER, [("p1", "sea", "98", "", "t")])
    with pytest.raises(TableError, match="nothing to choose"):
        select(tmp_path, KeywordFilter(99), top_n=3)
    assert select(tmp_path, KeywordFilter(99, accept_user=True), top_n=3).tags == ("sea",)


def test_long_fields_are_read_without_changing_csv_for_the_process(tmp_path: Path) -> None:
    default = csv.field_size_limit()
    long_description = "a quoted description\n" * (default // 10)  # well over csv's default field limit
    write_table(tmp_path / "photos.tsv", PHOTO_HEADER, [photo_row("p1", desc=long_description), photo_row("p2")])
    photos = read_photos(tmp_path, TableStats())
    assert [p.photo_id for p in photos] == ["p1", "p2"]
    assert csv.field_size_limit() == default
