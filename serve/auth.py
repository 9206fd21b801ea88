"""The optional API key: read from a file (never argv), sent as ``Authorization: Bearer KEY``, never logged."""
from __future__ import annotations

import hmac
from http import HTTPStatus
from pathlib import Path

from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from hashtag.runtime.secrets import read_secret
from hashtag.serve.errors import ApiError

bearer = HTTPBearer(auto_error=False, description="Needed when the server runs with --api-key-file.")


def read_api_key(path: Path) -> str:
    """The key in ``path`` (surrounding whitespace dropped); refuses an unreadable or empty file."""
    return read_secret(path, "API key")


def check_key(expected: str | None, credentials: HTTPAuthorizationCredentials | None) -> None:
    """Raise ApiError(401) unless no key is configured or the request carries it (constant-time compare)."""
    if expected is None:
        return
    if credentials is None:
        raise ApiError(HTTPStatus.UNAUTHORIZED, "missing API key: send 'Authorization: Bearer <key>'",
                       {"WWW-Authenticate": "Bearer"})
    if not hmac.compare_digest(credentials.credentials.encode(), expected.encode()):
        raise ApiError(HTTPStatus.UNAUTHORIZED, "wrong API key", {"WWW-Authenticate": "Bearer"})
