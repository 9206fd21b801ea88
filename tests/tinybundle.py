"""Tiny real ONNX models and bundles for tests: mean colour -> linear -> sigmoid, built with onnx.helper.

Each model maps a float32 NHWC image batch to ``sigmoid(mean_hw(x) @ W + b)``, so the expected output
can be computed by hand in a test from the same preprocessing.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

TAGS = ("animal", "nature", "sea", "person")
CAFFE = {"family": "caffe", "color_order": "BGR", "mean": [103.939, 116.779, 123.68], "std": [1.0, 1.0, 1.0],
         "resize": "bilinear"}
TF = {"family": "tf", "color_order": "RGB", "mean": [127.5, 127.5, 127.5], "std": [127.5, 127.5, 127.5],
      "resize": "bilinear"}


def tiny_weights(n_tags: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic weights for a tiny model; scaled so outputs spread over (0, 1)."""
    rng = np.random.default_rng(seed)
    return (rng.normal(0, 0.02, (3, n_tags)).astype(np.float32), rng.normal(0, 0.5, n_tags).astype(np.float32))


def tiny_model(size: int, n_tags: int, seed: int, dtype: int = TensorProto.FLOAT) -> onnx.ModelProto:
    """A real ONNX graph: input 'image' [N, size, size, 3] -> output 'probabilities' [N, n_tags]."""
    w, b = tiny_weights(n_tags, seed)
    np_dtype = np.float16 if dtype == TensorProto.FLOAT16 else np.float32
    nodes = [
        helper.make_node("ReduceMean", ["image", "axes"], ["pooled"], keepdims=0),
        helper.make_node("MatMul", ["pooled", "W"], ["logits_nb"]),
        helper.make_node("Add", ["logits_nb", "B"], ["logits"]),
        helper.make_node("Sigmoid", ["logits"], ["probabilities"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("image", dtype, ["batch", size, size, 3])],
        [helper.make_tensor_value_info("probabilities", dtype, ["batch", n_tags])],
        initializer=[
            numpy_helper.from_array(np.array([1, 2], dtype=np.int64), "axes"),
            numpy_helper.from_array(w.astype(np_dtype), "W"),
            numpy_helper.from_array(b.astype(np_dtype), "B"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    return model


def expected_probabilities(x: np.ndarray, n_tags: int, seed: int) -> np.ndarray:
    """What ``tiny_model`` returns for a preprocessed batch ``x``, computed in numpy."""
    w, b = tiny_weights(n_tags, seed)
    return 1.0 / (1.0 + np.exp(-(x.mean(axis=(1, 2)) @ w + b)))


DEFAULT_MODELS: tuple[dict[str, Any], ...] = (
    {"name": "vgg16", "input_size": 32, "preprocessing": CAFFE, "seed": 1},
    {"name": "inceptionv3", "input_size": 40, "preprocessing": TF, "seed": 2},
    {"name": "xception", "input_size": 40, "preprocessing": TF, "seed": 3},
)


FAST_MODEL: dict[str, Any] = {"name": "efficientnet_lite0", "input_size": 24, "preprocessing": TF, "seed": 4,
                               "role": "fast"}


def make_bundle(
    root: Path,
    models: Sequence[dict[str, Any]] = DEFAULT_MODELS,
    tags: Sequence[str] = TAGS,
    precisions: Sequence[str] = ("int8", "fp32"),
    threshold: float = 0.5,
) -> Path:
    """Write a bundle of tiny models under ``root``; returns ``root``.

    The 'int8' file is the same float graph under another name: the runtime only cares about the
    manifest's precision label, and real quantized graphs are covered by the export tests.
    """
    root.mkdir(parents=True, exist_ok=True)
    entries = []
    for spec in models:
        variants = []
        for precision in precisions:
            dtype = TensorProto.FLOAT16 if precision == "fp16" else TensorProto.FLOAT
            model = tiny_model(spec["input_size"], len(tags), spec["seed"], dtype)
            path = root / f"{spec['name']}.{precision}.onnx"
            onnx.save(model, path)
            data = path.read_bytes()
            variants.append({"precision": precision, "file": path.name,
                             "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)})
        entries.append({
            "name": spec["name"],
            "input_size": spec["input_size"],
            "preprocessing": spec["preprocessing"],
            "tags": list(tags),
            "thresholds": {t: threshold for t in tags},
            "variants": variants,
            "metadata": {"seed": spec["seed"], "note": "tiny test model"},
            **({"role": spec["role"]} if "role" in spec else {}),
        })
    manifest = {"format": "hashtag-bundle", "version": 1, "ensemble": {"thresholds": {t: threshold for t in tags}},
                "models": entries}
    (root / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return root


def make_photo(path: Path, size: tuple[int, int] = (64, 48), seed: int = 0, fmt: str | None = None) -> Path:
    """A small synthetic RGB photo (smooth gradients plus noise) written with Pillow."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 / max(w - 1, 1), yy * 255 / max(h - 1, 1), np.full_like(xx, 128 + 60 * np.sin(seed))], -1)
    arr = np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr, "RGB").save(path, format=fmt)
    return path
