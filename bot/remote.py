"""Tagging with a running `hashtag serve` over HTTP (``hashtag bot --tagger-url``): bot replicas load no models.

The API is hashtag.runtime.contract's: the photo goes as the raw ``image/*`` body of ``POST /v1/tags``
with the chat's options as query parameters, and comes back as ``{"results": [record]}``; a photo that
cannot be read gets 400 naming it ``image-0``; ``GET /v1/models`` describes the models; the API key goes
in ``Authorization: Bearer <key>``. Tagging is a pure function of the photo, so any failure that may pass
(no connection, a timeout, a 5xx, 503 when the server is busy) is retried with capped exponential
backoff; then TaggerUnavailable, which the bot answers with a "try again later" reply.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx

from hashtag.bot.tagging import Ensemble, ModelInfo, TaggerError, TaggerUnavailable
from hashtag.runtime.contract import MODELS_PATH, RAW_UPLOAD_NAME, SERVER_TIMEOUT_S, TAGS_PATH, Prediction
from hashtag.runtime.errors import ConfigError, ImageError
from hashtag.runtime.prediction import Options

log = logging.getLogger(__name__)
ATTEMPTS = 3
BACKOFF_S = 0.5  # then 1 s, 2 s, ... at most MAX_BACKOFF_S
MAX_BACKOFF_S = 8.0
CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = SERVER_TIMEOUT_S + 15.0  # past the server's own limit, whose 503 should come first


def query(options: Options) -> dict[str, str]:
    """``options`` as the query parameters of ``POST /v1/tags``."""
    params = {"threshold": options.threshold, "top_k": options.top_k,
              "models": ",".join(options.models) if options.models else None}
    return {k: str(v) for k, v in params.items() if v is not None}


def _message(response: httpx.Response) -> str:
    """The server's ``{"error": ...}`` text, else the start of the body."""
    try:
        return str(response.json()["error"])
    except (ValueError, KeyError, TypeError):
        return response.text[:200] or response.reason_phrase


class RemoteTagger:
    """A `hashtag serve` at ``url`` as the bot's tagger (see the module docstring)."""

    def __init__(self, url: str, api_key: str | None = None, attempts: int = ATTEMPTS) -> None:
        self.url = url.rstrip("/")
        self.where = f"hashtag serve at {self.url}"
        self.attempts = attempts
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client: httpx.AsyncClient | None = None
        self._ensemble: Ensemble | None = None

    async def start(self) -> None:
        """Open the connection pool and ask for the models: a refused key stops the bot (ConfigError);
        an unreachable server only warns, as it may come up later."""
        self._client = httpx.AsyncClient(base_url=self.url, headers=self._headers,
                                         timeout=httpx.Timeout(READ_TIMEOUT_S, connect=CONNECT_TIMEOUT_S))
        try:
            ensemble = await self.ensemble()
        except TaggerUnavailable as exc:
            log.warning("%s; photos get a 'try again later' answer until it does", exc)
        except TaggerError as exc:
            raise ConfigError(str(exc)) from None
        else:
            log.info("%s runs %s", self.where, ", ".join(f"{m.name} ({m.precision})" for m in ensemble.models))

    async def predict(self, data: bytes, media_type: str, options: Options) -> Prediction:
        """The server's prediction for the photo under ``options``; ImageError when it cannot read it."""
        response = await self._call("POST", TAGS_PATH, content=data, params=query(options),
                                    headers={"Content-Type": media_type})
        if response.status_code == 400:
            raise ImageError(RAW_UPLOAD_NAME, _message(response).removeprefix(f"{RAW_UPLOAD_NAME}: "))
        body = self._json(response)
        try:
            (record,) = body["results"]
            return Prediction.from_json(record)
        except (KeyError, TypeError, ValueError) as exc:
            raise TaggerError(f"{self.where} answered something else than a tag record ({exc!r})") from None

    async def ensemble(self) -> Ensemble:
        """The served models and the tags (asked once, then kept)."""
        if self._ensemble is None:
            doc = self._json(await self._call("GET", MODELS_PATH))
            try:
                by_name = {m["name"]: m for m in doc["models"]}
                self._ensemble = Ensemble(
                    tuple(ModelInfo(n, by_name[n]["input_size"], by_name[n]["running"]["precision"])
                          for n in doc["served"]),
                    tuple(doc["tags"]), doc.get("fast"))
            except (KeyError, TypeError) as exc:
                raise TaggerError(f"{self.where} answered something else than its models ({exc!r})") from None
        return self._ensemble

    async def close(self) -> None:
        """Close the connection pool."""
        if self._client is not None:
            await self._client.aclose()

    def _json(self, response: httpx.Response) -> Any:
        """The body of a 2xx answer; TaggerError naming the refusal otherwise."""
        if response.status_code == 401:
            raise TaggerError(f"{self.where} refused the API key (--tagger-key-file): {_message(response)}")
        if not response.is_success:
            raise TaggerError(f"{self.where} refused the request: HTTP {response.status_code}: {_message(response)}")
        try:
            return response.json()
        except ValueError:
            raise TaggerError(f"{self.where} answered something else than JSON") from None

    async def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """The answer to a request, retried with backoff while there is none or it is a 5xx."""
        if self._client is None:
            raise TaggerUnavailable(f"{self.where} is not started")
        for attempt in range(1, self.attempts + 1):
            delay = min(BACKOFF_S * 2 ** (attempt - 1), MAX_BACKOFF_S)
            try:
                response = await self._client.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                problem = f"{type(exc).__name__}: {exc}".rstrip(": ")
            else:
                if response.status_code < 500:
                    return response
                problem = f"HTTP {response.status_code}: {_message(response)}"
                retry_after = response.headers.get("Retry-After", "")
                if retry_after.isdigit():
                    delay = min(max(delay, float(retry_after)), MAX_BACKOFF_S)
            if attempt == self.attempts:
                raise TaggerUnavailable(f"{self.where} did not answer {method} {path} ({problem})")
            log.warning("%s %s%s failed (%s); retry %d of %d in %.1f s", method, self.url, path, problem,
                        attempt, self.attempts - 1, delay)
            await asyncio.sleep(delay)
        raise AssertionError("unreachable")
