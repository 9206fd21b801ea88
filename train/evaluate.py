"""Evaluation of a run: per-tag thresholds on val, metrics on val and test, the ensemble, plots, report.

By default the probabilities saved by training (``<model>/predictions.npz``, the chosen head on cached
features) are scored. With a dataset folder, each saved full model (``model.keras``) is run from the
photos instead - slower, and an end-to-end check of exactly what export converts.
"""
from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from hashtag.runtime.ensemble import combine
from hashtag.train.backbones import SPECS
from hashtag.train.ensemble_weights import weights_trial
from hashtag.train.errors import TrainError
from hashtag.train.metrics import choose_thresholds, mean_ap, split_metrics
from hashtag.train.pixels import photo_batch
from hashtag.train.plots import plot_ap_bars, plot_history, plot_pr_curves
from hashtag.train.progress import Progress
from hashtag.train.real_photos import real_photos
from hashtag.train.run_folder import EVAL_SPLITS, ModelRecord, Predictions, RunFolder, read_json, used_rows

ENSEMBLE = "ensemble"


def _run_model(model: Any, record: ModelRecord, photos: Sequence[Any], label: str, n_tags: int, batch_size: int,
               progress: bool) -> np.ndarray:
    """A Keras model's probabilities [n, tags] on photos, batch by batch, with the runtime's preprocessing."""
    out = []
    with Progress(len(photos), label, enabled=progress) as bar:
        for i in range(0, len(photos), batch_size):
            chunk = photos[i:i + batch_size]
            out.append(np.asarray(model.predict_on_batch(photo_batch(chunk, record.input_size, record.preprocessing)),
                                  dtype=np.float32))
            bar.update(len(chunk))
    return np.concatenate(out) if out else np.zeros((0, n_tags), np.float32)


def predict_from_photos(run: RunFolder, name: str, data_dir: Path, tags: Sequence[str],
                        eval_limit: int | None = None, batch_size: int = 32, progress: bool = True) -> Predictions:
    """Run the saved full model ``name`` on the dataset's val and test photos with the runtime's preprocessing.

    ``eval_limit`` picks the same photos as training did with that limit (hash of the photo ids).
    """
    import keras

    from hashtag.train.dataset import load_dataset

    record = ModelRecord.read(run.model_json(name))
    dataset = load_dataset(data_dir)
    missing = [t for t in tags if t not in dataset.tags]
    if missing:
        raise TrainError(f"dataset {data_dir} lacks the run's tags {missing}")
    columns = [dataset.tags.index(t) for t in tags]
    model = keras.saving.load_model(run.keras(name), compile=False)
    ids, labels, probs = {}, {}, {}
    for split in EVAL_SPLITS:
        everything = dataset.split(split)
        rows = used_rows(split, [r.photo_id for r in everything], None, eval_limit)
        records = [everything[i] for i in rows]
        ids[split] = np.array([r.photo_id for r in records])
        labels[split] = dataset.targets(split)[rows][:, columns].astype(np.float32)
        probs[split] = _run_model(model, record, records, f"{record.name} on {split} photos", len(tags),
                                  batch_size, progress)
    return Predictions(ids, labels, probs)


def everyday_report(run: RunFolder, names: Sequence[str], everyday: Path, tags: Sequence[str],
                    thresholds: Mapping[str, Mapping[str, float]], batch_size: int = 32, progress: bool = True
                    ) -> dict[str, dict[str, Any]]:
    """Each saved full model and their mean on the everyday photos' *report* half (real photos that nothing
    is tuned on), at the thresholds chosen on val: the figures that say how the run does on what users send."""
    import keras

    photos = real_photos(Path(everyday), tuple(tags), "report")
    if not photos:
        raise TrainError(f"{everyday} has no photos of the report half")
    labels = np.asarray([p.targets for p in photos], dtype=np.float32)
    probs: dict[str, np.ndarray] = {}
    for name in names:
        model = keras.saving.load_model(run.keras(name), compile=False)
        probs[name] = _run_model(model, ModelRecord.read(run.model_json(name)), photos,
                                 f"{name} on everyday report photos", len(tags), batch_size, progress)
    probs[ENSEMBLE] = combine({n: probs[n] for n in names})
    return {n: split_metrics(labels, p, tags, thresholds[n]) for n, p in probs.items()}


def _score(pred: Predictions, tags: Sequence[str]) -> dict[str, Any]:
    thresholds = choose_thresholds(pred.labels["val"], pred.probs["val"], tags)
    return {"thresholds": thresholds,
            "metrics": {s: split_metrics(pred.labels[s], pred.probs[s], tags, thresholds) for s in EVAL_SPLITS}}


def ensemble_of(preds: Mapping[str, Predictions]) -> Predictions:
    """The runtime's ensemble (before any combination is tuned: the mean) of the models' probabilities, split by
    split; rows must match."""
    first = next(iter(preds.values()))
    for name, p in preds.items():
        for s in EVAL_SPLITS:
            if not np.array_equal(p.ids[s], first.ids[s]):
                raise TrainError(f"model {name!r} was scored on other {s} photos than the others")
    return Predictions(first.ids, first.labels,
                       {s: combine({name: p.probs[s] for name, p in preds.items()}) for s in EVAL_SPLITS})


