"""Classification heads trained on cached backbone features, then attached to the backbone for export.

- ``flatten``: the original project's head, Flatten -> Dense(128, relu) -> Dense(N, sigmoid), on the
  backbone's full spatial map (the baseline; many parameters, e.g. 26M for Xception at 299).
- ``gap``: global average pooling -> Dropout -> Dense(N, sigmoid), the usual transfer-learning head.
- ``gap-mlp``: global average pooling -> Dropout -> Dense(256, relu) -> Dropout -> Dense(N, sigmoid).

A head is a small Keras model whose input is the cached feature (spatial map or pooled vector);
``attach_head`` reuses its layers on top of the backbone so the exported model is one flat graph
from preprocessed pixels to probabilities. Keras loads only when a head is built: the catalog of heads
is read by the light training settings (``config.py``) that the CLI imports.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from hashtag.train.errors import SettingsError

if TYPE_CHECKING:
    import keras

OUTPUT_NAME = "probabilities"


@dataclass(frozen=True)
class HeadConfig:
    """One head variant; ``hidden`` 0 means no hidden layer."""

    name: str
    pooled: bool
    hidden: int
    input_dropout: float
    hidden_dropout: float

    def __post_init__(self) -> None:
        if self.hidden < 0:
            raise ValueError(f"head {self.name!r}: hidden units must be >= 0, got {self.hidden}")
        for rate in (self.input_dropout, self.hidden_dropout):
            if not 0.0 <= rate < 1.0:
                raise ValueError(f"head {self.name!r}: dropout must be in [0, 1), got {rate}")

    @property
    def feature_kind(self) -> str:
        """Which cached features the head reads: 'pooled' vectors or 'spatial' maps."""
        return "pooled" if self.pooled else "spatial"

    def to_dict(self) -> dict[str, object]:
        """The record written to model.json."""
        return {"name": self.name, "features": self.feature_kind, "hidden": self.hidden,
                "input_dropout": self.input_dropout, "hidden_dropout": self.hidden_dropout}


HEADS: dict[str, HeadConfig] = {
    "flatten": HeadConfig("flatten", pooled=False, hidden=128, input_dropout=0.0, hidden_dropout=0.0),
    "gap": HeadConfig("gap", pooled=True, hidden=0, input_dropout=0.2, hidden_dropout=0.0),
    "gap-mlp": HeadConfig("gap-mlp", pooled=True, hidden=256, input_dropout=0.2, hidden_dropout=0.5),
    # The fast model's: a small backbone's 1280 features need a wider hidden layer (train/distill.py).
    "gap-mlp512": HeadConfig("gap-mlp512", pooled=True, hidden=512, input_dropout=0.2, hidden_dropout=0.5),
}


def head_config(name: str) -> HeadConfig:
    """The head called ``name``; raises SettingsError naming the known ones."""
    if name not in HEADS:
        raise SettingsError(f"unknown head {name!r} (known: {', '.join(HEADS)})")
    return HEADS[name]


def build_head(config: HeadConfig, feature_shape: tuple[int, ...], n_tags: int) -> keras.Model:
    """A head taking one cached feature (without batch axis) to ``n_tags`` sigmoid probabilities."""
    import keras

    inputs = keras.Input(shape=feature_shape, name="features")
    x = inputs if config.pooled else keras.layers.Flatten(name="head_flatten")(inputs)
    if config.input_dropout:
        x = keras.layers.Dropout(config.input_dropout, name="head_input_dropout")(x)
    if config.hidden:
        x = keras.layers.Dense(config.hidden, activation="relu", name="head_hidden")(x)
        if config.hidden_dropout:
            x = keras.layers.Dropout(config.hidden_dropout, name="head_hidden_dropout")(x)
    outputs = keras.layers.Dense(n_tags, activation="sigmoid", name=OUTPUT_NAME)(x)
    return keras.Model(inputs, outputs, name=f"head_{config.name}")


def attach_head(backbone: keras.Model, head: keras.Model, config: HeadConfig, name: str) -> keras.Model:
    """One model from preprocessed NHWC pixels to probabilities: backbone (+ pooling) + the head's layers."""
    import keras

    x = backbone.output
    if config.pooled:
        x = keras.layers.GlobalAveragePooling2D(name="head_pool")(x)
    for layer in head.layers:
        if not isinstance(layer, keras.layers.InputLayer):
            x = layer(x)
    model = keras.Model(backbone.input, x, name=name)
    model.trainable = False
    return model
