"""VGG16 notop weights from a tf2onnx export whose Keras VGG16 conv base was frozen.

Each ``blockB_convC`` layer became an ONNX Conv whose weight initialiser is OIHW and bias 1-D; Keras wants
the kernel HWIO. Layers are matched by the Keras name tf2onnx keeps in the initialiser names, and every Conv
must be a 3x3, stride-1, same-padded convolution as in Keras.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from hashtag.train.backbones import SPECS
from hashtag.train.weights.architectures import keras_application
from hashtag.train.weights.checks import abs_sum, fact_check, value_check
from hashtag.train.weights.errors import WeightsError

LAYER_RE = re.compile(r"(block\d_conv\d)")
# Values of Keras' own ImageNet VGG16 weights; they pin both the source and the OIHW -> HWIO transpose.
CHECKS = (("block1_conv1", (0, 0, 0, 0), 0.42947057), ("block5_conv3", (0, 2, 0, 400), -0.008714244))
# sum |w| over all 26 tensors, recorded at the first build (2026-11-29); pins the whole mapping, not 2 values.
ABS_SUM, ABS_SUM_TOL = 103173.5323, 0.01
MAPPING = (
    "13 ONNX Conv initialisers (OIHW) matched to Keras VGG16 by layer name, transposed to HWIO; biases as is; "
    "the classifier head and its batch norms are ignored"
)


def conv_weights(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Keras layer name -> (HWIO kernel, bias) for every VGG-style Conv in the ONNX graph."""
    import onnx
    from onnx import numpy_helper

    try:
        graph = onnx.load(str(path)).graph
    except Exception as exc:  # onnx raises DecodeError and friends, which share no base class
        raise WeightsError(f"{path}: not a readable ONNX model ({exc})") from None
    inits = {t.name: t for t in graph.initializer}
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for node in (n for n in graph.node if n.op_type == "Conv"):
        if len(node.input) != 3 or node.input[1] not in inits or node.input[2] not in inits:
            raise WeightsError(f"{path}: Conv {node.name} lacks a constant weight and bias")
        match = LAYER_RE.search(node.input[1])
        if not match:
            raise WeightsError(f"{path}: Conv weight {node.input[1]} names no blockB_convC layer")
        _check_conv_attrs(path, node)
        kernel = numpy_helper.to_array(inits[node.input[1]])
        bias = numpy_helper.to_array(inits[node.input[2]])
        if kernel.ndim != 4 or bias.shape != (kernel.shape[0],):
            raise WeightsError(f"{path}: {match.group(1)} has kernel {kernel.shape} and bias {bias.shape}")
        if match.group(1) in out:
            raise WeightsError(f"{path}: two Convs map to {match.group(1)}")
        out[match.group(1)] = (np.ascontiguousarray(kernel.transpose(2, 3, 1, 0)), bias)
    return out


def _check_conv_attrs(path: Path, node: Any) -> None:
    from onnx import helper

    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    kernel = list(attrs.get("kernel_shape", []))
    strides = list(attrs.get("strides", [1, 1]))
    pads = list(attrs.get("pads", []))
    same = attrs.get("auto_pad", b"NOTSET") in (b"SAME_UPPER", b"SAME_LOWER") or pads == [1, 1, 1, 1]
    if kernel != [3, 3] or strides != [1, 1] or not same or attrs.get("group", 1) != 1:
        raise WeightsError(f"{path}: Conv {node.name} is not a 3x3 stride-1 same-padded convolution ({attrs})")


def build(path: Path) -> tuple[Any, dict[str, Any]]:
    """Keras VGG16 notop (native size) with the ONNX file's conv weights, and the mapping record."""
    weights = conv_weights(path)
    model = keras_application("vgg16", SPECS["vgg16"].native_size)
    keras_convs = [layer for layer in model.layers if layer.weights]
    checks = [fact_check("conv layers", sorted(weights), sorted(layer.name for layer in keras_convs))]
    for layer in keras_convs:
        kernel, bias = weights[layer.name]
        if kernel.shape != tuple(layer.kernel.shape):
            raise WeightsError(f"{path}: {layer.name} kernel {kernel.shape}, Keras wants {tuple(layer.kernel.shape)}")
        layer.set_weights([kernel, bias])
    for name, index, expected in CHECKS:
        got = model.get_layer(name).get_weights()[0][index]
        checks.append(value_check(f"{name} kernel{list(index)}", got, expected, 1e-8))
    checks.append(value_check("sum |w| over all weights", abs_sum(model), ABS_SUM, ABS_SUM_TOL))
    return model, {"mapping": MAPPING, "checks": checks}
