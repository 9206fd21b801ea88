"""`hashtag data build` end to end: local and HTTP tables, the dataset format, resume after a kill, splits."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from hashtag.runtime.cli import main
from hashtag.train.dataset import DatasetError, image_relpath, load_dataset
from hashtag.train.splits import SPLITS, split_of, unit_interval
from test_data_download import ImageServer, image_bytes  # the loopback server with scripted faults
from test_data_tables import KEYWORD_HEADER, PHOTO_HEADER, write_table

TAGS = ("sea", "tree", "dog")


def labels_for(i: int) -> set[str]:
    """Known labels: sea every 2nd photo, tree every 3rd, dog every 5th (photo 0 has all three)."""
    return {t for t, k in zip(TAGS, (2, 3, 5), strict=True) if i % k == 0}


def make_tables(root: Path, n: int, source=None, size=(320, 240)) -> Path:  # noqa: ANN001
    """photos.tsv000 + keywords.tsv000 for n photos p000.. with images under root/images (or at ``source(i)``)."""
    root.mkdir(parents=True, exist_ok=True)
    photos, keywords = [], []
    for i in range(n):
        pid = f"p{i:03d}"
        if source is None:
            (root / "images").mkdir(exist_ok=True)
            (root / "images" / f"{pid}.jpg").write_bytes(image_bytes(size, seed=i))
        photos.append((pid, f"https://unsplash.com/photos/{pid}", source(i) if source else f"images/{pid}.jpg",
                       size[0], size[1], ""))
        keywords += [(pid, t.upper() if i % 4 == 0 else t, "99.5", "", "f") for t in labels_for(i)]
        keywords.append((pid, "sky", "50", "", "f"))
    write_table(root / "photos.tsv000", PHOTO_HEADER, photos)
    write_table(root / "keywords.tsv000", KEYWORD_HEADER, keywords)
    return root


def build(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["data", "build", *args])
    return result.exit_code, result.output


# ---------------------------------------------------------------- splits

def test_splits_are_fixed_by_the_id_alone() -> None:
    # Pinned values: a change here reshuffles every dataset ever built.
    assert [split_of(i) for i in ("a", "b", "c", "mir03001", "mir03002", "XMyPniM9LF0")] == \
        ["train", "val", "test", "train", "test", "train"]
    code = "from hashtag.train.splits import split_of; print(','.join(split_of(f'id{i}') for i in range(200)))"
    runs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                           env={**os.environ, "PYTHONHASHSEED": seed}).stdout for seed in ("1", "2")}
    assert runs == {",".join(split_of(f"id{i}") for i in range(200)) + "\n"}


def test_split_proportions_and_adding_photos_moves_nothing() -> None:
    ids = [f"photo-{i}" for i in range(20000)]
    before = {i: split_of(i) for i in ids}
    counts = {s: sum(1 for v in before.values() if v == s) / len(ids) for s in SPLITS}
    assert abs(counts["test"] - 0.20) < 0.01
    assert abs(counts["val"] - 0.08) < 0.01
    assert abs(counts["train"] - 0.72) < 0.01
    more = ids + [f"new-{i}" for i in range(5000)]
    assert all(split_of(i) == before[i] for i in more if i in before)
    assert all(0.0 <= unit_interval(i) < 1.0 for i in ids[:100])


# ---------------------------------------------------------------- local tables

def test_build_from_local_paths(tmp_path: Path) -> None:
    tables = make_tables(tmp_path / "tables", 40, size=(400, 300))
    (tables / "images" / "p007.jpg").unlink()  # one photo fails: missing file
    (tables / "images" / "p011.jpg").write_bytes(b"not a jpeg")
    out = tmp_path / "ds"
    code, output = build("--tables", str(tables), "--out", str(out), "--tags", ",".join(TAGS), "--workers", "3",
                         "--min-positives", "1")
    assert code == 0, output
    assert "photos read 40, kept 40, stored 38, failed 2" in output

    meta = json.loads((out / "dataset.json").read_text())
    s = meta["summary"]
    assert meta["tags"] == list(TAGS) and meta["image_max_side"] == 299 and meta["min_confidence"] == 99
    assert s["failures_by_reason"] == {"missing file": 1, "not an image": 1} and s["complete"]
    kept = [i for i in range(40) if i not in (7, 11)]
    for split in SPLITS:
        ids = [i for i in kept if split_of(f"p{i:03d}") == split]
        assert s["splits"][split] == len(ids)
        assert s["positives"][split] == {t: sum(t in labels_for(i) for i in ids) for t in TAGS}

    lines = (out / "labels.tsv").read_text().splitlines()
    assert lines[0] == "photo_id\tsplit\tfile\tsea\ttree\tdog"
    assert len(lines) == 39 and not any(line.startswith(("p007", "p011")) for line in lines)
    assert "p007\tmissing file\t" in (out / "failures.tsv").read_text()

    ds = load_dataset(out)
    assert ds.tags == TAGS and len(ds.records) == 38
    for rec in ds.records:
        i = int(rec.photo_id[1:])
        assert rec.split == split_of(rec.photo_id)
        assert rec.path == out / image_relpath(rec.photo_id)
        assert rec.labels.tolist() == [int(t in labels_for(i)) for t in TAGS]
        with Image.open(rec.path) as img:
            assert img.mode == "RGB" and img.size == (399, 299)
    assert ds.labels("train").shape == (len(ds.split("train")), 3) and ds.labels("train").dtype == np.uint8
    assert sum(len(ds.split(s)) for s in SPLITS) == 38


def test_rerun_resumes_and_changes_nothing(tmp_path: Path) -> None:
    tables = make_tables(tmp_path / "tables", 25)
    out = tmp_path / "ds"
    assert build("--tables", str(tables), "--out", str(out), "--limit", "10")[0] == 0
    first = {p: p.stat().st_mtime_ns for p in (out / "images").rglob("*.jpg")}
    assert len(first) == 10
    code, output = build("--tables", str(tables), "--out", str(out))
    assert code == 0 and "stored 25, failed 0" in output
    assert all(p.stat().st_mtime_ns == m for p, m in first.items())
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["summary"]["this_run"] == {**meta["summary"]["this_run"], "stored": 15, "already_stored": 10,
                                           "requests": 15}
    assert meta["tags"] == ["animal", "human", "mountain", "nature", "outdoors", "person", "plant", "sea", "tree",
                            "water"]
    # Another vocabulary on the same images: no image work at all.
    code, output = build("--tables", str(tables), "--out", str(out), "--top-n", "2")
    assert code == 0, output
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["tags"] == ["sea", "tree"] and meta["summary"]["this_run"]["requests"] == 0
    # Images stored at another size cannot be mixed in.
    code, output = build("--tables", str(tables), "--out", str(out), "--max-side", "224")
    assert code == 1 and "image_max_side=299, not 224" in output


def test_require_tag_and_confidence_options(tmp_path: Path) -> None:
    tables = make_tables(tmp_path / "tables", 12)
    code, output = build("--tables", str(tables), "--out", str(tmp_path / "a"), "--tags", "dog", "--require-tag",
                         "--min-positives", "1")
    assert code == 0, output
    ds = load_dataset(tmp_path / "a")
    assert sorted(r.photo_id for r in ds.records) == ["p000", "p005", "p010"]
    assert json.loads((tmp_path / "a" / "dataset.json").read_text())["summary"]["dropped_untagged"] == 9
    code, output = build("--tables", str(tables), "--out", str(tmp_path / "b"), "--tags", "sky,sea",
                         "--min-confidence", "40", "--min-positives", "1")
    assert code == 0, output
    assert all(r.labels[0] == 1 for r in load_dataset(tmp_path / "b").records)


def test_usage_and_table_errors(tmp_path: Path) -> None:
    tables = make_tables(tmp_path / "tables", 3)
    code, output = build("--tables", str(tables), "--out", str(tmp_path / "o"), "--tags", "sea", "--top-n", "3")
    assert code == 2 and "not both" in output
    code, output = build("--tables", str(tables), "--out", str(tmp_path / "o"), "--tags", " , ")
    assert code == 2 and "at least one tag" in output
    write_table(tables / "keywords.tsv000", ("photo_id", "keyword"), [("p000", "sea")])
    code, output = build("--tables", str(tables), "--out", str(tmp_path / "o"))
    assert code == 1 and "missing column(s) ai_service_1_confidence" in output
    assert output.strip().count("\n") == 0


def test_load_dataset_refuses_broken_folders(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="dataset.json is missing"):
        load_dataset(tmp_path)
    (tmp_path / "dataset.json").write_text(json.dumps({"version": 1, "tags": ["sea"]}))
    (tmp_path / "labels.tsv").write_text("photo_id\tsplit\tfile\ttree\n")
    with pytest.raises(DatasetError, match="header must be"):
        load_dataset(tmp_path)
    (tmp_path / "labels.tsv").write_text("photo_id\tsplit\tfile\tsea\na\tholdout\timages/a.jpg\t1\n")
    with pytest.raises(DatasetError, match="labels.tsv:2: malformed"):
        load_dataset(tmp_path)


# ---------------------------------------------------------------- over HTTP

def test_build_over_http_asks_for_sized_images(tmp_path: Path) -> None:
    with ImageServer() as server:
        for i in range(20):
            server.add(f"/photo-{i}", image_bytes((600, 400), seed=i))
        server.add("/photo-3", image_bytes(seed=3), fail_first=1, fail_status=503)
        tables = make_tables(tmp_path / "tables", 21, source=lambda i: server.url(f"/photo-{i}"), size=(6000, 4000))
        code, output = build("--tables", str(tables), "--out", str(tmp_path / "ds"), "--tags", "sea,tree",
                             "--retries", "2", "--timeout", "5", "--min-positives", "1")
        assert code == 0, output
        assert "stored 20, failed 1" in output and "http 404 1" in output  # photo-20 was never served
        assert server.queries["/photo-0"] == [{"w": ["449"], "fit": ["max"], "fm": ["jpg"], "q": ["85"]}]
        assert server.requests["/photo-3"] == 2
        assert len(load_dataset(tmp_path / "ds").records) == 20


def test_killed_build_resumes_without_redownloading(tmp_path: Path) -> None:
    """SIGKILL a real `hashtag data build` mid-way, then finish it: nothing stored is fetched or rewritten."""
    n = 60
    with ImageServer() as server:
        server.delay = 0.05
        for i in range(n):
            server.add(f"/k{i}", image_bytes((300, 200), seed=i))
        tables = make_tables(tmp_path / "tables", n, source=lambda i: server.url(f"/k{i}"))
        out = tmp_path / "ds"
        cmd = ("import sys; from hashtag.runtime.cli import main; "
               f"main(['data', 'build', '--tables', {str(tables)!r}, '--out', {str(out)!r}, '--workers', '2'])")
        proc = subprocess.Popen([sys.executable, "-c", cmd], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        journal = out / "journal.jsonl"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if journal.exists() and journal.read_text().count("\n") >= 10:
                break
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        assert not (out / "labels.tsv").exists()  # killed before the end
        stored = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in (out / "images").rglob("*.jpg")}
        assert 10 <= len(stored) < n
        server.reset_counts()

        code, output = build("--tables", str(tables), "--out", str(out), "--workers", "4")
        assert code == 0, output
        assert f"stored {n}, failed 0" in output
        for path, before in stored.items():
            assert (path.stat().st_ino, path.stat().st_mtime_ns) == before
            assert server.requests[f"/k{int(path.stem[1:])}"] == 0
        assert sum(server.requests.values()) == n - len(stored)
        assert len(load_dataset(out).records) == n
        assert not (out / ".partial").exists()
