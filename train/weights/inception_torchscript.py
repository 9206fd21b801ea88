"""InceptionV3 notop weights from the TorchScript port of Google's 2015 Inception-v3 graph (the FID network).

Its 94 ``Conv2dLayer`` modules (conv without bias, then batch norm with beta/mean/variance and no gamma) are
kept in the same order as Keras' InceptionV3 builds its conv2d_bn blocks, so they map one to one onto the
Keras graph walked branch by branch (architectures.layers_in_graph_order): kernel OIHW -> HWIO, batch norm
into Keras' BatchNormalization(scale=False). Stride, padding and shape of every pair are checked, as are the
batch-norm epsilon and gamma read from the archive's TorchScript code and the pooling layers.

The one architectural difference: the 2015 graph's last block (mixed10) max-pools in its pool branch where
Keras average-pools. The weights file stays loadable into keras.applications.InceptionV3 (pools have no
weights); the recorded ``mixed10_pool: "max"`` lets ``backbone()`` build the exact replica.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from hashtag.train.backbones import SPECS
from hashtag.train.weights.architectures import keras_application, layers_in_graph_order, producers
from hashtag.train.weights.checks import abs_sum, fact_check, value_check
from hashtag.train.weights.errors import WeightsError
from hashtag.train.weights.torchscript import ScriptObject, read_code, read_torchscript

CONVS = 94
PARAMETERS = 21_802_784
# Known values of the 2015 graph's first kernel (Keras HWIO indexing) and the sum of |w| over every conv and
# batch-norm tensor: they pin both the source file and the whole mapping.
FIRST_KERNEL_CHECKS = (((0, 0, 0, 0), 0.012605551), ((1, 2, 0, 5), -0.010189046))
ABS_SUM, ABS_SUM_TOL = 372352.46, 0.01
BN_CALL = re.compile(r"\(\w+, mean, var, (\w+), beta, (\w+), [0-9.eE+-]+, ([0-9.eE+-]+), \)")
MAPPING = (
    "94 TorchScript Conv2dLayer modules (read without torch) in module order onto Keras InceptionV3's conv2d_bn "
    "blocks walked branch by branch: kernel OIHW -> HWIO, batch norm beta/mean/variance into "
    "BatchNormalization(scale=False); the 2015 graph has no gamma (weight=None, i.e. 1)"
)


def torch_layers(tree: ScriptObject) -> tuple[list[ScriptObject], list[ScriptObject]]:
    """(conv modules, pooling modules) in module order; the final global average pool is left out."""
    convs = [obj for _, obj in tree.walk() if obj.kind == "Conv2dLayer"]
    pools = [obj for _, obj in tree.walk() if obj.kind in ("MaxPool2d", "AvgPool2d")]
    return convs, pools[:-1]


def batch_norm_constants(code: dict[str, str]) -> set[tuple[str, str, float]]:
    """(gamma argument, training flag, epsilon) of every batch_norm call in the conv modules' code."""
    return {(g, t, float(eps)) for text in code.values() for g, t, eps in BN_CALL.findall(text)}


def pool_params(code: dict[str, str], qualname: str) -> dict[str, int]:
    """kernel_size, stride and padding of a pooling class, from the constants in its TorchScript code."""
    module, cls = qualname.rsplit(".", 1)
    text = code.get(module.replace(".", "/") + ".py", "")
    block = text.split(f"class {cls}(", 1)[-1].split("\nclass ", 1)[0] if f"class {cls}(" in text else ""
    found = dict(re.findall(r"(kernel_size|stride|padding) : Final\[int\] = (\d+)", block))
    return {key: int(value) for key, value in sorted(found.items())}


