"""The model card generator: tables carry the given numbers, targets are judged right, inputs are checked."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from hashtag.export.card import main, render_card, reproduce
from tinybundle import CAFFE, TAGS

MODELS = ("vgg16", "inceptionv3", "xception")
BASE = ("nature", "sea")  # the "original" tags of this fake vocabulary; animal and person are added
ROW = re.compile(r"^\| (vgg16|inceptionv3|xception|ensemble) \| (int8|fp32|fp16) \| ([0-9.]+) \|", re.M)
REPORT = ("# Export report\n\n- run: runs/v2\n\n## Models\n\n| a |\n|---|\n\n### vgg16 search\n\n"
          "```\n# not a heading\n```\n")
LIMITS = "- The Intel scenes never say *animal*; its labels there are unknown.\n"
# model -> (mAP, mAP_base, mAP_added) for INT8 and FP32; every target is met here
GOOD = {"int8": {"vgg16": (0.9301, 0.9201, 0.8801), "inceptionv3": (0.9402, 0.9302, 0.8902),
                 "xception": (0.9503, 0.9403, 0.9003), "ensemble": (0.9604, 0.9504, 0.8604)},
        "fp32": {"vgg16": (0.9351, 0.9251, 0.8851), "inceptionv3": (0.9412, 0.9312, 0.8912),
                 "xception": (0.9493, 0.9393, 0.8993), "ensemble": (0.9654, 0.9554, 0.8654)}}


def metrics(figures: tuple[float, float, float], seed: int) -> dict[str, Any]:
    """bundle_eval's record of one model: known summary figures, per-tag APs derived from ``seed``."""
    m_ap, base, added = figures
    no_ap = None if seed % 2 else float("nan")  # json writes NaN, as bundle_eval's json.dumps does
    per_tag = {t: {"ap": no_ap if t == "person" else round(0.5 + 0.01 * seed + 0.1 * i, 4), "precision": 0.9,
                   "recall": 0.8, "f1": 0.85, "support": 10 + i, "known": 90 - i, "threshold": 0.5}
               for i, t in enumerate(TAGS)}
    return {"n_images": 100, "mAP": m_ap, "mAP_base": base, "mAP_added": added, "micro_f1": 0.8123,
            "macro_f1": 0.7456, "exact_match": 0.6, "hamming_loss": 0.04321, "binary_accuracy": 0.95,
            "do_nothing_accuracy": 0.8, "unknown_labels": 37, "per_tag": per_tag}


def results(precision: str, figures: dict[str, tuple[float, float, float]]) -> dict[str, Any]:
    out: dict[str, Any] = {n: metrics(f, i) for i, (n, f) in enumerate(figures.items())}
    out["precision"] = {n: precision for n in MODELS}
    return out


def model_card(name: str, tuning: dict[str, Any] | None) -> dict[str, Any]:
    candidates = [{"key": "gap-mlp/bce/aug0", "val_mAP": 0.91, "best_epoch": 9, "epochs_run": 13, "seconds": 15.1},
                  {"key": "gap-mlp/weighted/aug0", "val_mAP": 0.92, "best_epoch": 7, "epochs_run": 11,
                   "seconds": 12.0}]
    return {"name": name, "input_size": 32, "preprocessing": CAFFE, "tags": list(TAGS), "head": {"name": "gap-mlp"},
            "loss": "weighted",
            "training": {"selected": "gap-mlp/weighted/aug0", "candidates": candidates, "train_photos": 900,
                         "fine_tuning": tuning}}


def tuning(kept: str) -> dict[str, Any]:
    return {"cut": {"layer": "block4_pool", "side": "output", "top": "block5"}, "frozen_val_mAP": 0.92,
            "val_mAP": 0.9345, "kept": kept, "learning_rate": 0.0001, "max_epochs": 3, "patience": 1,
            "batch_size": 64, "augmentation": "random horizontal flip of the cached maps",
            "batchnorm": "frozen (inference mode)", "best_epoch": 2, "epochs_run": 3, "seconds": 800.0,
            "seconds_per_epoch": [270.1, 265.0, 266.0]}


VOCABULARY = {"mode": "rule", "base_tags": list(BASE), "min_positives": 150, "synonym_jaccard": 0.95,
              "deny": ["selfie"], "gender_words": ["female", "male", "woman"], "counted_on": "train split",
              "dropped": [{"keyword": "people", "train_positives": 3957, "reason": "synonym", "synonym_of": "person",
                           "jaccard": 0.9863},
                          {"keyword": "female", "train_positives": 2030, "reason": "gender"}],
              "below_min_positives": {"count": 2, "largest": [{"keyword": "river", "train_positives": 79}]}}
