"""Turning decoded RGB images into model input, as each model's manifest entry prescribes."""
from __future__ import annotations

from typing import Sequence

import numpy as np
from PIL import Image

from hashtag.runtime.manifest import Preprocessing

_RESAMPLE = {
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "nearest": Image.Resampling.NEAREST,
}


def resize_rgb(img: Image.Image, size: int, method: str = "bilinear") -> np.ndarray:
    """Squash ``img`` to ``size`` x ``size`` (as keras' load_img(target_size) does) as uint8 HWC RGB."""
    if img.size != (size, size):
        img = img.resize((size, size), _RESAMPLE[method])
    return np.asarray(img, dtype=np.uint8)


def normalize(batch_rgb: np.ndarray, prep: Preprocessing) -> np.ndarray:
    """uint8 NHWC RGB -> float32 NHWC model input: reorder channels, subtract mean, divide by std."""
    x = batch_rgb.astype(np.float32)
    if prep.color_order == "BGR":
        x = x[..., ::-1]
    x -= np.asarray(prep.mean, dtype=np.float32)
    x /= np.asarray(prep.std, dtype=np.float32)
    return np.ascontiguousarray(x)


def prepare_batch(images: Sequence[Image.Image], size: int, prep: Preprocessing) -> np.ndarray:
    """Resize and normalize a list of RGB images into one float32 NHWC batch."""
    return normalize(np.stack([resize_rgb(img, size, prep.resize) for img in images]), prep)
