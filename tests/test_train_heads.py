"""Losses against hand-computed values, head variants, and attaching a head to a backbone."""
from __future__ import annotations

import math
from pathlib import Path

import keras
import numpy as np
import pytest

from hashtag.train.heads import HEADS, attach_head, build_head, head_config
from hashtag.train.losses import make_loss, positive_weights
from trainkit import tiny_conv


def _loss(name: str, y: list, p: list, train_labels: np.ndarray | None = None) -> float:
    fn = make_loss(name, np.asarray(train_labels if train_labels is not None else y))
    return float(np.mean(keras.ops.convert_to_numpy(fn(np.array(y, np.float32), np.array(p, np.float32)))))


def test_bce_by_hand() -> None:
    assert _loss("bce", [[1, 0]], [[0.8, 0.3]]) == pytest.approx(-(math.log(0.8) + math.log(0.7)) / 2, rel=1e-5)


def test_weighted_bce_scales_positives_by_negative_ratio() -> None:
    train = np.array([[1, 0], [0, 0], [0, 0], [1, 1]])  # positives 2 and 1 of 4 -> weights 2/2 = 1 and 3/1 = 3
    np.testing.assert_allclose(positive_weights(train), [1.0, 3.0])
    got = _loss("weighted", [[1, 1]], [[0.8, 0.6]], train)
    assert got == pytest.approx(-(1 * math.log(0.8) + 3 * math.log(0.6)) / 2, rel=1e-5)
    assert positive_weights(np.zeros((5, 1)))[0] == 5.0  # a tag without positives stays finite


def test_focal_by_hand() -> None:
    expected = -((0.2 ** 2) * math.log(0.8) + (0.3 ** 2) * math.log(0.7)) / 2
    assert _loss("focal", [[1, 0]], [[0.8, 0.3]]) == pytest.approx(expected, rel=1e-5)


def test_asymmetric_loss_by_hand() -> None:
    # Negative probability shifted by the 0.05 margin: 0.25; focusing power 4 on negatives, none on positives.
    expected = -(math.log(0.8) + 0.25 ** 4 * math.log(0.75)) / 2
    assert _loss("asl", [[1, 0]], [[0.8, 0.3]]) == pytest.approx(expected, rel=1e-5)
    # Easy negatives below the margin cost nothing at all.
    assert _loss("asl", [[0, 0]], [[0.04, 0.01]]) == pytest.approx(0.0, abs=1e-7)


def test_unknown_labels_are_masked_out_of_every_loss() -> None:
    # -1 is unknown: the loss is the mean over the known elements only, here (1, .8), (0, .4), (1, .6).
    y, p = [[1, -1], [0, 1]], [[0.8, 0.3], [0.4, 0.6]]
    assert _loss("bce", y, p) == pytest.approx(-(math.log(0.8) + math.log(0.6) + math.log(0.6)) / 3, rel=1e-5)
    for name in ("bce", "weighted", "focal", "asl"):
        # Whatever the model says where the label is unknown changes nothing.
        assert _loss(name, y, [[0.8, 0.99], [0.4, 0.6]]) == pytest.approx(_loss(name, y, p), rel=1e-6), name
        assert _loss(name, [[-1, -1]], [[0.8, 0.3]]) == 0.0, name
    # ASL on the known element only: the positive 0.8; the confident 0.9 where unknown costs nothing.
    assert _loss("asl", [[1, -1]], [[0.8, 0.9]]) == pytest.approx(-math.log(0.8), rel=1e-5)


def test_weighted_bce_counts_known_labels_only() -> None:
    train = np.array([[1, -1], [0, -1], [0, 0], [-1, 1]])  # tag 0: 1 positive, 2 negatives; tag 1: 1 and 1
    np.testing.assert_allclose(positive_weights(train), [2.0, 1.0])
    got = _loss("weighted", [[1, -1], [0, 1]], [[0.8, 0.3], [0.4, 0.6]], train)
    assert got == pytest.approx(-(2 * math.log(0.8) + math.log(0.6) + math.log(0.6)) / 3, rel=1e-5)


def test_unknown_loss_and_head() -> None:
    with pytest.raises(ValueError, match="unknown loss"):
        make_loss("hinge", np.zeros((2, 2)))
    with pytest.raises(ValueError, match="unknown head"):
        head_config("attention")


def test_head_variants_shapes_and_sizes() -> None:
    flatten = build_head(HEADS["flatten"], (2, 2, 4), 3)
    # The original head: Flatten(16) -> Dense(128, relu) -> Dense(3, sigmoid).
    assert flatten.count_params() == 16 * 128 + 128 + 128 * 3 + 3
    assert [layer.name for layer in flatten.layers if layer.weights] == ["head_hidden", "probabilities"]
    gap = build_head(HEADS["gap"], (16,), 3)
    assert gap.count_params() == 16 * 3 + 3
    mlp = build_head(HEADS["gap-mlp"], (16,), 3)
    assert mlp.count_params() == 16 * 256 + 256 + 256 * 3 + 3
    out = mlp.predict_on_batch(np.random.default_rng(0).normal(size=(5, 16)).astype(np.float32))
    assert out.shape == (5, 3) and np.all((out > 0) & (out < 1))


@pytest.mark.parametrize("name", ["flatten", "gap", "gap-mlp"])
def test_attach_head_equals_head_on_backbone_features(name: str, tmp_path: Path) -> None:
    backbone = tiny_conv(32)
    config = HEADS[name]
    shape = tuple(backbone.output_shape[1:])
    head = build_head(config, shape[-1:] if config.pooled else shape, 4)
    full = attach_head(backbone, head, config, "vgg16")
    x = np.random.default_rng(1).normal(size=(3, 32, 32, 3)).astype(np.float32)
    maps = backbone.predict_on_batch(x)
    features = maps.mean(axis=(1, 2)) if config.pooled else maps
    expected = head.predict_on_batch(features)
    np.testing.assert_allclose(full.predict_on_batch(x), expected, atol=1e-5)
    # One flat graph: no nested models, so export sees plain layers; it survives a save/load round trip.
    assert not any(isinstance(layer, keras.Model) for layer in full.layers)
    assert full.output_shape == (None, 4) and full.name == "vgg16"
    full.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras", compile=False)
    np.testing.assert_allclose(loaded.predict_on_batch(x), expected, atol=1e-5)