def _padding_matches(torch_padding: Any, kernel_hw: tuple[int, int], keras_padding: str) -> bool:
    pad = [torch_padding] * 2 if isinstance(torch_padding, int) else list(torch_padding)
    want = [(k - 1) // 2 for k in kernel_hw] if keras_padding == "same" else [0, 0]
    return pad == want


def map_tree(tree: ScriptObject, code: dict[str, str], model: Any) -> list[dict[str, Any]]:
    """Copy the archive's convs and batch norms into a Keras InceptionV3; returns the structural checks passed."""
    import keras

    convs, pools = torch_layers(tree)
    graph = layers_in_graph_order(model)
    keras_convs = [layer for layer in graph if isinstance(layer, keras.layers.Conv2D)]
    bn_of = {id(producers(bn)[0]): bn for bn in graph if isinstance(bn, keras.layers.BatchNormalization)}
    checks = [fact_check("conv layers", (len(convs), len(keras_convs)), (CONVS, CONVS))]
    epsilon = bn_of[id(keras_convs[0])].epsilon
    checks.append(
        fact_check(
            "TorchScript batch_norm calls [gamma, training, epsilon]",
            sorted(list(call) for call in batch_norm_constants(code)),
            [["None", "False", epsilon]],
        )
    )
    checks.append(fact_check("Keras batch norm scale (gamma)", {bn.scale for bn in bn_of.values()}.pop(), False))
    for index, (src, dst) in enumerate(zip(convs, keras_convs, strict=True)):
        kernel = src.attrs["weight"].transpose(2, 3, 1, 0)
        stride = src.attrs["stride"]
        if (
            kernel.shape != tuple(dst.kernel.shape)
            or dst.use_bias
            or tuple(dst.strides) != (stride, stride)
            or not _padding_matches(src.attrs["padding"], kernel.shape[:2], dst.padding)
        ):
            raise WeightsError(
                f"conv #{index} (kernel {kernel.shape}, stride {stride}, padding {src.attrs['padding']}) "
                f"does not fit Keras {dst.name} ({tuple(dst.kernel.shape)}, {dst.strides}, {dst.padding})"
            )
        dst.set_weights([np.ascontiguousarray(kernel)])
        bn_of[id(dst)].set_weights([src.attrs["beta"], src.attrs["mean"], src.attrs["var"]])

    keras_pools = [
        "MaxPool2d" if isinstance(p, keras.layers.MaxPooling2D) else "AvgPool2d"
        for p in graph
        if isinstance(p, (keras.layers.MaxPooling2D, keras.layers.AveragePooling2D))
    ]
    checks.append(
        fact_check(
            "pooling layers (graph order) equal Keras' except mixed10's pool branch",
            [p.kind for p in pools],
            keras_pools[:-1] + ["MaxPool2d"],
        )
    )
    checks.append(
        fact_check(
            "mixed10 pool branch pooling [kernel, stride, padding]",
            pool_params(code, pools[-1].qualname),
            {"kernel_size": 3, "padding": 1, "stride": 1},
        )
    )
    return checks


def build(path: Path) -> tuple[Any, dict[str, Any]]:
    """Keras InceptionV3 notop (native size, Keras' average pool in mixed10) with the 2015 weights, and the record."""
    model = keras_application("inceptionv3", SPECS["inceptionv3"].native_size)
    try:
        checks = map_tree(read_torchscript(path), read_code(path), model)
    except WeightsError as exc:
        raise WeightsError(f"{path}: {exc}") from None
    first = _first_conv(model).get_weights()[0]
    for index, expected in FIRST_KERNEL_CHECKS:
        checks.append(value_check(f"first conv kernel{list(index)}", first[index], expected, 1e-8))
    checks.append(value_check("sum |w| over all weights", abs_sum(model), ABS_SUM, ABS_SUM_TOL))
    checks.append(fact_check("parameters", int(model.count_params()), PARAMETERS))
    epsilon = next(layer.epsilon for layer in model.layers if hasattr(layer, "moving_variance"))
    return model, {"mapping": MAPPING, "checks": checks, "mixed10_pool": "max", "batch_norm_epsilon": epsilon}


def _first_conv(model: Any) -> Any:
    import keras

    return next(layer for layer in layers_in_graph_order(model) if isinstance(layer, keras.layers.Conv2D))
