"""The prediction record and the HTTP API's contract, written out once.

A Prediction is what the runtime answers for one photo. Its JSON record is what ``hashtag predict --json``
prints, what ``POST /v1/tags`` returns (``{"results": [record, ...]}``), what the bot reads back from a
remote tagger, what the ARM comparison reads and what the page shows. A photo that cannot be read gets
the error record ``{"image", "error"}`` instead. The server's pydantic models (hashtag.serve.app) declare
the same record for its OpenAPI schema; tests hold them to this module.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Iterable, Mapping, Sequence

from hashtag.runtime.errors import ImageError

RECORD_FIELDS = ("image", "hashtags", "scores", "models", "error")  # a prediction record's keys, in order
ERROR_RECORD_FIELDS = ("image", "error")
MODEL_RECORD_FIELDS = ("hashtags", "scores")

# The HTTP API (hashtag.serve), as its clients (hashtag.bot.remote, the page) rely on it.
TAGS_PATH = "/v1/tags"
MODELS_PATH = "/v1/models"
UPLOAD_FIELD = "image"  # the multipart field holding the photos


def upload_name(index: int) -> str:
    """The name of the ``index``-th image that came without a file name (a raw body, a nameless part)."""
    return f"image-{index}"


RAW_UPLOAD_NAME = upload_name(0)  # the name a raw image/* body's record (and its 400 message) carries
SERVER_TIMEOUT_S = 60.0  # the server's default limit per request; it answers 503 past it
# What each refusal means to a client: the 4xx say "this request will never work", 503 and other 5xx
# "try again later" (with Retry-After where the server knows when).
STATUS_MEANINGS: dict[int, str] = {
    HTTPStatus.BAD_REQUEST: "no image in the request could be read",
    HTTPStatus.UNAUTHORIZED: "missing or wrong API key",
    HTTPStatus.REQUEST_ENTITY_TOO_LARGE: "the request body is too large",
    HTTPStatus.UNSUPPORTED_MEDIA_TYPE: "not an image/* body nor a multipart form",
    HTTPStatus.UNPROCESSABLE_ENTITY: "invalid options (threshold, top_k, models) or form fields",
    HTTPStatus.SERVICE_UNAVAILABLE: "busy or not answered in time: retry later",
}


def hashtag(tag: str) -> str:
    """How a tag is spelled as a hashtag: '#' and the tag without spaces."""
    return "#" + tag.replace(" ", "")


def tag_names(hashtags: Sequence[str], tags: Iterable[str]) -> list[str]:
    """The tags, among ``tags``, that ``hashtags`` spells, in its order (the inverse of ``hashtag``)."""
    by_hashtag = {hashtag(t): t for t in tags}
    return [by_hashtag[h] for h in hashtags]


@dataclass(frozen=True)
class ModelPrediction:
    """One model's (or the ensemble's) per-tag probabilities and the hashtags above threshold."""

    scores: dict[str, float]
    hashtags: list[str]

    @property
    def tags(self) -> list[str]:
        """The chosen tags by their own names, in hashtag order."""
        return tag_names(self.hashtags, self.scores)


@dataclass(frozen=True)
class Prediction:
    """Everything predicted for one image."""

    image: str
    scores: dict[str, float]
    hashtags: list[str]
    models: dict[str, ModelPrediction] = field(default_factory=dict)

    @property
    def tags(self) -> list[str]:
        """The chosen tags by their own names (keywords for photo metadata), in hashtag order."""
        return tag_names(self.hashtags, self.scores)

    def to_json(self) -> dict[str, Any]:
        """The prediction record."""
        return {
            "image": self.image,
            "hashtags": self.hashtags,
            "scores": self.scores,
            "models": {n: {"hashtags": m.hashtags, "scores": m.scores} for n, m in self.models.items()},
            "error": None,
        }

    @classmethod
    def from_json(cls, record: Mapping[str, Any]) -> "Prediction":
        """The Prediction a record holds; ImageError for an error record; ValueError for anything else."""
        if record.get("error"):
            raise ImageError(str(record.get("image")), str(record["error"]))
        try:
            models = {name: ModelPrediction(dict(m["scores"]), list(m["hashtags"]))
                      for name, m in record["models"].items()}
            return cls(str(record["image"]), dict(record["scores"]), list(record["hashtags"]), models)
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"not a prediction record ({exc!r})") from None


def error_record(image: str, reason: str) -> dict[str, Any]:
    """The record of a photo that cannot be read."""
    return {"image": image, "error": reason}
