"""How the ensemble combines its models, as the manifest's ``ensemble.combination`` says.

One function, so the runtime's Tagger, the teacher cache, bundle evaluation and the benchmarks score the same
ensemble (training's own evaluation, before any combination is chosen, uses the plain mean). Two methods:

- ``mean``: the mean of the members' probabilities (what a manifest without a combination gets);
- ``weighted_logit``: ``sigmoid(sum_m w_m * logit(p_m))`` with one weight per member (non-negative, summing
  to 1), chosen on real photos by ``hashtag.export.tune_ensemble``; a weak member may weigh little.

Either may carry a ``stack``: for some tags, a logistic layer over the combined logits of every tag
(``bias + sum_s w_s * z_s``), so that evidence from other tags can correct one, e.g. a clear glacier scene
lowering ``human`` where the members, never shown a scene photo labelled without people, are unsure.

The combination applies when exactly the ensemble's members run; any other set of models (``--models a,b``)
is combined by the plain mean, matching the mean of their own thresholds (``prediction.ensemble_thresholds``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from hashtag.runtime.errors import BundleError

METHODS = ("mean", "weighted_logit")
_KEYS = {"method", "weights", "stack"}
_EPS = 1e-6  # probabilities are clipped to [eps, 1 - eps] before the logit: INT8 models do output exact 0 and 1


@dataclass(frozen=True)
class TagStack:
    """A logistic layer giving one tag's logit from the combined logits of tags: ``bias + sum w[s] * z[s]``."""

    bias: float
    weights: Mapping[str, float]

    @classmethod
    def from_manifest(cls, raw: Any, tags: Sequence[str], where: str) -> "TagStack":
        """A stack entry, its tags checked against the bundle's."""
        if (not isinstance(raw, Mapping) or set(raw) != {"bias", "weights"} or not isinstance(raw["weights"], Mapping)
                or not _number(raw["bias"])):
            raise BundleError(f"{where} must be an object with a numeric 'bias' and 'weights' mapping tags to numbers")
        unknown = [t for t in raw["weights"] if t not in tags]
        if unknown or not all(_number(w) for w in raw["weights"].values()):
            raise BundleError(f"{where}: weights must map the bundle's tags to numbers (unknown: {unknown})")
        return cls(float(raw["bias"]), {str(t): float(w) for t, w in raw["weights"].items()})


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value)


