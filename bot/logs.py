"""Logging for the bot with secrets scrubbed: PTB, httpx and tracebacks all put the token in request URLs."""
from __future__ import annotations

import logging
import sys
from typing import Iterable
from urllib.parse import quote

REDACTED = "<redacted>"
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class RedactingFormatter(logging.Formatter):
    """Formats a record, traceback included, then replaces every secret (raw or URL-quoted) by a marker."""

    def __init__(self, secrets: Iterable[str], fmt: str = FORMAT) -> None:
        super().__init__(fmt)
        forms = {form for s in secrets if s for form in (s, quote(s, safe=""), quote(s))}
        self._secrets = sorted(forms, key=len, reverse=True)

    def redact(self, text: str) -> str:
        """``text`` with every secret replaced."""
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return text

    def format(self, record: logging.LogRecord) -> str:
        return self.redact(super().format(record))


def configure_logging(level: int, secrets: Iterable[str]) -> RedactingFormatter:
    """Send all logging to stderr through the redacting formatter; quiet httpx's per-request lines."""
    formatter = RedactingFormatter(secrets)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # httpx logs every request URL (which holds the token) at INFO; keep it for --log-level debug only.
    noisy = logging.DEBUG if level <= logging.DEBUG else logging.WARNING
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(noisy)
    return formatter
