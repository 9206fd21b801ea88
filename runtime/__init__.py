"""The lightweight hashtag runtime: loads a model bundle and runs the ensemble with ONNX Runtime.

Only onnxruntime, numpy and pillow are needed here; nothing in this package imports tensorflow.
"""
from hashtag.runtime.errors import (
    BundleError,
    HashtagError,
    ImageError,
    ModelSelectionError,
    ProviderError,
)
from hashtag.runtime.manifest import Bundle, ModelSpec, Preprocessing, Variant, load_bundle
from hashtag.runtime.contract import ModelPrediction, Prediction
from hashtag.runtime.prediction import Options
from hashtag.runtime.tagger import Tagger

__all__ = [
    "Bundle",
    "BundleError",
    "HashtagError",
    "ImageError",
    "ModelPrediction",
    "ModelSelectionError",
    "ModelSpec",
    "Options",
    "Prediction",
    "Preprocessing",
    "ProviderError",
    "Tagger",
    "Variant",
    "load_bundle",
]
