"""Cutting a backbone for fine-tuning: the bottom stays frozen and its output is cached once; the top blocks
train from that cache, so an epoch costs only the top's forward and backward passes. Where each backbone is
cut is its record's ``top_blocks`` (``hashtag.train.backbones``).

The cut is a tensor of the backbone graph, named by a layer and which side of it (its input or output):
keras.applications' residual ``add`` layers have no stable names, so Xception is cut at the input of the
first layer of block 13 instead.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from hashtag.train.errors import SettingsError

if TYPE_CHECKING:
    import keras


@dataclass(frozen=True)
class Cut:
    """The tensor entering the top blocks: ``layer``'s input or output."""

    layer: str
    side: str  # "input" or "output"
    top: str  # what is above the cut, for logs and the model card

    def __post_init__(self) -> None:
        if self.side not in ("input", "output"):
            raise ValueError(f"cut side must be 'input' or 'output', got {self.side!r}")

    def tensor(self, model: keras.Model) -> keras.KerasTensor:
        """The cut tensor in ``model``'s graph."""
        try:
            layer = model.get_layer(self.layer)
        except ValueError:
            raise SettingsError(f"{model.name} has no layer {self.layer!r} to cut at") from None
        return layer.input if self.side == "input" else layer.output

    def to_dict(self) -> dict[str, str]:
        """The record written to model.json."""
        return {"layer": self.layer, "side": self.side, "top": self.top}


def top_model(model: keras.Model, cut: Cut) -> keras.Model:
    """The backbone above ``cut`` as a model sharing ``model``'s layers: training it changes ``model``.

    BatchNormalization layers stay frozen, which in Keras also keeps them in inference mode: with small
    batches of one dataset their moving statistics would drift from the ImageNet ones for no gain.
    """
    import keras

    top = keras.Model(cut.tensor(model), model.output, name=f"{model.name}_top")
    top.trainable = True  # does not reach layers of a backbone frozen as a whole: each is set below
    for layer in top.layers:
        layer.trainable = not isinstance(layer, keras.layers.BatchNormalization)
    return top
