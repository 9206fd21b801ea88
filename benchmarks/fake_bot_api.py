"""A loopback fake of the Telegram Bot API server, for tests and benchmarks only (never used by the bot).

It speaks Telegram's HTTP protocol as python-telegram-bot uses it, on 127.0.0.1 and a free port:
methods are ``POST <url>/bot<token>/<method>`` with form-encoded, multipart or JSON parameters, files are
``GET <url>/file/bot<token>/<file_path>``, and errors look like Telegram's
(``{"ok": false, "error_code": N, "description": "..."}`` with the same HTTP status).

Implemented: getMe, deleteWebhook, setWebhook, getWebhookInfo, getUpdates (a queue with offset
confirmation and long polling), sendMessage, sendChatAction, getFile (``Bad Request: file is too big``
past 20 MB) and file downloads. Once a webhook is set, updates are POSTed to it with the secret token
header instead, as Telegram does. The test side plays the users (``send_photo``, ``send_document``,
...), waits for the bot's replies (``reply_to``) and inspects every request (``requests``, ``calls``)
and every message sent (``sent``, ``replies_to``).

Flood control as Telegram's: sendMessage past about one message per second in a chat (short bursts
tolerated) or 30 per second overall is answered 429 with ``parameters.retry_after``
(``FloodRules``; ``flood=None`` turns it off). Faults can be injected per method: an error answer
(``fail``, also 429 with ``retry_after``) or a connection reset before or after the call took effect
(``reset``); downloads can be slowed per file (``slow_file``).

aiohttp is imported here only; it is a test/benchmark dependency, not one of the bot's.
"""
from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import math
import socket
import struct
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

from aiohttp import ClientError, ClientSession, ClientTimeout, web

CLOUD_DOWNLOAD_LIMIT = 20 * 1024 * 1024
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
# Parameters PTB sends as plain strings; everything else is JSON-encoded (numbers, objects, booleans).
STRING_PARAMS = frozenset({"text", "caption", "file_id", "url", "secret_token", "action", "parse_mode", "emoji"})
CHAT_ACTIONS = frozenset({"typing", "upload_photo", "record_video", "upload_video", "record_voice", "upload_voice",
                          "upload_document", "choose_sticker", "find_location", "record_video_note",
                          "upload_video_note"})
MAX_MESSAGE_LENGTH = 4096
RESET = -1  # Request.status of a request whose connection was reset instead of answered


@dataclass(frozen=True)
class FloodRules:
    """Telegram's limits on messages a bot sends: per chat, a bucket of ``burst`` messages refilled one per
    ``message_interval_s``; overall, ``overall_per_s``. Past them: 429 with ``retry_after`` (whole seconds)."""

    message_interval_s: float = 1.0
    burst: int = 3
    overall_per_s: float = 30.0


TELEGRAM_FLOOD = FloodRules()


class ApiError(Exception):
    """A Telegram-style error answer: HTTP status ``code``, the body's description, maybe ``retry_after``."""

    def __init__(self, code: int, description: str, retry_after: int | None = None) -> None:
        super().__init__(description)
        self.code = code
        self.description = description
        self.retry_after = retry_after

    def body(self) -> dict[str, Any]:
        extra = {"parameters": {"retry_after": self.retry_after}} if self.retry_after is not None else {}
        return {"ok": False, "error_code": self.code, "description": self.description, **extra}


class _Bucket:
    """A token bucket: ``capacity`` tokens, one more every ``interval`` seconds."""

    def __init__(self, capacity: float, interval: float) -> None:
        self.capacity, self.interval = capacity, interval
        self.tokens, self.at = capacity, time.monotonic()

    def take(self) -> float:
        """Take a token and return 0, or return the seconds until one is there (taking nothing)."""
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.at) / self.interval)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) * self.interval


@dataclass
class Request:
    """One request the server received: API method ('download', 'webhook' for deliveries), parameters,
    arrival time and the answer's HTTP status (0 while it is still being answered, e.g. a long poll, or
    when the client went away first; RESET when the server reset the connection)."""

    method: str
    params: dict[str, Any]
    at: float = field(default_factory=time.monotonic)
    status: int = 0


@dataclass
class StoredFile:
    """A file users 'uploaded': its bytes and the size Telegram declares for it (may differ, for tests)."""

    file_id: str
    file_unique_id: str
    file_path: str
    data: bytes
    declared_size: int
    delay: float = 0.0


@dataclass
class _Fault:
    status: int
    description: str
    times: int
    retry_after: int | None = None
    reset: str = ""  # "before" or "after" the call takes effect: the connection is reset instead of answered


