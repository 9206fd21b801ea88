"""What a prediction is and the rules that turn probabilities into hashtags, in one place.

The Tagger applies them with its own options; a server applies them per request to probabilities it
already has (hashtag.runtime.selection). Only numpy is needed here, so a client that merely reads
predictions (the bot talking to a remote tagger) does not load an inference engine.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from hashtag.runtime.manifest import Bundle


@dataclass(frozen=True)
class ModelPrediction:
    """One model's (or the ensemble's) per-tag probabilities and the hashtags above threshold."""

    scores: dict[str, float]
    hashtags: list[str]


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
        """The JSON Lines record the CLI prints."""
        return {
            "image": self.image,
            "hashtags": self.hashtags,
            "scores": self.scores,
            "models": {n: {"hashtags": m.hashtags, "scores": m.scores} for n, m in self.models.items()},
            "error": None,
        }


def hashtag(tag: str) -> str:
    """How a tag is spelled as a hashtag: '#' and the tag without spaces."""
    return "#" + tag.replace(" ", "")


def tag_names(hashtag_list: Sequence[str], tags: Iterable[str]) -> list[str]:
    """The tags, among ``tags``, that ``hashtag_list`` spells, in its order (the inverse of ``hashtag``)."""
    by_hashtag = {hashtag(t): t for t in tags}
    return [by_hashtag[h] for h in hashtag_list]


def hashtags(scores: Mapping[str, float], thresholds: Mapping[str, float], top_k: int | None) -> list[str]:
    """Tags at or above their threshold, best first (ties by name), cut at ``top_k``, as '#tag'."""
    chosen = sorted((t for t, s in scores.items() if s >= thresholds[t]), key=lambda t: (-scores[t], t))
    return [hashtag(t) for t in chosen[:top_k]]


def model_thresholds(bundle: Bundle, name: str, threshold: float | None) -> dict[str, float]:
    """One model's thresholds: its tuned per-tag ones, or ``threshold`` for every tag."""
    if threshold is not None:
        return {t: threshold for t in bundle.tags}
    return dict(bundle.model(name).thresholds)


def ensemble_thresholds(bundle: Bundle, names: Sequence[str], threshold: float | None) -> dict[str, float]:
    """The manifest's ensemble thresholds when every model runs, else the mean of the chosen models' own."""
    if threshold is not None:
        return {t: threshold for t in bundle.tags}
    if set(names) == {m.name for m in bundle.models}:
        return dict(bundle.ensemble_thresholds)
    return {t: float(np.mean([bundle.model(n).thresholds[t] for n in names])) for t in bundle.tags}


def build_predictions(
    names: Sequence[str], tags: Sequence[str], per_model: Mapping[str, np.ndarray], ensemble: np.ndarray,
    per_model_thresholds: Mapping[str, Mapping[str, float]], thresholds: Mapping[str, float], top_k: int | None,
) -> list[Prediction]:
    """One Prediction per image name from per-model and ensemble probabilities ``[images, tags]``."""
    predictions = []
    for i, name in enumerate(names):
        models = {}
        for model_name, probs in per_model.items():
            scores = {t: float(p) for t, p in zip(tags, probs[i])}
            models[model_name] = ModelPrediction(scores, hashtags(scores, per_model_thresholds[model_name], top_k))
        scores = {t: float(p) for t, p in zip(tags, ensemble[i])}
        predictions.append(Prediction(name, scores, hashtags(scores, thresholds, top_k), models))
    return predictions
