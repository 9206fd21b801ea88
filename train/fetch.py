"""Getting a photo's bytes: an http(s) URL through urllib3, anything else as a local file.

urllib3 keeps keep-alive connections per host, shared by the download threads (no TLS handshake per
photo), follows redirects, and retries timeouts, connection errors, bodies cut short and HTTP 5xx/408/429
with exponential backoff, honouring Retry-After; other 4xx fail at once. Every failure becomes a FetchError
whose ``reason`` is the short category the build summary counts.
"""
from __future__ import annotations

import http.client
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import urllib3
from urllib3 import BaseHTTPResponse
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    LocationValueError,
    MaxRetryError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
    ResponseError,
)
from urllib3.util.retry import Retry

from hashtag.train.errors import TrainError

RETRY_STATUS = frozenset({408, 429, *range(500, 600)})
MAX_REDIRECTS = 5
RETRY_AFTER_MAX_S = 60  # a server may ask for hours; one photo is not worth holding a download thread that long
SIZING_PARAMS = ("w", "h", "fit", "fm", "q")
HEADERS = {"User-Agent": "hashtag-dataset-builder/1", "Accept": "image/*"}


class FetchError(TrainError):
    """Getting the bytes failed; ``reason`` is the short category reported in summaries."""

    def __init__(self, reason: str, detail: str = "", retryable: bool = False, attempts: int = 1) -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
        self.retryable = retryable
        self.attempts = attempts


@dataclass(frozen=True)
class Fetched:
    """The bytes of one source and how many requests it took (redirects not counted)."""

    data: bytes
    attempts: int = 1


def is_url(source: str) -> bool:
    return source.startswith(("http://", "https://"))


def sized_url(url: str, width: int | None, height: int | None, max_side: int) -> str:
    """Ask Unsplash's imgix for a JPEG whose shorter side is about ``max_side``, never upscaled.

    Only ``w`` is needed: with the photo's size from the table, ``w`` is chosen so that the shorter side
    lands on ``max_side``; without it, ``2 * max_side`` covers aspect ratios up to 2:1.
    """
    if width and height:
        w = max_side if width <= height else math.ceil(max_side * width / height)
    else:
        w = 2 * max_side
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in SIZING_PARAMS]
    query += [("w", str(w)), ("fit", "max"), ("fm", "jpg"), ("q", "85")]
    return urlunsplit(parts._replace(query=urlencode(query)))


def read_local(path: Path, max_bytes: int) -> bytes:
    try:
        if path.stat().st_size > max_bytes:
            raise FetchError("too large", f"{path.stat().st_size} bytes")
        return path.read_bytes()
    except FileNotFoundError:
        raise FetchError("missing file", str(path)) from None
    except OSError as exc:
        raise FetchError("unreadable file", f"{path}: {exc.strerror or exc}") from None


def _attempts(retry: Retry) -> int:
    """Requests that ``retry`` has seen fail, redirects not counted (following one is part of the same attempt)."""
    return sum(1 for entry in retry.history if entry.redirect_location is None)


class _RetriesSpent(MaxRetryError):
    """urllib3's MaxRetryError plus the number of attempts made (the stock one drops the retry history)."""

    def __init__(self, spent: MaxRetryError, attempts: int) -> None:
        super().__init__(spent.pool, spent.url, spent.reason)
        self.attempts = attempts


_HUNG_UP = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)


