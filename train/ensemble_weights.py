"""Would per-tag model weights beat the plain mean in the ensemble? Asked of validation, answered honestly.

Weights tuned and scored on the same photos always look better, so validation is split in two folds: each
tag's weights (a grid on the simplex over the models) are tuned on one fold and scored on the other, and the
held-out mAP of the weighted ensemble is compared with the plain mean's on the same folds. Weights are kept
only if they win by more than ``MARGIN``; the runtime then has nothing new to learn unless they are.
"""
from __future__ import annotations

import itertools
from typing import Any, Mapping, Sequence

import numpy as np

from hashtag.train.metrics import average_precision, mean_ap

GRID_STEP = 0.25
MARGIN = 0.002  # held-out mAP gain below this is noise on ~1,000 validation photos
FOLDS = 2


def simplex_grid(n_models: int, step: float = GRID_STEP) -> np.ndarray:
    """Every weight vector with entries in multiples of ``step`` summing to 1 (the mean is one of them)."""
    units = round(1 / step)
    points = [c for c in itertools.product(range(units + 1), repeat=n_models) if sum(c) == units]
    grid = np.array(points, dtype=np.float64) / units
    if units % n_models:  # the plain mean is not on the grid: add it
        grid = np.vstack([grid, np.full((1, n_models), 1 / n_models)])
    return grid


def tune_weights(labels: np.ndarray, probs: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Per tag, the grid weights with the highest AP on these photos; ``probs`` is [models, n, tags]."""
    mean = np.full(probs.shape[0], 1 / probs.shape[0])
    best = np.tile(mean, (probs.shape[2], 1))
    for t in range(probs.shape[2]):
        top = average_precision(labels[:, t], np.tensordot(mean, probs[:, :, t], axes=1))
        for w in grid:
            ap = average_precision(labels[:, t], np.tensordot(w, probs[:, :, t], axes=1))
            if ap > top + 1e-12:  # ties keep the mean
                top, best[t] = ap, w
    return best


def weighted(probs: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """[n, tags] ensemble with per-tag weights [tags, models]."""
    return np.einsum("mnt,tm->nt", probs, weights)


def weights_trial(models: Sequence[str], val_labels: np.ndarray, val_probs: Mapping[str, np.ndarray],
                  seed: int = 0) -> dict[str, Any]:
    """Held-out comparison of per-tag weights against the mean; the record written into ensemble.json."""
    probs = np.stack([val_probs[m] for m in models])
    grid = simplex_grid(len(models))
    order = np.random.default_rng(seed).permutation(len(val_labels))
    folds = np.array_split(order, FOLDS)
    mean_scores, weighted_scores = [], []
    for k, held_out in enumerate(folds):
        fit = np.concatenate([f for j, f in enumerate(folds) if j != k])
        w = tune_weights(val_labels[fit], probs[:, fit], grid)
        y = val_labels[held_out]
        mean_scores.append(mean_ap(average_precision(y[:, t], probs[:, held_out, t].mean(axis=0))
                                   for t in range(y.shape[1])))
        weighted_scores.append(mean_ap(average_precision(y[:, t], weighted(probs[:, held_out], w)[:, t])
                                       for t in range(y.shape[1])))
    mean_map, weighted_map = float(np.mean(mean_scores)), float(np.mean(weighted_scores))
    return {"method": f"per-tag weights on a {GRID_STEP} simplex grid, {FOLDS}-fold held-out on val",
            "held_out_mAP_mean": mean_map, "held_out_mAP_weighted": weighted_map,
            "margin": MARGIN, "kept": weighted_map > mean_map + MARGIN}
