"""Augmented views of training photos: small rotation, random crop and horizontal flip.

Backbones are frozen, so augmentation means extracting features of a few fixed augmented views of
each training photo (view 0 is the photo itself) and training the head on all views. A view depends
only on (photo id, view number) - not on the backbone or the run seed - so every backbone sees the
same views and cached views are reused across runs. Views are made one photo at a time during
extraction; nothing holds the dataset in memory.
"""
from __future__ import annotations

import hashlib
import math

import numpy as np
from PIL import Image

VERSION = 1  # bump when views change, so cached features of old views are not reused
MAX_ROTATION_DEG = 10.0
MIN_CROP_SIDE = 0.8  # the crop keeps 80-100% of each side of the rotation-safe region
FLIP_PROBABILITY = 0.5


def view_rng(photo_id: str, view: int) -> np.random.Generator:
    """A generator fixed by photo and view number."""
    digest = hashlib.sha256(f"{photo_id}\0{view}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def _inscribed_scale(width: int, height: int, angle_deg: float) -> float:
    """Largest k such that a centred k*width x k*height box lies inside the rotated image (no black corners)."""
    a = math.radians(abs(angle_deg))
    c, s = math.cos(a), math.sin(a)
    return min(width / (width * c + height * s), height / (width * s + height * c))


def augment(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Rotate by up to +-10 degrees, crop inside the valid region, maybe flip; same aspect ratio."""
    width, height = img.size
    angle = float(rng.uniform(-MAX_ROTATION_DEG, MAX_ROTATION_DEG))
    rotated = img.rotate(angle, resample=Image.Resampling.BILINEAR, expand=False)
    safe = _inscribed_scale(width, height, angle)
    scale = safe * float(rng.uniform(MIN_CROP_SIDE, 1.0))
    crop_w, crop_h = max(1, int(width * scale)), max(1, int(height * scale))
    # The crop must stay inside the rotation-safe box, so its centre moves within the slack.
    slack_x = max(0.0, (width * safe - crop_w) / 2)
    slack_y = max(0.0, (height * safe - crop_h) / 2)
    cx = width / 2 + float(rng.uniform(-slack_x, slack_x))
    cy = height / 2 + float(rng.uniform(-slack_y, slack_y))
    left, top = round(cx - crop_w / 2), round(cy - crop_h / 2)
    out = rotated.crop((left, top, left + crop_w, top + crop_h))
    if rng.uniform() < FLIP_PROBABILITY:
        out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return out


def make_view(img: Image.Image, photo_id: str, view: int) -> Image.Image:
    """View ``view`` of a photo: 0 is the photo unchanged, others are deterministic augmentations."""
    if view < 0:
        raise ValueError(f"view must be >= 0, got {view}")
    return img if view == 0 else augment(img, view_rng(photo_id, view))
