"""EfficientNet-Lite0 in Keras: EfficientNet-B0's blocks without squeeze-and-excitation, with ReLU6.

Built for mobile CPUs (no SE, no swish: integer-friendly, quantizes well). Google's TF graph uses batch-norm
epsilon 1e-3 and TF "same" padding (Keras' ``padding="same"`` is the same rule); the stem (32) and head
(1280) are not scaled. Input: RGB pixels as (x - 127) / 128. Layer names match the weight mapping in
``efficientnet_lite0_torch``.
"""
from __future__ import annotations

from typing import Any

# (repeats, kernel, stride of the first repeat, expansion, input channels, output channels) per stage.
STAGES = ((1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
          (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320))
STEM, HEAD = 32, 1280
BN_EPSILON = 1e-3
N_BLOCKS = sum(s[0] for s in STAGES)


def efficientnet_lite0(input_size: int, include_top: bool = False, classes: int = 1000) -> Any:
    """The notop conv base (output: the 1280-channel map after the head conv), or with GAP + logits on top."""
    import keras
    from keras import layers

    def conv_bn(x: Any, filters: int, kernel: int, name: str, stride: int = 1, act: bool = True) -> Any:
        x = layers.Conv2D(filters, kernel, stride, padding="same", use_bias=False, name=name)(x)
        x = layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{name}_bn")(x)
        return layers.ReLU(6.0, name=f"{name}_relu6")(x) if act else x

    inputs = keras.Input((input_size, input_size, 3), name="input")
    x = conv_bn(inputs, STEM, 3, "stem_conv", stride=2)
    block = 0
    for repeats, kernel, stride, expand, c_in, c_out in STAGES:
        for r in range(repeats):
            first = r == 0
            width = (c_in if first else c_out) * expand
            h = conv_bn(x, width, 1, f"block{block}_expand") if expand != 1 else x
            h = layers.DepthwiseConv2D(kernel, stride if first else 1, padding="same", use_bias=False,
                                       name=f"block{block}_dw")(h)
            h = layers.BatchNormalization(epsilon=BN_EPSILON, name=f"block{block}_dw_bn")(h)
            h = layers.ReLU(6.0, name=f"block{block}_dw_relu6")(h)
            h = conv_bn(h, c_out, 1, f"block{block}_project", act=False)
            x = layers.Add(name=f"block{block}_add")([x, h]) if not first or (stride == 1 and c_in == c_out) else h
            block += 1
    x = conv_bn(x, HEAD, 1, "head_conv")
    if include_top:
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = layers.Dense(classes, name="predictions")(x)
    return keras.Model(inputs, x, name="efficientnet_lite0")
