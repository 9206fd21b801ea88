"""How the ensemble combines its models: the mean of their probabilities.

One function, so the runtime's Tagger, training's evaluation and the benchmarks score the same ensemble.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np


def ensemble_mean(per_model: Mapping[str, np.ndarray]) -> np.ndarray:
    """The ensemble's probabilities ``[n, tags]``: the mean over models of equally shaped ``[n, tags]`` arrays."""
    return np.mean(np.stack(list(per_model.values())), axis=0)
