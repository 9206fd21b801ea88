"""The request body limit, enforced before the body is read: by Content-Length, else while it streams in."""
from __future__ import annotations

from http import HTTPStatus

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hashtag.serve.errors import ApiError, error_response


class BodyLimit:
    """ASGI middleware: 413 for a body over ``max_bytes``, without reading (or keeping) what is over.

    A declared Content-Length over the limit is answered at once; a chunked body is counted as it
    arrives and the request fails with ApiError(413) as soon as it passes the limit.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _too_large(self) -> str:
        return f"request body over the limit of {self.max_bytes / (1024 * 1024):g} MB"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None:
            if not declared.isdigit():
                await error_response(HTTPStatus.BAD_REQUEST, "invalid Content-Length")(scope, receive, send)
                return
            if int(declared) > self.max_bytes:
                await error_response(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, self._too_large())(scope, receive, send)
                return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise ApiError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, self._too_large())
            return message

        await self.app(scope, counted, send)
