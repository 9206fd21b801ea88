"""The bundle manifest: everything needed to run each model, validated once at load time.

A bundle is a folder holding ``manifest.json`` and the ONNX files it names. Example::

    {
      "format": "hashtag-bundle", "version": 1,
      "ensemble": {"thresholds": {"sea": 0.42, ...}},
      "models": [{
        "name": "vgg16", "input_size": 224,
        "preprocessing": {"family": "caffe", "color_order": "BGR",
                          "mean": [103.939, 116.779, 123.68], "std": [1, 1, 1],
                          "resize": "bilinear"},
        "tags": ["animal", ...], "thresholds": {"animal": 0.37, ...},
        "role": "ensemble",                     (or "fast": not in the default ensemble, run by --fast)
        "cpu_precision": {"x86_64": "int8"},    (optional: the precision measured faster per CPU kind)
        "variants": [{"precision": "int8", "file": "vgg16.int8.onnx", "sha256": "...", "bytes": 14000000}],
        "metadata": {...training, evaluation and provenance records...}
      }]
    }

Every model takes float32 NHWC ``[batch, size, size, 3]`` preprocessed pixels and returns
``[batch, len(tags)]`` sigmoid probabilities in the order of ``tags``.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from hashtag.runtime.cpu import CPU_KINDS
from hashtag.runtime.ensemble import Combination
from hashtag.runtime.errors import BundleError, ModelSelectionError

MANIFEST_NAME = "manifest.json"
FORMAT_NAME = "hashtag-bundle"
FORMAT_VERSION = 1
PRECISIONS = ("int8", "fp16", "fp32")
# "ensemble": runs by default and is averaged; "fast": a small model distilled from the ensemble, run on request.
ROLES = ("ensemble", "fast")
RESIZE_METHODS = ("bilinear", "bicubic", "nearest")
# Each family fixes the colour order; mean/std come from the manifest so they stay bound to the weights.
FAMILY_COLOR_ORDER = {"caffe": "BGR", "tf": "RGB", "torch": "RGB"}


@dataclass(frozen=True)
class Preprocessing:
    """How raw RGB pixels become model input: ``(pixel[color_order] - mean) / std`` after resizing."""

    family: str
    color_order: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resize: str = "bilinear"

    def __post_init__(self) -> None:
        if self.family not in FAMILY_COLOR_ORDER:
            raise BundleError(
                f"unknown preprocessing family {self.family!r} (known: {', '.join(FAMILY_COLOR_ORDER)})"
            )
        if self.color_order != FAMILY_COLOR_ORDER[self.family]:
            raise BundleError(
                f"preprocessing family {self.family!r} uses colour order "
                f"{FAMILY_COLOR_ORDER[self.family]}, manifest says {self.color_order!r}"
            )
        if self.resize not in RESIZE_METHODS:
            raise BundleError(f"unknown resize method {self.resize!r} (known: {', '.join(RESIZE_METHODS)})")
        if len(self.mean) != 3 or len(self.std) != 3:
            raise BundleError("preprocessing mean and std need three values each")
        if any(not math.isfinite(s) or s <= 0 for s in self.std):
            raise BundleError(f"preprocessing std must be positive, got {list(self.std)}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Preprocessing":
        """Build from the manifest's ``preprocessing`` object."""
        try:
            return cls(
                family=str(data["family"]),
                color_order=str(data["color_order"]),
                mean=tuple(float(v) for v in data["mean"]),  # type: ignore[arg-type]
                std=tuple(float(v) for v in data["std"]),  # type: ignore[arg-type]
                resize=str(data.get("resize", "bilinear")),
            )
        except KeyError as exc:
            raise BundleError(f"preprocessing lacks {exc.args[0]!r}") from None
        except (TypeError, ValueError) as exc:
            raise BundleError(f"preprocessing is malformed: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        """The manifest form."""
        return {
            "family": self.family,
            "color_order": self.color_order,
            "mean": list(self.mean),
            "std": list(self.std),
            "resize": self.resize,
        }


@dataclass(frozen=True)
class Variant:
    """One ONNX file of a model at one precision."""

    precision: str
    path: Path
    sha256: str | None = None
    bytes: int | None = None


@dataclass(frozen=True)
class ModelSpec:
    """One model of the ensemble and everything needed to run it."""

    name: str
    input_size: int
    preprocessing: Preprocessing
    tags: tuple[str, ...]
    thresholds: Mapping[str, float]
    variants: Mapping[str, Variant]
    metadata: Mapping[str, Any] = field(default_factory=dict)
    role: str = "ensemble"
    cpu_precision: Mapping[str, str] = field(default_factory=dict)  # CPU kind -> precision measured faster

    def variant(self, precision: str) -> Variant:
        """The file for ``precision``; raises when the bundle lacks it."""
        if precision not in self.variants:
            raise ModelSelectionError(
                f"model {self.name!r} has no {precision} file (has: {', '.join(self.variants)})"
            )
        return self.variants[precision]


@dataclass(frozen=True)
class Bundle:
    """A validated bundle: its folder, its models in manifest order and the ensemble thresholds."""

    root: Path
    models: tuple[ModelSpec, ...]
    tags: tuple[str, ...]
    ensemble_thresholds: Mapping[str, float]
    raw: Mapping[str, Any]
    combination: Combination = Combination()

    def model(self, name: str) -> ModelSpec:
        """The model called ``name``."""
        for spec in self.models:
            if spec.name == name:
                return spec
        raise ModelSelectionError(
            f"no model named {name!r} in {self.root} (has: {', '.join(m.name for m in self.models)})"
        )

    @property
    def ensemble_names(self) -> tuple[str, ...]:
        """The models that run by default and whose combination is the ensemble, in manifest order."""
        return tuple(m.name for m in self.models if m.role == "ensemble")

    @property
    def fast(self) -> ModelSpec | None:
        """The bundle's fast model, if it has one."""
        return next((spec for spec in self.models if spec.role == "fast"), None)

    @property
    def fast_name(self) -> str:
        """The name of the bundle's fast model (``--fast``); raises when it has none."""
        if self.fast is None:
            raise ModelSelectionError(f"the bundle at {self.root} has no fast model")
        return self.fast.name


def _thresholds(raw: Any, tags: tuple[str, ...], where: str) -> dict[str, float]:
    if not isinstance(raw, Mapping):
        raise BundleError(f"{where}: thresholds must be an object mapping each tag to a number")
    missing = [t for t in tags if t not in raw]
    extra = [t for t in raw if t not in tags]
    if missing or extra:
        raise BundleError(f"{where}: thresholds do not match the tags (missing: {missing}, unknown: {extra})")
    out: dict[str, float] = {}
    for tag in tags:
        value = raw[tag]
        if not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
            raise BundleError(f"{where}: threshold for {tag!r} must be a number in [0, 1], got {value!r}")
        out[tag] = float(value)
    return out


def _model_spec(raw: Any, root: Path, index: int) -> ModelSpec:
    if not isinstance(raw, Mapping):
        raise BundleError(f"models[{index}] must be an object")
    for key in ("name", "input_size", "preprocessing", "tags", "thresholds", "variants"):
        if key not in raw:
            raise BundleError(f"models[{index}] lacks {key!r}")
    name = raw["name"]
    where = f"model {name!r}"
    size = raw["input_size"]
    if not isinstance(size, int) or isinstance(size, bool) or not 8 <= size <= 4096:
        raise BundleError(f"{where}: input_size must be an integer between 8 and 4096, got {size!r}")
    if not isinstance(raw["preprocessing"], Mapping):
        raise BundleError(f"{where}: preprocessing must be an object")
    try:
        prep = Preprocessing.from_dict(raw["preprocessing"])
    except BundleError as exc:
        raise BundleError(f"{where}: {exc}") from None
    tags = raw["tags"]
    if not isinstance(tags, list) or not tags or not all(isinstance(t, str) and t for t in tags):
        raise BundleError(f"{where}: tags must be a non-empty list of strings")
    if len(set(tags)) != len(tags):
        raise BundleError(f"{where}: tags contain duplicates")
    tag_tuple = tuple(tags)
    thresholds = _thresholds(raw["thresholds"], tag_tuple, where)
    variants_raw = raw["variants"]
    if not isinstance(variants_raw, list) or not variants_raw:
        raise BundleError(f"{where}: variants must be a non-empty list")
    variants: dict[str, Variant] = {}
    for v in variants_raw:
        if not isinstance(v, Mapping) or "precision" not in v or "file" not in v:
            raise BundleError(f"{where}: each variant needs 'precision' and 'file'")
        precision = v["precision"]
        if precision not in PRECISIONS:
            raise BundleError(f"{where}: unknown precision {precision!r} (known: {', '.join(PRECISIONS)})")
        if precision in variants:
            raise BundleError(f"{where}: two {precision} variants")
        path = root / str(v["file"])
        if not path.is_file():
            raise BundleError(f"{where}: {precision} file {path} does not exist")
        variants[precision] = Variant(precision, path, v.get("sha256"), v.get("bytes"))
    metadata = raw.get("metadata", {})
    if not isinstance(metadata, Mapping):
        raise BundleError(f"{where}: metadata must be an object")
    role = raw.get("role", "ensemble")
    if role not in ROLES:
        raise BundleError(f"{where}: unknown role {role!r} (known: {', '.join(ROLES)})")
    cpu_precision = raw.get("cpu_precision", {})
    if not isinstance(cpu_precision, Mapping) or any(
            k not in CPU_KINDS or v not in variants for k, v in cpu_precision.items()):
        raise BundleError(f"{where}: cpu_precision must map CPU kinds ({', '.join(CPU_KINDS)}) to precisions it ships")
    return ModelSpec(str(name), size, prep, tag_tuple, thresholds, variants, metadata, str(role), dict(cpu_precision))


def parse_manifest(data: Any, root: Path) -> Bundle:
    """Validate a decoded manifest against the files under ``root``."""
    if not isinstance(data, Mapping):
        raise BundleError("manifest must be a JSON object")
    if data.get("format") != FORMAT_NAME:
        raise BundleError(f"manifest format must be {FORMAT_NAME!r}, got {data.get('format')!r}")
    if data.get("version") != FORMAT_VERSION:
        raise BundleError(f"manifest version {data.get('version')!r} is not supported (this runtime reads {FORMAT_VERSION})")
    models_raw = data.get("models")
    if not isinstance(models_raw, list) or not models_raw:
        raise BundleError("manifest lists no models")
    models = tuple(_model_spec(m, root, i) for i, m in enumerate(models_raw))
    names = [m.name for m in models]
    if len(set(names)) != len(names):
        raise BundleError(f"model names must be unique, got {names}")
    if not any(m.role == "ensemble" for m in models):
        raise BundleError("manifest has no ensemble model (every model has role 'fast')")
    if sum(m.role == "fast" for m in models) > 1:
        raise BundleError(f"manifest has more than one fast model: {[m.name for m in models if m.role == 'fast']}")
    tags = models[0].tags
    for m in models[1:]:
        if set(m.tags) != set(tags):
            raise BundleError(f"model {m.name!r} has tags {list(m.tags)}, model {models[0].name!r} has {list(tags)}")
    ensemble = data.get("ensemble", {})
    if not isinstance(ensemble, Mapping) or "thresholds" not in ensemble:
        raise BundleError("manifest lacks ensemble.thresholds")
    ensemble_thresholds = _thresholds(ensemble["thresholds"], tags, "ensemble")
    members = tuple(m.name for m in models if m.role == "ensemble")
    combination = Combination.from_manifest(ensemble.get("combination"), members, tags)
    return Bundle(root, models, tags, ensemble_thresholds, data, combination)


def manifest_sha256(bundle_root: Path) -> str:
    """SHA-256 of a bundle's manifest.json, which itself pins every ONNX file by hash: the bundle's identity."""
    return hashlib.sha256((bundle_root / MANIFEST_NAME).read_bytes()).hexdigest()


def members_sha256(bundle: Bundle) -> str:
    """SHA-256 of what makes the ensemble members' probabilities: their files (by the manifest's hashes, else
    their paths). Unchanged by adding a fast model or retuning the combination and thresholds."""
    members = [{"name": n, "variants": {p: v.sha256 or v.path.name for p, v in bundle.model(n).variants.items()}}
               for n in bundle.ensemble_names]
    return hashlib.sha256(json.dumps(members, sort_keys=True).encode()).hexdigest()


def ensemble_sha256(bundle: Bundle) -> str:
    """SHA-256 of what makes the ensemble's hashtags: its members' files, combination and thresholds. Unlike
    ``manifest_sha256`` it does not change when a fast model is added."""
    record = {"members": members_sha256(bundle), "combination": bundle.combination.to_manifest(),
              "thresholds": dict(bundle.ensemble_thresholds)}
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()


def load_bundle(path: str | Path) -> Bundle:
    """Read and validate ``path/manifest.json`` (``path`` may also be the manifest itself)."""
    path = Path(path)
    manifest = path if path.suffix == ".json" else path / MANIFEST_NAME
    if not manifest.is_file():
        raise BundleError(f"no model bundle at {path}: {manifest} does not exist")
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise BundleError(f"{manifest} is not valid JSON: {exc}") from None
    except OSError as exc:
        raise BundleError(f"cannot read {manifest}: {exc.strerror}") from None
    return parse_manifest(data, manifest.parent)
