"""Mini-batches from cached features and the validation watch shared by head training and fine-tuning."""
from __future__ import annotations

import math
import time
from typing import Any, Callable

import keras
import numpy as np

from hashtag.train.metrics import mean_average_precision
from hashtag.train.progress import Progress


class Rows:
    """Selected rows of an in-memory array or a memmap, read batch by batch as float32."""

    def __init__(self, data: np.ndarray, rows: np.ndarray | None = None) -> None:
        self.data, self.rows = data, rows

    def __len__(self) -> int:
        return len(self.rows) if self.rows is not None else len(self.data)

    def take(self, index: np.ndarray | slice) -> np.ndarray:
        if self.rows is None:
            return np.asarray(self.data[index], dtype=np.float32)
        picked = self.rows[index]
        order = np.argsort(picked)  # memmaps read faster in file order
        out = np.empty((len(picked), *self.data.shape[1:]), dtype=np.float32)
        out[order] = self.data[picked[order]]
        return out


class Batches(keras.utils.PyDataset):
    """Shuffled mini-batches of a ``Rows`` source (spatial maps do not fit in memory on the full corpus)."""

    def __init__(self, x: Rows, y: np.ndarray, batch_size: int, seed: int, hflip: bool = False) -> None:
        super().__init__()
        self.x, self.y, self.batch_size, self.hflip = x, y, batch_size, hflip
        self.rng = np.random.default_rng(seed)
        self.order = self.rng.permutation(len(x))

    def __len__(self) -> int:
        return math.ceil(len(self.x) / self.batch_size)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        idx = self.order[i * self.batch_size:(i + 1) * self.batch_size]
        x = self.x.take(idx)
        if self.hflip:  # mirror a random half of the maps along their width: a nearly free augmentation
            flip = self.rng.random(len(idx)) < 0.5
            x[flip] = x[flip][:, :, ::-1]
        return x, self.y[idx]

    def on_epoch_end(self) -> None:
        self.order = self.rng.permutation(len(self.x))


def predict(model: keras.Model, x: Rows, batch_size: int = 256) -> np.ndarray:
    """Probabilities of a head for every row of ``x``."""
    parts = [np.asarray(model.predict_on_batch(x.take(slice(i, i + batch_size))))
             for i in range(0, len(x), batch_size)]
    return np.concatenate(parts).astype(np.float32)


class Monitor(keras.callbacks.Callback):
    """Validation mAP per epoch; keeps the best weights, stops after ``patience`` epochs without gain."""

    def __init__(self, x_val: Rows, y_val: np.ndarray, loss_fn: Callable, patience: int, bar: Progress) -> None:
        super().__init__()
        self.x_val, self.y_val, self.loss_fn, self.patience, self.bar = x_val, y_val, loss_fn, patience, bar
        self.history: dict[str, list[float]] = {"loss": [], "val_loss": [], "val_mAP": [], "seconds": []}
        self.best, self.best_epoch, self.best_weights = -math.inf, -1, None
        self.started = time.monotonic()

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.started = time.monotonic()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        probs = predict(self.model, self.x_val)
        val_map = mean_average_precision(self.y_val, probs)
        val_loss = float(np.mean(keras.ops.convert_to_numpy(self.loss_fn(self.y_val.astype(np.float32), probs))))
        self.history["loss"].append(float((logs or {}).get("loss", math.nan)))
        self.history["val_loss"].append(val_loss)
        self.history["val_mAP"].append(val_map)
        self.history["seconds"].append(round(time.monotonic() - self.started, 2))
        score = -1.0 if math.isnan(val_map) else val_map
        if score > self.best:
            self.best, self.best_epoch, self.best_weights = score, epoch, self.model.get_weights()
        elif epoch - self.best_epoch >= self.patience:
            self.model.stop_training = True
        self.bar.update(1)

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        if self.best_weights is not None:
            self.model.set_weights(self.best_weights)
