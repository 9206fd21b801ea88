"""The vocabulary rule and partial labels, on small tables with known answers: two photo sources that label
different concepts, a gendered keyword, a synonym pair, a near-synonym, a keyword below the minimum."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from hashtag.runtime.cli import main
from hashtag.train.dataset import DatasetError, load_dataset
from hashtag.train.errors import SettingsError
from hashtag.train.splits import split_of
from hashtag.train.table_rows import KeywordFilter, TableError
from hashtag.train.tables import select
from hashtag.train.vocabulary import (
    DEFAULT_TAGS,
    GENDER_WORDS,
    VocabularyRule,
    check_asked_tags,
    choose_vocabulary,
    jaccard,
)
from test_data_download import image_bytes
from test_data_tables import KEYWORD_HEADER, PHOTO_HEADER, write_table

N = 48  # s00..s31 from "flickr", s32..s47 from "scenes"
TRAIN = [i for i in range(N) if split_of(f"s{i:02d}") == "train"]


def keywords_of(i: int) -> set[str]:
    """Flickr labels animals, people and skies; the scene source labels streets and buildings; both label sea."""
    words: set[str] = set()
    if i < 32:
        words |= {"dog", "animal"} if i % 2 == 0 else {"animal"} if i % 4 == 3 else set()  # dog is not animal
        words |= {"woman", "young woman"} if i % 3 == 0 else set()
        words |= {"clouds", "sky"} if i % 4 == 1 else set()  # the same photos: synonyms
        words |= {"sea", "outdoors"} if i % 4 == 3 else set()
        words |= {"rare"} if i == 0 else set()
    else:
        words |= {"street", "outdoors"} | ({"road"} if i != 32 else set()) if i % 2 == 0 else {"building", "outdoors"}
        words |= {"sea"} if i % 4 == 1 else set()
    return words


def train_count(keyword: str) -> int:
    return sum(keyword in keywords_of(i) for i in TRAIN)


def make_tables(root: Path, with_source: bool = True) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "images").mkdir(exist_ok=True)
    photos, keywords = [], []
    for i in range(N):
        pid = f"s{i:02d}"
        (root / "images" / f"{pid}.jpg").write_bytes(image_bytes((40, 30), seed=i))
        row = (pid, "", f"images/{pid}.jpg", 40, 30, "")
        photos.append((*row, "flickr" if i < 32 else "scenes") if with_source else row)
        keywords += [(pid, w, "100", "", "f") for w in sorted(keywords_of(i))]
        keywords.append((pid, "mountain", "80", "", "f"))  # below the confidence cut: no evidence of anything
    write_table(root / "photos.tsv000", (*PHOTO_HEADER, "photo_source") if with_source else PHOTO_HEADER, photos)
    write_table(root / "keywords.tsv000", KEYWORD_HEADER, keywords)
    return root


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["data", *args])
    return result.exit_code, result.output


ADDED = ("building", "clouds", "dog", "road", "street")


def test_the_hand_built_tables_are_what_the_tests_assume() -> None:
    assert (train_count("dog"), train_count("woman"), train_count("street"), train_count("road"),
            train_count("building"), train_count("clouds"), train_count("rare")) == (16, 9, 8, 7, 7, 6, 1)


# ---------------------------------------------------------------- the rule on keyword sets

def test_rule_keeps_the_ten_adds_frequent_keywords_drops_gender_and_synonyms(tmp_path: Path) -> None:
    sel = select(make_tables(tmp_path), KeywordFilter(), rule=VocabularyRule(min_positives=3))
    assert sel.tags == (*DEFAULT_TAGS, *ADDED)  # the ten first (even those no photo carries), then alphabetical
    record = sel.vocabulary
    assert record["mode"] == "rule" and record["min_positives"] == 3 and record["synonym_jaccard"] == 0.95
    assert record["dropped"] == [
        {"keyword": "woman", "train_positives": 9, "reason": "gender"},
        {"keyword": "young woman", "train_positives": 9, "reason": "gender"},  # any gendered word denies
        {"keyword": "sky", "train_positives": 6, "reason": "synonym", "synonym_of": "clouds", "jaccard": 1.0},
    ]  # sky ties clouds at 6: alphabetical order keeps clouds
    assert record["below_min_positives"] == {"count": 1, "largest": [{"keyword": "rare", "train_positives": 1}]}
    # road is street minus one photo: Jaccard 7/8 stays under 0.95, and is a synonym at 0.85
    looser = select(tmp_path, KeywordFilter(), rule=VocabularyRule(min_positives=3, synonym_jaccard=0.85))
    assert "road" not in looser.tags
    assert looser.vocabulary["dropped"][2] == {"keyword": "road", "train_positives": 7, "reason": "synonym",
                                               "synonym_of": "street", "jaccard": 0.875}
    # --deny adds to the list; min_positives counts the training split only
    denied = select(tmp_path, KeywordFilter(), rule=VocabularyRule(min_positives=8, deny=("Street",)))
    assert denied.tags == (*DEFAULT_TAGS, "dog")
    assert {"keyword": "street", "train_positives": 8, "reason": "deny"} in denied.vocabulary["dropped"]
    assert denied.vocabulary["deny"] == ["street"]


def test_originals_always_stay_even_as_each_others_synonyms() -> None:
    photos = {f"p{i}": {"person", "human", "people"} for i in range(5)}
    vocab = choose_vocabulary(photos, set(photos), VocabularyRule(min_positives=2))
    assert vocab.tags == DEFAULT_TAGS
    assert [(d.keyword, d.synonym_of, d.jaccard) for d in vocab.dropped] == [("people", "human", 1.0)]
    assert jaccard({"a", "b"}, {"b", "c"}) == pytest.approx(1 / 3) and jaccard(set(), set()) == 0.0


def test_rule_settings_are_checked() -> None:
    with pytest.raises(SettingsError, match="cannot deny sea, tree: the original ten tags always stay"):
        VocabularyRule(deny=("sea", "Tree"))
    with pytest.raises(SettingsError, match="min_positives"):
        VocabularyRule(min_positives=0)
    with pytest.raises(SettingsError, match="synonym_jaccard"):
        VocabularyRule(synonym_jaccard=0)
    assert {"female", "male", "man", "woman", "boy", "girl"} <= GENDER_WORDS
    assert VocabularyRule().denial("businessman") == "gender" and VocabularyRule().denial("sea") is None


def test_asked_tags_must_pass_the_rule(tmp_path: Path) -> None:
    tables = make_tables(tmp_path / "t")
    with pytest.raises(SettingsError, match=r"too few confident training photos for rare \(1\), sky \(6\): "
                                            r"each tag needs at least 7"):
        select(tables, KeywordFilter(), tags=["dog", "rare", "sky"], rule=VocabularyRule(min_positives=7))
    with pytest.raises(SettingsError, match="cannot make a tag of young woman"):
        check_asked_tags(["dog", "young woman"], {"dog": 16, "young woman": 9}, VocabularyRule(min_positives=3))
    # Without a rule (scoring a bundle on its own tags) asked tags are taken as given.
    assert select(tables, KeywordFilter(), tags=["rare"]).tags == ("rare",)
    code, output = run("build", "--tables", str(tables), "--out", str(tmp_path / "o"), "--tags", "dog,rare",
                       "--min-positives", "3")
    assert code == 1 and "rare (1)" in output and "dog" not in output.split("for ")[1]
    assert not (tmp_path / "o").exists()  # refused before any work


# ---------------------------------------------------------------- partial labels

def test_a_missing_keyword_is_unknown_where_the_source_never_uses_it(tmp_path: Path) -> None:
    sel = select(make_tables(tmp_path), KeywordFilter(), rule=VocabularyRule(min_positives=3))
    unknown = sel.unknown_for()
    assert unknown["dog"] == unknown["animal"] == unknown["clouds"] == ["scenes"]
    assert unknown["street"] == unknown["building"] == ["flickr"]
    assert unknown["sea"] == unknown["outdoors"] == []
    assert unknown["human"] == ["flickr", "scenes"]  # nobody labels it: unknown everywhere
    row = dict(zip(sel.tags, sel.labels("s01"), strict=True))  # flickr, clouds
    assert (row["clouds"], row["dog"], row["sea"], row["street"], row["human"]) == (1, 0, 0, -1, -1)
    row = dict(zip(sel.tags, sel.labels("s33"), strict=True))  # scenes, building and sea
    assert (row["building"], row["sea"], row["street"], row["dog"], row["clouds"]) == (1, 1, 0, -1, -1)


def test_build_writes_unknown_labels_and_loads_them(tmp_path: Path) -> None:
    tables = make_tables(tmp_path / "tables")
    out = tmp_path / "ds"
    code, output = run("build", "--tables", str(tables), "--out", str(out), "--min-positives", "3")
    assert code == 0, output
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["version"] == 2 and meta["tags"] == [*DEFAULT_TAGS, *ADDED]
    assert meta["vocabulary"]["dropped"][2]["keyword"] == "sky"
    assert meta["partial_labels"]["source_column"] == "photo_source"
    assert meta["partial_labels"]["sources"] == ["flickr", "scenes"]
    unknown_for = meta["partial_labels"]["unknown_for"]
    assert unknown_for["dog"] == ["scenes"] and "sea" not in unknown_for
    s = meta["summary"]
    flickr_train = sum(i < 32 for i in TRAIN)
    assert s["unknown"]["train"]["street"] == flickr_train and s["unknown"]["train"]["dog"] == len(TRAIN) - flickr_train
    assert s["positives"]["train"]["dog"] == 16 and s["unknown"]["train"]["sea"] == 0

    header, *rows = (out / "labels.tsv").read_text().splitlines()
    columns = header.split("\t")
    s33 = dict(zip(columns, next(r for r in rows if r.startswith("s33\t")).split("\t"), strict=True))
    assert (s33["building"], s33["street"], s33["dog"]) == ("1", "0", "-1")

    ds = load_dataset(out)
    rec = next(r for r in ds.records if r.photo_id == "s33")
    assert rec.targets[ds.tags.index("dog")] == -1 and rec.labels[ds.tags.index("dog")] == 0
    train = ds.targets("train")
    assert train.dtype == np.int8 and (train[:, ds.tags.index("street")] == -1).sum() == flickr_train
    assert ds.labels("train").dtype == np.uint8 and ds.labels("train").min() == 0

    for tag, counts in (("dog", ("16", "0", "0")), ("building", ("7", "0", "1"))):
        line = next(line.split() for line in output.splitlines() if line.startswith(f"{tag} "))
        assert tuple(line[1:4]) == counts
    assert "sky" in output and "synonym of clouds" in output and "names or implies a person's gender" in output


def test_tables_without_a_source_column_know_every_label(tmp_path: Path) -> None:
    tables = make_tables(tmp_path / "tables", with_source=False)
    sel = select(tables, KeywordFilter(), rule=VocabularyRule(min_positives=3))
    assert sel.tags == (*DEFAULT_TAGS, *ADDED)
    assert all(-1 not in sel.labels(p.photo_id) for p in sel.photos)
    code, output = run("build", "--tables", str(tables), "--out", str(tmp_path / "ds"), "--min-positives", "3")
    assert code == 0, output
    meta = json.loads((tmp_path / "ds" / "dataset.json").read_text())
    assert meta["partial_labels"]["source_column"] is None
    assert (load_dataset(tmp_path / "ds").targets() >= 0).all()


def test_a_source_column_in_some_shards_only_is_an_error(tmp_path: Path) -> None:
    tables = make_tables(tmp_path)
    write_table(tables / "photos.tsv001", PHOTO_HEADER, [("x1", "", "images/s00.jpg", 40, 30, "")])
    with pytest.raises(TableError, match="only some shards have the photo_source column"):
        select(tables, KeywordFilter())


def test_version_1_datasets_load_and_cannot_hold_unknowns(tmp_path: Path) -> None:
    (tmp_path / "dataset.json").write_text(json.dumps({"version": 1, "tags": ["sea", "dog"]}))
    (tmp_path / "labels.tsv").write_text("photo_id\tsplit\tfile\tsea\tdog\na\ttrain\timages/a.jpg\t1\t0\n")
    assert load_dataset(tmp_path).targets().tolist() == [[1, 0]]
    (tmp_path / "labels.tsv").write_text("photo_id\tsplit\tfile\tsea\tdog\na\ttrain\timages/a.jpg\t1\t-1\n")
    with pytest.raises(DatasetError, match="labels.tsv:2: malformed"):
        load_dataset(tmp_path)
    (tmp_path / "dataset.json").write_text(json.dumps({"version": 3, "tags": ["sea", "dog"]}))
    with pytest.raises(DatasetError, match="unsupported version 3"):
        load_dataset(tmp_path)


# ---------------------------------------------------------------- hashtag data vocab

def test_vocab_prints_tags_counts_and_dropped_without_images(tmp_path: Path) -> None:
    tables = make_tables(tmp_path / "tables")
    code, output = run("vocab", "--tables", str(tables), "--min-positives", "3", "--deny", "building")
    assert code == 0, output
    assert f"{len(DEFAULT_TAGS) + 4} tags, {N} photos:" in output
    lines = {line.split()[0]: line.split() for line in output.splitlines() if line.strip()}
    assert lines["dog"][1:4] == ["16", "0", "0"] and lines["dog"][4:] == ["scenes", "(16", "photos)"]
    assert lines["sea"][4:] == ["-"]
    assert "building" in lines and "on the --deny list" in " ".join(lines["building"])
    assert "synonym of clouds (Jaccard 1.000)" in output
    assert "below 3 training photos: 1 keywords (largest: rare 1)" in output
    assert not any(tmp_path.rglob("labels.tsv"))
    code, output = run("vocab", "--tables", str(tables), "--deny", "sea")
    assert code == 2 and "the original ten tags always stay" in output
    code, output = run("vocab", "--tables", str(tables), "--tags", "dog,woman", "--min-positives", "3")
    assert code == 1 and "cannot make a tag of woman" in output
