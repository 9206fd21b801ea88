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
from hashtag.runtime.prediction import Prediction, build_predictions, ensemble_thresholds, model_thresholds
from hashtag.runtime.tagger import Tagger


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


def select(tagger: Tagger, per_model: Mapping[str, np.ndarray], names: Sequence[str],
           selection: Selection) -> list[Prediction]:
    """Predictions for ``names`` from ``tagger.probabilities()``' output, under ``selection``."""
    chosen = selection.chosen(list(per_model))
    probs = {n: per_model[n] for n in chosen}
    return build_predictions(names, tagger.bundle.tags, probs, tagger.ensemble(probs),
                             {n: model_thresholds(tagger.bundle, n, selection.threshold) for n in chosen},
                             ensemble_thresholds(tagger.bundle, chosen, selection.threshold), selection.top_k)
