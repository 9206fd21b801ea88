"""The simulated users of the fake Bot API server: the files they upload and the messages they send.

Each message becomes an update, queued for the bot's getUpdates or webhook (protocol.py). Message ids are
unique per server and shared with the messages the bot sends, as in a Telegram chat.
"""
from __future__ import annotations

import itertools
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from .inspection import Changes

# Fields Telegram always sends for each kind of media a user can send instead of a photo (minimal valid objects).
MEDIA_FIELDS: dict[str, dict[str, Any]] = {
    "sticker": {"width": 512, "height": 512, "is_animated": False, "is_video": False, "type": "regular"},
    "video": {"width": 640, "height": 360, "duration": 3},
    "animation": {"width": 320, "height": 240, "duration": 2},
    "voice": {"duration": 2},
    "audio": {"duration": 60},
    "video_note": {"length": 240, "duration": 3},
}


@dataclass(frozen=True)
class StoredFile:
    """A file users 'uploaded': its bytes and the size Telegram declares for it (may differ, for tests)."""

    file_id: str
    file_unique_id: str
    file_path: str
    data: bytes
    declared_size: int


class Users:
    """What users send: files, messages and the updates they make (a base of FakeBotApi, which serves them)."""

    def __init__(self, changes: Changes) -> None:
        self._changes = changes
        self._ids = itertools.count(1)
        self._update_ids = itertools.count(1)
        self._files: dict[str, StoredFile] = {}
        self._paths: dict[str, StoredFile] = {}
        self._messages: dict[tuple[int, int], dict[str, Any]] = {}
        self._updates: deque[dict[str, Any]] = deque()

    @property
    def pending_updates(self) -> int:
        """Updates not yet confirmed (getUpdates) or delivered (webhook)."""
        return len(self._updates)

    def add_file(self, data: bytes, kind: str = "photos", suffix: str = "jpg",
                 declared_size: int | None = None) -> StoredFile:
        """Store a file as if a user had uploaded it; ``declared_size`` overrides the size Telegram reports."""
        n = next(self._ids)
        stored = StoredFile(f"FILE{n}", f"U{n}", f"{kind}/file_{n}.{suffix}", bytes(data),
                            len(data) if declared_size is None else declared_size)
        self._files[stored.file_id] = stored
        self._paths[stored.file_path] = stored
        return stored

    def send_message(self, chat_id: int, **content: Any) -> dict[str, Any]:
        """A user sends a message with ``content`` (Bot API Message fields); returns the message."""
        message = {
            "message_id": next(self._ids),
            "date": int(time.time()),
            "chat": {"id": chat_id, "type": "private", "first_name": f"User{chat_id}"},
            "from": {"id": chat_id, "is_bot": False, "first_name": f"User{chat_id}"},
            **content,
        }
        self._messages[(chat_id, message["message_id"])] = message
        self.push_update({"message": message})
        return message

    def send_text(self, chat_id: int, text: str) -> dict[str, Any]:
        """A user sends text; a leading '/word' is marked as a bot command, as Telegram does."""
        entities = []
        if text.startswith("/"):
            entities = [{"type": "bot_command", "offset": 0, "length": len(text.split()[0])}]
        return self.send_message(chat_id, text=text, **({"entities": entities} if entities else {}))

    def send_photo(self, chat_id: int, data: bytes, size: tuple[int, int] = (640, 480),
                   thumbnail: bytes | None = None, media_group_id: str | None = None,
                   declared_size: int | None = None) -> dict[str, Any]:
        """A user sends a compressed photo; Telegram lists its sizes smallest first."""
        sizes = []
        if thumbnail is not None:
            sizes.append(_photo_size(self.add_file(thumbnail), (90, 90 * size[1] // max(size[0], 1))))
        sizes.append(_photo_size(self.add_file(data, declared_size=declared_size), size))
        extra = {"media_group_id": media_group_id} if media_group_id else {}
        return self.send_message(chat_id, photo=sizes, **extra)

    def send_document(self, chat_id: int, data: bytes, file_name: str, mime_type: str | None,
                      declared_size: int | None = None, size_in_message: bool = True) -> dict[str, Any]:
        """A user sends a file as a document (original quality for images).

        ``size_in_message=False`` leaves file_size out of the message (it is optional there), so only
        getFile can tell the size.
        """
        suffix = file_name.rsplit(".", 1)[-1] if "." in file_name else "bin"
        stored = self.add_file(data, kind="documents", suffix=suffix, declared_size=declared_size)
        document = {"file_id": stored.file_id, "file_unique_id": stored.file_unique_id, "file_name": file_name,
                    **({"file_size": stored.declared_size} if size_in_message else {}),
                    **({"mime_type": mime_type} if mime_type else {})}
        return self.send_message(chat_id, document=document)

    def send_media(self, chat_id: int, kind: str, data: bytes = b"\0" * 64, **fields: Any) -> dict[str, Any]:
        """A user sends a sticker, video, voice, audio, video_note or animation (``MEDIA_FIELDS``)."""
        stored = self.add_file(data, kind=kind + "s", suffix="bin")
        base: dict[str, Any] = {"file_id": stored.file_id, "file_unique_id": stored.file_unique_id,
                                "file_size": stored.declared_size}
        content: dict[str, Any] = {kind: {**base, **MEDIA_FIELDS[kind], **fields}}
        if kind == "animation":  # Telegram sends animations with a document field too
            content["document"] = {**base, "file_name": "animation.mp4", "mime_type": "video/mp4"}
        return self.send_message(chat_id, **content)

    def push_update(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Queue an update (``payload`` is e.g. ``{"message": {...}}``) for getUpdates or the webhook."""
        update = {"update_id": next(self._update_ids), **payload}
        self._updates.append(update)
        self._changes.notify_soon()
        return update


def _photo_size(stored: StoredFile, size: tuple[int, int]) -> dict[str, Any]:
    return {"file_id": stored.file_id, "file_unique_id": stored.file_unique_id,
            "width": size[0], "height": size[1], "file_size": stored.declared_size}
