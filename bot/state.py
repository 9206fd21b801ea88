"""Per-chat settings that survive a restart: PTB persistence backed by one SQLite file.

Why not PTB's PicklePersistence: it rewrites its whole file in place on every change (a crash mid-write
leaves a corrupt file), treats a file it cannot read as empty and later overwrites it, and unpickling a
file runs whatever code the file names. Here each change is one committed row (SQLite writes atomically),
values are JSON, the file is created private (0600, SQLite's journal copies the mode), and a file that
cannot be opened, is not a database or belongs to something else stops the bot at start with a message
naming it: it is never wiped. Chats with default settings have no row.
"""
from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path
from typing import Any

from telegram.ext import DictPersistence, PersistenceInput

from hashtag.runtime.errors import ConfigError

APPLICATION_ID = 0x68617368  # "hash": marks the file as ours (SQLite's PRAGMA application_id)
UPDATE_INTERVAL_S = 5.0  # PTB writes changed chat data this often, and when the bot stops
SCHEMA = "CREATE TABLE IF NOT EXISTS chat_data (chat_id INTEGER PRIMARY KEY, data TEXT NOT NULL)"


def open_state(path: Path) -> sqlite3.Connection:
    """The state database at ``path``, created (private) when missing; ConfigError naming it otherwise."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
        db = sqlite3.connect(path)
    except (OSError, sqlite3.Error) as exc:
        raise ConfigError(f"cannot open the state file {path}: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        if db.execute("PRAGMA application_id").fetchone()[0] != APPLICATION_ID:
            if db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
                raise ConfigError(f"the state file {path} is a database of another program; "
                                  "pass another --state-file")
            with db:
                db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        with db:
            db.execute(SCHEMA)
        for _, text in db.execute("SELECT chat_id, data FROM chat_data"):
            if not isinstance(json.loads(text), dict):
                raise ValueError("a chat's settings are not a JSON object")
    except (sqlite3.Error, ValueError) as exc:
        db.close()
        raise ConfigError(f"the state file {path} is corrupt or not a hashtag bot state file ({exc}); "
                          "move it away to start with default settings") from None
    except ConfigError:
        db.close()
        raise
    return db


class ChatSettings(DictPersistence):
    """chat_data in SQLite, one JSON row per chat; the bot keeps no other data (PTB's dict persistence)."""

    def __init__(self, path: Path, update_interval: float = UPDATE_INTERVAL_S) -> None:
        super().__init__(store_data=PersistenceInput(bot_data=False, chat_data=True, user_data=False,
                                                     callback_data=False),
                         update_interval=update_interval)
        self.path = path
        self._db = open_state(path)
        self._saved: dict[int, str] = dict(self._db.execute("SELECT chat_id, data FROM chat_data").fetchall())

    async def get_chat_data(self) -> dict[int, dict[str, Any]]:
        """Every chat's settings, read at start."""
        return {chat: json.loads(text) for chat, text in self._saved.items()}

    async def update_chat_data(self, chat_id: int, data: dict[str, Any]) -> None:
        """Commit a chat's settings when they changed (default settings: no row)."""
        text = json.dumps(data, sort_keys=True)
        if self._saved.get(chat_id, "{}") == text:
            return
        with self._db:
            if data:
                self._db.execute("INSERT INTO chat_data (chat_id, data) VALUES (?, ?) "
                                 "ON CONFLICT (chat_id) DO UPDATE SET data = excluded.data", (chat_id, text))
            else:
                self._db.execute("DELETE FROM chat_data WHERE chat_id = ?", (chat_id,))
        if data:
            self._saved[chat_id] = text
        else:
            self._saved.pop(chat_id, None)

    async def drop_chat_data(self, chat_id: int) -> None:
        """Forget a chat (PTB calls this when the application drops its data)."""
        await self.update_chat_data(chat_id, {})

    async def flush(self) -> None:
        """Every change is committed already; close the file (PTB calls this last, when stopping)."""
        self._db.close()
