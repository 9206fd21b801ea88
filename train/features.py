"""Backbone features computed once per photo and kept on disk, so heads train in seconds.

Layout under the cache folder::

    <backbone>-<size>-<key>/             key: hash of weights content, preprocessing and format
        meta.json                        backbone, size, preprocessing, weights sha256, provenance
        <split>-v<view>-<ids>/           ids: hash of the split's photo ids and files (the row order)
                                         and, for augmented views, of the augmentation version
            ids.txt                      one photo id per row
            pooled.npy, pooled.done.npy  float32 [n, C] global-average-pooled output, bool [n] row done
            spatial.npy, spatial.done.npy  float16 [n, H, W, C] full map (only for the Flatten head)

Arrays are ``.npy`` memmaps written batch by batch; a row's done flag is set only after its
features were flushed, so an interrupted extraction resumes where it stopped and a second run
computes nothing. Rows cover the whole split; a run limited to some photos fills only those rows.
Pixels go through hashtag.runtime (load_image, resize_rgb, normalize): training sees exactly what
serving sees.
"""
from __future__ import annotations

import hashlib
import json
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Protocol, Sequence

import keras
import numpy as np

from hashtag.runtime.images import load_image
from hashtag.runtime.manifest import Preprocessing
from hashtag.runtime.preprocess import normalize, resize_rgb
from hashtag.train.augment import VERSION as AUGMENT_VERSION
from hashtag.train.augment import make_view
from hashtag.train.progress import Progress

FORMAT_VERSION = 1
KINDS = ("pooled", "spatial")
FLUSH_EVERY_S = 20.0


class Photo(Protocol):
    """What extraction needs of a dataset record."""

    photo_id: str
    path: Path


@dataclass(frozen=True)
class Backbone:
    """A frozen conv base (NHWC preprocessed pixels -> spatial map) and how to feed and name it."""

    name: str
    input_size: int
    model: keras.Model
    preprocessing: Preprocessing
    provenance: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        shape = tuple(self.model.output_shape)
        if len(shape) != 4 or any(d is None for d in shape[1:]):
            raise ValueError(f"backbone {self.name!r} must output a fixed-size NHWC map, got {shape}")

    @property
    def feature_shape(self) -> tuple[int, int, int]:
        """(H, W, C) of the spatial map."""
        return tuple(int(d) for d in self.model.output_shape[1:])  # type: ignore[return-value]


BackboneFactory = Callable[[str, int], Backbone]


def weights_sha256(model: keras.Model) -> str:
    """Hash of every weight's name, shape and values: two backbones with equal hashes compute the same."""
    h = hashlib.sha256()
    for w in model.weights:
        value = np.ascontiguousarray(w.numpy())
        h.update(f"{w.path}:{value.dtype}:{value.shape}\n".encode())
        h.update(value.tobytes())
    return h.hexdigest()


def _ids_key(photos: Sequence[Photo], view: int) -> str:
    h = hashlib.sha256(f"augment {AUGMENT_VERSION}\n".encode() if view else b"")
    for p in photos:
        size = p.path.stat().st_size if p.path.exists() else -1
        h.update(f"{p.photo_id}\t{p.path.name}\t{size}\n".encode())
    return h.hexdigest()[:12]


def _open_array(path: Path, shape: tuple[int, ...], dtype: str) -> np.memmap:
    """Open an existing .npy memmap of the right shape, or create a zero-filled one."""
    if path.exists():
        arr = np.lib.format.open_memmap(path, mode="r+")
        if arr.shape == shape and arr.dtype == np.dtype(dtype):
            return arr
        del arr
        path.unlink()
    return np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)


@dataclass
class ExtractStats:
    """What one ``ensure`` call did; tests and logs use ``computed`` to see cache reuse."""

    computed: int = 0
    reused: int = 0
    seconds: float = 0.0


