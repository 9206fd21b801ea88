"""Deterministic synthetic photos, for when no folder of real photos is given to the benchmark.

Smooth gradients, soft blobs and sensor-like noise, saved as JPEG: decoding and resizing cost
about what camera photos of the same size cost, and every run gets the very same bytes.
"""
from __future__ import annotations

import io
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


SAMPLE_PHOTO = "grace_hopper.jpg"  # matplotlib's sample data: a real photo that every [bench]/[test] install has
NOISE_SIGMA = 4.0  # sensor-like noise, so an upscaled photo costs what a camera JPEG costs to decode
DISTINCT_RENDERS = 4  # photos are costly to render at 12 Mpx; files cycle through this many


def sample_photo() -> Image.Image:
    """Grace Hopper's portrait from matplotlib's sample data; a synthetic photo where matplotlib is absent."""
    try:
        from matplotlib import cbook
    except ImportError:
        return synthetic_photo(512, 600, seed=0)
    with Image.open(cbook.get_sample_data(SAMPLE_PHOTO, asfileobj=False)) as img:
        return img.convert("RGB")


def camera_like(source: Image.Image, size: tuple[int, int], seed: int) -> Image.Image:
    """``source`` resized to ``size`` (bicubic), mirrored for odd seeds, plus Gaussian noise from ``seed``."""
    img = source.resize(size, Image.Resampling.BICUBIC)
    if seed % 2:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    noise = np.random.default_rng(seed).standard_normal((size[1], size[0], 3), dtype=np.float32) * NOISE_SIGMA
    return Image.fromarray(np.clip(np.asarray(img, dtype=np.float32) + noise, 0, 255).astype(np.uint8), "RGB")


def write_sized_photos(folder: Path, count: int, size: tuple[int, int], source: Image.Image | None = None,
                       ) -> list[Path]:
    """Write ``count`` JPEGs of ``size`` made from ``source`` (default ``sample_photo()``) into ``folder``.

    The same photo at every size, so runs on different sizes differ only in what decoding costs.
    """
    if count < 1:
        raise ValueError(f"need at least one photo, got {count}")
    folder.mkdir(parents=True, exist_ok=True)
    source = source if source is not None else sample_photo()
    encoded = []
    for seed in range(min(count, DISTINCT_RENDERS)):
        buf = io.BytesIO()
        camera_like(source, size, seed).save(buf, "JPEG", quality=JPEG_QUALITY)
        encoded.append(buf.getvalue())
    paths = []
    for i in range(count):
        path = folder / f"photo-{i:03d}.jpg"
        path.write_bytes(encoded[i % len(encoded)])
        paths.append(path)
    return paths


def encoded_photos(count: int, size: tuple[int, int]) -> list[bytes]:
    """``count`` distinct JPEGs of ``size`` as bytes, as a phone or an app would upload them."""
    out = []
    for seed in range(count):
        buf = io.BytesIO()
        synthetic_photo(size[0], size[1], seed).save(buf, "JPEG", quality=JPEG_QUALITY)
        out.append(buf.getvalue())
    return out