PARTIAL = {"source_column": "photo_source", "rule": "a missing keyword is a negative on photos of a source that "
           "carries it somewhere, else unknown", "sources": ["intel-scenes", "mirflickr"],
           "unknown_for": {"animal": ["intel-scenes"], "person": ["intel-scenes"]}}


@pytest.fixture()
def inputs(tmp_path: Path, tiny_bundle: Path) -> dict[str, Path]:
    """A run folder, a tiny bundle with a vocabulary, results and reports: the card's seven inputs."""
    bundle = tmp_path / "models"
    shutil.copytree(tiny_bundle, bundle)
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest.update(vocabulary=VOCABULARY, partial_labels=PARTIAL)
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    run = tmp_path / "runs" / "v2"
    (run / "plots").mkdir(parents=True)
    splits = {"train": {"photos": 900, "used": 900}, "val": {"photos": 100, "used": 100},
              "test": {"photos": 100, "used": 100}}
    (run / "run.json").write_text(json.dumps({"tags": list(TAGS), "models": list(MODELS), "splits": splits,
                                              "vocabulary": VOCABULARY, "partial_labels": PARTIAL, "config": {}}))
    for name, tuned in zip(MODELS, (tuning("fine-tuned"), tuning("frozen"), None)):
        (run / name).mkdir()
        (run / name / "model.json").write_text(json.dumps(model_card(name, tuned)))
    trial = {"method": "per-tag weights", "held_out_mAP_mean": 0.93, "held_out_mAP_weighted": 0.929, "margin": 0.002,
             "kept": False}
    (run / "ensemble.json").write_text(json.dumps({"thresholds": {}, "weights_trial": trial, "metrics": {}}))
    for plot in ("ap_by_tag.png", "history.png", "pr_ensemble.png"):
        (run / "plots" / plot).write_bytes(b"\x89PNG fake")
    paths = {"run": run, "bundle": bundle, "int8": tmp_path / "int8.json", "fp32": tmp_path / "fp32.json",
             "report": tmp_path / "export_report.md", "limits": tmp_path / "LIMITS.md", "out": bundle / "README.md"}
    write_results(paths, GOOD)
    paths["report"].write_text(REPORT)
    paths["limits"].write_text(LIMITS)
    return paths


def write_results(paths: dict[str, Path], figures: dict[str, dict[str, tuple[float, float, float]]]) -> None:
    for precision in ("int8", "fp32"):
        paths[precision].write_text(json.dumps(results(precision, figures[precision])))


def section(card: str, title: str) -> str:
    """The text under ``## title`` up to the next ``## `` heading."""
    return card.split(f"\n## {title}", 1)[1].split("\n## ", 1)[0]


def targets(card: str) -> dict[str, str]:
    """Target line prefix -> 'met' or 'not met'."""
    lines = section(card, "Results on the test split").split("Targets (INT8):", 1)[1].split("###", 1)[0]
    return {m.group(1): m.group(2) for m in re.finditer(r"^- (.+?): \*\*(met|not met)\*\*", lines, re.M)}


def test_result_rows_carry_the_given_numbers_in_order(inputs: dict[str, Path]) -> None:
    card = render_card(inputs)
    assert "## Results on the test split (100 photos)" in card
    assert "| model | precision | test mAP | original ten mAP | added tags mAP | micro F1 | macro F1 | exact match | " \
           "Hamming loss |" in card
    rows = [(m.group(1), m.group(2), float(m.group(3))) for m in ROW.finditer(card)]
    expected = [(n, p, GOOD[p][n][0]) for n in (*MODELS, "ensemble") for p in ("int8", "fp32")]
    assert rows == expected
    line = next(ln for ln in card.splitlines() if ln.startswith("| xception | fp32 |"))
    assert line == "| xception | fp32 | 0.9493 | 0.9393 | 0.8993 | 0.812 | 0.746 | 0.600 | 0.0432 |"


def test_a_results_file_without_the_base_split_prints_a_dash(inputs: dict[str, Path]) -> None:
    data = json.loads(inputs["fp32"].read_text())
    for name in (*MODELS, "ensemble"):
        del data[name]["mAP_base"], data[name]["mAP_added"]
    inputs["fp32"].write_text(json.dumps(data))
    line = next(ln for ln in render_card(inputs).splitlines() if ln.startswith("| vgg16 | fp32 |"))
    assert line.startswith("| vgg16 | fp32 | 0.9351 | - | - |")


