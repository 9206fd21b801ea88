"""The training run folder: what ``hashtag train --out RUN`` writes and which photos a run used.

Training writes it, evaluation updates it, export and the benchmarks read it; all of them take the file
names, the predictions format and the row selection from here::

    run.json                     tags, dataset, vocabulary rule, partial labels, models, seed, config, split sizes
    <model>/model.keras          backbone + chosen head: preprocessed NHWC float32 -> sigmoid [N, T]
    <model>/model.json           ``ModelRecord``: name, input size, preprocessing, tags, (after evaluation)
                                 thresholds; and as recorded: vocabulary rule, backbone, weights provenance,
                                 head, loss, candidates compared, (after evaluation) metrics
    <model>/history.json         loss / val loss / val mAP per epoch of every candidate
    <model>/predictions.npz      val and test probabilities of the chosen head (ids, labels 1/0/-1 unknown, probs)
    ensemble.json, report.md, plots/*.png   written by evaluation

Light on purpose (numpy and the runtime only): evaluating saved predictions, export and the benchmarks need no
TensorFlow here.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from hashtag.runtime.errors import BundleError
from hashtag.runtime.files import write_json_atomically
from hashtag.runtime.manifest import Preprocessing
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
INPUT_SIZES = range(8, 4097)  # the input sizes a model.json may give
_TYPED = frozenset({"name", "input_size", "preprocessing", "tags", "thresholds"})  # ModelRecord's own fields


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


@dataclass(frozen=True)
class ModelRecord:
    """``<model>/model.json``: what export and the model card rely on, typed and checked on read, and the rest of
    what training and evaluation record (backbone, weights provenance, head, loss, candidates, metrics...) as
    written, in ``details``."""

    name: str
    input_size: int
    preprocessing: Preprocessing
    tags: tuple[str, ...]
    thresholds: Mapping[str, float] | None = None  # per tag; evaluation chooses them
    details: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise RunFolderError(f"name must be a non-empty string, got {self.name!r}")
        if not isinstance(self.input_size, int) or isinstance(self.input_size, bool) or \
                self.input_size not in INPUT_SIZES:
            raise RunFolderError(f"input_size must be an integer between {INPUT_SIZES.start} and "
                                 f"{INPUT_SIZES.stop - 1}, got {self.input_size!r}")
        if not self.tags or len(set(self.tags)) != len(self.tags) or \
                not all(isinstance(t, str) and t for t in self.tags):
            raise RunFolderError(f"tags must be distinct non-empty strings, got {list(self.tags)}")
        if self.thresholds is not None:
            if set(self.thresholds) != set(self.tags):
                raise RunFolderError(f"thresholds must map exactly the tags {list(self.tags)}")
            if any(not 0.0 <= v <= 1.0 for v in self.thresholds.values()):
                raise RunFolderError("thresholds must lie in [0, 1]")
        taken = _TYPED & set(self.details)
        if taken:
            raise RunFolderError(f"details must not repeat the typed fields {sorted(taken)}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = MODEL_JSON) -> ModelRecord:
        """The record in model.json's form; a RunFolderError naming ``where`` when it is not one."""
        try:
            prep, tags, thresholds = data["preprocessing"], data["tags"], data.get("thresholds")
            if not isinstance(prep, Mapping) or not isinstance(tags, list) or \
                    not isinstance(thresholds, (Mapping, type(None))):
                raise RunFolderError("preprocessing and thresholds must be objects, tags a list")
            return cls(data["name"], data["input_size"], Preprocessing.from_dict(prep), tuple(tags),
                       None if thresholds is None else {t: float(v) for t, v in thresholds.items()},
                       {k: v for k, v in data.items() if k not in _TYPED})
        except KeyError as exc:
            raise RunFolderError(f"{where}: lacks {exc.args[0]!r}") from None
        except (RunFolderError, BundleError, TypeError, ValueError) as exc:
            raise RunFolderError(f"{where}: {exc}") from None

    @classmethod
    def read(cls, path: Path) -> ModelRecord:
        """The record in ``path``, checked."""
        return cls.from_dict(read_json(path), str(path))

    def to_dict(self) -> dict[str, Any]:
        """model.json's form."""
        typed = {"name": self.name, "input_size": self.input_size, "preprocessing": self.preprocessing.to_dict(),
                 "tags": list(self.tags)}
        if self.thresholds is not None:
            typed["thresholds"] = dict(self.thresholds)
        return {**typed, **self.details}

    def write(self, path: Path) -> None:
        """Write model.json whole (``runtime.files.write_json_atomically``: paths as text, NaN as null)."""
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        write_json_atomically(path, self.to_dict())


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
