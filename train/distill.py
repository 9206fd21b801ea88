"""The fast model: EfficientNet-Lite0 (frozen) with a head distilled from the shipped ensemble.

Training rows: the corpus's train split and the *tune* half of the everyday photos (``real_photos``), each in
two views (the photo and one augmented view, ``augment``). Targets mix the ensemble's probabilities (the
teacher, ``teacher``) with the true labels where they are known::

    target = (1 - alpha) * label + alpha * teacher   label and teacher known
             label                                    only the label known
             teacher                                  only the teacher's probability known (unlabelled tags)

Elements with neither weigh nothing (partial labels stay masked). Decisions use real photos only:

- ``alpha`` and the number of epochs: 2-fold cross-fitting on the *tune* half (each fold's head trains on the
  corpus and the other fold), by the mean of ten-tag and all-tag mAP on the held-out fold.
- per-tag thresholds: the ensemble's rule (``train.combination.precision_first_thresholds``) on the
  out-of-fold *tune* predictions, on the corpus's val split for tags the everyday photos label too rarely.
- The final head trains on the corpus and the whole *tune* half; the *report* half, never trained or tuned
  on, gives the figures of the model card.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from hashtag.runtime.manifest import Bundle, Preprocessing, ensemble_sha256
from hashtag.train.combination import PRECISION_TARGET, precision_first_thresholds
from hashtag.train.metrics import mean_average_precision, split_metrics
from hashtag.train.partial_labels import is_known
from hashtag.train.splits import unit_interval

ORIGINAL_TAGS = 10  # the bundle's first ten tags are the original project's
FOLDS = 2
PREDICTIONS_NAME = "distill_predictions.npz"  # in the run's model folder: out-of-fold tune, val, report


@dataclass(frozen=True)
class DistillConfig:
    """The settings compared and the fixed ones; validated once."""

    alphas: tuple[float, ...] = (0.0, 0.5, 1.0)
    teacher_weight: float = 1.0  # weight of teacher-only elements relative to labelled ones
    everyday_weight: float = 3.0  # weight of an everyday (tune half) photo relative to a corpus one
    max_epochs: int = 15  # the shipped run's best were 9-14 (models/README.md)
    batch_size: int = 128
    learning_rate: float = 1e-3
    head: str = "gap-mlp512"
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.alphas or any(not 0.0 <= a <= 1.0 for a in self.alphas):
            raise ValueError(f"alphas must lie in [0, 1], got {self.alphas}")
        if self.max_epochs < 1 or self.batch_size < 1 or not self.learning_rate > 0 or self.teacher_weight < 0:
            raise ValueError("max_epochs and batch_size must be >= 1, learning_rate > 0, teacher_weight >= 0")
        if not self.everyday_weight > 0:
            raise ValueError(f"everyday_weight must be positive, got {self.everyday_weight}")


@dataclass
class Rows:
    """Training or evaluation rows: features, targets (1/0/UNKNOWN), teacher probabilities (NaN: none), and
    each row's weight in the loss."""

    ids: list[str]
    x: np.ndarray
    labels: np.ndarray
    teacher: np.ndarray
    weight: np.ndarray | None = None  # None: 1 for every row

    def __post_init__(self) -> None:
        n = len(self.ids)
        if self.weight is None:
            self.weight = np.ones(n, np.float32)
        if not (len(self.x) == len(self.labels) == len(self.teacher) == len(self.weight) == n):
            raise ValueError("rows differ in length")

    def __len__(self) -> int:
        return len(self.ids)

    def take(self, mask: np.ndarray) -> "Rows":
        return Rows([i for i, m in zip(self.ids, mask) if m], self.x[mask], self.labels[mask], self.teacher[mask],
                    self.weight[mask])

    def weighted(self, weight: float) -> "Rows":
        """The same rows, each weighing ``weight``."""
        return Rows(self.ids, self.x, self.labels, self.teacher, np.full(len(self.ids), weight, np.float32))

    @staticmethod
    def concat(parts: Sequence["Rows"]) -> "Rows":
        return Rows([i for p in parts for i in p.ids], np.concatenate([p.x for p in parts]),
                    np.concatenate([p.labels for p in parts]), np.concatenate([p.teacher for p in parts]),
                    np.concatenate([p.weight for p in parts]))


