"""Training and evaluation on partial labels: a tag unknown on half the photos is left out of the loss, of
AP/F1 and of threshold tuning, for every model and for the ensemble (mean of probabilities)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from hashtag.train.config import TrainConfig
from hashtag.train.metrics import average_precision, best_f1_threshold
from hashtag.train.trainer import train
from trainkit import TAGS, TinyFactory, make_dataset

MODELS = ("vgg16", "xception")
CONFIG = TrainConfig(models=MODELS, input_sizes={"vgg16": 32, "xception": 32}, heads=("gap",), losses=("bce",),
                     augment=0, epochs=3, patience=2, batch_size=16, extract_batch_size=16, seed=5)
HIDDEN = TAGS.index("very_blue")


def odd_photos_never_label_very_blue(seed: int) -> set[str]:
    return {"very_blue"} if seed % 2 else set()


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("partial")
    data = make_dataset(base / "data", counts=(30, 16, 16), unknown=odd_photos_never_label_very_blue)
    train(data, base / "run", CONFIG, backbone_factory=TinyFactory(), progress=False)
    return base / "run"


def _saved(run: Path, name: str) -> dict[str, np.ndarray]:
    with np.load(run / name / "predictions.npz") as saved:
        return dict(saved)


def test_unknown_labels_reach_the_predictions_and_the_records(run: Path) -> None:
    saved = _saved(run, "vgg16")
    seeds = np.array([int(pid[1:]) for pid in saved["val_ids"]])
    np.testing.assert_array_equal(saved["val_labels"][:, HIDDEN] == -1, seeds % 2 == 1)
    assert (saved["val_labels"][:, [0, 2]] >= 0).all()
    card = json.loads((run / "vgg16" / "model.json").read_text())
    assert card["partial_labels"]["unknown_for"] == {"very_blue": ["odd photos"]}
    assert json.loads((run / "run.json").read_text())["vocabulary"] == {"mode": "tags"}
    test = card["metrics"]["test"]
    assert test["per_tag"]["very_blue"]["known"] == 8 and test["per_tag"]["blue"]["known"] == 16
    assert test["unknown_labels"] == 8
    assert "Labels are partial: 8 test labels are unknown" in (run / "report.md").read_text()
    assert "very_blue (8 of 16 known)" in (run / "report.md").read_text()


def test_training_loss_leaves_unknown_labels_out(run: Path) -> None:
    """The validation loss recorded at the best epoch is BCE over the known labels of the saved probabilities."""
    saved = _saved(run, "vgg16")
    y, p = saved["val_labels"], np.clip(saved["val_probs"].astype(np.float64), 1e-7, 1 - 1e-7)
    known = y >= 0
    bce = -(y * np.log(p) + (1 - y) * np.log(1 - p))
    history = json.loads((run / "vgg16" / "history.json").read_text())
    card = json.loads((run / "vgg16" / "model.json").read_text())
    best = card["training"]["candidates"][0]["best_epoch"] - 1
    recorded = history["candidates"][history["selected"]]["val_loss"][best]
    assert recorded == pytest.approx(bce[known].mean(), rel=1e-4)
    assert recorded != pytest.approx(np.where(known, bce, 0).mean(), rel=1e-3)  # not zeros averaged in


def _known_only(y: np.ndarray, p: np.ndarray, j: int) -> tuple[np.ndarray, np.ndarray]:
    keep = y[:, j] >= 0
    return y[keep, j], p[keep, j]


@pytest.mark.parametrize("name", [*MODELS, "ensemble"])
def test_ap_and_thresholds_use_known_rows_only(run: Path, name: str) -> None:
    preds = [_saved(run, m) for m in MODELS]
    if name == "ensemble":
        record = json.loads((run / "ensemble.json").read_text())
        val = np.mean([s["val_probs"] for s in preds], axis=0)
        test = np.mean([s["test_probs"] for s in preds], axis=0)
    else:
        record = json.loads((run / name / "model.json").read_text())
        val, test = preds[MODELS.index(name)]["val_probs"], preds[MODELS.index(name)]["test_probs"]
    y_val, y_test = preds[0]["val_labels"], preds[0]["test_labels"]
    for j, tag in enumerate(TAGS):
        assert record["thresholds"][tag] == pytest.approx(best_f1_threshold(*_known_only(y_val, val, j)))
        assert record["metrics"]["test"]["per_tag"][tag]["ap"] == pytest.approx(
            average_precision(*_known_only(y_test, test, j)))
    for split, y in (("val", y_val), ("test", y_test)):
        metrics = record["metrics"][split]
        assert metrics["per_tag"]["very_blue"]["known"] == (y[:, HIDDEN] >= 0).sum() == len(y) // 2
        assert metrics["unknown_labels"] == len(y) // 2
