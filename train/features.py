"""Backbone features computed once per photo and kept on disk, so heads train in seconds.

Layout under the cache folder::

    <backbone>-<size>-<key>/             key: hash of weights content, preprocessing and format
        meta.json                        backbone, size, preprocessing, weights sha256, provenance
        <split>-v<view>-<ids>/           ids: hash of the split's photo ids and files (the row order)
                                         and, for augmented views, of the augmentation version
            ids.txt                      one photo id per row
            pooled.npy, pooled.done.npy  float32 [n, C] global-average-pooled output, bool [n] row done
            spatial.npy, spatial.done.npy  float16 [n, H, W, C] full map (only for the Flatten head)
            block.npy, block.done.npy      float16 [n, h, w, c] the map entering the top blocks (fine-tuning)

Arrays are ``.npy`` memmaps written batch by batch; a row's done flag is set only after its
features were flushed, so an interrupted extraction resumes where it stopped and a second run
computes nothing. Rows cover the whole split; a run limited to some photos fills only those rows.
Pixels go through hashtag.runtime's decoding and preprocessing (``hashtag.train.pixels``): training
sees exactly what serving sees. The backbone runs in Keras, or compiled by OpenVINO (``engine``): on CPUs
with bfloat16 instructions its ``openvino-bf16`` engine computes the same maps about 2.5x faster than Keras,
within bfloat16 rounding (~0.4% of the largest activation), which is below what INT8 export changes anyway.
"""
from __future__ import annotations

import hashlib
import json
import time
import warnings
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import keras
import numpy as np

from hashtag.runtime.manifest import Preprocessing
from hashtag.train.augment import VERSION as AUGMENT_VERSION
from hashtag.train.blocks import Cut
from hashtag.train.config import EXTRACT_ENGINES
from hashtag.train.errors import SettingsError
from hashtag.train.files import open_npy_memmap
from hashtag.train.pixels import Photo, photo_batch
from hashtag.train.progress import Progress

FORMAT_VERSION = 1
KINDS = ("pooled", "spatial", "block")
FLUSH_EVERY_S = 20.0


@dataclass(frozen=True)
class Backbone:
    """A frozen conv base (NHWC preprocessed pixels -> spatial map) and how to feed and name it."""

    name: str
    input_size: int
    model: keras.Model
    preprocessing: Preprocessing
    provenance: Mapping[str, Any] = field(default_factory=dict)
    cut: Cut | None = None  # where the top blocks start, for block caches and fine-tuning

    def __post_init__(self) -> None:
        shape = tuple(self.model.output_shape)
        if len(shape) != 4 or any(d is None for d in shape[1:]):
            raise ValueError(f"backbone {self.name!r} must output a fixed-size NHWC map, got {shape}")

    @property
    def feature_shape(self) -> tuple[int, int, int]:
        """(H, W, C) of the spatial map."""
        return tuple(int(d) for d in self.model.output_shape[1:])  # type: ignore[return-value]

    @property
    def block_shape(self) -> tuple[int, int, int]:
        """(h, w, c) of the map entering the top blocks."""
        if self.cut is None:
            raise SettingsError(f"backbone {self.name!r} has no cut for its top blocks")
        return tuple(int(d) for d in self.cut.tensor(self.model).shape[1:])  # type: ignore[return-value]


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


@dataclass
class ExtractStats:
    """What one ``ensure`` call did; tests and logs use ``computed`` to see cache reuse."""

    computed: int = 0
    reused: int = 0
    seconds: float = 0.0


