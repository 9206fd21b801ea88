"""Multi-label metrics in plain numpy: per-tag AP/precision/recall/F1, mAP, F1-optimal thresholds.

Written here rather than taken from scikit-learn so the training extra stays small; the definitions
follow scikit-learn's (AP as the step-wise area under the precision-recall curve, ties grouped).
The original project's Keras "accuracy" is reported as binary accuracy at 0.5 (what tf.keras 2.x
computed for ``metrics=['accuracy']`` with binary cross-entropy), always next to the do-nothing
baseline of predicting no tag at all, which scores high on sparse labels.

Labels are 1, 0 or UNKNOWN (-1, ``hashtag.train.partial_labels``): unknown entries are left out of every
figure, so a tag's AP, F1 and threshold come from the rows where its label is known.
"""
from __future__ import annotations

import math
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from hashtag.train.partial_labels import is_known

DEFAULT_THRESHOLD = 0.5


def _check(y_true: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(positive, known, scores): boolean positives and known-label mask, float64 scores."""
    y = np.asarray(y_true)
    s = np.asarray(scores, dtype=np.float64)
    if y.shape != s.shape:
        raise ValueError(f"labels {y.shape} and scores {s.shape} differ in shape")
    return y > 0, is_known(y), s


def _ranked_counts(y_true: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """True/false positives when predicting ``score >= t`` for each distinct score t, highest t first,
    over the rows whose label is known."""
    positive, known, s = _check(y_true, scores)
    y, s = positive[known].astype(np.int64), s[known]
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last_of_group = np.r_[np.flatnonzero(np.diff(s)), s.size - 1] if s.size else np.array([], dtype=np.int64)
    tps = np.cumsum(y)[last_of_group]
    fps = last_of_group + 1 - tps
    return tps, fps, s[last_of_group]


def average_precision(y_true: np.ndarray, scores: np.ndarray) -> float:
    """AP of one tag: sum over distinct thresholds of (recall step) x precision; NaN without positives."""
    tps, fps, _ = _ranked_counts(y_true, scores)
    positives = tps[-1] if tps.size else 0
    if positives == 0:
        return math.nan
    precision = tps / (tps + fps)
    recall = tps / positives
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def precision_recall_curve(y_true: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(precision, recall, thresholds) for each distinct score, highest threshold first."""
    tps, fps, thresholds = _ranked_counts(y_true, scores)
    positives = max(int(tps[-1]) if tps.size else 0, 1)
    return tps / np.maximum(tps + fps, 1), tps / positives, thresholds


def best_f1_threshold(y_true: np.ndarray, scores: np.ndarray, default: float = DEFAULT_THRESHOLD) -> float:
    """The threshold maximising F1 of ``score >= t``; midway to the next lower score so it generalises.

    Among equal F1 values the highest threshold wins; without any positive ``default`` is returned.
    """
    tps, fps, thresholds = _ranked_counts(y_true, scores)
    positives = tps[-1] if tps.size else 0
    if positives == 0:
        return default
    f1 = 2 * tps / (tps + fps + positives)
    best = int(np.argmax(f1))
    if best + 1 < thresholds.size:
        return float((thresholds[best] + thresholds[best + 1]) / 2)
    return float(thresholds[best])


def choose_thresholds(y_true: np.ndarray, probs: np.ndarray, tags: Sequence[str]) -> dict[str, float]:
    """Per-tag F1-optimal thresholds (meant for the validation split), each over the rows where it is known."""
    return {tag: best_f1_threshold(y_true[:, j], probs[:, j]) for j, tag in enumerate(tags)}


def threshold_for_recall(y_true: np.ndarray, scores: np.ndarray, recall: float,
                         default: float = DEFAULT_THRESHOLD) -> float:
    """The highest threshold at which ``scores >= threshold`` reaches ``recall`` on the known rows (``default``
    without positives): the most precise cut that finds as many as a reference does."""
    precision, recalls, thresholds = precision_recall_curve(y_true, scores)
    reaching = np.flatnonzero(recalls >= recall - 1e-12)
    if not thresholds.size or not reaching.size or not np.any(np.asarray(y_true) > 0):
        return default
    return float(thresholds[reaching[0]])


def threshold_for_precision(y_true: np.ndarray, scores: np.ndarray, precision: float) -> float | None:
    """The threshold at which ``scores >= threshold`` keeps ``precision`` on the known rows with the best recall
    (the highest such threshold: lower ones only add false positives), midway to the next lower score so it
    generalises; None when no threshold with a true positive reaches it (or there is no positive). A cut must
    also beat the tag's prevalence: where most photos carry a tag, printing it on every photo is no choice."""
    tps, fps, thresholds = _ranked_counts(y_true, scores)
    if not tps.size:
        return None
    prevalence = tps[-1] / (tps[-1] + fps[-1])
    reaching = np.flatnonzero((tps > 0) & (tps >= precision * (tps + fps) - 1e-12)
                              & (tps > prevalence * (tps + fps) + 1e-12))
    if not reaching.size:
        return None
    best = int(reaching[np.argmax(tps[reaching])])  # argmax: the first, i.e. highest, threshold of the best recall
    if best + 1 < thresholds.size:
        return float((thresholds[best] + thresholds[best + 1]) / 2)
    return float(thresholds[best])


def tag_aps(y_true: np.ndarray, probs: np.ndarray) -> list[float]:
    """AP of every tag (column) over its known rows, NaN for a tag without positives."""
    return [average_precision(y_true[:, j], probs[:, j]) for j in range(probs.shape[1])]


def mean_ap(aps: Iterable[float]) -> float:
    """Macro mAP of per-tag APs (``tag_aps``): the mean over tags with a positive; NaN when no tag has one.

    A tag without positives has no AP (NaN); counting it as 0 would punish a model for the split's sparsity.
    """
    scored = [a for a in aps if not math.isnan(a)]
    return float(np.mean(scored)) if scored else math.nan


def mean_average_precision(y_true: np.ndarray, probs: np.ndarray) -> float:
    """Macro mAP over the tags that have at least one positive."""
    return mean_ap(tag_aps(y_true, probs))


def binary_accuracy(y_true: np.ndarray, probs: np.ndarray, threshold: float = 0.5) -> float:
    """Keras' binary accuracy: element-wise agreement of ``prob > threshold`` with the known labels."""
    positive, known, p = _check(y_true, probs)
    return _safe_div(np.sum(((p > threshold) == positive) & known), np.sum(known))


def _safe_div(num: float, den: float) -> float:
    return float(num / den) if den else 0.0


def split_metrics(
    y_true: np.ndarray, probs: np.ndarray, tags: Sequence[str], thresholds: Mapping[str, float]
) -> dict[str, Any]:
    """Everything reported for one split, JSON-ready; F1/precision/recall use ``prob >= threshold``.

    Unknown labels count nowhere: not as errors, not as agreements (exact match asks the known ones only).
    """
    y, known, p = _check(y_true, probs)
    if p.ndim != 2 or p.shape[1] != len(tags):
        raise ValueError(f"scores have shape {p.shape}, expected [n, {len(tags)}]")
    t = np.array([thresholds[tag] for tag in tags], dtype=np.float64)
    pred = p >= t
    tp = (pred & y).sum(axis=0)
    fp = (pred & ~y & known).sum(axis=0)
    fn = (~pred & y).sum(axis=0)
    support = y.sum(axis=0)
    aps = tag_aps(y_true, p)
    per_tag: dict[str, dict[str, Any]] = {}
    for j, (tag, ap) in enumerate(zip(tags, aps)):
        prec = _safe_div(tp[j], tp[j] + fp[j])
        rec = _safe_div(tp[j], tp[j] + fn[j])
        per_tag[tag] = {
            "ap": None if math.isnan(ap) else ap,
            "precision": prec,
            "recall": rec,
            "f1": _safe_div(2 * prec * rec, prec + rec),
            "support": int(support[j]),
            "known": int(known[:, j].sum()),
            "threshold": float(t[j]),
        }
    scored = [tag for tag in tags if per_tag[tag]["support"] > 0]
    return {
        "n_images": int(y.shape[0]),
        "mAP": mean_ap(aps),
        "micro_f1": _safe_div(2 * tp.sum(), 2 * tp.sum() + fp.sum() + fn.sum()),
        "micro_precision": _safe_div(tp.sum(), tp.sum() + fp.sum()),
        "micro_recall": _safe_div(tp.sum(), tp.sum() + fn.sum()),
        "macro_f1": float(np.mean([per_tag[tag]["f1"] for tag in scored])) if scored else math.nan,
        "exact_match": float(np.mean(np.all((pred == y) | ~known, axis=1))),
        "hamming_loss": _safe_div(np.sum((pred != y) & known), np.sum(known)),
        "binary_accuracy": binary_accuracy(y_true, p, 0.5),
        "do_nothing_accuracy": _safe_div(np.sum(~y & known), np.sum(known)),
        "unknown_labels": int(np.sum(~known)),
        "per_tag": per_tag,
    }
