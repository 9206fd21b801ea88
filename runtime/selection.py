"""Predictions under one request's options (models, threshold, top-k) from probabilities already computed.

A server loads one Tagger with every model and answers each request with its own options: the per-model
probabilities do not depend on them; only the ensemble (the mean over the chosen models), the thresholds
and the cut do. So a request costs one ``Tagger.probabilities`` call whatever its options.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from hashtag.runtime.errors import ModelSelectionError
from hashtag.runtime.manifest import Bundle
from hashtag.runtime.tagger import ModelPrediction, Prediction, Tagger


@dataclass(frozen=True)
class Selection:
    """What one request asks for: a subset of the served models, one threshold for every tag, a cut."""

    models: tuple[str, ...] | None = None
    threshold: float | None = None
    top_k: int | None = None

    def __post_init__(self) -> None:
        if self.threshold is not None and not 0.0 <= self.threshold <= 1.0:
            raise ModelSelectionError(f"threshold must be in [0, 1], got {self.threshold}")
        if self.top_k is not None and self.top_k < 1:
            raise ModelSelectionError(f"top-k must be at least 1, got {self.top_k}")
        if self.models is not None and not self.models:
            raise ModelSelectionError("name at least one model")

    def chosen(self, served: Sequence[str]) -> tuple[str, ...]:
        """The models to use, in the order asked; refuses names that are not served."""
        if self.models is None:
            return tuple(served)
        unknown = [n for n in self.models if n not in served]
        if unknown:
            raise ModelSelectionError(f"unknown model {unknown[0]!r} (served: {', '.join(served)})")
        return tuple(dict.fromkeys(self.models))


def hashtags(scores: Mapping[str, float], thresholds: Mapping[str, float], top_k: int | None) -> list[str]:
    """Tags at or above their threshold, best first (ties by name), cut at ``top_k``, as '#tag'."""
    chosen = sorted((t for t, s in scores.items() if s >= thresholds[t]), key=lambda t: (-scores[t], t))
    return ["#" + t.replace(" ", "") for t in chosen[:top_k]]


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


def select(tagger: Tagger, per_model: Mapping[str, np.ndarray], names: Sequence[str],
           selection: Selection) -> list[Prediction]:
    """Predictions for ``names`` from ``tagger.probabilities()``' output, under ``selection``."""
    chosen = selection.chosen(list(per_model))
    probs = {n: per_model[n] for n in chosen}
    ensemble = tagger.ensemble(probs)
    bundle, tags = tagger.bundle, tagger.bundle.tags
    per_model_thresholds = {n: model_thresholds(bundle, n, selection.threshold) for n in chosen}
    overall = ensemble_thresholds(bundle, chosen, selection.threshold)
    predictions = []
    for i, name in enumerate(names):
        models = {}
        for n in chosen:
            scores = {t: float(p) for t, p in zip(tags, probs[n][i])}
            models[n] = ModelPrediction(scores, hashtags(scores, per_model_thresholds[n], selection.top_k))
        scores = {t: float(p) for t, p in zip(tags, ensemble[i])}
        predictions.append(Prediction(name, scores, hashtags(scores, overall, selection.top_k), models))
    return predictions
