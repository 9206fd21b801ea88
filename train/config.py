"""Training settings: one dataclass, recorded in run.json, whose field defaults ``hashtag train`` shows and uses.

Light on purpose (no Keras): the CLI module imports it to build its options.
"""
from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

from hashtag.train.backbones import BACKBONES, SPECS
from hashtag.train.errors import SettingsError
from hashtag.train.heads import HEADS, head_config
from hashtag.train.losses import LOSS_NAMES

# what runs the backbone while the feature cache fills -> OpenVINO's inference precision hint (None: Keras)
EXTRACT_ENGINES: dict[str, str | None] = {"keras": None, "openvino-f32": "f32", "openvino-bf16": "bf16"}
DEFAULT_LOSSES = ("bce", "weighted", "asl")  # focal trailed both on a 600-photo VGG16 probe; --losses adds it


def field_defaults(cls: type) -> dict[str, Any]:
    """Each field's default of a dataclass (``default_factory`` called), so CLI options show and use the same."""
    out = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    return out


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides what a run computes (recorded in run.json)."""

    models: tuple[str, ...] = BACKBONES
    input_sizes: Mapping[str, int] = field(default_factory=dict)  # default: each backbone's native size
    heads: tuple[str, ...] = tuple(HEADS)
    losses: tuple[str, ...] = DEFAULT_LOSSES
    augment: int = 1  # augmented views per training photo, compared against none
    epochs: int = 40
    patience: int = 6
    batch_size: int = 64
    extract_batch_size: int = 32
    learning_rate: float = 1e-3
    fine_tune_epochs: int = 3  # top blocks + head after the head; 0 keeps the backbone frozen
    fine_tune_learning_rate: float = 1e-4
    fine_tune_patience: int = 1
    extract_engine: str = "keras"  # or openvino-f32 / openvino-bf16 (hashtag[openvino])
    seed: int = 0
    limit: int | None = None  # at most this many training photos
    eval_limit: int | None = None  # at most this many val and test photos each

    def __post_init__(self) -> None:
        if not self.models or len(set(self.models)) != len(self.models):
            raise SettingsError(f"models must be distinct and non-empty, got {list(self.models)}")
        for name in self.heads:
            head_config(name)
        for name in self.losses:
            if name not in LOSS_NAMES:
                raise SettingsError(f"unknown loss {name!r} (known: {', '.join(LOSS_NAMES)})")
        if not self.heads or not self.losses:
            raise SettingsError("at least one head and one loss are needed")
        for key, value, low in (("augment", self.augment, 0), ("epochs", self.epochs, 1),
                                ("patience", self.patience, 1), ("batch size", self.batch_size, 1),
                                ("extract batch size", self.extract_batch_size, 1),
                                ("fine-tune epochs", self.fine_tune_epochs, 0),
                                ("fine-tune patience", self.fine_tune_patience, 1)):
            if value < low:
                raise SettingsError(f"{key} must be >= {low}, got {value}")
        for key, rate in (("learning rate", self.learning_rate), ("fine-tune learning rate",
                                                                  self.fine_tune_learning_rate)):
            if not rate > 0:
                raise SettingsError(f"{key} must be positive, got {rate}")
        if self.extract_engine not in EXTRACT_ENGINES:
            raise SettingsError(f"unknown extraction engine {self.extract_engine!r} "
                                f"(known: {', '.join(EXTRACT_ENGINES)})")
        for key, limit in (("limit", self.limit), ("eval limit", self.eval_limit)):
            if limit is not None and limit < 1:
                raise SettingsError(f"{key} must be >= 1, got {limit}")
        unknown = set(self.input_sizes) - set(self.models)
        if unknown:
            raise SettingsError(f"input sizes given for models not trained: {sorted(unknown)}")

    def input_size(self, name: str) -> int:
        """The input size of backbone ``name``: as configured, else its native size."""
        if self.input_sizes.get(name):
            return int(self.input_sizes[name])
        if name not in SPECS:
            raise SettingsError(f"no native input size known for {name!r}; give one (known: {', '.join(SPECS)})")
        return SPECS[name].native_size

    def to_dict(self) -> dict[str, Any]:
        """JSON form for run.json."""
        data = asdict(self)
        data["input_sizes"] = dict(self.input_sizes)
        return data