def test_targets_met(inputs: dict[str, Path]) -> None:
    assert set(targets(render_card(inputs)).values()) == {"met"}
    assert "(INT8 - FP32: vgg16 -0.0050, inceptionv3 -0.0010, xception +0.0010, ensemble -0.0050)" in \
        render_card(inputs)


def test_targets_not_met_just_below_each_threshold(inputs: dict[str, Path]) -> None:
    bad = {p: dict(f) for p, f in GOOD.items()}
    bad["int8"]["ensemble"] = (0.9604, 0.9449, 0.8499)
    bad["int8"]["inceptionv3"] = (0.9402, 0.9149, 0.8902)
    bad["fp32"]["xception"] = (0.9604, 0.9393, 0.8993)  # INT8 0.9503 is 1.01 points under
    write_results(inputs, bad)
    verdicts = targets(render_card(inputs))
    assert verdicts == {"ensemble original-ten mAP >= 0.945": "not met",
                        "each model's original-ten mAP >= 0.915": "not met",
                        "ensemble added-tags mAP >= 0.85": "not met",
                        "INT8 test mAP within 1 point of FP32": "not met"}


def test_a_gap_of_exactly_one_point_is_within(inputs: dict[str, Path]) -> None:
    fig = {p: dict(f) for p, f in GOOD.items()}
    fig["fp32"]["vgg16"] = (0.9401, 0.9251, 0.8851)
    write_results(inputs, fig)
    assert targets(render_card(inputs))["INT8 test mAP within 1 point of FP32"] == "met"


def test_per_tag_table_lists_original_tags_first_and_marks_only_added(inputs: dict[str, Path]) -> None:
    card = render_card(inputs)
    block = card.split("### Average precision per tag (test)", 1)[1].split("\n## ", 1)[0]
    header, _, *rows = [ln for ln in block.splitlines() if ln.startswith("|")]
    assert header == ("| tag | support | known | vgg16 int8 | vgg16 fp32 | inceptionv3 int8 | inceptionv3 fp32 | "
                      "xception int8 | xception fp32 | ensemble int8 | ensemble fp32 |")
    assert [r.split(" | ")[0][2:] for r in rows] == ["nature", "sea", "animal (added)", "person (added)"]
    nature = rows[0].split(" | ")
    assert nature[1:3] == ["11", "89"] and nature[3] == "0.600" and nature[-1] == "0.630 |"  # seeds 0 and 3
    assert rows[3].split(" | ")[3:] == ["-"] * 7 + ["- |"]  # person has no AP


def test_vocabulary_partial_labels_training_and_thresholds(inputs: dict[str, Path]) -> None:
    card = render_card(inputs)
    vocab = section(card, "Vocabulary")
    assert "at least 150 photos of the train split" in vocab and "3 words" in vocab and "--deny" in vocab
    assert "selfie" in vocab and "Jaccard >= 0.95" in vocab
    assert "| people | 3957 | synonym | person (0.986) |" in vocab
    assert "| female | 2030 | names or implies a person's gender | - |" in vocab
    assert "2 more keywords have fewer than 150 training photos (largest: river 79)" in vocab
    assert "| animal | intel-scenes |" in vocab and "| person | intel-scenes |" in vocab
    training = section(card, "Training")
    assert "train 900, val 100, test 100" in training
    assert "| vgg16 | gap-mlp/weighted/aug0 **(chosen)** | 0.9200 | 7 | 12 |" in training
    assert "| vgg16 | block5 | 0.9200 | 0.9345 | 3 (2) | 270, 265, 266 | fine-tuned |" in training
    assert "| inceptionv3 | block5 | 0.9200 | 0.9345 | 3 (2) | 270, 265, 266 | frozen |" in training
    assert "| xception | - | - | - | - | - | not tuned |" in training
    assert "learning rate 0.0001, at most 3 epochs with patience 1, batch 64" in training
    assert "0.9290 vs 0.9300" in training and "not kept" in training
    assert "| sea | 0.500 | 0.500 | 0.500 | 0.500 |" in section(card, "Thresholds")
    titles = [ln for ln in card.splitlines() if ln.startswith("## ")]
    assert titles == ["## Vocabulary", "## Training", "## Thresholds", "## Results on the test split (100 photos)",
                      "## Plots", "## Export and quantization", "## Known limits", "## Reproduce"]
    assert card.startswith("# Model card: the shipped hashtag bundle\n\n3 image taggers (vgg16, inceptionv3, "
                           "xception) and their ensemble, suggesting 4 hashtags: `animal nature sea person`.")


