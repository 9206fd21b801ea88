"""What exporting produced, per model and precision: the shared record of the bundle and the report."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hashtag.export.config import QuantizationConfig
from hashtag.export.evaluate import Accuracy
from hashtag.export.latency import Latency
from hashtag.export.parity import ParityResult
from hashtag.export.quantize import NodeCounts
from hashtag.export.run import TrainedModel
from hashtag.export.search import Candidate


@dataclass
class VariantResult:
    """One ONNX file of one model; ``latency`` is filled in by the shared interleaved measurement."""

    precision: str
    path: Path
    parity: ParityResult
    accuracy: Accuracy
    nodes: NodeCounts
    kept: bool
    quantization: QuantizationConfig | None = None
    excluded_nodes: list[str] = field(default_factory=list)
    latency: Latency | None = None


@dataclass
class ModelResult:
    """Everything exported for one model; ``problems`` lists failed quality checks."""

    model: TrainedModel
    conversion: dict[str, Any]
    variants: dict[str, VariantResult]
    search: list[Candidate] = field(default_factory=list)
    calibration_images: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def baseline(self) -> VariantResult:
        """The FP32 export: the reference every other precision is compared with."""
        return self.variants["fp32"]

    def delta(self, precision: str) -> float:
        """mAP change vs FP32 as a fraction (negative is worse)."""
        return self.variants[precision].accuracy.map - self.baseline.accuracy.map
