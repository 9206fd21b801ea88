"""The user's cache folder for hashtag: ``$HASHTAG_CACHE``, by default ``~/.cache/hashtag``."""
from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "HASHTAG_CACHE"


def cache_dir(name: str) -> Path:
    """``$HASHTAG_CACHE/<name>`` (default ``~/.cache/hashtag/<name>``); not created here."""
    root = os.environ.get(CACHE_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "hashtag")
    return Path(root) / name
