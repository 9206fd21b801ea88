"""Deterministic train/val/test splits by hashing photo ids.

The original project split 80/20 train/test and took 10% of train for validation. Hashing the id
(SHA-256, not Python's salted ``hash``) puts a photo in the same split on every run and machine, and
adding photos never moves the old ones.
"""
from __future__ import annotations

import hashlib

SPLITS = ("train", "val", "test")
TEST_FRACTION = 0.2
VAL_FRACTION = 0.1  # of what is not test


def unit_interval(photo_id: str) -> float:
    """A uniform-looking number in [0, 1) fixed by the photo id alone."""
    digest = hashlib.sha256(photo_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_of(photo_id: str) -> str:
    """'test' for 20% of ids, 'val' for 10% of the rest, 'train' otherwise."""
    u = unit_interval(photo_id)
    if u < TEST_FRACTION:
        return "test"
    if u < TEST_FRACTION + (1 - TEST_FRACTION) * VAL_FRACTION:
        return "val"
    return "train"