class FeatureCache:
    """The cached features of one backbone (fixed weights, size and preprocessing)."""

    def __init__(self, cache_dir: Path, backbone: Backbone, batch_size: int = 32, progress: bool = True,
                 engine: str = "keras") -> None:
        if batch_size < 1:
            raise ValueError(f"batch size must be >= 1, got {batch_size}")
        if engine not in EXTRACT_ENGINES:
            raise SettingsError(f"unknown extraction engine {engine!r} (known: {', '.join(EXTRACT_ENGINES)})")
        self.backbone = backbone
        self.batch_size = batch_size
        self.progress = progress
        self.engine = engine
        self.weights_sha256 = weights_sha256(backbone.model)
        identity = {"format": FORMAT_VERSION, "weights_sha256": self.weights_sha256,
                    "input_size": backbone.input_size, "preprocessing": backbone.preprocessing.to_dict()}
        if engine != "keras":  # keeps the key of caches written before engines existed
            identity["engine"] = engine
        if backbone.cut is not None:
            identity["cut"] = backbone.cut.to_dict()
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
        if kind == "block":
            return (n, *self.backbone.block_shape), "float16"
        h, w, c = self.backbone.feature_shape
        return ((n, c), "float32") if kind == "pooled" else ((n, h, w, c), "float16")

    def _runner(self, kinds: Sequence[str]) -> Callable[[np.ndarray], list[np.ndarray]]:
        """Preprocessed pixels -> [final map] or [final map, block input], by the cache's engine."""
        import keras

        outputs = [self.backbone.model.output]
        if "block" in kinds:
            outputs.append(self.backbone.cut.tensor(self.backbone.model))  # type: ignore[union-attr]
        model = keras.Model(self.backbone.model.input, outputs)
        hint = EXTRACT_ENGINES[self.engine]
        if hint is None:
            return lambda batch: [np.asarray(m, dtype=np.float32) for m in keras.tree.flatten(model.predict_on_batch(batch))]
        try:
            import openvino
        except ImportError:
            raise SettingsError(f"extraction engine {self.engine} needs OpenVINO: "
                                "pip install 'hashtag[openvino]'") from None
        size = self.backbone.input_size
        with warnings.catch_warnings():  # OpenVINO traces the model with a tuple where Keras expects a tensor
            warnings.filterwarnings("ignore", message="The structure of `inputs`", category=UserWarning)
            converted = openvino.convert_model(model, input=[(-1, size, size, 3)])
        compiled = openvino.Core().compile_model(converted, "CPU", {"INFERENCE_PRECISION_HINT": hint})
        # OpenVINO may order the outputs differently: match them to Keras' by shape
        shapes = [tuple(o.partial_shape.to_shape())[1:] if o.partial_shape.is_static else
                  tuple(d.get_length() for d in list(o.partial_shape)[1:]) for o in compiled.outputs]
        order = []
        for out in outputs:
            want = tuple(int(d) for d in out.shape[1:])
            if shapes.count(want) != 1:
                raise SettingsError(f"cannot tell the OpenVINO outputs of {self.backbone.name} apart: {shapes}")
            order.append(shapes.index(want))

        def run(batch: np.ndarray) -> list[np.ndarray]:
            result = compiled(batch)
            return [np.asarray(result[compiled.outputs[i]], dtype=np.float32) for i in order]

        return run

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
            arrays[kind] = open_npy_memmap(folder / f"{kind}.npy", shape, dtype)
            done[kind] = open_npy_memmap(folder / f"{kind}.done.npy", (len(photos),), "bool")
        missing = rows[~np.all([done[k][rows] for k in kinds], axis=0)] if len(rows) else rows
        stats = ExtractStats(reused=len(rows) - len(missing))
        if len(missing):
            start = time.monotonic()
            label = f"{self.backbone.name} features {split}" + (f" view {view}" if view else "")
            self._extract(photos, missing, view, arrays, done, label, self._runner(kinds))
            stats.computed, stats.seconds = len(missing), time.monotonic() - start
        return stats

    def _batches(self, photos: Sequence[Photo], rows: np.ndarray, view: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Preprocessed batches, the next one decoded in a worker thread while the backbone runs."""
        size, prep = self.backbone.input_size, self.backbone.preprocessing

        def load(batch_rows: np.ndarray) -> np.ndarray:
            return photo_batch([photos[r] for r in batch_rows], size, prep, view)

        chunks = [rows[i:i + self.batch_size] for i in range(0, len(rows), self.batch_size)]
        with ThreadPoolExecutor(max_workers=1) as pool:
            pending: Future | None = pool.submit(load, chunks[0]) if chunks else None
            for i, chunk in enumerate(chunks):
                batch = pending.result()  # type: ignore[union-attr]
                pending = pool.submit(load, chunks[i + 1]) if i + 1 < len(chunks) else None
                yield chunk, batch

    def _extract(self, photos: Sequence[Photo], rows: np.ndarray, view: int, arrays: dict[str, np.memmap],
                 done: dict[str, np.memmap], label: str, run: Callable[[np.ndarray], list[np.ndarray]]) -> None:
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
                    maps, *block = run(batch)
                    if "block" in arrays:
                        arrays["block"][chunk] = block[0].astype(np.float16)
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

    def block(self, split: str, photos: Sequence[Photo], rows: np.ndarray) -> np.memmap:
        """The split's top-block inputs as a read-only memmap (float16 [n, h, w, c]); ``rows`` must be done."""
        return self._open(split, photos, rows, 0, "block")

    def _open(self, split: str, photos: Sequence[Photo], rows: np.ndarray, view: int, kind: str) -> np.memmap:
        folder = self.group_dir(split, photos, view)
        done_file = folder / f"{kind}.done.npy"
        done = np.load(done_file, mmap_mode="r") if done_file.exists() else np.zeros(len(photos), bool)
        if not np.all(done[rows]):
            raise RuntimeError(f"{folder}: {kind} features of {int((~done[rows]).sum())} photos are missing")
        return np.load(folder / f"{kind}.npy", mmap_mode="r")
