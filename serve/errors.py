"""The serve package's errors, inside the one hierarchy (HashtagError), and their one JSON shape.

ConfigError (settings the server cannot start with) is the runtime's, shared with the bot."""
from __future__ import annotations

from http import HTTPStatus
from typing import Mapping

from starlette.responses import JSONResponse

from hashtag.runtime.errors import HashtagError


class ApiError(HashtagError):
    """A request the API refuses: an HTTP status and a one-line message for the client."""

    def __init__(self, status: HTTPStatus, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.headers = dict(headers or {})


def error_response(status: int, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    """Every error the API answers: ``{"error": "..."}`` with its status, never a stack trace."""
    return JSONResponse({"error": message}, status_code=status, headers=dict(headers or {}))
