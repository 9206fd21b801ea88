"""Turning decoded RGB images into model input, as each model's manifest entry prescribes.

``prepare_inputs`` is the one place where images become model batches: the tagger, the benchmarks
and ``prepare_batch`` (one model, as training uses it) all go through it. Export keeps photos resized as
uint8 (``resize_rgb``; a quarter of their float32 size) and normalizes them batch by batch on use
(``normalized_batches``): the same two steps, apart.
"""
from __future__ import annotations

from typing import Iterable, Iterator, Sequence

import numpy as np
from PIL import Image

from hashtag.runtime.manifest import ModelSpec, Preprocessing

_RESAMPLE = {
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "nearest": Image.Resampling.NEAREST,
}

InputKey = tuple[int, Preprocessing]  # (input size, preprocessing): models sharing it share one batch


def input_key(spec: ModelSpec) -> InputKey:
    """The key of the batch ``spec`` takes in ``prepare_inputs``' result."""
    return spec.input_size, spec.preprocessing


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


def normalized_batches(pixels: np.ndarray, prep: Preprocessing, batch_size: int) -> Iterator[np.ndarray]:
    """float32 batches of at most ``batch_size`` from uint8 NHWC ``pixels`` already resized by ``resize_rgb``."""
    for start in range(0, len(pixels), batch_size):
        yield normalize(pixels[start : start + batch_size], prep)


def prepare_inputs(images: Sequence[Image.Image], keys: Iterable[InputKey]) -> dict[InputKey, np.ndarray]:
    """One float32 NHWC batch per distinct key; models with the same size and resize method share the resize."""
    resized: dict[tuple[int, str], np.ndarray] = {}
    batches: dict[InputKey, np.ndarray] = {}
    for size, prep in keys:
        if (size, prep) in batches:
            continue
        rkey = (size, prep.resize)
        if rkey not in resized:
            resized[rkey] = np.stack([resize_rgb(img, size, prep.resize) for img in images])
        batches[(size, prep)] = normalize(resized[rkey], prep)
    return batches


def prepare_batch(images: Sequence[Image.Image], size: int, prep: Preprocessing) -> np.ndarray:
    """Resize and normalize a list of RGB images into one float32 NHWC batch for one model."""
    return prepare_inputs(images, [(size, prep)])[(size, prep)]
