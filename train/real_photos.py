"""The everyday-photos set (``../shared/everyday-photos``): real photos, split once into *tune* and *report*.

Every decision made on real photos (thresholds, head and distillation settings) uses the *tune* half; every
headline figure comes from the *report* half, which nothing is trained or tuned on. The split hashes the
photo id like the corpus splits (``splits.unit_interval``), so it is stable across runs and machines.
Labels follow the corpus's partial-label rule (``tables.select``): a tag no photo of the set carries is unknown.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hashtag.train.splits import unit_interval
from hashtag.train.table_rows import KeywordFilter
from hashtag.train.tables import select

REAL_SPLITS = ("tune", "report")
TUNE_FRACTION = 0.5


def real_split_of(photo_id: str) -> str:
    """'tune' for half the photo ids, 'report' for the other half."""
    return "tune" if unit_interval(photo_id) < TUNE_FRACTION else "report"


@dataclass(frozen=True)
class RealPhoto:
    """One everyday photo: id, image path, split and targets (1, 0 or UNKNOWN) in the asked tag order."""

    photo_id: str
    path: Path
    split: str
    targets: np.ndarray


def real_photos(tables: Path, tags: tuple[str, ...], split: str | None = None) -> list[RealPhoto]:
    """The photos of ``tables`` with local image files (of one split, or all) and their targets."""
    if split is not None and split not in REAL_SPLITS:
        raise ValueError(f"unknown real-photo split {split!r} (known: {', '.join(REAL_SPLITS)})")
    labelled = select(Path(tables), KeywordFilter(), tags)
    out = []
    for photo in labelled.photos:
        part = real_split_of(photo.photo_id)
        if "://" in photo.source or (split is not None and part != split):
            continue
        out.append(RealPhoto(photo.photo_id, Path(tables) / photo.source, part,
                             np.asarray(labelled.labels(photo.photo_id), dtype=np.int8)))
    return out
