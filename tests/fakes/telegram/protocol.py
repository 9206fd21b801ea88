"""The fake Bot API server itself: Telegram's HTTP protocol as python-telegram-bot uses it, on loopback.

Methods are ``POST <url>/bot<token>/<method>`` with form-encoded, multipart or JSON parameters, files are
``GET <url>/file/bot<token>/<file_path>``, and errors look like Telegram's (``{"ok": false, "error_code": N,
"description": "..."}`` with the same HTTP status).

Implemented: getMe, deleteWebhook, setWebhook, getWebhookInfo, getUpdates (a queue with offset
confirmation and long polling), sendMessage, sendChatAction, getFile (``Bad Request: file is too big``
past 20 MB) and file downloads. Once a webhook is set, updates are POSTed to it with the secret token
header instead, as Telegram does. The users (users.py), flood control and faults (faults.py) and the record
(inspection.py) are the bases of ``FakeBotApi``, so a test drives all of them through one object.
"""
from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import socket
import struct
import time
from typing import Any, Callable

from aiohttp import ClientError, ClientSession, ClientTimeout, web

from .faults import TELEGRAM_FLOOD, Faults, FloodRules
from .inspection import RESET, Changes, Inspection, Request
from .users import Users

CLOUD_DOWNLOAD_LIMIT = 20 * 1024 * 1024
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
# Parameters PTB sends as plain strings; everything else is JSON-encoded (numbers, objects, booleans).
STRING_PARAMS = frozenset({"text", "caption", "file_id", "url", "secret_token", "action", "parse_mode", "emoji"})
CHAT_ACTIONS = frozenset({"typing", "upload_photo", "record_video", "upload_video", "record_voice", "upload_voice",
                          "upload_document", "choose_sticker", "find_location", "record_video_note",
                          "upload_video_note"})
MAX_MESSAGE_LENGTH = 4096
WEBHOOK_RETRY_S = 0.2  # Telegram retries a webhook delivery the bot did not answer 200


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


def _decode_value(name: str, value: str) -> Any:
    if name in STRING_PARAMS:
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


