"""Where the bot's photos are tagged: the runtime in this process, or a `hashtag serve` (hashtag.bot.remote).

Both give the runtime's Prediction, so every reply goes through the same code (hashtag.bot.replies).
"""
from __future__ import annotations

import asyncio
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Protocol

from hashtag.runtime.errors import HashtagError
from hashtag.runtime.contract import Prediction
from hashtag.runtime.prediction import Options
from hashtag.runtime.tagger import Tagger


class TaggerError(HashtagError):
    """The tagging service refused a request or answered something that is not its API."""


class TaggerUnavailable(TaggerError):
    """The tagging service did not answer, also after retries."""


@dataclass(frozen=True)
class ModelInfo:
    """One model of the ensemble as /models shows it."""

    name: str
    input_size: int
    precision: str


@dataclass(frozen=True)
class Ensemble:
    """The models that tag the photos and the tags they know, in the bundle's order."""

    models: tuple[ModelInfo, ...]
    tags: tuple[str, ...]
    fast: str | None = None  # the fast model among ``models`` (/fast on), if the tagger runs one


class PhotoTagger(Protocol):
    """What the handlers need: a Prediction per photo, without blocking the event loop."""

    where: str  # for the start-up log line

    async def start(self) -> None:
        """Get ready (inside the bot's event loop); ConfigError if this tagger can never work."""

    async def predict(self, data: bytes, media_type: str, options: Options) -> Prediction:
        """The photo's prediction under ``options``; ImageError if it cannot be read; remotely also TaggerError."""

    async def ensemble(self) -> Ensemble:
        """The models and tags, for /models."""

    async def close(self) -> None:
        """Release connections."""


class LocalTagger:
    """The runtime's Tagger in this process, run in ``executor`` so other chats are served meanwhile."""

    def __init__(self, tagger: Tagger, executor: Executor) -> None:
        self.tagger = tagger
        self.executor = executor
        models = ", ".join(f"{m.spec.name} ({m.variant.precision})" for m in tagger.models)
        self.where = f"{models} on {tagger.provider}"

    async def start(self) -> None:
        """The models are loaded already."""

    async def predict(self, data: bytes, media_type: str, options: Options) -> Prediction:
        """Decode (the format is read from the bytes) and run the ensemble in the executor."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, self.tagger.predict_one, data, options)

    async def ensemble(self) -> Ensemble:
        """The loaded models and the bundle's tags."""
        bundle = self.tagger.bundle
        fast = bundle.fast.name if bundle.fast and bundle.fast.name in self.tagger.names else None
        return Ensemble(tuple(ModelInfo(m.spec.name, m.spec.input_size, m.variant.precision)
                              for m in self.tagger.models), tuple(self.tagger.bundle.tags), fast)

    async def close(self) -> None:
        """The caller owns the executor."""