class _Retry(Retry):
    """urllib3's Retry whose MaxRetryError says how many attempts were made, and which retries once, free, a
    request the server hung up on before answering: a kept-alive connection the server closed just as it
    was reused (urllib3 replaces one it sees closed, but the close can arrive a moment after the reuse)."""

    def __init__(self, *args: Any, hung_up_retried: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.hung_up_retried = hung_up_retried

    def new(self, **kw: Any) -> "_Retry":
        kw.setdefault("hung_up_retried", self.hung_up_retried)
        return super().new(**kw)

    def increment(self, method: str | None = None, url: str | None = None, response: Any = None,
                  error: Exception | None = None, *args: Any, **kwargs: Any) -> Retry:
        hung_up = (response is None and isinstance(error, ProtocolError) and error.args
                   and isinstance(error.args[-1], _HUNG_UP))
        if hung_up and not self.hung_up_retried:
            return self.new(hung_up_retried=True)
        try:
            return super().increment(method, url, response, error, *args, **kwargs)
        except MaxRetryError as exc:
            raise _RetriesSpent(exc, _attempts(self) + 1) from exc.reason


def _failure(reason: Exception | None, timeout: float, attempts: int) -> FetchError:
    """The FetchError for what made urllib3 give up."""
    if isinstance(reason, ResponseError):  # redirects only: a retried status ends as that response
        return FetchError("too many redirects", str(reason), attempts=attempts)
    if isinstance(reason, (ReadTimeoutError, ConnectTimeoutError)) and not isinstance(reason, NewConnectionError):
        return FetchError("timeout", f"no data for {timeout:g}s", True, attempts)
    cut = reason.args[-1] if isinstance(reason, ProtocolError) and reason.args else None
    if isinstance(cut, http.client.IncompleteRead):  # urllib3 counts the bytes, http.client keeps them
        received = cut.partial if isinstance(cut.partial, int) else len(cut.partial)
        return FetchError("truncated download", f"{received} bytes received", True, attempts)
    return FetchError("connection error", str(reason or "unknown"), True, attempts)


class Fetcher:
    """Bytes of http(s) URLs (other schemes fail as "bad url") and of local paths, at most ``max_bytes`` each.

    One instance serves every download thread: urllib3's pool is thread-safe and keeps ``connections``
    connections per host, one per thread; a kept-alive connection the server has closed is replaced before
    use (or, closed a moment too late, retried once), so it costs no attempt.
    """

    def __init__(self, timeout: float, retries: int, backoff: float, max_bytes: int, connections: int) -> None:
        self.timeout = timeout
        self.max_bytes = max_bytes
        # Each kind of failure (connect, read, status, other) gets ``retries`` retries; redirects are counted apart.
        self.retry = _Retry(total=None, connect=retries, read=retries, status=retries, other=retries,
                            redirect=MAX_REDIRECTS, status_forcelist=RETRY_STATUS, backoff_factor=backoff,
                            backoff_jitter=backoff, retry_after_max=RETRY_AFTER_MAX_S, raise_on_status=False)
        self.pool = urllib3.PoolManager(maxsize=connections, headers=HEADERS, retries=self.retry,
                                        timeout=urllib3.Timeout(connect=timeout, read=timeout))

    def fetch(self, source: str) -> Fetched:
        """An http(s) URL over HTTP, anything else as a local path."""
        if "://" not in source:
            return Fetched(read_local(Path(source), self.max_bytes))
        try:
            return self._get(source)
        except _RetriesSpent as exc:
            raise _failure(exc.reason, self.timeout, exc.attempts) from None
        except LocationValueError:
            raise FetchError("bad url", source) from None
        except HTTPError as exc:
            raise FetchError("connection error", str(exc), True) from None

    def _get(self, url: str) -> Fetched:
        retry: Retry = self.retry
        while True:
            response = self.pool.request("GET", url, retries=retry, preload_content=False)
            retry = response.retries or retry
            attempts = _attempts(retry) + 1
            try:
                if response.status != 200:
                    raise FetchError(f"http {response.status}", retryable=response.status in RETRY_STATUS,
                                     attempts=attempts)
                return Fetched(self._body(response, attempts), attempts)
            except (ProtocolError, ReadTimeoutError) as exc:  # the body stopped short or stalled: retry the request
                retry = retry.increment("GET", url, error=exc)
                retry.sleep()
            except FetchError:
                response.close()  # an error page or an oversized body is not worth reading to keep the connection
                raise
            finally:
                response.release_conn()

    def _body(self, response: BaseHTTPResponse, attempts: int) -> bytes:
        declared = response.headers.get("Content-Length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            raise FetchError("too large", f"{declared} bytes", attempts=attempts)
        body = response.read(self.max_bytes + 1)
        if len(body) > self.max_bytes:
            raise FetchError("too large", f"over {self.max_bytes} bytes", attempts=attempts)
        return body
