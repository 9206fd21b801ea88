"""Multi-label losses on sigmoid probabilities: plain BCE and three answers to tag imbalance.

The corpus is dominated by a few tags (person/outdoors/nature) and its negatives are partly missing
keywords rather than true absences. Candidates, compared on validation mAP by the trainer:

- ``bce``: binary cross-entropy, the original project's loss.
- ``weighted``: BCE whose positive term is scaled per tag by n_negative / n_positive on the training
  labels, so rare tags weigh as much as common ones.
- ``focal``: focal loss (Lin et al. 2017, gamma 2) which down-weights examples already right.
- ``asl``: asymmetric loss (Ridnik et al. 2021: gamma+ 0, gamma- 4, probability margin 0.05), which
  discounts easy and possibly mislabelled negatives - suited to partial labels.

Labels may be partial (``hashtag.train.partial_labels``): an UNKNOWN (-1) target contributes nothing. Each
element's loss is multiplied by the known mask, and the batch's loss is the sum over known elements divided
by their number, so a known label weighs the same whatever else in the batch is unknown. With every label
known that is the usual mean over photos and tags.

Keras loads only when a loss is made: the names are read by the light training settings (``config.py``).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import numpy as np

from hashtag.train.errors import SettingsError

if TYPE_CHECKING:
    import keras

    LossFn = Callable[[keras.KerasTensor, keras.KerasTensor], keras.KerasTensor]

LOSS_NAMES = ("bce", "weighted", "focal", "asl")
EPSILON = 1e-7
MAX_POS_WEIGHT = 100.0
FOCAL_GAMMA = 2.0
ASL_GAMMA_NEG = 4.0
ASL_MARGIN = 0.05


def positive_weights(labels: np.ndarray) -> np.ndarray:
    """n_negative / n_positive per tag among its known labels, clipped to [1/MAX, MAX] so absent tags stay finite."""
    labels = np.asarray(labels, dtype=np.float64)
    pos = (labels > 0).sum(axis=0)
    neg = (labels == 0).sum(axis=0)
    return np.clip(neg / np.maximum(pos, 1.0), 1.0 / MAX_POS_WEIGHT, MAX_POS_WEIGHT).astype(np.float32)


def make_loss(name: str, train_labels: np.ndarray) -> LossFn:
    """The loss called ``name`` (one of LOSS_NAMES) on targets 1/0/UNKNOWN.

    Keras averages the per-photo values it returns over the batch; each is the photo's summed known-element
    loss over the batch's mean count of known labels per photo, so that average is the mean over known elements.
    """
    if name not in LOSS_NAMES:
        raise SettingsError(f"unknown loss {name!r} (known: {', '.join(LOSS_NAMES)})")
    from keras import ops

    weights = ops.convert_to_tensor(positive_weights(train_labels))

    def terms(y_true: keras.KerasTensor, y_pred: keras.KerasTensor) -> tuple:
        """(targets with unknown read as 0, known mask, clipped probabilities)."""
        y = ops.cast(y_true, "float32")
        known = ops.cast(y >= 0, "float32")
        p = ops.clip(ops.cast(y_pred, "float32"), EPSILON, 1.0 - EPSILON)
        return y * known, known, p

    def masked(elements: keras.KerasTensor, known: keras.KerasTensor) -> keras.KerasTensor:
        """Per-photo values whose batch mean is the mean of ``elements`` over the known entries."""
        per_photo = ops.mean(ops.sum(known, axis=-1))
        return ops.sum(elements * known, axis=-1) / ops.maximum(per_photo, EPSILON)

    def bce(y_true: keras.KerasTensor, y_pred: keras.KerasTensor) -> keras.KerasTensor:
        y, known, p = terms(y_true, y_pred)
        return -masked(y * ops.log(p) + (1 - y) * ops.log(1 - p), known)

    def weighted(y_true: keras.KerasTensor, y_pred: keras.KerasTensor) -> keras.KerasTensor:
        y, known, p = terms(y_true, y_pred)
        return -masked(weights * y * ops.log(p) + (1 - y) * ops.log(1 - p), known)

    def focal(y_true: keras.KerasTensor, y_pred: keras.KerasTensor) -> keras.KerasTensor:
        y, known, p = terms(y_true, y_pred)
        pos = y * ops.power(1 - p, FOCAL_GAMMA) * ops.log(p)
        neg = (1 - y) * ops.power(p, FOCAL_GAMMA) * ops.log(1 - p)
        return -masked(pos + neg, known)

    def asl(y_true: keras.KerasTensor, y_pred: keras.KerasTensor) -> keras.KerasTensor:
        y, known, p = terms(y_true, y_pred)
        shifted = ops.maximum(p - ASL_MARGIN, 0.0)
        pos = y * ops.log(p)
        neg = (1 - y) * ops.power(shifted, ASL_GAMMA_NEG) * ops.log(ops.maximum(1 - shifted, EPSILON))
        return -masked(pos + neg, known)

    fn = {"bce": bce, "weighted": weighted, "focal": focal, "asl": asl}[name]
    fn.__name__ = f"{name}_loss"
    return fn
