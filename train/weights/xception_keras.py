"""Xception notop weights copied from a Keras 3 model that embeds a frozen keras.applications.Xception.

The saved model is loaded in Keras' safe mode (no Lambda code runs); its sub-model is the same Keras code
as our target, so layers with weights pair up one to one: same class, same name (auto-generated names may
differ in their number only) and same weight shapes.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from hashtag.train.backbones import SPECS
from hashtag.train.weights.architectures import keras_application
from hashtag.train.weights.checks import abs_sum, fact_check, value_check
from hashtag.train.weights.errors import WeightsError

SUBMODEL = "xception"
WEIGHTED_LAYERS = 80
PARAMETERS = 20_861_480
# sum |w| over all weights, recorded at the first build (2026-11-29).
ABS_SUM, ABS_SUM_TOL = 959147.8038, 0.01
MAPPING = (
    "sub-model 'xception' of the saved Keras model copied layer by layer (80 layers with weights, matched by "
    "order, class, name and shape) into keras.applications.Xception(weights=None, include_top=False)"
)


def _stem(name: str) -> str:
    """Layer name without Keras' uniquifying ``_N`` suffix."""
    return re.sub(r"_\d+$", "", name)


def copy_layers(source: Any, model: Any) -> list[dict[str, Any]]:
    """Copy every weighted layer of ``source`` (a keras Xception) into ``model``; returns the checks passed."""
    src = [layer for layer in source.layers if layer.weights]
    dst = [layer for layer in model.layers if layer.weights]
    checks = [fact_check("layers with weights", (len(src), len(dst)), (WEIGHTED_LAYERS, WEIGHTED_LAYERS))]
    for a, b in zip(src, dst, strict=True):
        if type(a) is not type(b) or _stem(a.name) != _stem(b.name):
            raise WeightsError(f"layer {a.name} ({type(a).__name__}) does not match Keras' {b.name}")
        values = a.get_weights()
        shapes = [tuple(v.shape) for v in values]
        if shapes != [tuple(w.shape) for w in b.weights]:
            raise WeightsError(f"{a.name} weights {shapes} do not fit Keras' {b.name}")
        b.set_weights(values)
    checks.append(fact_check("parameters", int(model.count_params()), PARAMETERS))
    return checks


def build(path: Path) -> tuple[Any, dict[str, Any]]:
    """Keras Xception notop (native size) with the saved sub-model's weights, and the mapping record."""
    import keras

    try:
        saved = keras.saving.load_model(path, compile=False, safe_mode=True)
        source = saved.get_layer(SUBMODEL)
    except (ValueError, TypeError, OSError) as exc:
        raise WeightsError(f"{path}: cannot load the Keras model or its {SUBMODEL!r} sub-model ({exc})") from None
    model = keras_application("xception", SPECS["xception"].native_size)
    checks = [fact_check("sub-model trainable", bool(source.trainable), False)]
    try:
        checks += copy_layers(source, model)
    except WeightsError as exc:
        raise WeightsError(f"{path}: {exc}") from None
    checks.append(value_check("sum |w| over all weights", abs_sum(model), ABS_SUM, ABS_SUM_TOL))
    return model, {"mapping": MAPPING, "checks": checks}
