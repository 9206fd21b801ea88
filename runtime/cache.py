"""The user's cache folder for hashtag: ``$HASHTAG_CACHE``, by default ``~/.cache/hashtag`` (see settings)."""
from __future__ import annotations

from pathlib import Path

from hashtag.runtime.settings import settings


def cache_dir(name: str) -> Path:
    """``$HASHTAG_CACHE/<name>`` (default ``~/.cache/hashtag/<name>``); not created here."""
    return settings().cache / name
