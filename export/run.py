"""A training run folder (``hashtag.train.run_folder``) as export needs it, validated before any work."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from hashtag.export.errors import ExportError
from hashtag.runtime.manifest import Preprocessing
from hashtag.train.run_folder import ENSEMBLE_JSON, MODEL_JSON, ModelRecord, RunFolder, RunFolderError, read_json


def _read(path: Path) -> dict[str, Any]:
    """A JSON object from a run folder file, or an ExportError naming the file."""
    try:
        return read_json(path)
    except RunFolderError as exc:
        raise ExportError(str(exc)) from None


def _thresholds(raw: Any, tags: Sequence[str], where: str) -> dict[str, float]:
    if not isinstance(raw, Mapping) or set(raw) != set(tags):
        raise ExportError(f"{where}: thresholds must map exactly the tags {list(tags)}")
    out = {t: float(raw[t]) for t in tags}
    if any(not 0.0 <= v <= 1.0 for v in out.values()):
        raise ExportError(f"{where}: thresholds must lie in [0, 1]")
    return out


@dataclass(frozen=True)
class TrainedModel:
    """One model of the run: its Keras file and what model.json says about it."""

    name: str
    keras_path: Path
    input_size: int
    preprocessing: Preprocessing
    tags: tuple[str, ...]
    thresholds: dict[str, float]
    info: dict[str, Any]  # model.json as written by training and evaluation (``ModelRecord.to_dict``)


@dataclass(frozen=True)
class TrainingRun:
    """The run folder's models (those selected for export) and its ensemble settings."""

    root: Path
    tags: tuple[str, ...]
    models: tuple[TrainedModel, ...]
    all_models: tuple[str, ...]
    ensemble: dict[str, Any]  # ensemble.json ({} when absent)
    info: dict[str, Any]  # run.json

    def ensemble_thresholds(self) -> tuple[dict[str, float], str]:
        """Thresholds for the exported ensemble and where they come from.

        ensemble.json was tuned for all of the run's models together; a single exported model keeps
        its own thresholds, and any other subset gets the mean of its members' thresholds.
        """
        names = [m.name for m in self.models]
        if set(names) == set(self.all_models) and "thresholds" in self.ensemble:
            return _thresholds(self.ensemble["thresholds"], self.tags, str(self.root / ENSEMBLE_JSON)), ENSEMBLE_JSON
        if len(self.models) == 1:
            return dict(self.models[0].thresholds), f"{names[0]}/{MODEL_JSON}"
        mean = {t: sum(m.thresholds[t] for m in self.models) / len(self.models) for t in self.tags}
        return mean, "mean of the exported models' thresholds"


def _load_model(folder: RunFolder, name: str, tags: tuple[str, ...]) -> TrainedModel:
    keras_path = folder.keras(name)
    if not keras_path.is_file():
        raise ExportError(f"model {name!r}: {keras_path} does not exist")
    where = folder.model_json(name)
    try:
        record = ModelRecord.read(where)
    except RunFolderError as exc:
        raise ExportError(str(exc)) from None
    if set(record.tags) != set(tags) or len(record.tags) != len(tags):
        raise ExportError(f"{where}: tags {list(record.tags)} differ from run.json's {list(tags)}")
    if record.thresholds is None:
        raise ExportError(f"{where}: has no thresholds yet; run `hashtag evaluate` on the run first")
    return TrainedModel(name, keras_path, record.input_size, record.preprocessing, record.tags,
                        dict(record.thresholds), record.to_dict())


def load_run(root: str | Path, names: Sequence[str] | None = None) -> TrainingRun:
    """Validate RUN/run.json, RUN/ensemble.json and each selected RUN/<model>/ folder."""
    folder = RunFolder(root)
    root = folder.root
    if not root.is_dir():
        raise ExportError(f"no training run at {root}")
    info = _read(folder.run_json)
    tags = info.get("tags")
    if not isinstance(tags, list) or not tags or not all(isinstance(t, str) and t for t in tags):
        raise ExportError(f"{folder.run_json}: tags must be a non-empty list of strings")
    all_models = info.get("models")
    if not isinstance(all_models, list) or not all_models:
        raise ExportError(f"{folder.run_json}: models must be a non-empty list of names")
    selected = list(dict.fromkeys(names)) if names else list(all_models)
    unknown = [n for n in selected if n not in all_models]
    if unknown:
        raise ExportError(f"run {root} has no model {unknown[0]!r} (has: {', '.join(all_models)})")
    ensemble = _read(folder.ensemble_json) if folder.ensemble_json.is_file() else {}
    models = tuple(_load_model(folder, n, tuple(tags)) for n in selected)
    return TrainingRun(root, tuple(tags), models, tuple(all_models), ensemble, info)
