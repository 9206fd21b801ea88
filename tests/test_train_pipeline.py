"""End to end on a tiny dataset with stand-in backbones: training, run folder, cache reuse, determinism,
evaluation from saved predictions and from photos, the CLI."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import keras
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from hashtag.runtime.cli import main
from hashtag.runtime.images import load_image
from hashtag.runtime.manifest import Preprocessing
from hashtag.runtime.preprocess import normalize, resize_rgb
from hashtag.train.config import TrainConfig
from hashtag.train.dataset import load_dataset
from hashtag.train.run_folder import select_rows
from hashtag.train.trainer import candidates, train
from trainkit import TAGS, TinyFactory, make_dataset, write_tables

CONFIG = TrainConfig(models=("vgg16", "xception"), input_sizes={"vgg16": 32, "xception": 40},
                     heads=("flatten", "gap-mlp"), losses=("bce", "asl"), augment=1, epochs=4, patience=2,
                     batch_size=16, extract_batch_size=8, seed=3)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict:
    base = tmp_path_factory.mktemp("pipeline")
    data = make_dataset(base / "data", counts=(30, 12, 12))
    factory = TinyFactory()
    scores = train(data, base / "run1", CONFIG, backbone_factory=factory, progress=False)
    again = TinyFactory()
    # Same settings, one model only: candidates are seeded one by one, so vgg16 must come out identical.
    train(data, base / "run2", replace(CONFIG, models=("vgg16",), input_sizes={"vgg16": 32}),
          backbone_factory=again, progress=False)
    return {"data": data, "run": base / "run1", "run2": base / "run2", "scores": scores,
            "calls": factory.calls, "calls2": again.calls}


def _card(run: Path, name: str) -> dict:
    return json.loads((run / name / "model.json").read_text())


def test_run_folder_contents(trained: dict) -> None:
    run = trained["run"]
    meta = json.loads((run / "run.json").read_text())
    assert meta["version"] == 1 and meta["tags"] == list(TAGS) and meta["models"] == ["vgg16", "xception"]
    assert meta["seed"] == 3 and meta["splits"]["train"] == {"photos": 30, "used": 30}
    for name in ("vgg16", "xception"):
        for file in ("model.keras", "model.json", "history.json", "predictions.npz"):
            assert (run / name / file).is_file(), f"{name}/{file}"
    for png in ("history.png", "ap_by_tag.png", "pr_vgg16.png", "pr_xception.png", "pr_ensemble.png"):
        with Image.open(run / "plots" / png) as img:
            assert img.format == "PNG" and img.size[0] > 300
    assert trained["calls"] == [("vgg16", 32), ("xception", 40)]  # each backbone built once


def test_model_card_records_choice_thresholds_and_metrics(trained: dict) -> None:
    card = _card(trained["run"], "vgg16")
    assert card["name"] == "vgg16" and card["input_size"] == 32
    assert Preprocessing.from_dict(card["preprocessing"]).family == "caffe"
    assert card["tags"] == list(TAGS)
    assert set(card["thresholds"]) == set(TAGS) and all(0 <= t <= 1 for t in card["thresholds"].values())
    assert card["weights_source"]["source"] == "test" and len(card["weights_source"]["weights_values_sha256"]) == 64
    compared = card["training"]["candidates"]
    # flatten only as the original (bce, no augmentation); pooled heads x 2 losses x with/without augmentation
    assert [c["key"] for c in compared] == [c.key for c in candidates(CONFIG)]
    assert len(compared) == 1 + 2 * 2
    best = max(compared, key=lambda c: c["val_mAP"])
    assert card["training"]["selected"] == best["key"]
    assert card["head"]["name"] == best["head"] and card["loss"] == best["loss"]
    assert card["metrics"]["val"]["mAP"] == pytest.approx(best["val_mAP"])
    test = card["metrics"]["test"]
    assert test["n_images"] == 12 and set(test["per_tag"]) == set(TAGS)
    for key in ("mAP", "micro_f1", "macro_f1", "exact_match", "hamming_loss", "binary_accuracy",
                "do_nothing_accuracy"):
        assert 0.0 <= test[key] <= 1.0
    aps = [t["ap"] for t in test["per_tag"].values() if t["ap"] is not None]
    assert test["mAP"] == pytest.approx(sum(aps) / len(aps))  # the macro mean of the per-tag APs it reports
    # The colour tags are learnable from the tiny backbone's features.
    assert test["per_tag"]["blue"]["ap"] > 0.8
    assert card["training"]["assembly_check"]["max_abs_diff"] < 0.02


def test_history_has_every_candidate_per_epoch(trained: dict) -> None:
    hist = json.loads((trained["run"] / "xception" / "history.json").read_text())
    assert hist["selected"] == _card(trained["run"], "xception")["training"]["selected"]
    for curves in hist["candidates"].values():
        assert 1 <= len(curves["val_mAP"]) == len(curves["loss"]) == len(curves["val_loss"]) <= CONFIG.epochs


def test_saved_full_model_predicts_from_pixels(trained: dict) -> None:
    run = trained["run"]
    dataset = load_dataset(trained["data"])
    val = dataset.split("val")
    for name in ("vgg16", "xception"):
        card = _card(run, name)
        model = keras.saving.load_model(run / name / "model.keras", compile=False)
        assert model.input_shape == (None, card["input_size"], card["input_size"], 3)
        prep = Preprocessing.from_dict(card["preprocessing"])
        x = normalize(np.stack([resize_rgb(load_image(r.path), card["input_size"]) for r in val]), prep)
        with np.load(run / name / "predictions.npz") as saved:
            assert list(saved["val_ids"]) == [r.photo_id for r in val]
            tol = 2e-2 if card["head"]["name"] == "flatten" else 1e-4
            np.testing.assert_allclose(model.predict_on_batch(x), saved["val_probs"], atol=tol)


def test_ensemble_is_mean_with_its_own_thresholds(trained: dict) -> None:
    run = trained["run"]
    ens = json.loads((run / "ensemble.json").read_text())
    assert set(ens["thresholds"]) == set(TAGS)
    probs = []
    for name in ("vgg16", "xception"):
        with np.load(run / name / "predictions.npz") as saved:
            probs.append(saved["test_probs"])
            labels = saved["test_labels"]
    from hashtag.train.metrics import mean_average_precision

    assert ens["metrics"]["test"]["mAP"] == pytest.approx(mean_average_precision(labels, np.mean(probs, axis=0)))
    report = (run / "report.md").read_text()
    for needle in ("| vgg16 |", "| xception |", "| ensemble |", "0.65", "0.76", "do-nothing", "binary acc @0.5"):
        assert needle in report


def test_second_run_reuses_features_and_is_deterministic(trained: dict) -> None:
    assert trained["calls2"] == [("vgg16", 32)]
    extraction = _card(trained["run2"], "vgg16")["training"]["feature_extraction"]
    assert all(extraction[k]["computed"] == 0 for k in ("train", "val", "test", "train-v1")), extraction
    assert _card(trained["run"], "vgg16")["training"]["feature_extraction"]["train"]["computed"] == 30
    with np.load(trained["run"] / "vgg16" / "predictions.npz") as a, \
            np.load(trained["run2"] / "vgg16" / "predictions.npz") as b:
        np.testing.assert_array_equal(a["test_probs"], b["test_probs"])
    m1 = keras.saving.load_model(trained["run"] / "vgg16" / "model.keras", compile=False)
    m2 = keras.saving.load_model(trained["run2"] / "vgg16" / "model.keras", compile=False)
    for w1, w2 in zip(m1.get_weights(), m2.get_weights(), strict=True):
        np.testing.assert_array_equal(w1, w2)
    assert _card(trained["run"], "vgg16")["metrics"] == _card(trained["run2"], "vgg16")["metrics"]


def test_evaluate_cli_from_predictions_and_from_photos(trained: dict) -> None:
    run = trained["run2"]
    before = _card(run, "vgg16")["metrics"]["test"]["mAP"]
    result = CliRunner().invoke(main, ["evaluate", "--run", str(run), "-q"])
    assert result.exit_code == 0, result.output
    assert "test mAP" in result.output and "ensemble" in result.output
    assert _card(run, "vgg16")["metrics"]["test"]["mAP"] == pytest.approx(before)
    result = CliRunner().invoke(main, ["evaluate", "--run", str(run), "--data", str(trained["data"]), "-q"])
    assert result.exit_code == 0, result.output
    card = _card(run, "vgg16")
    assert card["metrics_source"].startswith("full models on photos")
    assert card["metrics"]["test"]["mAP"] == pytest.approx(before, abs=0.02)


def test_evaluate_scores_the_everyday_report_half(trained: dict, tmp_path: Path) -> None:
    from hashtag.train.real_photos import real_split_of

    everyday = write_tables(tmp_path / "everyday", range(900, 940))
    report_half = [s for s in range(900, 940) if real_split_of(f"mir{s:05d}") == "report"]
    run = trained["run2"]
    result = CliRunner().invoke(main, ["evaluate", "--run", str(run), "--everyday", str(everyday), "-q"])
    assert result.exit_code == 0, result.output
    assert "everyday report half mAP" in result.output
    card = _card(run, "vgg16")
    assert card["everyday_report"]["n_images"] == len(report_half) > 5
    ensemble = json.loads((run / "ensemble.json").read_text())["everyday_report"]
    assert ensemble["n_images"] == len(report_half) and 0 < ensemble["micro_recall"]
    assert "## Real photos (everyday photos, report half)" in (run / "report.md").read_text()


def test_cli_usage_errors(trained: dict, tmp_path: Path) -> None:
    runner = CliRunner()
    bad = runner.invoke(main, ["train", "--data", str(trained["data"]), "--out", str(tmp_path / "r"),
                               "--heads", "gap,attention"])
    assert bad.exit_code == 2 and "unknown head 'attention'" in bad.output
    bad = runner.invoke(main, ["train", "--data", str(trained["data"]), "--out", str(tmp_path / "r"),
                               "--size", "vgg16"])
    assert bad.exit_code == 2 and "NAME=PIXELS" in bad.output
    bad = runner.invoke(main, ["train", "--data", str(trained["data"]), "--out", str(tmp_path / "r"),
                               "--models", "vgg16", "--weights-source", str(tmp_path / "none.weights.h5")])
    assert bad.exit_code == 1 and "none.weights.h5" in bad.output and "Traceback" not in bad.output
    missing = runner.invoke(main, ["evaluate", "--run", str(tmp_path)])
    assert missing.exit_code == 1 and "no run.json" in missing.output


def test_select_rows_is_nested_and_seed_free() -> None:
    ids = [f"id{i}" for i in range(50)]
    small, large = select_rows(ids, 10), select_rows(ids, 25)
    assert len(small) == 10 and len(large) == 25 and set(small) <= set(large)
    assert list(select_rows(ids, None)) == list(range(50)) == list(select_rows(ids, 80))


def test_limit_trains_on_fewer_photos(tmp_path: Path) -> None:
    data = make_dataset(tmp_path / "data", counts=(20, 8, 8), start=100)
    config = TrainConfig(models=("vgg16",), input_sizes={"vgg16": 32}, heads=("gap",), losses=("weighted",),
                         augment=0, epochs=2, limit=9, eval_limit=6)
    train(data, tmp_path / "run", config, backbone_factory=TinyFactory(), progress=False)
    card = _card(tmp_path / "run", "vgg16")
    assert card["training"]["train_photos"] == 9
    assert card["training"]["feature_extraction"]["train"]["computed"] == 9
    assert card["metrics"]["test"]["n_images"] == 6
    assert [c["key"] for c in card["training"]["candidates"]] == ["gap/weighted/aug0"]


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="unknown loss"):
        TrainConfig(losses=("mse",))
    with pytest.raises(ValueError, match="epochs"):
        TrainConfig(epochs=0)
    with pytest.raises(ValueError, match="not trained"):
        TrainConfig(models=("vgg16",), input_sizes={"xception": 299})


@pytest.mark.slow
def test_train_cli_with_real_vgg16_weights(tmp_path: Path) -> None:
    """`hashtag train` end to end with the real ImageNet VGG16 (built or taken from the weights cache), small input."""
    data = make_dataset(tmp_path / "data", counts=(16, 8, 8))
    run = tmp_path / "run"
    args = ["train", "--data", str(data), "--out", str(run), "--models", "vgg16", "--size", "vgg16=32",
            "--heads", "flatten,gap", "--losses", "bce,weighted", "--augment", "1", "--epochs", "3", "-q"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "vgg16" in result.output and "test mAP" in result.output
    card = _card(run, "vgg16")
    assert card["weights_source"]["backbone"] == "vgg16" and len(card["weights_source"]["weights_sha256"]) == 64
    assert card["input_size"] == 32 and card["preprocessing"]["family"] == "caffe"
    model = keras.saving.load_model(run / "vgg16" / "model.keras", compile=False)
    assert model.get_layer("block5_conv3").get_weights()[0][0, 2, 0, 400] == pytest.approx(-0.008714244, abs=1e-6)
    # second run: the feature cache answers everything
    result = CliRunner().invoke(main, [*args[:4], str(tmp_path / "run2"), *args[5:]])
    assert result.exit_code == 0, result.output
    assert _card(tmp_path / "run2", "vgg16")["training"]["feature_extraction"]["train"]["computed"] == 0


def test_ensemble_weights_are_tried_on_validation_and_reported(trained: dict) -> None:
    run = trained["run"]
    trial = json.loads((run / "ensemble.json").read_text())["weights_trial"]
    assert set(trial) >= {"held_out_mAP_mean", "held_out_mAP_weighted", "kept"}
    assert 0 <= trial["held_out_mAP_mean"] <= 1 and isinstance(trial["kept"], bool)
    assert "Per-tag model weights" in (run / "report.md").read_text()