def soft_targets(rows: Rows, alpha: float, teacher_weight: float) -> tuple[np.ndarray, np.ndarray]:
    """(targets, weights) ``[n, tags]`` float32 for the rule in the module docstring."""
    known = is_known(rows.labels)
    has_teacher = ~np.isnan(rows.teacher)
    label = np.clip(rows.labels, 0, 1).astype(np.float32)
    teacher = np.nan_to_num(rows.teacher).astype(np.float32)
    target = np.where(known & has_teacher, (1 - alpha) * label + alpha * teacher,
                      np.where(known, label, teacher)).astype(np.float32)
    weight = np.where(known, 1.0, np.where(has_teacher, teacher_weight, 0.0)) * rows.weight[:, None]
    return target, weight.astype(np.float32)


def fold_of(photo_id: str) -> int:
    """The cross-fitting fold of a *tune* photo, fixed by its id (independent of the tune/report split)."""
    return int(unit_interval(f"fold:{photo_id}") * FOLDS)


def score(labels: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    """Ten-tag and all-tag mAP over known labels, and their mean (the selection score)."""
    ten = mean_average_precision(labels[:, :ORIGINAL_TAGS], probs[:, :ORIGINAL_TAGS])
    every = mean_average_precision(labels, probs)
    return {"map_ten": ten, "map_all": every, "score": float(np.nanmean([ten, every]))}


def _weighted_bce(y_true: Any, y_pred: Any) -> Any:
    """Soft binary cross-entropy weighted element by element; ``y_true`` packs [targets | weights]."""
    from keras import ops

    n = ops.shape(y_pred)[-1]
    target, weight = y_true[:, :n], y_true[:, n:]
    p = ops.clip(y_pred, 1e-7, 1 - 1e-7)
    bce = -(target * ops.log(p) + (1 - target) * ops.log(1 - p))
    return ops.sum(bce * weight) / ops.maximum(ops.sum(weight), 1.0)


def train_head(train: Rows, alpha: float, config: DistillConfig, epochs: int,
               watch: Rows | None = None) -> tuple[Any, list[np.ndarray]]:
    """A head trained for ``epochs`` on ``train``; with ``watch``, its probabilities on it after each epoch."""
    import keras

    from hashtag.train.heads import build_head, head_config

    keras.utils.set_random_seed(config.seed)
    head = build_head(head_config(config.head), train.x.shape[1:], train.labels.shape[1])
    head.compile(optimizer=keras.optimizers.Adam(config.learning_rate), loss=_weighted_bce)
    target, weight = soft_targets(train, alpha, config.teacher_weight)
    packed = np.concatenate([target, weight], axis=1)
    seen = []
    for _ in range(epochs):
        head.fit(train.x, packed, batch_size=config.batch_size, epochs=1, shuffle=True, verbose=0)
        if watch is not None:
            seen.append(np.asarray(head.predict(watch.x, batch_size=1024, verbose=0), dtype=np.float32))
    return head, seen


@dataclass
class Choice:
    """What cross-fitting chose, every candidate's held-out curve, and the out-of-fold predictions."""

    alpha: float
    epochs: int
    candidates: list[dict[str, Any]]
    oof: np.ndarray = field(repr=False)


def cross_fit(corpus: Rows, tune: Rows, tune_views: Rows, config: DistillConfig, log: Any = print) -> Choice:
    """Choose alpha and epochs on the *tune* half by 2-fold cross-fitting (see module docstring)."""
    folds = np.array([fold_of(i) for i in tune.ids])
    view_folds = np.array([fold_of(i) for i in tune_views.ids])
    candidates, curves = [], {}
    for alpha in config.alphas:
        per_epoch = np.zeros((config.max_epochs, *tune.labels.shape), dtype=np.float32)
        for k in range(FOLDS):
            fit_rows = Rows.concat([corpus, tune_views.take(view_folds != k).weighted(config.everyday_weight)])
            held = tune.take(folds == k)
            _, seen = train_head(fit_rows, alpha, config, config.max_epochs, watch=held)
            per_epoch[:, folds == k] = np.stack(seen)
        scores = [score(tune.labels, per_epoch[e]) for e in range(config.max_epochs)]
        best = int(np.argmax([s["score"] for s in scores]))
        candidates.append({"alpha": alpha, "best_epochs": best + 1, **scores[best],
                           "curve": [round(s["score"], 4) for s in scores]})
        curves[alpha] = per_epoch[best]
        log(f"alpha {alpha}: best at {best + 1} epochs, ten-tag mAP {scores[best]['map_ten']:.4f}, "
            f"all {scores[best]['map_all']:.4f} (out of fold, tune half)")
    chosen = max(candidates, key=lambda c: c["score"])
    return Choice(chosen["alpha"], chosen["best_epochs"], candidates, curves[chosen["alpha"]])


def hashtag_thresholds(tags: Sequence[str], oof: np.ndarray, labels: np.ndarray, val_probs: np.ndarray,
                       val_labels: np.ndarray, target: float = PRECISION_TARGET) -> tuple[dict[str, float], dict[str, Any]]:
    """The fast model's default thresholds, by the ensemble's rule (``train.combination``): precision first on
    the *tune* half's out-of-fold predictions, on corpus val for tags the tune half labels too rarely.
    Returns the thresholds and the record of how each was chosen."""
    chosen = precision_first_thresholds(tags, labels, oof, val_labels, val_probs, target,
                                        "tune half (out of fold)", "corpus val")
    return chosen.thresholds, chosen.record()


def fast_model_json(bundle: Bundle, backbone_name: str, input_size: int, preprocessing: Preprocessing,
                    provenance: Mapping[str, Any], config: DistillConfig, choice: Choice,
                    thresholds: Mapping[str, float], threshold_source: Mapping[str, Any],
                    metrics: Mapping[str, Any], training_data: Mapping[str, Any]) -> dict[str, Any]:
    """model.json of the fast model, in the run-folder shape export reads (``hashtag.export.run``)."""
    from hashtag.train.heads import head_config

    return {
        "name": backbone_name,
        "role": "fast",
        "tags": list(bundle.tags),
        "backbone": backbone_name,
        "input_size": input_size,
        "preprocessing": preprocessing.to_dict(),
        "weights_source": dict(provenance),
        "head": head_config(config.head).to_dict(),
        "loss": "soft BCE on distilled targets (labels masked where unknown)",
        "thresholds": dict(thresholds),
        "thresholds_source": dict(threshold_source),
        "distillation": {
            "teacher": {"ensemble_sha256": ensemble_sha256(bundle), "models": list(bundle.ensemble_names)},
            "config": asdict(config),
            "chosen": {"alpha": choice.alpha, "epochs": choice.epochs},
            "candidates": choice.candidates,
            "selection": "alpha and epochs by 2-fold cross-fitting on the everyday tune half (mean of ten-tag and "
                         "all-tag mAP out of fold); final head on the corpus train split and the whole tune half",
        },
        "training_data": dict(training_data),
        "metrics": dict(metrics),
    }


def report_metrics(labels: np.ndarray, probs: np.ndarray, tags: Sequence[str],
                   thresholds: Mapping[str, float]) -> dict[str, Any]:
    """split_metrics plus the ten-tag mAP."""
    out = split_metrics(labels, probs, tags, thresholds)
    out["mAP_ten"] = mean_average_precision(labels[:, :ORIGINAL_TAGS], probs[:, :ORIGINAL_TAGS])
    return out
