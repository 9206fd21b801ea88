"""Deterministic synthetic photos, for when no folder of real photos is given to the benchmark.

Smooth gradients, soft blobs and sensor-like noise, saved as JPEG: decoding and resizing cost
about what camera photos of the same size cost, and every run gets the very same bytes.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

JPEG_QUALITY = 90


def synthetic_photo(width: int, height: int, seed: int) -> Image.Image:
    """One RGB image from ``seed``: a colour gradient, a few blurred discs and Gaussian noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    u, v = xx / max(width - 1, 1), yy / max(height - 1, 1)
    start, end = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    img = start + (end - start) * ((u + v) / 2)[..., None]
    for _ in range(4):
        cx, cy, r = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.08, 0.3)
        weight = np.exp(-((u - cx) ** 2 + (v - cy) ** 2) / (2 * r * r))[..., None]
        img = img * (1 - weight) + rng.uniform(0, 255, 3) * weight
    img += rng.normal(0, 8, img.shape)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")


def write_photos(folder: Path, count: int, size: tuple[int, int]) -> list[Path]:
    """Write ``count`` JPEGs named photo-00.jpg... into ``folder``; returns their paths in order."""
    if count < 1:
        raise ValueError(f"need at least one photo, got {count}")
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / f"photo-{i:02d}.jpg"
        synthetic_photo(size[0], size[1], seed=i).save(path, "JPEG", quality=JPEG_QUALITY)
        paths.append(path)
    return paths
