"""Files written whole or not at all: the one rule every writer in hashtag follows, whatever its package.

A file is written under a temporary name on the same filesystem and renamed over its final name, so a
reader, a resumed run, or a crash or SIGKILL at any moment finds the old file or the new one, never half of
one. A file rewritten so keeps its permission bits. Files a person owns (photos, their sidecars) are written
``durable``: the data is on disk before the rename, and the rename before the writer reports success.
"""
from __future__ import annotations

import glob
import json
import math
import os
import stat
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

TEMP_MARK = ".hashtag-tmp."  # temporaries are named ".<pid>-<random>.hashtag-tmp.<final name>"


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: Path, tmp_dir: Path | None = None, durable: bool = False) -> Iterator[Path]:
    """A temporary path to write; renamed to ``path`` when the block ends, removed when it raises.

    The temporary lives in ``tmp_dir`` (same filesystem; default: beside ``path``), has a unique name, and
    ends with ``path``'s own name, so writers that insist on a suffix (keras' ``.weights.h5``) take it.
    ``durable`` syncs the file before the rename and the folder after it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tmp_dir or path.parent) / f".{os.getpid()}-{uuid.uuid4().hex[:8]}{TEMP_MARK}{path.name}"
    try:
        yield tmp
        if path.exists():
            os.chmod(tmp, stat.S_IMODE(path.stat().st_mode))
        if durable:
            _fsync(tmp)
        os.replace(tmp, path)
        if durable:
            _fsync(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomically(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` through ``atomic_path``."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def json_ready(value: Any) -> Any:
    """``value`` as strict JSON holds it: NaN and infinities (the AP of a tag without positives) as null,
    numpy scalars as Python numbers, tuples as lists, paths as text."""
    if hasattr(value, "item") and callable(value.item) and getattr(value, "shape", None) == ():
        value = value.item()  # a numpy scalar
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def write_json_atomically(path: Path, data: Any) -> None:
    """Write ``data`` as indented strict JSON (``json_ready``) through ``atomic_path``."""
    write_text_atomically(path, json.dumps(json_ready(data), indent=2, allow_nan=False) + "\n")


def remove_stale_temps(path: Path) -> None:
    """Remove the temporaries beside ``path`` that a killed writer left (never ``path`` itself)."""
    for stale in glob.glob(os.path.join(glob.escape(str(path.parent)), ".*" + glob.escape(TEMP_MARK + path.name))):
        Path(stale).unlink(missing_ok=True)


def remove_durably(path: Path) -> None:
    """Delete ``path``; like a durable write, the deletion is on disk before this returns."""
    path.unlink()
    _fsync(path.parent)
