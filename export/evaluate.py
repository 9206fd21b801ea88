"""Validation accuracy of exported files, so a quantized model is judged by mAP, not by hope."""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from hashtag.runtime.manifest import Preprocessing
from hashtag.runtime.preprocess import normalized_batches
from hashtag.runtime.providers import create_session
from hashtag.train.metrics import mean_ap, tag_aps


def predict(path: Path, pixels: np.ndarray, prep: Preprocessing, threads: int | None = None,
            batch_size: int = 16) -> np.ndarray:
    """Probabilities of one ONNX file for uint8 pixels, preprocessed by the runtime's own code."""
    session, _ = create_session(Path(path), "cpu", threads)
    name = session.get_inputs()[0].name
    parts = [session.run(None, {name: batch})[0] for batch in normalized_batches(pixels, prep, batch_size)]
    return np.concatenate(parts).astype(np.float32)


@dataclass(frozen=True)
class Accuracy:
    """Val mAP (macro over tags with positives) and each tag's AP (None without positives)."""

    map: float
    per_tag: dict[str, float | None]
    n_images: int

    def per_tag_delta(self, baseline: Accuracy) -> dict[str, float]:
        """AP change per tag vs ``baseline`` (negative is worse), tags with positives only."""
        return {t: ap - baseline.per_tag[t] for t, ap in self.per_tag.items()  # type: ignore[operator]
                if ap is not None and baseline.per_tag.get(t) is not None}

    def to_dict(self) -> dict[str, object]:
        """JSON form for the manifest."""
        return {"map": self.map, "n_images": self.n_images, "per_tag_ap": self.per_tag}


def accuracy(labels: np.ndarray, probs: np.ndarray, tags: Sequence[str]) -> Accuracy:
    """Per-tag AP and their mean over the tags that have at least one positive."""
    if labels.shape != probs.shape or labels.shape[1] != len(tags):
        raise ValueError(f"labels {labels.shape} and probabilities {probs.shape} do not match {len(tags)} tags")
    aps = tag_aps(labels, probs)
    return Accuracy(mean_ap(aps), {t: None if math.isnan(a) else a for t, a in zip(tags, aps)}, int(labels.shape[0]))


def map_drop(candidate: Accuracy, baseline: Accuracy) -> float:
    """How much mAP ``candidate`` loses against ``baseline`` (a fraction; negative means it gained)."""
    return baseline.map - candidate.map
