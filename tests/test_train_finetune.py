"""Fine-tuning the top blocks: block caches, the cut, BatchNorm kept in inference mode, flips, and the
trainer keeping tuned weights only when validation says so (tiny conv nets standing in for ImageNet bases)."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import keras
import numpy as np
import pytest
from click.testing import CliRunner

from hashtag.runtime.cli import main
from hashtag.runtime.images import load_image
from hashtag.runtime.preprocess import normalize, resize_rgb
from hashtag.train.backbones import SPECS
from hashtag.train.blocks import Cut, top_model
from hashtag.train.config import TrainConfig
from hashtag.train.dataset import load_dataset
from hashtag.train.errors import SettingsError
from hashtag.train.features import Backbone, FeatureCache
from hashtag.train.fitting import Batches, Rows
from hashtag.train.trainer import train
from hashtag.train.weights.architectures import keras_application
from trainkit import TF_PREP, make_dataset

SIZE = 32
CUT = Cut("conv1", "output", "conv2 + bn")


def tiny_bn_base(seed: int = 1) -> keras.Model:
    """conv1 -> [cut] -> conv2 -> BatchNorm -> relu, with non-trivial BatchNorm statistics."""
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu", name="conv1",
                            kernel_initializer=keras.initializers.GlorotUniform(seed=seed))(inputs)
    x = keras.layers.Conv2D(16, 3, strides=2, padding="same", name="conv2",
                            kernel_initializer=keras.initializers.GlorotUniform(seed=seed + 1))(x)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.Activation("relu", name="act")(x)
    model = keras.Model(inputs, x, name="tiny_bn_base")
    bn = model.get_layer("bn")
    bn.moving_mean.assign(np.full(16, 0.1, np.float32))
    bn.moving_variance.assign(np.full(16, 2.0, np.float32))
    model.trainable = False
    return model


class CutFactory:
    """backbone_factory whose backbones have a cut, so the trainer fine-tunes them."""

    def __init__(self) -> None:
        self.built: dict[str, Backbone] = {}

    def __call__(self, name: str, input_size: int) -> Backbone:
        backbone = Backbone(name, input_size, tiny_bn_base(), TF_PREP, {"source": "test"}, CUT)
        self.built[name] = backbone
        return backbone


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> list:
    root = make_dataset(tmp_path_factory.mktemp("ds"), counts=(10, 2, 2))
    return load_dataset(root).split("train")


def _pixels(photos: list) -> np.ndarray:
    return normalize(np.stack([resize_rgb(load_image(p.path), SIZE) for p in photos]), TF_PREP)


def test_block_cache_holds_the_map_entering_the_top_blocks(photos: list, tmp_path: Path) -> None:
    backbone = Backbone("xception", SIZE, tiny_bn_base(), TF_PREP, {"source": "test"}, CUT)
    cache = FeatureCache(tmp_path, backbone, batch_size=4, progress=False)
    stats = cache.ensure("train", photos, kinds=("pooled", "block"))
    assert stats.computed == 10 and backbone.block_shape == (16, 16, 8)
    x = _pixels(photos)
    expected = keras.Model(backbone.model.input, backbone.model.get_layer("conv1").output).predict_on_batch(x)
    block = cache.block("train", photos, np.arange(10))
    assert block.dtype == np.float16 and block.shape == (10, 16, 16, 8)
    np.testing.assert_allclose(block, expected, rtol=2e-3, atol=2e-3)
    # the top on the cached block gives the backbone's own output
    top = top_model(backbone.model, CUT)
    np.testing.assert_allclose(top.predict_on_batch(np.asarray(block, np.float32)).mean(axis=(1, 2)),
                               cache.pooled("train", photos, np.arange(10)), rtol=1e-2, atol=1e-2)
    again = FeatureCache(tmp_path, backbone, progress=False).ensure("train", photos, kinds=("pooled", "block"))
    assert (again.computed, again.reused) == (0, 10)


def test_a_backbone_without_cut_has_no_block_cache(photos: list, tmp_path: Path) -> None:
    backbone = Backbone("xception", SIZE, tiny_bn_base(), TF_PREP, {"source": "test"})
    with pytest.raises(SettingsError, match="no cut"):
        FeatureCache(tmp_path, backbone, progress=False).ensure("train", photos, kinds=("block",))


def test_openvino_engine_matches_keras_and_has_its_own_cache(photos: list, tmp_path: Path) -> None:
    pytest.importorskip("openvino", reason="the openvino extra is not installed")
    backbone = Backbone("xception", SIZE, tiny_bn_base(), TF_PREP, {"source": "test"}, CUT)
    by_keras = FeatureCache(tmp_path, backbone, progress=False)
    by_ov = FeatureCache(tmp_path, backbone, progress=False, engine="openvino-f32")
    assert by_keras.root != by_ov.root
    for cache in (by_keras, by_ov):
        cache.ensure("train", photos, kinds=("pooled", "block"))
    rows = np.arange(10)
    np.testing.assert_allclose(by_ov.pooled("train", photos, rows), by_keras.pooled("train", photos, rows),
                               rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(by_ov.block("train", photos, rows), by_keras.block("train", photos, rows),
                               rtol=2e-3, atol=2e-3)


def test_unknown_engine_is_refused(tmp_path: Path) -> None:
    backbone = Backbone("xception", SIZE, tiny_bn_base(), TF_PREP, {"source": "test"}, CUT)
    with pytest.raises(SettingsError, match="unknown extraction engine 'tpu'"):
        FeatureCache(tmp_path, backbone, engine="tpu")
    with pytest.raises(SettingsError, match="extraction engine"):
        TrainConfig(extract_engine="tpu")


@pytest.mark.parametrize("name", sorted(n for n, s in SPECS.items() if s.top_blocks))
def test_imagenet_cuts_exist_and_split_the_backbone_exactly(name: str) -> None:
    size = {"vgg16": 64, "inceptionv3": 75, "xception": 71}[name]
    model = keras_application(name, size)
    cut = SPECS[name].top_blocks
    top = top_model(model, cut)
    bottom = keras.Model(model.input, cut.tensor(model))
    x = np.random.default_rng(0).normal(size=(2, size, size, 3)).astype(np.float32)
    np.testing.assert_allclose(top.predict_on_batch(bottom.predict_on_batch(x)), model.predict_on_batch(x),
                               rtol=1e-4, atol=1e-4)
    assert 0 < len(top.trainable_weights) < len(model.weights)
    assert not any(w.trainable for layer in top.layers if isinstance(layer, keras.layers.BatchNormalization)
                   for w in layer.weights)


def test_flips_mirror_about_half_of_the_maps() -> None:
    x = np.arange(200 * 2 * 3 * 1, dtype=np.float32).reshape(200, 2, 3, 1)
    y = np.zeros((200, 1), np.float32)
    batches = Batches(Rows(x), y, batch_size=200, seed=0, hflip=True)
    got, _ = batches[0]
    original = x[batches.order]
    flipped = np.array([not np.array_equal(g, o) for g, o in zip(got, original)])
    assert 70 < flipped.sum() < 130
    np.testing.assert_array_equal(got[flipped], original[flipped][:, :, ::-1])
    plain, _ = Batches(Rows(x), y, batch_size=200, seed=0)[0]
    np.testing.assert_array_equal(plain, x[Batches(Rows(x), y, batch_size=200, seed=0).order])


CONFIG = TrainConfig(models=("xception",), input_sizes={"xception": SIZE}, heads=("gap",), losses=("bce",),
                     augment=0, epochs=3, patience=2, batch_size=8, extract_batch_size=8, seed=3,
                     fine_tune_epochs=2, fine_tune_learning_rate=1e-3)


def _card(run: Path) -> dict:
    return json.loads((run / "xception" / "model.json").read_text())


def _conv2(run: Path) -> np.ndarray:
    return keras.saving.load_model(run / "xception" / "model.keras").get_layer("conv2").get_weights()[0]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("data"), counts=(40, 16, 12))


def test_trainer_records_both_and_keeps_the_better(data: Path, tmp_path: Path) -> None:
    factory = CutFactory()
    train(data, tmp_path / "run", CONFIG, backbone_factory=factory, progress=False)
    card = _card(tmp_path / "run")
    tuning = card["training"]["fine_tuning"]
    assert tuning["cut"] == CUT.to_dict() and tuning["epochs_run"] >= 1
    assert len(tuning["seconds_per_epoch"]) == tuning["epochs_run"]
    frozen = tuning["frozen_val_mAP"]  # the frozen head on the same cached block inputs
    assert frozen == pytest.approx(card["training"]["candidates"][0]["val_mAP"], abs=0.05)
    assert tuning["kept"] == ("fine-tuned" if tuning["val_mAP"] > frozen else "frozen")
    original = tiny_bn_base().get_layer("conv2").get_weights()[0]
    changed = not np.allclose(_conv2(tmp_path / "run"), original)
    assert changed == (tuning["kept"] == "fine-tuned")
    # BatchNorm statistics stay the ImageNet-like ones whatever was kept
    bn = keras.saving.load_model(tmp_path / "run" / "xception" / "model.keras").get_layer("bn")
    np.testing.assert_allclose(bn.moving_variance.numpy(), 2.0)
    history = json.loads((tmp_path / "run" / "xception" / "history.json").read_text())
    assert len(history["fine_tuning"]["val_mAP"]) == tuning["epochs_run"]


def test_a_tuning_that_does_not_beat_the_frozen_head_is_undone(data: Path, tmp_path: Path) -> None:
    futile = replace(CONFIG, fine_tune_learning_rate=1e-7, fine_tune_epochs=1)  # moves weights, not rankings
    train(data, tmp_path / "run", futile, backbone_factory=CutFactory(), progress=False)
    tuning = _card(tmp_path / "run")["training"]["fine_tuning"]
    assert tuning["kept"] == "frozen" and tuning["val_mAP"] == tuning["frozen_val_mAP"]
    np.testing.assert_array_equal(_conv2(tmp_path / "run"), tiny_bn_base().get_layer("conv2").get_weights()[0])


def test_fine_tuning_off_leaves_no_record(data: Path, tmp_path: Path) -> None:
    train(data, tmp_path / "run", replace(CONFIG, fine_tune_epochs=0), backbone_factory=CutFactory(),
          progress=False)
    assert _card(tmp_path / "run")["training"]["fine_tuning"] is None


def test_cli_shows_and_checks_the_fine_tuning_options(tmp_path: Path) -> None:
    help_text = CliRunner().invoke(main, ["train", "--help"]).output
    for option in ("--fine-tune-epochs", "--fine-tune-lr", "--fine-tune-patience", "--extract-engine"):
        assert option in help_text
    result = CliRunner().invoke(main, ["train", "--data", str(tmp_path), "--out", str(tmp_path / "o"),
                                       "--extract-engine", "tpu"])
    assert result.exit_code == 2 and "tpu" in result.output
