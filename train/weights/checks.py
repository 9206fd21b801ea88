"""Checks a mapping must pass before its weights are cached; each becomes one provenance record."""
from __future__ import annotations

from typing import Any

from hashtag.train.weights.errors import WeightsError


def value_check(label: str, got: float, expected: float, atol: float) -> dict[str, Any]:
    """A numeric check; raises WeightsError when ``got`` is off by more than ``atol``."""
    got = float(got)
    if not abs(got - expected) <= atol:
        raise WeightsError(f"weights check failed: {label} = {got!r}, expected {expected!r} (+-{atol})")
    return {"check": label, "expected": expected, "got": got, "atol": atol, "passed": True}


def fact_check(label: str, got: Any, expected: Any) -> dict[str, Any]:
    """An equality check on a structural fact (a count, a layer type, a constant read from the source)."""
    if got != expected:
        raise WeightsError(f"weights check failed: {label} is {got!r}, expected {expected!r}")
    return {"check": label, "expected": expected, "got": got, "passed": True}


def abs_sum(model: Any) -> float:
    """Sum of |w| over every weight of ``model`` in float64: one number that pins a whole mapping."""
    import numpy as np

    return sum(float(np.abs(np.asarray(w, dtype=np.float64)).sum()) for w in model.get_weights())
