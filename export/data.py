"""Real dataset images for parity, calibration and the accuracy check.

Images are decoded and resized by hashtag.runtime, exactly as at serving time, and kept as uint8
(a 299 px float32 copy of a 2000-image val split would take 2 GB); batches are normalized on use
(``hashtag.runtime.preprocess.normalized_batches``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from hashtag.export.errors import ExportError
from hashtag.runtime.errors import HashtagError
from hashtag.runtime.images import load_image
from hashtag.runtime.preprocess import resize_rgb
from hashtag.train.progress import Progress

CALIBRATION = "calibration"
VAL = "val"


class ExportImages:
    """Chooses the val and calibration photos once; caches their resized pixels per input size.

    Val: the whole val split in dataset order (or a seeded sample of ``val_images``); the parity
    check uses its first images. Calibration: a seeded sample of the train split.
    """

    def __init__(self, data_dir: Path, tags: Sequence[str], calibration_images: int, val_images: int | None,
                 seed: int, progress: bool = True) -> None:
        from hashtag.train.dataset import load_dataset

        try:
            dataset = load_dataset(Path(data_dir))
        except HashtagError as exc:
            raise ExportError(str(exc)) from None
        missing = [t for t in tags if t not in dataset.tags]
        if missing:
            raise ExportError(f"dataset {data_dir} lacks the models' tags {missing}")
        rng = np.random.default_rng(seed)
        self.val = self._sample(list(dataset.split(VAL)), val_images, rng, "val")
        self.calibration = self._sample(list(dataset.split("train")), calibration_images, rng, "train")
        columns = [dataset.tags.index(t) for t in tags]
        self.tags = tuple(tags)
        self.val_labels = np.stack([r.targets[columns] for r in self.val])  # 1/0/-1: unknown labels stay unknown
        self.dataset_summary: dict[str, Any] = {"dataset": str(data_dir), **dict(dataset.meta.get("summary") or {})}
        self._progress = progress
        self._cache: dict[tuple[str, int, str], np.ndarray] = {}

    @staticmethod
    def _sample(records: list[Any], limit: int | None, rng: np.random.Generator, split: str) -> list[Any]:
        if not records:
            raise ExportError(f"the dataset's {split} split is empty")
        if limit is None or limit >= len(records):
            return records
        return [records[i] for i in sorted(rng.choice(len(records), size=limit, replace=False))]

    def labels(self, tags: Sequence[str]) -> np.ndarray:
        """Val labels ``[n, len(tags)]`` (1, 0, -1 unknown) in the order of ``tags``."""
        return self.val_labels[:, [self.tags.index(t) for t in tags]]

    def pixels(self, which: str, size: int, resize: str) -> np.ndarray:
        """uint8 ``[n, size, size, 3]`` for the val or calibration photos."""
        key = (which, size, resize)
        if key not in self._cache:
            records = self.val if which == VAL else self.calibration
            self._cache[key] = self._load(records, size, resize, f"Decoding {which} images at {size} px")
        return self._cache[key]

    def _load(self, records: list[Any], size: int, resize: str, label: str) -> np.ndarray:
        out = np.empty((len(records), size, size, 3), dtype=np.uint8)
        with Progress(len(records), label, enabled=self._progress) as bar:
            for i, record in enumerate(records):
                try:
                    out[i] = resize_rgb(load_image(record.path), size, resize)
                except HashtagError as exc:
                    raise ExportError(f"dataset image {exc}") from None
                bar.update(1)
        return out

    def keep_only(self, sizes: set[tuple[int, str]]) -> None:
        """Forget cached pixels at any (size, resize method) not in ``sizes`` (they take hundreds of MB)."""
        self._cache = {k: v for k, v in self._cache.items() if (k[1], k[2]) in sizes}
