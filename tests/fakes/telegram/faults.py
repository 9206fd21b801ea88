"""What goes wrong on the fake Bot API server: Telegram's flood control and the faults a test injects.

Flood control as Telegram's: sendMessage past about one message per second in a chat (short bursts
tolerated) or 30 per second overall is answered 429 with ``parameters.retry_after`` (``FloodRules``;
``flood=None`` turns it off). Its buckets run on a clock a test may drive by hand, so what it allows does not
depend on the machine's speed. Faults are injected per method: an error answer (``fail``, also 429 with
``retry_after``) or a connection reset before or after the call took effect (``reset``). A file's downloads
can be held unanswered until the test releases them (``hold_download``): a slow network that ends on an
event, not after some time.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Callable

from .inspection import RESET, Changes


@dataclass(frozen=True)
class FloodRules:
    """Telegram's limits on messages a bot sends: per chat, a bucket of ``burst`` messages refilled one per
    ``message_interval_s``; overall, ``overall_per_s``. Past them: 429 with ``retry_after`` (whole seconds)."""

    message_interval_s: float = 1.0
    burst: int = 3
    overall_per_s: float = 30.0


TELEGRAM_FLOOD = FloodRules()


class _Bucket:
    """A token bucket: ``capacity`` tokens, one more every ``interval`` seconds of ``clock``."""

    def __init__(self, capacity: float, interval: float, clock: Callable[[], float]) -> None:
        self.capacity, self.interval, self.clock = capacity, interval, clock
        self.tokens, self.at = capacity, clock()

    def take(self) -> float:
        """Take a token and return 0, or return the seconds until one is there (taking nothing)."""
        now = self.clock()
        self.tokens = min(self.capacity, self.tokens + (now - self.at) / self.interval)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) * self.interval


@dataclass
class Fault:
    """An injected fault for the next ``times`` calls of a method: an error answer, or a connection
    ``reset`` "before" or "after" the call takes effect."""

    status: int
    description: str
    times: int
    retry_after: int | None = None
    reset: str = ""


class Faults:
    """Flood control and injected faults (a base of FakeBotApi, which consults them on every call)."""

    def __init__(self, flood: FloodRules | None, clock: Callable[[], float], changes: Changes) -> None:
        self.flood = flood
        self._clock = clock
        self._changes = changes
        self._overall = _Bucket(flood.overall_per_s, 1 / flood.overall_per_s, clock) if flood else None
        self._chat_buckets: dict[int, _Bucket] = {}
        self._faults: dict[str, deque[Fault]] = {}
        self._held: set[str] = set()

    def fail(self, method: str, status: int = 500, description: str | None = None, times: int = 1,
             retry_after: int | None = None) -> None:
        """Answer the next ``times`` calls of ``method`` ('download' for files) with an error; with
        ``retry_after``, a 429 as Telegram's flood control sends it."""
        if retry_after is not None:
            status = 429
        if description is None:
            description = f"Too Many Requests: retry after {retry_after}" if status == 429 else "Internal Server Error"
        self._faults.setdefault(method, deque()).append(Fault(status, description, times, retry_after))

    def reset(self, method: str, times: int = 1, after_effect: bool = False) -> None:
        """Reset the connection of the next ``times`` calls of ``method`` instead of answering: before the call
        takes effect, or (``after_effect``) once it has (a message is then sent but the bot cannot know)."""
        fault = Fault(RESET, "connection reset", times, reset="after" if after_effect else "before")
        self._faults.setdefault(method, deque()).append(fault)

    def hold_download(self, file_id: str) -> None:
        """Leave downloads of ``file_id`` unanswered until ``release_download`` (or the server closes)."""
        self._held.add(file_id)

    def release_download(self, file_id: str) -> None:
        """Answer the held downloads of ``file_id``, and later ones at once."""
        self._held.discard(file_id)
        self._changes.notify_soon()

    def _is_held(self, file_id: str) -> bool:
        return file_id in self._held

    def _take_fault(self, method: str) -> Fault | None:
        """The fault for this call of ``method``, if one is queued (counted as used)."""
        queue = self._faults.get(method)
        if not queue:
            return None
        fault = queue[0]
        fault.times -= 1
        if fault.times <= 0:
            queue.popleft()
        return fault

    def _flood_wait(self, chat_id: int) -> int:
        """0 when a message to ``chat_id`` may go now (it is counted), else the ``retry_after`` to answer."""
        if self.flood is None or self._overall is None:
            return 0
        bucket = self._chat_buckets.setdefault(
            chat_id, _Bucket(self.flood.burst, self.flood.message_interval_s, self._clock))
        wait = bucket.take()
        if not wait:
            wait = self._overall.take()
            if wait:  # give the chat its token back: this message is not sent
                bucket.tokens += 1
        return max(1, math.ceil(wait)) if wait else 0
