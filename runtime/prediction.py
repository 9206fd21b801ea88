"""What a call may ask for (Options) and the rules that turn probabilities into hashtags, in one place.

The Tagger applies them to every call with that call's Options: the per-model probabilities do not depend
on the options, only the ensemble over the chosen models, the thresholds and the cut do, so a server
that batches requests with different options runs the models once. The Prediction and its record are
hashtag.runtime.contract's.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from hashtag.runtime.contract import ModelPrediction, Prediction, hashtag
from hashtag.runtime.errors import ModelSelectionError
from hashtag.runtime.manifest import Bundle


def refuse_fast_with_names(fast: bool, models: Sequence[str] | None) -> None:
    """The rule every front end (CLI, serve, bot) applies: the fast model alone, or named models, not both."""
    if fast and models:
        raise ModelSelectionError("ask for the fast model or for model names, not both")


def model_choice(bundle: Bundle, models: Sequence[str] | None, fast: bool) -> tuple[str, ...] | None:
    """The model names a front end asks for: ``--fast`` means the bundle's fast model alone; None: the default."""
    refuse_fast_with_names(fast, models)
    if fast:
        return (bundle.fast_name,)
    return tuple(models) if models else None


@dataclass(frozen=True)
class Options:
    """What one call asks for: a subset of the loaded models, one threshold for every tag, a cut."""

    models: tuple[str, ...] | None = None  # None: the loaded ensemble members (see Tagger.default_names)
    threshold: float | None = None  # None: the bundle's tuned per-tag thresholds
    top_k: int | None = None

    def __post_init__(self) -> None:
        if self.threshold is not None and not 0.0 <= self.threshold <= 1.0:
            raise ModelSelectionError(f"threshold must be in [0, 1], got {self.threshold}")
        if self.top_k is not None and self.top_k < 1:
            raise ModelSelectionError(f"top-k must be at least 1, got {self.top_k}")
        if self.models is not None and not self.models:
            raise ModelSelectionError("name at least one model")

    def chosen(self, loaded: Sequence[str], default: Sequence[str] | None = None) -> tuple[str, ...]:
        """The models to use, in the order asked (``default``, else every loaded one, when none is asked);
        refuses names that are not loaded."""
        if self.models is None:
            return tuple(default if default is not None else loaded)
        unknown = [n for n in self.models if n not in loaded]
        if unknown:
            raise ModelSelectionError(f"unknown model {unknown[0]!r} (served: {', '.join(loaded)})")
        return tuple(dict.fromkeys(self.models))


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
    """The manifest's ensemble thresholds when the whole ensemble runs, else the mean of the chosen models' own
    (one model alone: its own)."""
    if threshold is not None:
        return {t: threshold for t in bundle.tags}
    if set(names) == set(bundle.ensemble_names):
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
