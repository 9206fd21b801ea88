"""Exported graph vs Keras on real preprocessed images: the FP32 export must match to 1e-4."""
from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import numpy as np

from hashtag.export.errors import ParityError
from hashtag.runtime.providers import create_session

PARITY_BATCH = 8


def onnx_probabilities(path: Path, inputs: np.ndarray, threads: int | None = None,
                       batch_size: int = PARITY_BATCH) -> np.ndarray:
    """Run an exported file on CPU through the runtime's session factory.

    The first image runs alone and the rest in batches, so both a batch of 1 and larger batches go
    through the dynamic batch dimension.
    """
    session, _ = create_session(Path(path), "cpu", threads)
    name = session.get_inputs()[0].name
    bounds = [0, min(1, len(inputs)), *range(1 + batch_size, len(inputs), batch_size), len(inputs)]
    parts = [session.run(None, {name: inputs[a:b]})[0] for a, b in pairwise(bounds) if b > a]
    return np.concatenate(parts).astype(np.float32)


@dataclass(frozen=True)
class ParityResult:
    """How far one exported file is from Keras; ``tolerance`` is None where it is only reported."""

    precision: str
    max_abs_diff: float
    mean_abs_diff: float
    n_images: int
    tolerance: float | None = None

    @property
    def ok(self) -> bool:
        """Within tolerance (always true when there is none)."""
        return self.tolerance is None or self.max_abs_diff < self.tolerance

    def to_dict(self) -> dict[str, float | int | None]:
        """JSON form for the manifest."""
        return {"max_abs_diff": self.max_abs_diff, "mean_abs_diff": self.mean_abs_diff,
                "n_images": self.n_images, "tolerance": self.tolerance}


def check_parity(path: Path, inputs: np.ndarray, reference: np.ndarray, precision: str = "fp32",
                 tolerance: float | None = None, threads: int | None = None) -> ParityResult:
    """Compare ``path``'s probabilities on ``inputs`` with Keras' ``reference``; raise ParityError
    when ``tolerance`` is given and the largest difference reaches it."""
    probs = onnx_probabilities(path, inputs, threads)
    if probs.shape != reference.shape:
        raise ParityError(f"{Path(path).name}: output shape {probs.shape} differs from Keras' {reference.shape}")
    diff = np.abs(probs.astype(np.float64) - reference.astype(np.float64))
    max_diff = float(diff.max()) if diff.size else 0.0
    if not np.isfinite(max_diff):
        max_diff = float("inf")
    result = ParityResult(precision, max_diff, float(diff.mean()) if diff.size else 0.0, len(inputs), tolerance)
    if not result.ok:
        raise ParityError(
            f"{Path(path).name}: {precision} export differs from Keras by up to {max_diff:.3g} "
            f"on {len(inputs)} real images (tolerance {tolerance:g})"
        )
    return result