@dataclass
class _State:
    """Everything mutable, kept in one place so a test can read it after the fact."""

    updates: deque[dict[str, Any]] = field(default_factory=deque)
    messages: dict[tuple[int, int], dict[str, Any]] = field(default_factory=dict)
    sent: list[dict[str, Any]] = field(default_factory=list)
    by_chat: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    chat_waiters: dict[int, list[asyncio.Future[None]]] = field(default_factory=dict)
    files: dict[str, StoredFile] = field(default_factory=dict)
    paths: dict[str, StoredFile] = field(default_factory=dict)
    faults: dict[str, deque[_Fault]] = field(default_factory=dict)
    chat_buckets: dict[int, _Bucket] = field(default_factory=dict)
    webhook_url: str = ""
    webhook_secret: str | None = None


def _decode_value(name: str, value: str) -> Any:
    if name in STRING_PARAMS:
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


class FakeBotApi:
    """The fake server. Use as ``async with FakeBotApi(token) as api:``; ``api.url`` is the --api-url."""

    def __init__(self, token: str, download_limit: int = CLOUD_DOWNLOAD_LIMIT,
                 bot_username: str = "hashtag_test_bot", flood: FloodRules | None = TELEGRAM_FLOOD) -> None:
        if ":" not in token:
            raise ValueError("a bot token looks like '<bot id>:<secret>'")
        self.token = token
        self.download_limit = download_limit
        self.bot_user = {"id": int(token.split(":", 1)[0]), "is_bot": True, "first_name": "Hashtag Test Bot",
                         "username": bot_username, "can_join_groups": True,
                         "can_read_all_group_messages": False, "supports_inline_queries": False}
        self.requests: list[Request] = []
        self.flood = flood
        self._overall = _Bucket(flood.overall_per_s, 1 / flood.overall_per_s) if flood else None
        self._state = _State()
        self._ids = itertools.count(1)
        self._update_ids = itertools.count(1)
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self._delivery: asyncio.Task[None] | None = None
        self._client: ClientSession | None = None
        self._closing = False
        self._background: set[asyncio.Task[None]] = set()
        self.url = ""

    # ----- lifecycle -----

    async def start(self) -> "FakeBotApi":
        """Listen on 127.0.0.1 and a free port."""
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._handle_method)
        app.router.add_get("/file/bot{token}/{path:.+}", self._handle_download)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        return self

    async def close(self) -> None:
        """Stop delivering and listening; pending long polls answer at once."""
        self._closing = True
        await self._notify()
        if self._delivery:
            self._delivery.cancel()
            await asyncio.gather(self._delivery, return_exceptions=True)
        if self._client:
            await self._client.close()
        if self._runner:
            await self._runner.cleanup()

    async def __aenter__(self) -> "FakeBotApi":
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ----- the user side: what tests and benchmarks drive -----

    def add_file(self, data: bytes, kind: str = "photos", suffix: str = "jpg", declared_size: int | None = None,
                 delay: float = 0.0) -> StoredFile:
        """Store a file as if a user had uploaded it; ``declared_size`` overrides the size Telegram reports."""
        n = next(self._ids)
        stored = StoredFile(f"FILE{n}", f"U{n}", f"{kind}/file_{n}.{suffix}", bytes(data),
                            len(data) if declared_size is None else declared_size, delay)
        self._state.files[stored.file_id] = stored
        self._state.paths[stored.file_path] = stored
        return stored

    def slow_file(self, file_id: str, seconds: float) -> None:
        """Make downloads of ``file_id`` take ``seconds`` longer (a slow network for one user)."""
        self._state.files[file_id].delay = seconds

    def fail(self, method: str, status: int = 500, description: str | None = None, times: int = 1,
             retry_after: int | None = None) -> None:
        """Answer the next ``times`` calls of ``method`` ('download' for files) with an error; with
        ``retry_after``, a 429 as Telegram's flood control sends it."""
        if retry_after is not None:
            status = 429
        if description is None:
            description = f"Too Many Requests: retry after {retry_after}" if status == 429 else "Internal Server Error"
        self._add_fault(method, _Fault(status, description, times, retry_after))

    def reset(self, method: str, times: int = 1, after_effect: bool = False) -> None:
        """Reset the connection of the next ``times`` calls of ``method`` instead of answering: before the call
        takes effect, or (``after_effect``) once it has (a message is then sent but the bot cannot know)."""
        self._add_fault(method, _Fault(RESET, "connection reset", times, reset="after" if after_effect else "before"))

    def _add_fault(self, method: str, fault: _Fault) -> None:
        self._state.faults.setdefault(method, deque()).append(fault)

    def send_message(self, chat_id: int, **content: Any) -> dict[str, Any]:
        """A user sends a message with ``content`` (Bot API Message fields); returns the message."""
        message = {
            "message_id": next(self._ids),
            "date": int(time.time()),
            "chat": {"id": chat_id, "type": "private", "first_name": f"User{chat_id}"},
            "from": {"id": chat_id, "is_bot": False, "first_name": f"User{chat_id}"},
            **content,
        }
        self._state.messages[(chat_id, message["message_id"])] = message
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
            thumb = self.add_file(thumbnail)
            sizes.append(self._photo_size(thumb, (90, 90 * size[1] // max(size[0], 1))))
        sizes.append(self._photo_size(self.add_file(data, declared_size=declared_size), size))
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
        """A user sends a sticker, video, voice, audio, video_note or animation (minimal valid objects)."""
        stored = self.add_file(data, kind=kind + "s", suffix="bin")
        base: dict[str, Any] = {"file_id": stored.file_id, "file_unique_id": stored.file_unique_id,
                                "file_size": stored.declared_size}
        required = {
            "sticker": {"width": 512, "height": 512, "is_animated": False, "is_video": False, "type": "regular"},
            "video": {"width": 640, "height": 360, "duration": 3},
            "animation": {"width": 320, "height": 240, "duration": 2},
            "voice": {"duration": 2},
            "audio": {"duration": 60},
            "video_note": {"length": 240, "duration": 3},
        }[kind]
        content: dict[str, Any] = {kind: {**base, **required, **fields}}
        if kind == "animation":  # Telegram sends animations with a document field too
            content["document"] = {**base, "file_name": "animation.mp4", "mime_type": "video/mp4"}
        return self.send_message(chat_id, **content)

    def push_update(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Queue an update (``payload`` is e.g. ``{"message": {...}}``) for getUpdates or the webhook."""
        update = {"update_id": next(self._update_ids), **payload}
        self._state.updates.append(update)
        task = asyncio.get_running_loop().create_task(self._notify())
        self._background.add(task)  # the loop keeps only weak references to tasks
        task.add_done_callback(self._background.discard)
        return update

    @property
    def sent(self) -> list[dict[str, Any]]:
        """Every message the bot sent, in order."""
        return list(self._state.sent)

    def replies_to(self, message: dict[str, Any]) -> list[dict[str, Any]]:
        """Every message the bot sent quoting ``message`` (exactly one, for a photo)."""
        return [m for m in self._state.by_chat.get(message["chat"]["id"], ()) if _replies_to(m, message)]

    @property
    def pending_updates(self) -> int:
        """Updates not yet confirmed (getUpdates) or delivered (webhook)."""
        return len(self._state.updates)

    @property
    def webhook_url(self) -> str:
        """The URL the bot registered with setWebhook ('' when none)."""
        return self._state.webhook_url

    def calls(self, method: str) -> list[Request]:
        """The recorded requests of one method ('download' for file downloads)."""
        return [r for r in self.requests if r.method == method]

    async def wait_for(self, predicate: Callable[[], bool], timeout: float) -> None:
        """Wait until ``predicate()`` holds, re-checked after every request; TimeoutError after ``timeout``."""
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(predicate), timeout)

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
            found = next((m for m in self._state.by_chat.get(chat_id, ()) if match(m)), None)
            if found is not None:
                return found
            waiter = loop.create_future()
            self._state.chat_waiters.setdefault(chat_id, []).append(waiter)
            await asyncio.wait_for(waiter, max(deadline - loop.time(), 0))

    # ----- the Bot API side -----

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    def _record(self, method: str, params: dict[str, Any], status: int = 0) -> Request:
        request = Request(method, params, status=status)
        self.requests.append(request)
        return request

    def _take_fault(self, method: str) -> _Fault | None:
        queue = self._state.faults.get(method)
        if not queue:
            return None
        fault = queue[0]
        fault.times -= 1
        if fault.times <= 0:
            queue.popleft()
        return fault

    async def _params(self, request: web.Request) -> dict[str, Any]:
        raw: dict[str, Any] = dict(request.query)
        if request.method == "POST" and request.can_read_body:
            if request.content_type == "application/json":
                body = await request.json()
                if not isinstance(body, dict):
                    raise ApiError(400, "Bad Request: parameters must be a JSON object")
                return {**raw, **body}
            form = await request.post()
            raw.update({k: v for k, v in form.items() if isinstance(v, str)})
        return {k: _decode_value(k, v) for k, v in raw.items()}

    async def _handle_method(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        record = self._record(method, {})
        fault = None
        try:
            if request.match_info["token"] != self.token:
                raise ApiError(401, "Unauthorized")
            try:
                record.params = await self._params(request)
            except ConnectionResetError:  # the client gave up on the call (e.g. a cancelled chat action)
                return web.Response()
            await self._notify()
            fault = self._take_fault(method)
            if fault and fault.reset == "before":
                return await self._reset(request, record)
            if fault and not fault.reset:
                raise ApiError(fault.status, fault.description, fault.retry_after)
            handler = self._methods().get(method.lower())
            if handler is None:
                raise ApiError(404, "Not Found: method not found")
            result = await handler(record.params)
        except ApiError as exc:
            record.status = exc.code
            await self._notify()
            return web.json_response(exc.body(), status=exc.code)
        if fault:  # reset after the call took effect
            return await self._reset(request, record)
        record.status = 200
        await self._notify()
        return web.json_response({"ok": True, "result": result})

    async def _reset(self, request: web.Request, record: Request) -> web.Response:
        """Drop the connection with a TCP reset; the client sees no answer at all."""
        sock = request.transport.get_extra_info("socket") if request.transport else None
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        if request.transport:
            request.transport.abort()
        record.status = RESET
        await self._notify()
        return web.Response()  # never reaches the client

    async def _handle_download(self, request: web.Request) -> web.StreamResponse:
        path = request.match_info["path"]
        record = self._record("download", {"file_path": path})
        await self._notify()
        if request.match_info["token"] != self.token:
            record.status = 401
            return web.json_response({"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401)
        stored = self._state.paths.get(path)
        fault = self._take_fault("download")
        if fault and fault.reset:
            return await self._reset(request, record)
        status = fault.status if fault else (200 if stored else 404)
        if stored and stored.delay and not fault:
            async with self._changed:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._changed.wait_for(lambda: self._closing), stored.delay)
        record.status = status
        await self._notify()
        if status != 200 or stored is None:
            return web.json_response({"ok": False, "error_code": status, "description": "Not Found"}, status=status)
        return web.Response(body=stored.data, content_type="application/octet-stream")

    def _methods(self) -> dict[str, Callable[[dict[str, Any]], Any]]:
        return {"getme": self._get_me, "getupdates": self._get_updates, "deletewebhook": self._delete_webhook,
                "setwebhook": self._set_webhook, "getwebhookinfo": self._get_webhook_info,
                "sendmessage": self._send_message, "sendchataction": self._send_chat_action,
                "getfile": self._get_file}

    async def _get_me(self, params: dict[str, Any]) -> dict[str, Any]:
        return self.bot_user

    async def _get_updates(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        if self._state.webhook_url:
            raise ApiError(409, "Conflict: can't use getUpdates method while webhook is active; "
                                "use deleteWebhook to delete the webhook first")
        offset = int(params.get("offset") or 0)
        limit = min(max(int(params.get("limit") or 100), 1), 100)
        timeout = max(float(params.get("timeout") or 0), 0.0)
        allowed = params.get("allowed_updates")
        updates = self._state.updates
        # Confirmed updates (below the offset) and kinds the bot did not ask for are dropped, as Telegram does.
        kept = [u for u in updates if u["update_id"] >= offset and (not allowed or any(k in u for k in allowed))]
        updates.clear()
        updates.extend(kept)
        if not updates and timeout:
            async with self._changed:
                try:
                    await asyncio.wait_for(self._changed.wait_for(lambda: bool(updates) or self._closing), timeout)
                except asyncio.TimeoutError:
                    pass
        return list(itertools.islice(updates, limit))

    async def _delete_webhook(self, params: dict[str, Any]) -> bool:
        self._state.webhook_url, self._state.webhook_secret = "", None
        if params.get("drop_pending_updates"):
            self._state.updates.clear()
        return True

    async def _set_webhook(self, params: dict[str, Any]) -> bool:
        url = str(params.get("url") or "")
        if not url:
            return await self._delete_webhook(params)
        if not url.startswith(("http://", "https://")):
            raise ApiError(400, "Bad Request: bad webhook: An HTTPS URL must be provided for webhook")
        self._state.webhook_url = url
        self._state.webhook_secret = params.get("secret_token")
        if params.get("drop_pending_updates"):
            self._state.updates.clear()
        if self._delivery is None or self._delivery.done():
            self._delivery = asyncio.get_running_loop().create_task(self._deliver())
        return True

    async def _get_webhook_info(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"url": self._state.webhook_url, "has_custom_certificate": False,
                "pending_update_count": len(self._state.updates)}

    async def _deliver(self) -> None:
        """POST queued updates to the webhook in order, retrying each until the bot answers 200."""
        self._client = self._client or ClientSession(timeout=ClientTimeout(total=10))
        while True:
            async with self._changed:
                await self._changed.wait_for(lambda: bool(self._state.updates) or not self._state.webhook_url)
            url, secret = self._state.webhook_url, self._state.webhook_secret
            if not url:
                return
            update = self._state.updates[0]
            headers = {SECRET_HEADER: secret} if secret else {}
            try:
                async with self._client.post(url, json=update, headers=headers) as response:
                    delivered = response.status == 200
                    self._record("webhook", {"update_id": update["update_id"]}, response.status)
            except (ClientError, asyncio.TimeoutError):
                self._record("webhook", {"update_id": update["update_id"]}, 0)
                delivered = False
            if delivered:
                if self._state.updates and self._state.updates[0] is update:
                    self._state.updates.popleft()
            else:
                await asyncio.sleep(0.2)

    async def _send_message(self, params: dict[str, Any]) -> dict[str, Any]:
        chat_id = params.get("chat_id")
        text = params.get("text")
        if chat_id is None:
            raise ApiError(400, "Bad Request: chat_id is empty")
        if not text or not str(text).strip():
            raise ApiError(400, "Bad Request: message text is empty")
        if len(str(text)) > MAX_MESSAGE_LENGTH:
            raise ApiError(400, "Bad Request: message is too long")
        reply = params.get("reply_parameters") or {}
        reply_id = reply.get("message_id") if isinstance(reply, dict) else None
        reply_id = reply_id or params.get("reply_to_message_id")
        original = self._state.messages.get((int(chat_id), int(reply_id))) if reply_id else None
        if reply_id and original is None and not reply.get("allow_sending_without_reply"):
            raise ApiError(400, "Bad Request: message to be replied not found")
        self._flood_control(int(chat_id))
        message: dict[str, Any] = {
            "message_id": next(self._ids),
            "date": int(time.time()),
            "chat": {"id": int(chat_id), "type": "private", "first_name": f"User{chat_id}"},
            "from": self.bot_user,
            "text": str(text),
        }
        if original is not None:
            message["reply_to_message"] = original
        self._state.sent.append(message)
        self._state.by_chat.setdefault(int(chat_id), []).append(message)
        for waiter in self._state.chat_waiters.pop(int(chat_id), []):
            if not waiter.done():
                waiter.set_result(None)
        return message

    def _flood_control(self, chat_id: int) -> None:
        """429 when this message would exceed the chat's or the overall limit (and it is not sent)."""
        if self.flood is None or self._overall is None:
            return
        bucket = self._state.chat_buckets.setdefault(
            chat_id, _Bucket(self.flood.burst, self.flood.message_interval_s))
        wait = bucket.take()
        if not wait:
            wait = self._overall.take()
            if wait:  # give the chat its token back: this message is not sent
                bucket.tokens += 1
        if wait:
            retry_after = max(1, math.ceil(wait))
            raise ApiError(429, f"Too Many Requests: retry after {retry_after}", retry_after)

    async def _send_chat_action(self, params: dict[str, Any]) -> bool:
        if params.get("chat_id") is None:
            raise ApiError(400, "Bad Request: chat_id is empty")
        if params.get("action") not in CHAT_ACTIONS:
            raise ApiError(400, "Bad Request: wrong parameter action in request")
        return True

    async def _get_file(self, params: dict[str, Any]) -> dict[str, Any]:
        stored = self._state.files.get(str(params.get("file_id") or ""))
        if stored is None:
            raise ApiError(400, "Bad Request: invalid file_id")
        if stored.declared_size > self.download_limit:
            raise ApiError(400, "Bad Request: file is too big")
        return {"file_id": stored.file_id, "file_unique_id": stored.file_unique_id,
                "file_size": stored.declared_size, "file_path": stored.file_path}

    @staticmethod
    def _photo_size(stored: StoredFile, size: tuple[int, int]) -> dict[str, Any]:
        return {"file_id": stored.file_id, "file_unique_id": stored.file_unique_id,
                "width": size[0], "height": size[1], "file_size": stored.declared_size}


def _replies_to(sent: dict[str, Any], message: dict[str, Any]) -> bool:
    original = sent.get("reply_to_message") or {}
    return sent["chat"]["id"] == message["chat"]["id"] and original.get("message_id") == message["message_id"]