def test_export_report_demoted_limits_verbatim_and_reproduce(inputs: dict[str, Path]) -> None:
    card = render_card(inputs)
    export = section(card, "Export and quantization")
    assert "Export report" not in export
    assert "\n### Models\n" in export and "\n#### vgg16 search\n" in export and "\n# not a heading\n" in export
    assert LIMITS.strip() in section(card, "Known limits")
    reproduce = section(card, "Reproduce")
    assert f"--out {inputs['run'].as_posix()} --models inceptionv3,xception,vgg16" in reproduce
    assert f"python -m hashtag.export.card --run {inputs['run'].as_posix()} --bundle {inputs['bundle'].as_posix()}" \
        in reproduce
    for plot in ("ap_by_tag", "pr_ensemble", "pr_vgg16", "pr_xception", "history"):
        assert f"](plots/{plot}.png)" in card


def cli_args(paths: dict[str, Path]) -> list[str]:
    flags = {"run": "--run", "bundle": "--bundle", "int8": "--int8", "fp32": "--fp32", "report": "--export-report",
             "limits": "--limits", "out": "--out"}
    return [arg for key, flag in flags.items() for arg in (flag, str(paths[key]))]


def test_cli_writes_the_card_and_copies_the_plots(inputs: dict[str, Path]) -> None:
    result = CliRunner().invoke(main, cli_args(inputs))
    assert result.exit_code == 0, result.output
    assert inputs["out"].read_text() == render_card(inputs)
    assert sorted(p.name for p in (inputs["out"].parent / "plots").iterdir()) == \
        ["ap_by_tag.png", "history.png", "pr_ensemble.png"]


@pytest.mark.parametrize("missing", ["int8", "fp32", "limits", "report", "run.json", "xception/model.json",
                                     "ensemble.json", "manifest.json"])
def test_a_missing_input_fails_in_one_line(inputs: dict[str, Path], missing: str) -> None:
    path = inputs.get(missing) or (inputs["bundle"] if missing == "manifest.json" else inputs["run"]) / missing
    path.unlink()
    result = CliRunner().invoke(main, cli_args(inputs))
    assert result.exit_code != 0 and not inputs["out"].exists()
    assert result.output.strip().count("\n") == 0 and str(path) in result.output


def test_results_at_the_wrong_precision_are_refused(inputs: dict[str, Path]) -> None:
    inputs["int8"], inputs["fp32"] = inputs["fp32"], inputs["int8"]
    result = CliRunner().invoke(main, cli_args(inputs))
    assert result.exit_code != 0 and "not int8" in result.output and result.output.strip().count("\n") == 0


def test_reproduce_block_with_the_usual_paths() -> None:
    args = {"run": "runs/v2", "bundle": "models", "int8": "int8.json", "fp32": "fp32.json",
            "report": "runs/bundle-v2/export_report.md", "limits": "LIMITS.md", "out": "models/README.md"}
    lines = reproduce({k: Path(v) for k, v in args.items()})
    assert lines[3:5] == ["pip install -e '.[train,openvino]'",
                          "hashtag data build --tables ../shared/corpus --out data/corpus-v2"]
    assert lines[5].startswith("hashtag train --data data/corpus-v2 --out runs/v2 --models inceptionv3,xception,vgg16")
    assert lines[6:] == [
        "hashtag export --run runs/v2 --data data/corpus-v2 --out runs/bundle-v2 --precisions int8,fp32 --threads 2",
        "python -m hashtag.export.ship runs/bundle-v2 models --precisions int8",
        "python -m hashtag.export.bundle_eval --bundle models --tables ../shared/corpus --precision int8 "
        "--json int8.json",
        "python -m hashtag.export.bundle_eval --bundle runs/bundle-v2 --tables ../shared/corpus --precision fp32 "
        "--json fp32.json",
        "python -m hashtag.export.card --run runs/v2 --bundle models --int8 int8.json --fp32 fp32.json "
        "--export-report runs/bundle-v2/export_report.md --limits LIMITS.md --out models/README.md",
        "```"]