class FeatureCache:
    """The cached features of one backbone (fixed weights, size and preprocessing)."""

    def __init__(self, cache_dir: Path, backbone: Backbone, batch_size: int = 32, progress: bool = True) -> None:
        if batch_size < 1:
            raise ValueError(f"batch size must be >= 1, got {batch_size}")
        self.backbone = backbone
        self.batch_size = batch_size
        self.progress = progress
        self.weights_sha256 = weights_sha256(backbone.model)
        identity = {"format": FORMAT_VERSION, "weights_sha256": self.weights_sha256,
                    "input_size": backbone.input_size, "preprocessing": backbone.preprocessing.to_dict()}
        key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:12]
        self.root = Path(cache_dir) / f"{backbone.name}-{backbone.input_size}-{key}"
        self.root.mkdir(parents=True, exist_ok=True)
        meta = {**identity, "backbone": backbone.name, "feature_shape": list(backbone.feature_shape),
                "provenance": dict(backbone.provenance)}
        (self.root / "meta.json").write_text(json.dumps(meta, indent=2, default=str))

    def group_dir(self, split: str, photos: Sequence[Photo], view: int) -> Path:
        """The folder holding rows of ``photos`` (the whole split, in order) for augmented view ``view``."""
        return self.root / f"{split}-v{view}-{_ids_key(photos, view)}"

    def _shape(self, kind: str, n: int) -> tuple[tuple[int, ...], str]:
        h, w, c = self.backbone.feature_shape
        return ((n, c), "float32") if kind == "pooled" else ((n, h, w, c), "float16")

    def ensure(self, split: str, photos: Sequence[Photo], rows: np.ndarray | None = None, view: int = 0,
               kinds: Sequence[str] = ("pooled",)) -> ExtractStats:
        """Compute the features of ``photos[rows]`` (default all) that the cache lacks."""
        for kind in kinds:
            if kind not in KINDS:
                raise ValueError(f"unknown feature kind {kind!r} (known: {', '.join(KINDS)})")
        rows = np.arange(len(photos)) if rows is None else np.asarray(rows, dtype=np.int64)
        folder = self.group_dir(split, photos, view)
        folder.mkdir(parents=True, exist_ok=True)
        ids_file = folder / "ids.txt"
        if not ids_file.exists():
            ids_file.write_text("".join(f"{p.photo_id}\n" for p in photos))
        arrays, done = {}, {}
        for kind in kinds:
            shape, dtype = self._shape(kind, len(photos))
            arrays[kind] = _open_array(folder / f"{kind}.npy", shape, dtype)
            done[kind] = _open_array(folder / f"{kind}.done.npy", (len(photos),), "bool")
        missing = rows[~np.all([done[k][rows] for k in kinds], axis=0)] if len(rows) else rows
        stats = ExtractStats(reused=len(rows) - len(missing))
        if len(missing):
            start = time.monotonic()
            label = f"{self.backbone.name} features {split}" + (f" view {view}" if view else "")
            self._extract(photos, missing, view, arrays, done, label)
            stats.computed, stats.seconds = len(missing), time.monotonic() - start
        return stats

    def _batches(self, photos: Sequence[Photo], rows: np.ndarray, view: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Preprocessed batches, the next one decoded in a worker thread while the backbone runs."""
        size, prep = self.backbone.input_size, self.backbone.preprocessing

        def load(batch_rows: np.ndarray) -> np.ndarray:
            pixels = [resize_rgb(make_view(load_image(photos[r].path), photos[r].photo_id, view), size, prep.resize)
                      for r in batch_rows]
            return normalize(np.stack(pixels), prep)

        chunks = [rows[i:i + self.batch_size] for i in range(0, len(rows), self.batch_size)]
        with ThreadPoolExecutor(max_workers=1) as pool:
            pending: Future | None = pool.submit(load, chunks[0]) if chunks else None
            for i, chunk in enumerate(chunks):
                batch = pending.result()  # type: ignore[union-attr]
                pending = pool.submit(load, chunks[i + 1]) if i + 1 < len(chunks) else None
                yield chunk, batch

    def _extract(self, photos: Sequence[Photo], rows: np.ndarray, view: int, arrays: dict[str, np.memmap],
                 done: dict[str, np.memmap], label: str) -> None:
        unflushed: list[np.ndarray] = []
        last_flush = time.monotonic()

        def flush() -> None:
            for arr in arrays.values():
                arr.flush()
            for chunk in unflushed:
                for flags in done.values():
                    flags[chunk] = True
            for flags in done.values():
                flags.flush()
            unflushed.clear()

        with Progress(len(rows), label, enabled=self.progress) as bar:
            try:
                for chunk, batch in self._batches(photos, rows, view):
                    maps = np.asarray(self.backbone.model.predict_on_batch(batch), dtype=np.float32)
                    if "pooled" in arrays:
                        arrays["pooled"][chunk] = maps.mean(axis=(1, 2))
                    if "spatial" in arrays:
                        arrays["spatial"][chunk] = maps.astype(np.float16)
                    unflushed.append(chunk)
                    bar.update(len(chunk))
                    if time.monotonic() - last_flush >= FLUSH_EVERY_S:
                        flush()
                        last_flush = time.monotonic()
            finally:
                flush()

    def pooled(self, split: str, photos: Sequence[Photo], rows: np.ndarray, view: int = 0) -> np.ndarray:
        """Pooled features of ``photos[rows]`` in memory (float32 [len(rows), C]); call ``ensure`` first."""
        return np.asarray(self._open(split, photos, rows, view, "pooled")[rows], dtype=np.float32)

    def spatial(self, split: str, photos: Sequence[Photo], rows: np.ndarray, view: int = 0) -> np.memmap:
        """The split's spatial maps as a read-only memmap (float16 [n, H, W, C]); ``rows`` must be done."""
        return self._open(split, photos, rows, view, "spatial")

    def _open(self, split: str, photos: Sequence[Photo], rows: np.ndarray, view: int, kind: str) -> np.memmap:
        folder = self.group_dir(split, photos, view)
        done_file = folder / f"{kind}.done.npy"
        done = np.load(done_file, mmap_mode="r") if done_file.exists() else np.zeros(len(photos), bool)
        if not np.all(done[rows]):
            raise RuntimeError(f"{folder}: {kind} features of {int((~done[rows]).sum())} photos are missing")
        return np.load(folder / f"{kind}.npy", mmap_mode="r")
