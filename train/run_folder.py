"""The training run folder: what ``hashtag train --out RUN`` writes and which photos a run used.

Training writes it, evaluation updates it, export and the benchmarks read it; all of them take the file
names, the predictions format and the row selection from here::

    run.json                     tags, dataset, vocabulary rule, partial labels, models, seed, config, split sizes
    <model>/model.keras          backbone + chosen head: preprocessed NHWC float32 -> sigmoid [N, T]
    <model>/model.json           tags, vocabulary rule, backbone, input size, preprocessing, weights provenance,
                                 head, loss, candidates compared, (after evaluation) thresholds and metrics
    <model>/history.json         loss / val loss / val mAP per epoch of every candidate
    <model>/predictions.npz      val and test probabilities of the chosen head (ids, labels 1/0/-1 unknown, probs)
    ensemble.json, report.md, plots/*.png   written by evaluation

Light on purpose (numpy only): evaluating saved predictions, export and the benchmarks need no TensorFlow here.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from hashtag.train.errors import TrainError

RUN_VERSION = 1
RUN_JSON = "run.json"
ENSEMBLE_JSON = "ensemble.json"
REPORT_NAME = "report.md"
PLOTS_DIR = "plots"
KERAS_NAME = "model.keras"
MODEL_JSON = "model.json"
HISTORY_JSON = "history.json"
PREDICTIONS_NAME = "predictions.npz"
EVAL_SPLITS = ("val", "test")  # the splits whose predictions are saved and scored


class RunFolderError(TrainError):
    """A run folder file is missing or is not what training writes."""


@dataclass(frozen=True)
class RunFolder:
    """Paths of one run folder."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def run_json(self) -> Path:
        return self.root / RUN_JSON

    @property
    def ensemble_json(self) -> Path:
        return self.root / ENSEMBLE_JSON

    @property
    def report(self) -> Path:
        return self.root / REPORT_NAME

    @property
    def plots(self) -> Path:
        return self.root / PLOTS_DIR

    def model_dir(self, name: str) -> Path:
        return self.root / name

    def keras(self, name: str) -> Path:
        return self.root / name / KERAS_NAME

    def model_json(self, name: str) -> Path:
        return self.root / name / MODEL_JSON

    def history(self, name: str) -> Path:
        return self.root / name / HISTORY_JSON

    def predictions(self, name: str) -> Path:
        return self.root / name / PREDICTIONS_NAME


def read_json(path: Path) -> dict[str, Any]:
    """The JSON object in ``path``, or a RunFolderError naming the file."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunFolderError(f"{path} does not exist") from None
    except json.JSONDecodeError as exc:
        raise RunFolderError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise RunFolderError(f"{path} must hold a JSON object")
    return data


def select_rows(photo_ids: Sequence[str], limit: int | None) -> np.ndarray:
    """Indices of at most ``limit`` photos, picked by hashing their ids: unbiased, seed-free and nested
    (a smaller limit takes a subset of a larger one, so cached features are reused)."""
    rows = np.arange(len(photo_ids))
    if limit is None or limit >= len(photo_ids):
        return rows
    keys = [hashlib.sha256(pid.encode()).hexdigest() for pid in photo_ids]
    return np.sort(np.array(sorted(rows, key=lambda i: keys[i])[:limit], dtype=np.int64))


def used_rows(split: str, photo_ids: Sequence[str], limit: int | None, eval_limit: int | None) -> np.ndarray:
    """The rows of ``split`` a run trains or scores on: train capped by ``limit``, val and test by ``eval_limit``."""
    return select_rows(photo_ids, limit if split == "train" else eval_limit)


@dataclass(frozen=True)
class Predictions:
    """Probabilities and labels of one model on the val and test splits, rows identified by photo id."""

    ids: Mapping[str, np.ndarray]
    labels: Mapping[str, np.ndarray]
    probs: Mapping[str, np.ndarray]

    @classmethod
    def load(cls, path: Path) -> Predictions:
        try:
            with np.load(path) as data:
                return cls(*({s: data[f"{s}_{k}"] for s in EVAL_SPLITS} for k in ("ids", "labels", "probs")))
        except FileNotFoundError:
            raise RunFolderError(f"{path} does not exist") from None
        except KeyError as exc:
            raise RunFolderError(f"{path} lacks {exc}") from None

    def save(self, path: Path) -> None:
        arrays = {f"{s}_{k}": getattr(self, k)[s] for s in EVAL_SPLITS for k in ("ids", "labels", "probs")}
        np.savez_compressed(path, **arrays)
