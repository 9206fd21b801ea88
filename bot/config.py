"""The bot's configuration, validated once: the token stays out of argv, reprs and logs."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import platformdirs
from telegram.constants import FloodLimit

from hashtag.runtime.errors import ConfigError, ProviderError
from hashtag.runtime.secrets import read_secret
from hashtag.runtime.providers import check_provider, usable_cpus
from hashtag.runtime.settings import BOT_TOKEN_ENV, Settings

DEFAULT_API_URL = "https://api.telegram.org"
# The cloud Bot API serves downloads up to 20 MB; a self-hosted server in --local mode allows more.
CLOUD_DOWNLOAD_LIMIT = 20 * 1024 * 1024
TOKEN_RE = re.compile(r"^[0-9]+:[A-Za-z0-9_-]+$")
# Telegram allows 1-256 characters A-Z, a-z, 0-9, _ and - in a webhook secret token.
SECRET_RE = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
# Telegram: "avoid sending more than one message per second" in a single chat.
MESSAGE_INTERVAL_S = 1 / FloodLimit.MESSAGES_PER_SECOND_PER_CHAT


def default_state_file(token: str) -> Path:
    """Per-chat settings of this bot in the user's data directory (one file per bot: the id is in the name)."""
    bot_id = token.split(":", 1)[0]
    return platformdirs.user_data_path("hashtag", appauthor=False) / f"bot-{bot_id}-state.sqlite3"


def default_workers() -> int:
    """Inference threads: one per CPU this process may use (ONNX Runtime releases the GIL)."""
    return usable_cpus()


def read_token(token_file: Path | None, env: Settings) -> str:
    """The bot token from ``token_file`` when given, else from the environment ($TELEGRAM_BOT_TOKEN)."""
    if token_file is not None:
        token = read_secret(token_file, "token")
        source = f"token file {token_file}"
    else:
        if env.bot_token is None:
            raise ConfigError(f"no bot token: set {BOT_TOKEN_ENV} or pass --token-file")
        token, source = env.bot_token, f"${BOT_TOKEN_ENV}"
    if not TOKEN_RE.match(token):
        raise ConfigError(f"the {source} does not hold a bot token (expected '<bot id>:<secret>' from @BotFather)")
    return token


@dataclass(frozen=True)
class WebhookConfig:
    """Receive updates on an HTTP server that Telegram (or a reverse proxy) POSTs to."""

    url: str
    listen: str = "127.0.0.1"
    port: int = 8443
    secret_token: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(f"--webhook-url must be an http(s) URL, got {self.url!r}")
        if not 1 <= self.port <= 65535:
            raise ConfigError(f"--port must be in 1..65535, got {self.port}")
        if self.secret_token is not None and not SECRET_RE.match(self.secret_token):
            raise ConfigError("--secret-token must be 1-256 characters from A-Z, a-z, 0-9, _ and -")

    @property
    def url_path(self) -> str:
        """The local path to serve: the webhook URL's path (a proxy usually forwards it unchanged)."""
        return urlsplit(self.url).path.strip("/")


@dataclass(frozen=True)
class BotConfig:
    """Everything ``hashtag bot`` needs; ``repr`` never shows the token or the tagger's key.

    Photos are tagged by the bundle ``models`` in this process, or by the `hashtag serve` at ``tagger_url``.
    """

    token: str = field(repr=False)
    models: Path | None = None
    tagger_url: str | None = None
    tagger_key: str | None = field(default=None, repr=False)
    api_url: str = DEFAULT_API_URL
    provider: str = "auto"
    workers: int = field(default_factory=default_workers)
    threads: int | None = None
    download_limit: int = CLOUD_DOWNLOAD_LIMIT
    webhook: WebhookConfig | None = None
    state_file: Path | None = None  # None: settings live in memory only
    fast: bool = False  # chats use the fast model until they send /fast off
    message_interval_s: float = MESSAGE_INTERVAL_S  # Telegram's; tests run on a faster clock

    def __post_init__(self) -> None:
        if not TOKEN_RE.match(self.token):
            raise ConfigError("the bot token must look like '<bot id>:<secret>'")
        parts = urlsplit(self.api_url)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
            raise ConfigError(f"--api-url must be an http(s) URL such as {DEFAULT_API_URL}, got {self.api_url!r}")
        object.__setattr__(self, "api_url", self.api_url.rstrip("/"))
        if (self.models is None) == (self.tagger_url is None):
            raise ConfigError("tag photos either with a model bundle or with a tagger URL, not both or neither")
        if self.tagger_url is not None:
            tagger = urlsplit(self.tagger_url)
            if tagger.scheme not in ("http", "https") or not tagger.netloc or tagger.query or tagger.fragment:
                raise ConfigError(f"--tagger-url must be the http(s) URL of a hashtag serve, got {self.tagger_url!r}")
        if self.tagger_key is not None and self.tagger_url is None:
            raise ConfigError("a tagger API key needs a tagger URL")
        try:
            check_provider(self.provider)
        except ProviderError as exc:
            raise ConfigError(str(exc)) from None
        if self.workers < 1:
            raise ConfigError(f"--workers must be at least 1, got {self.workers}")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"--threads must be at least 1, got {self.threads}")
        if self.download_limit < 1:
            raise ConfigError(f"the download limit must be positive, got {self.download_limit}")
        if self.message_interval_s < 0:
            raise ConfigError(f"the message interval must not be negative, got {self.message_interval_s}")

    @property
    def base_url(self) -> str:
        """PTB's base_url: methods go to ``<api>/bot<token>/<method>``."""
        return f"{self.api_url}/bot"

    @property
    def base_file_url(self) -> str:
        """PTB's base_file_url: downloads come from ``<api>/file/bot<token>/<file_path>``."""
        return f"{self.api_url}/file/bot"

    @property
    def secrets(self) -> tuple[str, ...]:
        """Strings that must never reach a log."""
        extra = (self.webhook.secret_token,) if self.webhook and self.webhook.secret_token else ()
        key = (self.tagger_key,) if self.tagger_key else ()
        return (self.token, *extra, *key)
