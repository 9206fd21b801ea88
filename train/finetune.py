"""Fine-tuning a backbone's top blocks together with its trained head, from cached block inputs.

The head trained on frozen features is the starting point (a fresh head would send large gradients into
the pretrained blocks). Training runs on the cached maps entering the top blocks (``hashtag.train.blocks``),
with a low learning rate, BatchNorm in inference mode, random horizontal flips of the maps, and early
stopping on validation mAP. The blocks are the backbone's own layers, so the model saved afterwards is the
whole network with the tuned weights and nothing changes for export or the runtime.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import keras
import numpy as np

from hashtag.train.blocks import top_model
from hashtag.train.features import Backbone
from hashtag.train.fitting import Batches, Monitor, Rows
from hashtag.train.heads import HeadConfig
from hashtag.train.progress import Progress


@dataclass
class FineTuneSettings:
    """How long and how fast to tune (from TrainConfig)."""

    epochs: int
    learning_rate: float
    batch_size: int
    patience: int
    seed: int


@dataclass
class FineTuneResult:
    """The tuned model on block inputs, its best validation mAP and how it got there."""

    model: keras.Model
    val_map: float
    best_epoch: int
    history: dict[str, list[float]]
    seconds: float

    def summary(self) -> dict[str, object]:
        """The fine-tuning record in model.json."""
        per_epoch = self.history["seconds"]
        return {"val_mAP": self.val_map, "best_epoch": self.best_epoch + 1, "epochs_run": len(per_epoch),
                "seconds": round(self.seconds, 2), "seconds_per_epoch": per_epoch}


def tunable(backbone: Backbone, head: keras.Model, head_config: HeadConfig) -> keras.Model:
    """Block input -> top blocks -> pooling -> the head's layers, all shared with ``backbone.model`` and ``head``."""
    top = top_model(backbone.model, backbone.cut)  # type: ignore[arg-type]
    inputs = keras.Input(shape=backbone.block_shape, name="block_input")
    x = top(inputs)
    if head_config.pooled:
        x = keras.layers.GlobalAveragePooling2D(name="tune_pool")(x)
    for layer in head.layers:
        if not isinstance(layer, keras.layers.InputLayer):
            x = layer(x)
    return keras.Model(inputs, x, name=f"{backbone.name}_tuned")


def fine_tune(model: keras.Model, loss_fn: Callable, x_train: Rows, y_train: np.ndarray, x_val: Rows,
              y_val: np.ndarray, settings: FineTuneSettings, label: str, progress: bool) -> FineTuneResult:
    """Train ``model`` (from ``tunable``) and leave it at its best validation epoch."""
    keras.utils.set_random_seed(settings.seed)
    model.compile(optimizer=keras.optimizers.Adam(settings.learning_rate), loss=loss_fn)
    start = time.monotonic()
    with Progress(settings.epochs, f"{label} fine-tuning epochs", enabled=progress, closing_line=False) as bar:
        monitor = Monitor(x_val, y_val, loss_fn, settings.patience, bar)
        model.fit(Batches(x_train, y_train, settings.batch_size, settings.seed, hflip=True),
                  epochs=settings.epochs, verbose=0, callbacks=[monitor])
    return FineTuneResult(model, monitor.best, monitor.best_epoch, monitor.history, time.monotonic() - start)