def evaluate_run(run_dir: Path, data_dir: Path | None = None, progress: bool = True,
                 everyday: Path | None = None) -> dict[str, Any]:
    """Score every model and the ensemble; update model.json, write ensemble.json, plots and report.md."""
    folder = RunFolder(run_dir)
    run = read_json(folder.run_json)
    tags = run["tags"]
    preds: dict[str, Predictions] = {}
    for name in run["models"]:
        if data_dir is not None:
            preds[name] = predict_from_photos(folder, name, Path(data_dir), tags, run["config"].get("eval_limit"),
                                              progress=progress)
            preds[name].save(folder.predictions(name))
        else:
            preds[name] = Predictions.load(folder.predictions(name))
    preds[ENSEMBLE] = ensemble_of(preds)
    scores = {name: _score(p, tags) for name, p in preds.items()}
    if everyday is not None:
        real = everyday_report(folder, run["models"], everyday, tags,
                               {n: s["thresholds"] for n, s in scores.items()}, progress=progress)
        for name, metrics in real.items():
            scores[name]["everyday_report"] = metrics
    source = f"full models on photos of {Path(data_dir).resolve()}" if data_dir else "heads on cached features"
    for name in run["models"]:
        record = ModelRecord.read(folder.model_json(name))
        details = {**record.details, "metrics": scores[name]["metrics"], "metrics_source": source,
                   **({"everyday_report": scores[name]["everyday_report"]} if everyday is not None else {})}
        replace(record, thresholds=scores[name]["thresholds"], details=details).write(folder.model_json(name))
    trial = weights_trial(run["models"], preds[ENSEMBLE].labels["val"],
                          {n: preds[n].probs["val"] for n in run["models"]}) if len(run["models"]) > 1 else None
    folder.ensemble_json.write_text(json.dumps(
        {"models": run["models"], "combine": "mean of probabilities", "metrics_source": source,
         "weights_trial": trial, **scores[ENSEMBLE]}, indent=2))
    folder.plots.mkdir(exist_ok=True)
    plot_history({n: read_json(folder.history(n)) for n in run["models"]}, folder.plots / "history.png")
    for name, p in preds.items():
        plot_pr_curves(p.labels["test"], p.probs["test"], tags, f"{name}: precision-recall on test",
                       folder.plots / f"pr_{name}.png")
    plot_ap_bars({n: {t: s["metrics"]["test"]["per_tag"][t]["ap"] for t in tags} for n, s in scores.items()}, tags,
                 "Average precision per tag (test)", folder.plots / "ap_by_tag.png")
    folder.report.write_text(report(run, folder, scores, source, trial))
    return scores


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _partial_note(test: Mapping[str, Any]) -> list[str]:
    """A paragraph on unknown labels, when the test split has any."""
    unknown = test.get("unknown_labels", 0)
    if not unknown:
        return []
    partial = ", ".join(f"{t} ({s['known']} of {test['n_images']} known)" for t, s in test["per_tag"].items()
                        if s["known"] < test["n_images"])
    return [f"Labels are partial: {unknown} test labels are unknown (photos of a source that never uses the "
            f"keyword: {partial}). They are left out of AP, F1, thresholds and accuracies.", ""]


def _weights_note(trial: Mapping[str, Any] | None) -> list[str]:
    """A paragraph on the per-tag ensemble weights tried on validation."""
    if trial is None:
        return []
    verdict = "kept" if trial["kept"] else "not kept: the ensemble stays the plain mean"
    return [f"Per-tag model weights ({trial['method']}): held-out val mAP {_fmt(trial['held_out_mAP_weighted'], 4)} "
            f"vs {_fmt(trial['held_out_mAP_mean'], 4)} for the mean (margin {trial['margin']}); {verdict}.", ""]


def _tuning_rows(cards: Mapping[str, Any]) -> list[str]:
    """Frozen-backbone head vs fine-tuned top blocks, per model, on validation."""
    tuned = {n: c["training"].get("fine_tuning") for n, c in cards.items() if c["training"].get("fine_tuning")}
    if not tuned:
        return []
    lines = ["## Fine-tuning the top blocks (validation)", "",
             "| model | blocks tuned | frozen val mAP | fine-tuned val mAP | epochs (best) | s per epoch | kept |",
             "|---|---|---|---|---|---|---|"]
    for name, t in tuned.items():
        per_epoch = ", ".join(f"{s:.0f}" for s in t["seconds_per_epoch"])
        lines.append(f"| {name} | {t['cut']['top']} | {_fmt(t['frozen_val_mAP'], 4)} | {_fmt(t['val_mAP'], 4)} | "
                     f"{t['epochs_run']} ({t['best_epoch']}) | {per_epoch} | {t['kept']} |")
    return lines + ["", "Both scored on the same cached block inputs; the tuned weights are kept only if "
                        "validation mAP rose.", ""]


