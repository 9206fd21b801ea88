"""Digests of files and the resumable row stores of train and export. Writing a file whole or not at all is
``hashtag.runtime.files``'s job, for every package.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np


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