class FakeBotApi(Users, Faults, Inspection):
    """The fake server. Use as ``async with FakeBotApi(token) as api:``; ``api.url`` is the --api-url.

    ``clock`` is flood control's (time.monotonic by default); recorded arrival times are always real.
    """

    def __init__(self, token: str, download_limit: int = CLOUD_DOWNLOAD_LIMIT,
                 bot_username: str = "hashtag_test_bot", flood: FloodRules | None = TELEGRAM_FLOOD,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if ":" not in token:
            raise ValueError("a bot token looks like '<bot id>:<secret>'")
        changes = Changes()
        Users.__init__(self, changes)
        Faults.__init__(self, flood, clock, changes)
        Inspection.__init__(self, changes)
        self.token = token
        self.download_limit = download_limit
        self.bot_user = {"id": int(token.split(":", 1)[0]), "is_bot": True, "first_name": "Hashtag Test Bot",
                         "username": bot_username, "can_join_groups": True,
                         "can_read_all_group_messages": False, "supports_inline_queries": False}
        self.url = ""
        self._webhook_url = ""
        self._webhook_secret: str | None = None
        self._runner: web.AppRunner | None = None
        self._delivery: asyncio.Task[None] | None = None
        self._client: ClientSession | None = None
        self._closing = False

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
        """Stop delivering and listening; pending long polls and held downloads answer at once."""
        self._closing = True
        await self._changes.notify()
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

    @property
    def webhook_url(self) -> str:
        """The URL the bot registered with setWebhook ('' when none)."""
        return self._webhook_url

    # ----- the HTTP side -----

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
            await self._changes.notify()
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
            await self._changes.notify()
            return web.json_response(exc.body(), status=exc.code)
        if fault:  # reset after the call took effect
            return await self._reset(request, record)
        record.status = 200
        await self._changes.notify()
        return web.json_response({"ok": True, "result": result})

    async def _reset(self, request: web.Request, record: Request) -> web.Response:
        """Drop the connection with a TCP reset; the client sees no answer at all."""
        sock = request.transport.get_extra_info("socket") if request.transport else None
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        if request.transport:
            request.transport.abort()
        record.status = RESET
        await self._changes.notify()
        return web.Response()  # never reaches the client

    async def _handle_download(self, request: web.Request) -> web.StreamResponse:
        path = request.match_info["path"]
        record = self._record("download", {"file_path": path})
        await self._changes.notify()
        stored = self._paths.get(path)
        if request.match_info["token"] != self.token:
            error = ApiError(401, "Unauthorized")
        elif (fault := self._take_fault("download")) and fault.reset:
            return await self._reset(request, record)
        elif fault:
            error = ApiError(fault.status, fault.description, fault.retry_after)
        elif stored is None:
            error = ApiError(404, "Not Found")
        else:
            await self._changes.wait_for(lambda: not self._is_held(stored.file_id) or self._closing)
            record.status = 200
            await self._changes.notify()
            return web.Response(body=stored.data, content_type="application/octet-stream")
        record.status = error.code
        await self._changes.notify()
        return web.json_response(error.body(), status=error.code)

    def _methods(self) -> dict[str, Callable[[dict[str, Any]], Any]]:
        return {"getme": self._get_me, "getupdates": self._get_updates, "deletewebhook": self._delete_webhook,
                "setwebhook": self._set_webhook, "getwebhookinfo": self._get_webhook_info,
                "sendmessage": self._send_message, "sendchataction": self._send_chat_action,
                "getfile": self._get_file}

    # ----- the Bot API methods -----

    async def _get_me(self, params: dict[str, Any]) -> dict[str, Any]:
        return self.bot_user

    async def _get_updates(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        if self._webhook_url:
            raise ApiError(409, "Conflict: can't use getUpdates method while webhook is active; "
                                "use deleteWebhook to delete the webhook first")
        offset = int(params.get("offset") or 0)
        limit = min(max(int(params.get("limit") or 100), 1), 100)
        timeout = max(float(params.get("timeout") or 0), 0.0)
        allowed = params.get("allowed_updates")
        updates = self._updates
        # Confirmed updates (below the offset) and kinds the bot did not ask for are dropped, as Telegram does.
        kept = [u for u in updates if u["update_id"] >= offset and (not allowed or any(k in u for k in allowed))]
        updates.clear()
        updates.extend(kept)
        if not updates and timeout:
            with contextlib.suppress(asyncio.TimeoutError):
                await self._changes.wait_for(lambda: bool(updates) or self._closing, timeout)
        return list(itertools.islice(updates, limit))

    async def _delete_webhook(self, params: dict[str, Any]) -> bool:
        self._webhook_url, self._webhook_secret = "", None
        if params.get("drop_pending_updates"):
            self._updates.clear()
        return True

    async def _set_webhook(self, params: dict[str, Any]) -> bool:
        url = str(params.get("url") or "")
        if not url:
            return await self._delete_webhook(params)
        if not url.startswith(("http://", "https://")):
            raise ApiError(400, "Bad Request: bad webhook: An HTTPS URL must be provided for webhook")
        self._webhook_url = url
        self._webhook_secret = params.get("secret_token")
        if params.get("drop_pending_updates"):
            self._updates.clear()
        if self._delivery is None or self._delivery.done():
            self._delivery = asyncio.get_running_loop().create_task(self._deliver())
        return True

    async def _get_webhook_info(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"url": self._webhook_url, "has_custom_certificate": False,
                "pending_update_count": len(self._updates)}

    async def _deliver(self) -> None:
        """POST queued updates to the webhook in order, retrying each until the bot answers 200."""
        self._client = self._client or ClientSession(timeout=ClientTimeout(total=10))
        while True:
            await self._changes.wait_for(lambda: bool(self._updates) or not self._webhook_url)
            url, secret = self._webhook_url, self._webhook_secret
            if not url:
                return
            update = self._updates[0]
            headers = {SECRET_HEADER: secret} if secret else {}
            try:
                async with self._client.post(url, json=update, headers=headers) as response:
                    delivered = response.status == 200
                    self._record("webhook", {"update_id": update["update_id"]}, response.status)
            except (ClientError, asyncio.TimeoutError):
                self._record("webhook", {"update_id": update["update_id"]}, 0)
                delivered = False
            if delivered:
                if self._updates and self._updates[0] is update:
                    self._updates.popleft()
            else:
                await asyncio.sleep(WEBHOOK_RETRY_S)

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
        original = self._messages.get((int(chat_id), int(reply_id))) if reply_id else None
        if reply_id and original is None and not reply.get("allow_sending_without_reply"):
            raise ApiError(400, "Bad Request: message to be replied not found")
        retry_after = self._flood_wait(int(chat_id))
        if retry_after:
            raise ApiError(429, f"Too Many Requests: retry after {retry_after}", retry_after)
        message: dict[str, Any] = {
            "message_id": next(self._ids),
            "date": int(time.time()),
            "chat": {"id": int(chat_id), "type": "private", "first_name": f"User{chat_id}"},
            "from": self.bot_user,
            "text": str(text),
        }
        if original is not None:
            message["reply_to_message"] = original
        self._keep_sent(message)
        return message

    async def _send_chat_action(self, params: dict[str, Any]) -> bool:
        if params.get("chat_id") is None:
            raise ApiError(400, "Bad Request: chat_id is empty")
        if params.get("action") not in CHAT_ACTIONS:
            raise ApiError(400, "Bad Request: wrong parameter action in request")
        return True

    async def _get_file(self, params: dict[str, Any]) -> dict[str, Any]:
        stored = self._files.get(str(params.get("file_id") or ""))
        if stored is None:
            raise ApiError(400, "Bad Request: invalid file_id")
        if stored.declared_size > self.download_limit:
            raise ApiError(400, "Bad Request: file is too big")
        return {"file_id": stored.file_id, "file_unique_id": stored.file_unique_id,
                "file_size": stored.declared_size, "file_path": stored.file_path}
