"""Choosing the ensemble's combination and its hashtag thresholds on real photos (the everyday *tune* half).

Both decisions read only the members' probabilities as the runtime computes them, so they can be retuned on a
shipped bundle without retraining (``hashtag.export.tune_ensemble``):

- the combination: the plain mean, or a weighted mean of the members' logits with weights on a simplex grid,
  every member keeping at least ``MIN_WEIGHT`` (the product promises a three-model ensemble); chosen by the
  mean of the ten original tags' mAP and all tags' mAP on the tune half, ties keeping the simpler mean;
- thresholds, precision first: per tag, the lowest threshold whose precision on the tune half reaches the
  target (the best recall that does); a tag that cannot reach it gets its F1 threshold and is listed; a tag
  with fewer than ``MIN_TUNE_POSITIVES`` positives there (e.g. the scene tags the everyday photos never label)
  is decided on the corpus validation split instead, never below its F1 threshold there: the corpus labels
  those tags only on its scene crops, whose negatives are so easy that a precision-first cut sinks toward 0
  (``city`` would be printed on half of the everyday photos).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from hashtag.runtime.ensemble import Combination, TagStack, apply_stack, combine, sigmoid
from hashtag.runtime.manifest import Bundle
from hashtag.train.metrics import best_f1_threshold, mean_ap, tag_aps, threshold_for_precision

GRID_STEP = 0.05
MIN_WEIGHT = 0.05
MIN_TUNE_POSITIVES = 10
PRECISION_TARGET = 0.7
STACK_L2 = 1.0  # pull toward "no change" (own logit 1, others 0), on a summed loss over ~3,700 photos: light
STACK_FOLDS = 2  # thresholds of stacked tags are chosen on tune rows the stack was not fitted on


def weight_grid(n_models: int, step: float = GRID_STEP, floor: float = MIN_WEIGHT) -> list[tuple[float, ...]]:
    """Every weight vector with entries in multiples of ``step``, each at least ``floor``, summing to 1."""
    units, low = round(1 / step), round(floor / step)
    return [tuple(c / units for c in combo) for combo in itertools.product(range(low, units + 1), repeat=n_models)
            if sum(combo) == units]


def base_tags(bundle: Bundle) -> tuple[str, ...]:
    """The original project's tags as the bundle's vocabulary records them (all its tags when it records none)."""
    recorded = (bundle.raw.get("vocabulary") or {}).get("base_tags") or bundle.tags
    return tuple(t for t in recorded if t in bundle.tags)


def map_scores(labels: np.ndarray, probs: np.ndarray, base: Sequence[int]) -> tuple[float, float]:
    """(mAP over the ``base`` tag columns, mAP over all), each over the tags with a positive."""
    aps = tag_aps(labels, probs)
    return mean_ap(aps[j] for j in base), mean_ap(aps)


@dataclass(frozen=True)
class CombinationChoice:
    """The chosen combination and what it was chosen against, as recorded in the manifest."""

    combination: Combination
    scores: tuple[float, float]
    members: Mapping[str, tuple[float, float]]
    mean: tuple[float, float]
    candidates: int

    def record(self, photos: str) -> dict[str, Any]:
        """The ``ensemble.tuning.combination`` record: scores on ``photos`` (ten original tags, all tags)."""
        best = max(self.members.values(), key=lambda s: s[0])
        return {"chosen_on": photos, "rule": "highest mean of ten-tag and all-tag mAP; ties keep the mean",
                "candidates": self.candidates, "mAP_ten_all": list(self.scores), "mean_mAP_ten_all": list(self.mean),
                "members_mAP_ten_all": {k: list(v) for k, v in self.members.items()},
                "beats_best_member": bool(self.scores[0] > max(s[0] for s in self.members.values())
                                          and self.scores[1] > max(s[1] for s in self.members.values())),
                "best_member_ten": max(self.members, key=lambda k: self.members[k][0]), "best_member_ten_mAP": best[0]}


def choose_combination(labels: np.ndarray, per_model: Mapping[str, np.ndarray], base: Sequence[int]
                       ) -> CombinationChoice:
    """The combination of ``per_model`` probabilities ([n, tags] each) scoring best on ``labels``."""
    names = list(per_model)
    candidates = [Combination()] + [Combination("weighted_logit", dict(zip(names, w)))
                                    for w in weight_grid(len(names))]
    scored = [(c, map_scores(labels, combine(per_model, c), base)) for c in candidates]
    best, best_scores = scored[0]
    for c, s in scored[1:]:
        if sum(s) > sum(best_scores) + 1e-9:
            best, best_scores = c, s
    members = {n: map_scores(labels, p, base) for n, p in per_model.items()}
    return CombinationChoice(best, best_scores, members, scored[0][1], len(candidates))


def fit_stack(z: np.ndarray, y: np.ndarray, column: int, l2: float = STACK_L2, weights: np.ndarray | None = None,
              iterations: int = 100) -> tuple[float, np.ndarray]:
    """(bias, weights over all tags' logits) of an L2-regularised logistic regression of ``y`` (0/1) on the
    combined logits ``z`` [n, tags], shrunk toward the identity on ``column``; Newton's method with step
    halving, so nearly separable rows cannot make it diverge."""
    x = np.hstack([np.ones((len(z), 1)), z])
    rows = np.ones(len(z)) if weights is None else np.asarray(weights, dtype=np.float64)
    prior = np.zeros(x.shape[1])
    prior[1 + column] = 1.0
    penalty = np.full(x.shape[1], l2)
    penalty[0] = 0.0  # the bias is free

    def loss(w: np.ndarray) -> float:
        s = x @ w
        return float(np.sum(rows * (np.logaddexp(0, s) - y * s)) + 0.5 * np.sum(penalty * (w - prior) ** 2))

    w, current = prior.copy(), loss(prior)
    for _ in range(iterations):
        p = 1 / (1 + np.exp(-(x @ w)))
        gradient = x.T @ (rows * (p - y)) + penalty * (w - prior)
        hessian = (x * (rows * p * (1 - p))[:, None]).T @ x + np.diag(penalty + 1e-6)
        step, scale = np.linalg.solve(hessian, gradient), 1.0
        while scale > 1e-6 and loss(w - scale * step) > current:
            scale /= 2
        w = w - scale * step
        new = loss(w)
        if current - new < 1e-10 * max(1.0, abs(current)):
            break
        current = new
    return float(w[0]), w[1:]


def stack_layers(tags: Sequence[str], z: np.ndarray, labels: np.ndarray, stacked: Sequence[str],
                 weights: np.ndarray | None = None, min_weight: float = 1e-3) -> dict[str, TagStack]:
    """One logistic layer per tag in ``stacked``, fitted on the rows where its label is known; weights below
    ``min_weight`` in size are dropped so the manifest lists what matters."""
    layers = {}
    for tag in stacked:
        j = list(tags).index(tag)
        known = labels[:, j] >= 0
        rows = None if weights is None else weights[known]
        bias, w = fit_stack(z[known], (labels[known, j] > 0).astype(np.float64), j, weights=rows)
        layers[tag] = TagStack(bias, {t: float(v) for t, v in zip(tags, w) if abs(v) >= min_weight})
    return layers


def out_of_fold_stack(tags: Sequence[str], z_tune: np.ndarray, y_tune: np.ndarray, z_other: np.ndarray,
                      y_other: np.ndarray, stacked: Sequence[str], folds: int = STACK_FOLDS) -> np.ndarray:
    """Tune-half probabilities of the stacked combination, each row from layers fitted without its fold (and
    with every ``other`` row), so that thresholds chosen on them are not chosen on rows the stack has seen."""
    out = np.empty_like(z_tune)
    fold = np.arange(len(z_tune)) % folds
    for k in range(folds):
        fit = fold != k
        layers = stack_layers(tags, np.vstack([z_tune[fit], z_other]), np.vstack([y_tune[fit], y_other]), stacked)
        out[~fit] = apply_stack(z_tune[~fit], Combination("mean", {}, layers, tuple(tags)))
    return sigmoid(out)


@dataclass(frozen=True)
class ThresholdChoice:
    """Per-tag thresholds with where each came from and which tags missed the precision target."""

    thresholds: dict[str, float]
    source: dict[str, str]
    below_target: list[str]
    target: float

    def record(self) -> dict[str, Any]:
        """The ``ensemble.tuning.thresholds`` record."""
        return {"rule": f"precision first: the threshold with the best recall whose precision is >= {self.target:g} "
                        f"on the photos named per tag (on corpus val: not below the F1 threshold); tags that cannot "
                        f"reach it: the F1 threshold",
                "precision_target": self.target, "min_tune_positives": MIN_TUNE_POSITIVES,
                "decided_on": self.source, "below_target": self.below_target}


def precision_first_thresholds(tags: Sequence[str], tune_labels: np.ndarray, tune_probs: np.ndarray,
                               val_labels: np.ndarray, val_probs: np.ndarray, target: float = PRECISION_TARGET,
                               tune_name: str = "tune", val_name: str = "val") -> ThresholdChoice:
    """Thresholds for ``target`` precision per tag: on the tune photos where a tag has enough positives there,
    else on the validation photos."""
    thresholds, source, below = {}, {}, []
    for j, tag in enumerate(tags):
        on_tune = int(np.sum(tune_labels[:, j] > 0)) >= MIN_TUNE_POSITIVES
        y, p = (tune_labels[:, j], tune_probs[:, j]) if on_tune else (val_labels[:, j], val_probs[:, j])
        value = threshold_for_precision(y, p, target)
        if value is None:
            value = best_f1_threshold(y, p)
            below.append(tag)
        elif not on_tune:  # the corpus's easy negatives let precision-first cuts sink; not below its F1 cut
            value = max(value, best_f1_threshold(y, p))
        thresholds[tag] = float(min(max(value, 0.0), 1.0))
        source[tag] = tune_name if on_tune else val_name
    return ThresholdChoice(thresholds, source, below, target)
