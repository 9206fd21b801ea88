"""Files written whole or not at all, and their digests: the one rule every writer in train and export follows.

A file is written under a temporary name on the same filesystem and renamed into place, so a reader, or a
resumed run, finds either no file or a complete one, never half of one.
"""
from __future__ import annotations

import hashlib
import os
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

if TYPE_CHECKING:
    import numpy as np


@contextmanager
def atomic_path(path: Path, tmp_dir: Path | None = None) -> Iterator[Path]:
    """A temporary path to write; renamed to ``path`` when the block ends, removed when it raises.

    The temporary lives in ``tmp_dir`` (same filesystem; default: beside ``path``), has a unique name, and
    ends with ``path``'s own name, so writers that insist on a suffix (keras' ``.weights.h5``) take it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tmp_dir or path.parent) / f".{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp.{path.name}"
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomically(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` through ``atomic_path``."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in chunks (models and wheels are tens to hundreds of MB)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def open_npy_memmap(path: Path, shape: tuple[int, ...], dtype: str) -> "np.memmap":
    """An existing .npy memmap of the right shape and dtype opened for writing, or a new zero-filled one: the
    resumable row stores (feature and teacher caches) fill it row by row."""
    import numpy as np

    if path.exists():
        arr = np.lib.format.open_memmap(path, mode="r+")
        if arr.shape == shape and arr.dtype == np.dtype(dtype):
            return arr
        del arr
        path.unlink()
    return np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
