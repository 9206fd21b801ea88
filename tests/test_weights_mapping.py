"""Mappings onto Keras architectures: ONNX OIHW -> HWIO (checked against ONNX Runtime), Xception's layer copy,
the branch-order graph walk and InceptionV3's mixed10 max-pool replica."""
from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from hashtag.train.weights import WeightsError
from hashtag.train.weights.architectures import keras_application, layers_in_graph_order, with_mixed10_maxpool
from hashtag.train.weights.vgg16_onnx import conv_weights
from hashtag.train.weights.xception_keras import copy_layers


def tf2onnx_like_vgg(path: Path, convs: list[tuple[str, int, int]], strides: int = 1, seed: int = 0) -> Path:
    """An NCHW ONNX graph of 3x3 Convs (+Relu) with initialisers named the way tf2onnx names VGG16's."""
    rng = np.random.default_rng(seed)
    nodes, inits, prev = [], [], "input"
    for i, (name, cin, cout) in enumerate(convs):
        w = f"functional_1/{name}_1/convolution/ReadVariableOp:0"
        b = f"functional_1/{name}_1/Squeeze:0"
        inits += [
            numpy_helper.from_array(rng.normal(size=(cout, cin, 3, 3)).astype(np.float32), w),
            numpy_helper.from_array(rng.normal(size=(cout,)).astype(np.float32), b),
        ]
        nodes.append(helper.make_node("Conv", [prev, w, b], [f"c{i}"], kernel_shape=[3, 3], pads=[1, 1, 1, 1],
                                      strides=[strides, strides]))
        nodes.append(helper.make_node("Relu", [f"c{i}"], [f"r{i}"]))
        prev = f"r{i}"
    graph = helper.make_graph(
        nodes, "vgg", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, convs[0][1], 8, 8])],
        [helper.make_tensor_value_info(prev, TensorProto.FLOAT, None)], inits,
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    return path


def test_onnx_convs_map_to_keras_hwio_with_identical_outputs(tmp_path: Path) -> None:
    path = tf2onnx_like_vgg(tmp_path / "vgg.onnx", [("block1_conv1", 3, 4), ("block1_conv2", 4, 5)])
    weights = conv_weights(path)
    assert sorted(weights) == ["block1_conv1", "block1_conv2"]
    assert weights["block1_conv2"][0].shape == (3, 3, 4, 5)

    inp = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="block1_conv1")(inp)
    x = keras.layers.Conv2D(5, 3, padding="same", activation="relu", name="block1_conv2")(x)
    model = keras.Model(inp, x)
    for name, (kernel, bias) in weights.items():
        model.get_layer(name).set_weights([kernel, bias])

    image = np.random.default_rng(1).normal(size=(1, 8, 8, 3)).astype(np.float32)
    (want,) = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        None, {"input": image.transpose(0, 3, 1, 2)}
    )
    np.testing.assert_allclose(np.asarray(model(image)), want.transpose(0, 2, 3, 1), rtol=1e-4, atol=1e-4)


def test_onnx_mapping_refuses_other_convs(tmp_path: Path) -> None:
    strided = tf2onnx_like_vgg(tmp_path / "s.onnx", [("block1_conv1", 3, 4)], strides=2)
    with pytest.raises(WeightsError, match="stride-1"):
        conv_weights(strided)
    unnamed = tf2onnx_like_vgg(tmp_path / "u.onnx", [("features_0", 3, 4)])
    with pytest.raises(WeightsError, match="names no blockB_convC"):
        conv_weights(unnamed)
    (tmp_path / "junk.onnx").write_bytes(b"\x00junk")
    with pytest.raises(WeightsError, match="not a readable ONNX"):
        conv_weights(tmp_path / "junk.onnx")


def test_xception_copy_is_layer_by_layer_and_refuses_other_models() -> None:
    source = keras_application("xception", 71)
    rng = np.random.default_rng(2)
    source.set_weights([rng.normal(size=w.shape).astype("float32") for w in source.weights])
    target = keras_application("xception", 71)
    checks = copy_layers(source, target)
    assert [c["check"] for c in checks] == ["layers with weights", "parameters"]
    for got, want in zip(target.get_weights(), source.get_weights(), strict=True):
        np.testing.assert_array_equal(got, want)
    with pytest.raises(WeightsError, match="layers with weights"):
        copy_layers(keras_application("vgg16", 32), keras_application("xception", 71))


def test_graph_order_follows_branch_order_not_depth() -> None:
    inp = keras.Input((8, 8, 2))
    b1 = keras.layers.Conv2D(2, 1, name="b1")(inp)
    b2 = keras.layers.Conv2D(2, 1, name="b2b")(keras.layers.Conv2D(2, 1, name="b2a")(inp))
    model = keras.Model(inp, keras.layers.Concatenate(name="mixed")([b1, b2]))
    convs = lambda layers: [layer.name for layer in layers if isinstance(layer, keras.layers.Conv2D)]  # noqa: E731
    assert convs(model.layers) != ["b1", "b2a", "b2b"]  # Keras sorts by depth, which is why the walk exists
    assert convs(layers_in_graph_order(model)) == ["b1", "b2a", "b2b"]


def random_like(variable: keras.Variable, rng: np.random.Generator) -> np.ndarray:
    """Random weights that keep batch-norm variances positive."""
    if "variance" in variable.path:
        return rng.uniform(0.5, 1.5, variable.shape).astype("float32")
    return rng.normal(0, 0.1, variable.shape).astype("float32")


def test_mixed10_replica_changes_only_the_pool_branch() -> None:
    model = keras_application("inceptionv3", 139)  # mixed10 is 3x3 here; at 75 px it is 1x1 and max == avg
    rng = np.random.default_rng(4)
    model.set_weights([random_like(w, rng) for w in model.weights])
    replica = with_mixed10_maxpool(model)
    renamed = [
        (a.name, b.name) for a, b in zip(model.layers, replica.layers, strict=True) if a.name != b.name
    ]
    assert len(renamed) == 1 and renamed[0][0].startswith("average_pooling2d")
    assert renamed[0][1] == "mixed10_pool_max"
    assert isinstance(replica.get_layer("mixed10_pool_max"), keras.layers.MaxPooling2D)
    for got, want in zip(replica.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_array_equal(got, want)
    x = rng.normal(size=(2, 139, 139, 3)).astype("float32")
    a, b = np.asarray(replica(x)), np.asarray(model(x))
    # mixed10 = concat(1x1: 320, 3x3: 768, 3x3dbl: 768, pool branch: 192): only the last 192 channels change.
    np.testing.assert_allclose(a[..., :1856], b[..., :1856], rtol=1e-5)
    assert np.abs(a[..., 1856:] - b[..., 1856:]).max() > 1e-3 * np.abs(b[..., 1856:]).max()
    assert with_mixed10_maxpool(replica) is replica