def _everyday_rows(scores: Mapping[str, Any], base: Sequence[str]) -> list[str]:
    """The models and the ensemble on the everyday report half, when it was scored."""
    if not all("everyday_report" in s for s in scores.values()):
        return []
    lines = ["## Real photos (everyday photos, report half)", "",
             "| model | original ten mAP | all tags mAP | hashtag precision | hashtag recall | photos |",
             "|---|---|---|---|---|---|"]
    for name, s in scores.items():
        r = s["everyday_report"]
        ten = mean_ap(r["per_tag"][t]["ap"] if r["per_tag"][t]["ap"] is not None else math.nan for t in base)
        lines.append(f"| {name} | {_fmt(ten)} | {_fmt(r['mAP'])} | {_fmt(r['micro_precision'])} | "
                     f"{_fmt(r['micro_recall'])} | {r['n_images']} |")
    return lines + ["", "Thresholds chosen on val; tags the everyday photos never label are left out.", ""]


def report(run: Mapping[str, Any], folder: RunFolder, scores: Mapping[str, Any], source: str,
           trial: Mapping[str, Any] | None = None) -> str:
    """The markdown report: the models, the ensemble and the original's figures side by side."""
    tags = run["tags"]
    cards = {n: ModelRecord.read(folder.model_json(n)).to_dict() for n in run["models"]}
    splits = run["splits"]
    lines = [
        "# Training report", "",
        f"Dataset `{run['dataset']}`: train {splits['train']['used']} of {splits['train']['photos']} photos, "
        f"val {splits['val']['used']}, test {splits['test']['used']}. Tags: {', '.join(tags)}. Seed {run['seed']}. "
        f"Scored: {source}.", "",
        "## Test split", "",
        "| model | input | head / loss / aug | val mAP | test mAP | micro F1 | macro F1 | exact match | Hamming loss "
        "| binary acc @0.5 | do-nothing acc | original's accuracy |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in [*run["models"], ENSEMBLE]:
        val, test = scores[name]["metrics"]["val"], scores[name]["metrics"]["test"]
        if name == ENSEMBLE:
            how, size = "mean of probabilities", "-"
        else:
            how, size = cards[name]["training"]["selected"], str(cards[name]["input_size"])
        original = _fmt(SPECS[name].original_accuracy if name in SPECS else None, 2)
        lines.append(f"| {name} | {size} | {how} | {_fmt(val['mAP'])} | **{_fmt(test['mAP'])}** | "
                     f"{_fmt(test['micro_f1'])} | {_fmt(test['macro_f1'])} | {_fmt(test['exact_match'])} | "
                     f"{_fmt(test['hamming_loss'])} | {_fmt(test['binary_accuracy'])} | "
                     f"{_fmt(test['do_nothing_accuracy'])} | {original} |")
    lines += [
        "",
        "F1, exact match and Hamming loss use per-tag thresholds chosen on the validation split (maximum F1) and "
        "applied to test. *Binary acc @0.5* is what the original's Keras `metrics=['accuracy']` computed with binary "
        "cross-entropy under tf.keras 2.x (element-wise, threshold 0.5); *do-nothing acc* is the same measure for "
        "predicting no tag at all, the floor it must be read against. The original's figures were measured on its "
        "own data and split, at 224x224 for every model.", "",
        *_partial_note(scores[ENSEMBLE]["metrics"]["test"]),
        *_weights_note(trial),
        *_tuning_rows(cards),
        *_everyday_rows(scores, (run.get("vocabulary") or {}).get("base_tags") or tags),
        "## Average precision per tag (test)", "",
        "| tag | support | " + " | ".join([*run["models"], ENSEMBLE]) + " |",
        "|---|---|" + "---|" * (len(run["models"]) + 1),
    ]
    for tag in tags:
        support = scores[ENSEMBLE]["metrics"]["test"]["per_tag"][tag]["support"]
        cells = [_fmt(scores[n]["metrics"]["test"]["per_tag"][tag]["ap"]) for n in [*run["models"], ENSEMBLE]]
        lines.append(f"| {tag} | {support} | " + " | ".join(cells) + " |")
    lines += ["", "## Candidates compared on validation", "",
              "| model | head / loss / aug | val mAP | best epoch | seconds |", "|---|---|---|---|---|"]
    for name, card in cards.items():
        for c in sorted(card["training"]["candidates"], key=lambda c: -c["val_mAP"]):
            mark = " (chosen)" if c["key"] == card["training"]["selected"] else ""
            lines.append(f"| {name} | {c['key']}{mark} | {_fmt(c['val_mAP'], 4)} | {c['best_epoch']} | "
                         f"{c['seconds']} |")
    lines += ["", "## Plots", "", "![training curves](plots/history.png)", "",
              "![AP per tag](plots/ap_by_tag.png)", ""]
    lines += [f"![PR {n}](plots/pr_{n}.png)" for n in [*run["models"], ENSEMBLE]]
    return "\n".join(lines) + "\n"
