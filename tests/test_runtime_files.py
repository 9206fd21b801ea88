"""hashtag.runtime.files: a file is replaced whole or not at all, keeps its permissions, and leaves no temporary."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from hashtag.runtime.files import atomic_path, remove_stale_temps, write_json_atomically, write_text_atomically


@pytest.mark.parametrize("durable", [False, True])
def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path, durable: bool) -> None:
    target = tmp_path / "deep" / "er" / "notes.txt"
    with pytest.raises(OSError, match="disk full"), atomic_path(target, durable=durable) as tmp:
        tmp.write_text("half")
        raise OSError("disk full")
    assert list(tmp_path.rglob("*")) == [tmp_path / "deep", tmp_path / "deep" / "er"]  # folders made, no file
    write_text_atomically(target, "v1")
    with pytest.raises(OSError), atomic_path(target, durable=durable) as tmp:
        tmp.write_text("v2, half")
        raise OSError("disk full")
    assert target.read_text() == "v1" and list(target.parent.iterdir()) == [target]


def test_a_rewritten_file_keeps_its_permissions_and_a_temporary_ends_with_its_name(tmp_path: Path) -> None:
    target = tmp_path / "model.weights.h5"
    write_text_atomically(target, "v1")
    target.chmod(0o640)
    elsewhere = tmp_path / "partial"
    elsewhere.mkdir()
    with atomic_path(target, elsewhere) as tmp:
        assert tmp.parent == elsewhere and tmp.name.endswith(".model.weights.h5")  # keras insists on the suffix
        tmp.write_text("v2")
    assert target.read_text() == "v2" and target.stat().st_mode & 0o777 == 0o640
    assert list(elsewhere.iterdir()) == []


def _left_by_a_killed_writer(path: Path) -> Path:
    """A temporary of ``path`` under the name a writer killed inside ``atomic_path`` leaves behind."""
    with pytest.raises(KeyboardInterrupt), atomic_path(path) as tmp:
        raise KeyboardInterrupt
    tmp.write_bytes(b"half")
    return tmp


def test_stale_temporaries_of_a_file_are_removed_and_nothing_else(tmp_path: Path) -> None:
    photo, other = tmp_path / "a [1].jpg", tmp_path / "b.jpg"
    photo.write_bytes(b"photo")
    other.write_bytes(b"photo")
    hidden = tmp_path / ".a [1].jpg.notes"
    hidden.write_text("a person's file")
    mine, its = _left_by_a_killed_writer(photo), _left_by_a_killed_writer(other)
    remove_stale_temps(photo)
    assert sorted(tmp_path.iterdir()) == sorted([photo, other, hidden, its]) and not mine.exists()


def test_json_written_whole_is_strict_json(tmp_path: Path) -> None:
    path = tmp_path / "out.json"
    write_json_atomically(path, {"ap": math.nan, "inf": math.inf, "n": np.int64(3), "p": np.float32(0.5),
                                 "where": tmp_path, "pair": (1, 2)})
    assert json.loads(path.read_text()) == {"ap": None, "inf": None, "n": 3, "p": 0.5,
                                                   "where": str(tmp_path), "pair": [1, 2]}
