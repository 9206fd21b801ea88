"""Decoding user images into RGB, defensively: every failure becomes an ImageError naming the source."""
from __future__ import annotations

import io
import os
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from hashtag.runtime.errors import ImageError

# Pillow's own guard warns at ~89 Mpx and refuses at twice that; we refuse above this many pixels outright.
MAX_PIXELS = 64_000_000
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"})

ImageSource = Union[str, os.PathLike, bytes]


def describe(source: ImageSource) -> str:
    """A short name for messages: the path, or '<N bytes>' for in-memory data."""
    if isinstance(source, (bytes, bytearray)):
        return f"<{len(source)} bytes>"
    return os.fspath(source)


@contextmanager
def _opened(source: ImageSource, name: str) -> Iterator[Image.Image]:
    """The image in ``source``, lazily decoded; a file is read from disk as decoding goes, never copied whole."""
    if isinstance(source, (bytes, bytearray)):
        if not source:
            raise ImageError(name, "empty data")
        yield Image.open(io.BytesIO(source))
        return
    path = Path(source)
    if not path.exists():
        raise ImageError(name, "no such file")
    if path.is_dir():
        raise ImageError(name, "is a folder, not an image")
    try:
        if path.stat().st_size == 0:
            raise ImageError(name, "empty file")
        fh = path.open("rb")
    except PermissionError:
        raise ImageError(name, "permission denied") from None
    except OSError as exc:
        raise ImageError(name, f"cannot read: {exc.strerror or exc}") from None
    with fh:
        yield Image.open(fh)


# Modes Image.reduce averages correctly; palette and bilevel images are converted first, I;16 via "I".
_REDUCIBLE = frozenset({"RGB", "RGBA", "RGBa", "L", "LA", "La", "I", "F", "CMYK"})
REDUCE_STRIP_ROWS = 64  # at 7900 px wide, 2 MB per strip


def _reduce(img: Image.Image, min_side: int | None) -> Image.Image:
    """Box-average ``img`` by the largest integer factor that keeps both sides >= ``min_side``.

    The models squash every photo to their input size anyway; shrinking first keeps the rest of the
    work (mode conversion, resizing, images waiting for a batch) small whatever the photo's size.
    Done in strips of rows: reducing RGBA whole would take a full-size premultiplied copy.
    """
    factor = min(img.size) // min_side if min_side else 0
    if factor < 2:
        return img
    width, height = img.size
    out = Image.new(img.mode, (-(-width // factor), -(-height // factor)))
    rows = factor * max(1, REDUCE_STRIP_ROWS // factor)
    for top in range(0, height, rows):
        out.paste(img.crop((0, top, width, min(top + rows, height))).reduce(factor), (0, top // factor))
    return out


def _to_rgb(img: Image.Image, min_side: int | None = None) -> Image.Image:
    """Convert any mode Pillow decodes to 8-bit RGB (reduced first, see ``_reduce``); transparency goes on white."""
    sixteen_bit = img.mode.startswith("I;16")
    if sixteen_bit:
        img = img.convert("I")
    elif img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    elif img.mode not in _REDUCIBLE:
        img = img.convert("RGBA" if img.mode.endswith("A") else "RGB")
    img = _reduce(img, min_side)
    if img.mode == "RGB":
        return img
    if img.mode == "I":
        # 16/32-bit greyscale: scale the actual range down to 8 bits instead of clipping at 255.
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if sixteen_bit or arr.max() > 255 else 255.0
        arr8 = np.clip(arr / top * 255.0 + 0.5, 0, 255).astype("uint8")
        return Image.fromarray(arr8, "L").convert("RGB")
    if img.mode in ("RGBA", "LA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def load_image(source: ImageSource, max_pixels: int = MAX_PIXELS, min_side: int | None = None) -> Image.Image:
    """Decode ``source`` (a path or encoded bytes) into an upright 8-bit RGB image.

    Animated images give their first frame; EXIF orientation is applied; images over
    ``max_pixels`` are refused before their pixels are decoded (decompression-bomb guard).
    ``min_side``: the image is only needed with both sides at least this long (the largest model
    input, see ``Tagger.min_decode_size``), so it is decoded no larger than that allows: JPEGs with
    DCT scaling (1/2, 1/4 or 1/8 while decoding), other formats box-reduced right after decoding
    (they are decoded at full size first: 4 bytes a pixel, 250 MB for a 62-Mpx PNG).
    """
    name = describe(source)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with _opened(source, name) as img:
                width, height = img.size
                if width * height > max_pixels:
                    raise ImageError(name, f"too many pixels ({width}x{height}, limit {max_pixels:,})")
                img.seek(0)
                if min_side:
                    img.draft(None, (min_side, min_side))  # a no-op for formats without reduced decoding
                img.load()
                ImageOps.exif_transpose(img, in_place=True)  # in place: no full-size copy
                return _to_rgb(img, min_side)
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(name, "not an image Pillow can read") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(name, "too many pixels (decompression bomb guard)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        reason = str(exc) or type(exc).__name__
        if "truncated" in reason or isinstance(exc, EOFError):
            reason = f"truncated or corrupt image data ({reason})"
        else:
            reason = f"cannot decode: {reason}"
        raise ImageError(name, reason) from None


def find_images(paths: list[str | os.PathLike]) -> list[Path]:
    """Expand files and folders (recursively, sorted) into image paths; explicit files are kept as given.

    In folders, hidden files are passed over: they are no one's photos (macOS ``._photo.jpg`` resource forks,
    the temporaries a killed writer leaves, named ``.<pid>-<random>.hashtag-tmp.photo.jpg``).
    """
    found: list[Path] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            found.extend(sorted(f for f in path.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES
                                and not f.name.startswith(".")))
        else:
            found.append(path)
    return found
