"""What the fake Bot API server saw and did, and waits on it: tests read the record after the fact.

Every request is kept with its answer's HTTP status (``requests``, ``calls``), every message the bot sent in
order and by chat (``sent``, ``replies_to``). Waits are for events, never for time: ``wait_for`` re-checks a
condition after every change on the server, ``reply_to`` and ``answer`` wake when the bot writes in their chat;
their timeouts only bound a failure.
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, Callable

RESET = -1  # Request.status of a request whose connection was reset instead of answered


@dataclass
class Request:
    """One request the server received: API method ('download' for files, 'webhook' for deliveries),
    parameters, arrival time and the answer's HTTP status (0 while it is still being answered, e.g. a long
    poll or a held download, or when the client went away first; RESET when the server reset the connection)."""

    method: str
    params: dict[str, Any]
    at: float = field(default_factory=time.monotonic)
    status: int = 0


class Changes:
    """The one condition everything waiting on the server shares (tests, long polls, webhook delivery, held
    downloads): notified after every change, so each waiter re-checks its own predicate."""

    def __init__(self) -> None:
        self._condition = asyncio.Condition()
        self._pending: set[asyncio.Task[None]] = set()

    async def notify(self) -> None:
        async with self._condition:
            self._condition.notify_all()

    def notify_soon(self) -> None:
        """``notify`` from synchronous code (a user's message, a released download)."""
        task = asyncio.get_running_loop().create_task(self.notify())
        self._pending.add(task)  # the loop keeps only weak references to tasks
        task.add_done_callback(self._pending.discard)

    async def wait_for(self, predicate: Callable[[], bool], timeout: float | None = None) -> None:
        """Until ``predicate()`` holds; asyncio.TimeoutError after ``timeout`` seconds (None: no limit)."""
        async with self._condition:
            await asyncio.wait_for(self._condition.wait_for(predicate), timeout)


class Inspection:
    """The record of requests and sent messages (a base of FakeBotApi, which fills it)."""

    def __init__(self, changes: Changes) -> None:
        self.requests: list[Request] = []
        self._changes = changes
        self._sent: list[dict[str, Any]] = []
        self._by_chat: dict[int, list[dict[str, Any]]] = {}
        self._chat_waiters: dict[int, list[asyncio.Future[None]]] = {}

    @property
    def sent(self) -> list[dict[str, Any]]:
        """Every message the bot sent, in order."""
        return list(self._sent)

    def replies_to(self, message: dict[str, Any]) -> list[dict[str, Any]]:
        """Every message the bot sent quoting ``message`` (exactly one, for a photo)."""
        return [m for m in self._by_chat.get(message["chat"]["id"], ()) if _replies_to(m, message)]

    def calls(self, method: str) -> list[Request]:
        """The recorded requests of one method ('download' for file downloads)."""
        return [r for r in self.requests if r.method == method]

    async def wait_for(self, predicate: Callable[[], bool], timeout: float) -> None:
        """Wait until ``predicate()`` holds, re-checked after every change; TimeoutError after ``timeout``."""
        await self._changes.wait_for(predicate, timeout)

    async def reply_to(self, message: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
        """The bot's first message quoting ``message``; TimeoutError if none comes in time."""
        return await self._first_in_chat(message, lambda m: _replies_to(m, message), timeout)

    async def answer(self, message: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
        """The bot's first message in ``message``'s chat sent after it, quoting it or not."""
        return await self._first_in_chat(message, lambda m: m["message_id"] > message["message_id"], timeout)

    async def _first_in_chat(self, message: dict[str, Any], match: Callable[[dict[str, Any]], bool],
                             timeout: float) -> dict[str, Any]:
        """Wait on this chat only, so many simulated users waiting at once stay cheap."""
        chat_id = message["chat"]["id"]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            found = next((m for m in self._by_chat.get(chat_id, ()) if match(m)), None)
            if found is not None:
                return found
            waiter = loop.create_future()
            self._chat_waiters.setdefault(chat_id, []).append(waiter)
            await asyncio.wait_for(waiter, max(deadline - loop.time(), 0))

    def _record(self, method: str, params: dict[str, Any], status: int = 0) -> Request:
        request = Request(method, params, status=status)
        self.requests.append(request)
        return request

    def _keep_sent(self, message: dict[str, Any]) -> None:
        """Record a message the bot sent and wake whoever waits on its chat."""
        chat_id = message["chat"]["id"]
        self._sent.append(message)
        self._by_chat.setdefault(chat_id, []).append(message)
        for waiter in self._chat_waiters.pop(chat_id, []):
            if not waiter.done():
                waiter.set_result(None)


def _replies_to(sent: dict[str, Any], message: dict[str, Any]) -> bool:
    original = sent.get("reply_to_message") or {}
    return sent["chat"]["id"] == message["chat"]["id"] and original.get("message_id") == message["message_id"]
