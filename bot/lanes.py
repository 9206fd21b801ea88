"""Fairness between chats: each chat's updates are handled one at a time, in order; chats run side by side.

Why one at a time: Telegram lets a bot send about one message per second to a chat, while tagging a
photo takes about 0.1 s, so working on two photos of one chat at once would only make the second reply
wait for flood control while it holds an inference worker another chat could use. With one update per
chat in flight, a chat that sends 50 photos has one of them in the inference pool at any time, and a
photo from another chat waits for at most one photo per busy chat, never behind the whole burst.
In order: an album is answered in album order, and ``/threshold 0.3`` applies to the photo sent after it.

PTB's BaseUpdateProcessor is the hook for this; its semaphore counts updates waiting for their chat's
turn too, so it is sized for many of those (they are cheap: nothing is downloaded before the turn).
"""
from __future__ import annotations

import asyncio
from typing import Any, Awaitable

from telegram import Update
from telegram.ext import BaseUpdateProcessor

MAX_PENDING_UPDATES = 4096


class ChatLanes(BaseUpdateProcessor):
    """Runs each chat's updates sequentially and different chats' updates concurrently."""

    def __init__(self, max_pending_updates: int = MAX_PENDING_UPDATES) -> None:
        super().__init__(max_pending_updates)
        self._lanes: dict[int, tuple[asyncio.Lock, int]] = {}  # chat id -> lock, updates using it

    async def do_process_update(self, update: object, coroutine: Awaitable[Any]) -> None:
        """Wait for the chat's previous updates, then handle this one."""
        chat = update.effective_chat if isinstance(update, Update) else None
        if chat is None:
            await coroutine
            return
        lock, users = self._lanes.get(chat.id, (asyncio.Lock(), 0))
        self._lanes[chat.id] = (lock, users + 1)
        try:
            async with lock:
                await coroutine
        finally:
            lock, users = self._lanes[chat.id]
            if users == 1:
                del self._lanes[chat.id]
            else:
                self._lanes[chat.id] = (lock, users - 1)

    async def initialize(self) -> None:
        """Nothing to allocate."""

    async def shutdown(self) -> None:
        """Nothing to free."""
