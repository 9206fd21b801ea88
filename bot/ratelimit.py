"""Staying within Telegram's flood limits: PTB's AIORateLimiter plus the per-chat pace it leaves out.

Telegram allows about 30 messages per second overall, 20 per minute in a group and one per second in a
chat. PTB's AIORateLimiter paces the first two and retries a request answered 429 after its
``retry_after``, but it does not pace private chats, and after any 429 it holds *every* request for
``retry_after``: one chat's album would stall all chats. So ``FloodControl`` also paces each chat's
messages (chat actions are not messages and are not paced), gives up on a ``retry_after`` longer than
``MAX_RETRY_AFTER_S`` instead of holding the bot for it, and logs how long it held each message.
"""
from __future__ import annotations

import contextlib
import datetime as dtm
import logging
import re
import time
import warnings
from typing import Any, AsyncContextManager, Callable, Coroutine

from aiolimiter import AsyncLimiter
from telegram.error import RetryAfter, TelegramError
from telegram.ext import AIORateLimiter
from telegram.warnings import PTBDeprecationWarning

log = logging.getLogger(__name__)
MAX_RETRIES = 5  # 429 answers in a row for one request before it fails
MAX_RETRY_AFTER_S = 60.0  # a longer flood wait is not waited for: the request fails at once
LOG_HELD_S = 0.05  # messages held at least this long are logged (shorter: the limiter's own granularity)
PACED_METHODS = frozenset({"sendMessage"})  # what the bot sends that counts as a message in a chat
MAX_CHAT_LIMITERS = 1024  # beyond this many, idle ones are dropped
HELD_FORMAT = "flood control held %s to chat %s (reply to %s) for %.3f s"
HELD_RE = re.compile(r"flood control held (?P<method>\w+) to chat (?P<chat>\S+) \(reply to (?P<reply>\S+)\) "
                     r"for (?P<seconds>[0-9.]+) s")


class FloodWaitTooLong(TelegramError):
    """Telegram asked to wait longer than ``MAX_RETRY_AFTER_S`` before the next request."""


def retry_after_s(exc: RetryAfter) -> float:
    """The wait Telegram asked for, in seconds (PTB 22 gives int or timedelta, and warns on reading it)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        value = exc.retry_after
    return value.total_seconds() if isinstance(value, dtm.timedelta) else float(value)


class FloodControl(AIORateLimiter):
    """AIORateLimiter (Telegram's overall and group limits, 429s retried) with each chat paced too."""

    def __init__(self, message_interval_s: float) -> None:
        super().__init__(max_retries=MAX_RETRIES)
        self._interval = message_interval_s
        self._chats: dict[Any, AsyncLimiter] = {}

    def _chat_pace(self, endpoint: str, chat_id: Any) -> AsyncContextManager[None]:
        """The limiter a message to ``chat_id`` waits on; idle ones are dropped once there are many."""
        if endpoint not in PACED_METHODS or chat_id is None or not self._interval:
            return contextlib.nullcontext()
        limiter = self._chats.get(chat_id)
        if limiter is None:
            if len(self._chats) >= MAX_CHAT_LIMITERS:
                self._chats = {k: v for k, v in self._chats.items() if not v.has_capacity(v.max_rate)}
            limiter = self._chats[chat_id] = AsyncLimiter(1, self._interval)
        return limiter

    async def process_request(
        self,
        callback: Callable[..., Coroutine[Any, Any, bool | dict[str, Any] | list[dict[str, Any]]]],
        args: Any,
        kwargs: dict[str, Any],
        endpoint: str,
        data: dict[str, Any],
        rate_limit_args: int | None,
    ) -> bool | dict[str, Any] | list[dict[str, Any]]:
        """Wait for the chat's turn, then let AIORateLimiter pace and retry; log the time held."""
        started = time.monotonic()
        calling = 0.0

        async def call(*a: Any, **kw: Any) -> bool | dict[str, Any] | list[dict[str, Any]]:
            nonlocal calling
            t0 = time.monotonic()
            try:
                return await callback(*a, **kw)
            except RetryAfter as exc:
                if retry_after_s(exc) > MAX_RETRY_AFTER_S:
                    raise FloodWaitTooLong(f"{endpoint}: {exc} (more than {MAX_RETRY_AFTER_S:.0f} s)") from exc
                raise
            finally:
                calling += time.monotonic() - t0

        chat_id = data.get("chat_id")
        try:
            async with self._chat_pace(endpoint, chat_id):
                return await super().process_request(call, args, kwargs, endpoint, data, rate_limit_args)
        finally:
            held = time.monotonic() - started - calling
            if held >= LOG_HELD_S:
                reply = getattr(data.get("reply_parameters"), "message_id", None)
                log.info(HELD_FORMAT, endpoint, chat_id, reply, held)
