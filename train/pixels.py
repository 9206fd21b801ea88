"""Dataset photos as model input, for every step of training (feature extraction, the assembly check,
evaluation from photos): the runtime's decoding and preprocessing (``hashtag.runtime.preprocess``), so
training sees exactly the batches serving builds.

Photos are decoded whole (no draft decoding, which the runtime uses on large photos): the dataset stores
them small, and features cached before stay valid.
"""
from __future__ import annotations

from pathlib import Path
from typing import Protocol, Sequence

import numpy as np

from hashtag.runtime.images import load_image
from hashtag.runtime.manifest import Preprocessing
from hashtag.runtime.preprocess import prepare_batch
from hashtag.train.augment import make_view


class Photo(Protocol):
    """What a batch needs of a dataset record."""

    photo_id: str
    path: Path


def photo_batch(photos: Sequence[Photo], size: int, prep: Preprocessing, view: int = 0) -> np.ndarray:
    """float32 NHWC input for ``photos`` at ``size`` (augmented view ``view``; 0 is the photo itself)."""
    return prepare_batch([make_view(load_image(p.path), p.photo_id, view) for p in photos], size, prep)
