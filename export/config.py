"""Export settings, validated once so a bad option fails before minutes of conversion work."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hashtag.export.errors import ExportError
from hashtag.runtime.manifest import PRECISIONS

CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
QUANT_TYPES = ("uint8", "int8")
ON_MAP_DROP = ("fail", "warn")
MIN_OPSET = 17
MAX_OPSET = 18  # the newest opset tf2onnx 1.17 emits
MIN_LATENCY_RUNS = 20


def _names(value: Any, what: str) -> tuple[str, ...]:
    items = tuple(value)
    if not all(isinstance(v, str) and v for v in items):
        raise ExportError(f"{what} must be non-empty strings, got {list(items)}")
    return items


@dataclass(frozen=True)
class QuantizationConfig:
    """One INT8 static QDQ recipe.

    The node producing the graph output (the final Sigmoid) always stays float: quantized, it puts
    the probabilities on a 1/256 grid. U8S8 (uint8 activations, int8 per-channel weights) is the
    default because on AVX-512 VNNI it is the combination ONNX Runtime fuses into QLinearConv for
    every conv; signed activations left up to 41 of InceptionV3's 94 convs in float.
    """

    name: str = ""  # derived from the settings when empty, e.g. "u8s8-percentile-float-adds"
    calibration: str = "minmax"
    percentile: float = 99.99
    per_channel: bool = True
    activation_type: str = "uint8"
    weight_type: str = "int8"
    exclude_first_conv: bool = False
    exclude_head: bool = False
    exclude_residual_adds: bool = False
    exclude_op_types: tuple[str, ...] = ()
    exclude_nodes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.calibration not in CALIBRATION_METHODS:
            raise ExportError(
                f"unknown calibration method {self.calibration!r} (choose from {', '.join(CALIBRATION_METHODS)})"
            )
        if not 50.0 < self.percentile <= 100.0:
            raise ExportError(f"calibration percentile must be in (50, 100], got {self.percentile}")
        for kind, value in (("activation", self.activation_type), ("weight", self.weight_type)):
            if value not in QUANT_TYPES:
                raise ExportError(f"unknown {kind} type {value!r} (choose from {', '.join(QUANT_TYPES)})")
        object.__setattr__(self, "exclude_op_types", _names(self.exclude_op_types, "excluded op types"))
        object.__setattr__(self, "exclude_nodes", _names(self.exclude_nodes, "excluded node names"))
        if not self.name:
            object.__setattr__(self, "name", self._derived_name())

    def _derived_name(self) -> str:
        sign = {"uint8": "u8", "int8": "s8"}
        parts = [sign[self.activation_type] + sign[self.weight_type], self.calibration]
        if self.calibration == "percentile" and self.percentile != 99.99:
            parts[-1] += f"{self.percentile:g}"
        if not self.per_channel:
            parts.append("per-tensor")
        ends = [e for e, on in (("first-conv", self.exclude_first_conv), ("head", self.exclude_head)) if on]
        if ends:
            parts.append("float-" + ("ends" if len(ends) == 2 else ends[0]))
        if self.exclude_residual_adds:
            parts.append("float-adds")
        parts += [f"float-{t}" for t in self.exclude_op_types]
        if self.exclude_nodes:
            parts.append(f"float-{len(self.exclude_nodes)}-nodes")
        return "-".join(parts)

    @property
    def calibration_key(self) -> str:
        """Configs with equal keys share calibration ranges (exclusions do not change them)."""
        return f"{self.calibration}-{self.percentile}" if self.calibration == "percentile" else self.calibration

    def to_dict(self) -> dict[str, Any]:
        """JSON form for the manifest and the report."""
        data = asdict(self)
        data["exclude_op_types"] = list(self.exclude_op_types)
        data["exclude_nodes"] = list(self.exclude_nodes)
        data["format"] = "QDQ"
        return data


DEFAULT_QUANTIZATION = QuantizationConfig()

# The usual levers against INT8 accuracy loss, cheapest first: the search stops early once a candidate is lossless.
SEARCH_CANDIDATES: tuple[QuantizationConfig, ...] = (
    DEFAULT_QUANTIZATION,
    QuantizationConfig(calibration="percentile"),
    QuantizationConfig(calibration="percentile", exclude_residual_adds=True),
    QuantizationConfig(exclude_first_conv=True, exclude_head=True),
    QuantizationConfig(calibration="entropy"),
)


@dataclass(frozen=True)
class ExportConfig:
    """Everything ``hashtag export`` does; the defaults are the CLI's."""

    run_dir: Path
    data_dir: Path
    out_dir: Path
    models: tuple[str, ...] | None = None
    precisions: tuple[str, ...] = PRECISIONS
    opset: int = MIN_OPSET
    parity_images: int = 32
    parity_tolerance: float = 1e-4
    calibration_images: int = 300
    calibration_batch: int = 8
    val_images: int | None = None
    quantization: QuantizationConfig = DEFAULT_QUANTIZATION
    quant_search: bool = True
    search_candidates: tuple[QuantizationConfig, ...] = SEARCH_CANDIDATES
    search_stop_drop: float = 0.001
    search_tie: float = 0.002
    max_map_drop: float = 0.01
    on_map_drop: str = "fail"
    latency_runs: int = MIN_LATENCY_RUNS
    latency_warmup: int = 5
    threads: int | None = None
    batch_size: int = 16
    seed: int = 0
    conversion_timeout_s: float = 3600.0
    extra_metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("run_dir", "data_dir", "out_dir"):
            object.__setattr__(self, name, Path(getattr(self, name)))
        if self.out_dir.resolve() == self.run_dir.resolve():
            raise ExportError("the bundle folder must not be the training run folder")
        if self.models is not None:
            object.__setattr__(self, "models", _names(self.models, "model names"))
            if not self.models:
                raise ExportError("no models selected")
        precisions = _names(self.precisions, "precisions")
        unknown = [p for p in precisions if p not in PRECISIONS]
        if unknown or not precisions:
            raise ExportError(f"precisions must be a non-empty subset of {', '.join(PRECISIONS)}, got {list(precisions)}")
        object.__setattr__(self, "precisions", tuple(p for p in PRECISIONS if p in precisions))
        if not MIN_OPSET <= self.opset <= MAX_OPSET:
            raise ExportError(f"opset must be between {MIN_OPSET} and {MAX_OPSET}, got {self.opset}")
        for name in ("parity_images", "calibration_images", "calibration_batch", "batch_size", "latency_warmup"):
            if getattr(self, name) < 1:
                raise ExportError(f"{name.replace('_', ' ')} must be at least 1, got {getattr(self, name)}")
        if self.val_images is not None and self.val_images < 1:
            raise ExportError(f"val images must be at least 1, got {self.val_images}")
        if self.latency_runs < MIN_LATENCY_RUNS:
            raise ExportError(f"latency runs must be at least {MIN_LATENCY_RUNS}, got {self.latency_runs}")
        if self.threads is not None and self.threads < 1:
            raise ExportError(f"threads must be at least 1, got {self.threads}")
        if not 0.0 < self.parity_tolerance < 1.0:
            raise ExportError(f"parity tolerance must be in (0, 1), got {self.parity_tolerance}")
        for name in ("max_map_drop", "search_stop_drop", "search_tie"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ExportError(f"{name.replace('_', ' ')} must be in [0, 1] (mAP as a fraction), got {getattr(self, name)}")
        if self.on_map_drop not in ON_MAP_DROP:
            raise ExportError(f"on_map_drop must be one of {', '.join(ON_MAP_DROP)}, got {self.on_map_drop!r}")
        if not self.search_candidates:
            raise ExportError("the quantization search needs at least one candidate")
        names = [c.name for c in self.candidates]
        if len(set(names)) != len(names):
            raise ExportError(f"quantization candidates need unique names, got {names}")

    @property
    def candidates(self) -> tuple[QuantizationConfig, ...]:
        """INT8 recipes to try, the chosen default first; just the default without the search."""
        if not self.quant_search:
            return (self.quantization,)
        rest = tuple(c for c in self.search_candidates if c.name != self.quantization.name)
        return (self.quantization, *rest)
