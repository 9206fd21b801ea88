"""Secrets (bot token, API keys) come from files, never from the command line where `ps` would show them."""
from __future__ import annotations

from pathlib import Path

from hashtag.runtime.errors import ConfigError


def read_secret(path: Path, what: str) -> str:
    """The secret in the file ``path`` (surrounding whitespace dropped); ConfigError if unreadable or empty."""
    try:
        secret = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the {what} file {path}: {getattr(exc, 'strerror', None) or exc}") from None
    if not secret:
        raise ConfigError(f"the {what} file {path} is empty")
    return secret