@dataclass(frozen=True)
class Combination:
    """The ensemble's combination rule: a method, for ``weighted_logit`` a weight per member, and optional
    per-tag stacks (``tags`` is then the bundle's tag order, which the probability columns follow)."""

    method: str = "mean"
    weights: Mapping[str, float] = field(default_factory=dict)
    stack: Mapping[str, TagStack] = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    members: tuple[str, ...] = ()  # the ensemble's members; empty: whatever runs

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise BundleError(f"ensemble.combination: unknown method {self.method!r} (known: {', '.join(METHODS)})")
        if self.method == "mean" and self.weights:
            raise BundleError("ensemble.combination: method 'mean' takes no weights")
        if self.method == "weighted_logit":
            values = list(self.weights.values())
            if not values or any(not _number(w) or w < 0 for w in values):
                raise BundleError("ensemble.combination: weights must be finite non-negative numbers, one per member")
            if abs(sum(values) - 1.0) > 1e-6:
                raise BundleError(f"ensemble.combination: weights must sum to 1, got {sum(values):.6f}")
        if self.weights and self.members and set(self.weights) != set(self.members):
            raise BundleError(f"ensemble.combination: weights are for {sorted(self.weights)}, the ensemble's "
                              f"members are {sorted(self.members)}")
        if self.stack and not set(self.stack) | {s for st in self.stack.values() for s in st.weights} <= set(self.tags):
            raise BundleError("ensemble.combination: the stack names tags the bundle does not have")

    @classmethod
    def from_manifest(cls, raw: Any, members: Sequence[str], tags: Sequence[str]) -> "Combination":
        """The combination recorded under ``ensemble.combination`` (absent: the mean), checked against the
        ensemble's members and the bundle's tags."""
        if raw is None:
            return cls()
        if not isinstance(raw, Mapping) or "method" not in raw:
            raise BundleError("ensemble.combination must be an object with a 'method'")
        unknown_keys = sorted(set(raw) - _KEYS)
        if unknown_keys:
            raise BundleError(f"ensemble.combination: unknown keys {unknown_keys} (known: {', '.join(sorted(_KEYS))})")
        weights = raw.get("weights", {})
        if not isinstance(weights, Mapping):
            raise BundleError("ensemble.combination: weights must map member names to numbers")
        stack = raw.get("stack", {})
        if not isinstance(stack, Mapping):
            raise BundleError("ensemble.combination: stack must map tags to their layers")
        unknown = [t for t in stack if t not in tags]
        if unknown:
            raise BundleError(f"ensemble.combination: stack for unknown tags {unknown}")
        layers = {str(t): TagStack.from_manifest(v, tags, f"ensemble.combination.stack.{t}") for t, v in stack.items()}
        return cls(str(raw["method"]), {str(k): v for k, v in weights.items()}, layers,
                   tuple(tags) if layers else (), tuple(members))

    def to_manifest(self) -> dict[str, Any]:
        """The record written under ``ensemble.combination``."""
        out: dict[str, Any] = {"method": self.method}
        if self.weights:
            out["weights"] = {k: float(v) for k, v in self.weights.items()}
        if self.stack:
            out["stack"] = {t: {"bias": st.bias, "weights": dict(st.weights)} for t, st in self.stack.items()}
        return out


def logit(p: np.ndarray) -> np.ndarray:
    """``log(p / (1 - p))`` of probabilities clipped away from 0 and 1."""
    p = np.clip(np.asarray(p, dtype=np.float64), _EPS, 1 - _EPS)
    return np.log(p / (1 - p))


def sigmoid(z: np.ndarray) -> np.ndarray:
    """The logistic function, as float32 probabilities."""
    return (1 / (1 + np.exp(-np.asarray(z, dtype=np.float64)))).astype(np.float32)


def apply_stack(z: np.ndarray, combination: Combination) -> np.ndarray:
    """Combined logits ``[n, tags]`` with the stacked tags' columns replaced by their layers' output."""
    out = z.copy()
    column = {t: j for j, t in enumerate(combination.tags)}
    for tag, layer in combination.stack.items():
        out[:, column[tag]] = layer.bias + sum(w * z[:, column[s]] for s, w in layer.weights.items())
    return out


def _runs_whole(per_model: Mapping[str, np.ndarray], combination: Combination) -> bool:
    return set(per_model) == set(combination.members or combination.weights or per_model)


def combined_logits(per_model: Mapping[str, np.ndarray], combination: Combination) -> np.ndarray:
    """The members' combined logits ``[n, tags]`` before any stack: their weighted logits, or the logit of
    their mean (what a stack reads)."""
    if combination.method == "weighted_logit" and _runs_whole(per_model, combination):
        return sum(combination.weights[name] * logit(p) for name, p in per_model.items())
    return logit(np.mean(np.stack(list(per_model.values())), axis=0))


def combine(per_model: Mapping[str, np.ndarray], combination: Combination = Combination()) -> np.ndarray:
    """The ensemble's probabilities ``[n, tags]`` from equally shaped per-model ``[n, tags]`` arrays: the
    combination's rule when ``per_model`` holds exactly the ensemble's members, else the plain mean."""
    whole = _runs_whole(per_model, combination)
    if not whole or (combination.method == "mean" and not combination.stack):
        return np.mean(np.stack(list(per_model.values())), axis=0)
    z = combined_logits(per_model, combination)
    return sigmoid(apply_stack(z, combination) if combination.stack else z)
