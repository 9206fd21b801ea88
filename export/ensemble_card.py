"""The model card's lead section: the ensemble on real photos, how it is combined and thresholded, and
issue 22's targets, from the manifest's tuning record and bundle_eval's results through the runtime.

    python -m hashtag.export.ensemble_card --bundle models --report runs/eval/report.json \\
        --test runs/eval/test.json --card models/README.md

``--report``: ``bundle_eval --split report`` on the everyday photos (the half nothing was tuned on);
``--test``: ``bundle_eval`` on the corpus test split, both with every model of the bundle. The section sits
between two markers right after the card's introduction and is replaced on every run; the card's thresholds
section is rewritten from the manifest too, the rest is left as ``hashtag.export.card`` wrote it.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Mapping

import click

from hashtag.export.card import ENSEMBLE, fmt, read_input, table, thresholds_section
from hashtag.export.errors import ExportError
from hashtag.export.sections import Section
from hashtag.export.tune_ensemble import VAL_NAME
from hashtag.runtime.errors import HashtagError
from hashtag.runtime.manifest import Bundle, load_bundle

SECTION = Section("<!-- real photos: written by hashtag.export.ensemble_card -->", "<!-- /real photos -->",
                  before="\n## Vocabulary")
# issue 22's targets (the test-split ones: "no lower than" on the corpus after retuning for real photos)
TEN_TARGET, MEMBER_MARGIN, HASHTAG_PRECISION_TARGET, HASHTAG_RECALL_TARGET = 0.76, 0.01, 0.70, 0.80
TEST_TEN_FLOOR, TEST_ADDED_FLOOR, HUMAN_ON_SCENES_TARGET = 0.94, 0.90, 0.04
STACK_WEIGHTS_SHOWN = 4


def _row(name: str, r: Mapping[str, Any], precision: str) -> list[str]:
    return [name, precision, fmt(r.get("mAP_base")), fmt(r["mAP"]), fmt(r["micro_precision"]), fmt(r["micro_recall"]),
            str(r["n_images"])]


def verdicts(bundle: Bundle, report: Mapping[str, Any], test: Mapping[str, Any],
             tuning: Mapping[str, Any]) -> list[str]:
    """Each of issue 22's targets, met or not, with the figures it was judged on."""
    ens, members = report[ENSEMBLE], {n: report[n] for n in bundle.ensemble_names}
    best_ten = max(members, key=lambda n: members[n]["mAP_base"])
    best_all = max(members, key=lambda n: members[n]["mAP"])
    human = tuning["people_on_scene_test_photos"]
    checks = [
        (f"ensemble, original ten tags >= {TEN_TARGET}", ens["mAP_base"] >= TEN_TARGET, fmt(ens["mAP_base"])),
        (f"ensemble >= best member + {MEMBER_MARGIN} (ten tags)",
         ens["mAP_base"] >= members[best_ten]["mAP_base"] + MEMBER_MARGIN,
         f"{fmt(ens['mAP_base'])} vs {best_ten} {fmt(members[best_ten]['mAP_base'])}"),
        (f"ensemble >= best member + {MEMBER_MARGIN} (all tags)", ens["mAP"] >= members[best_all]["mAP"] + MEMBER_MARGIN,
         f"{fmt(ens['mAP'])} vs {best_all} {fmt(members[best_all]['mAP'])}"),
        (f"default hashtags: precision >= {HASHTAG_PRECISION_TARGET:.2f} with recall >= {HASHTAG_RECALL_TARGET:.2f}",
         ens["micro_precision"] >= HASHTAG_PRECISION_TARGET and ens["micro_recall"] >= HASHTAG_RECALL_TARGET,
         f"{fmt(ens['micro_precision'])} / {fmt(ens['micro_recall'])}"),
        (f"test split, ensemble original ten >= {TEST_TEN_FLOOR}", test[ENSEMBLE]["mAP_base"] >= TEST_TEN_FLOOR,
         fmt(test[ENSEMBLE]["mAP_base"], 4)),
        (f"test split, ensemble added tags >= {TEST_ADDED_FLOOR}", test[ENSEMBLE]["mAP_added"] >= TEST_ADDED_FLOOR,
         fmt(test[ENSEMBLE]["mAP_added"], 4)),
        (f"`#human` on at most {HUMAN_ON_SCENES_TARGET:.0%} of the scene test photos",
         human["after"]["human"] <= HUMAN_ON_SCENES_TARGET,
         f"{human['after']['human']:.1%} of {human['after']['photos']} (before retuning {human['before']['human']:.1%})"),
    ]
    return [f"- {what}: {'**met**' if ok else '**not met**'} ({figures})" for what, ok, figures in checks]


def combination_lines(bundle: Bundle, tuning: Mapping[str, Any]) -> list[str]:
    """How the members are combined and what chose it."""
    c, comb = tuning["combination"], bundle.combination
    how = ("the mean of the members' probabilities" if comb.method == "mean" else
           "a weighted mean of the members' logits: " + ", ".join(f"{n} {w:.2f}" for n, w in comb.weights.items()))
    lines = [f"**Combination**: {how}, chosen on the {c['chosen_on']} among {c['candidates']} candidates by "
             f"{c['rule']}: ten/all-tag mAP {fmt(c['mAP_ten_all'][0])}/{fmt(c['mAP_ten_all'][1])} there, against "
             f"{fmt(c['mean_mAP_ten_all'][0])}/{fmt(c['mean_mAP_ten_all'][1])} for the plain mean and "
             + ", ".join(f"{n} {fmt(v[0])}/{fmt(v[1])}" for n, v in c["members_mAP_ten_all"].items()) + ".", ""]
    if comb.stack:
        s = tuning["stack"]
        w = s["weak_negatives"]
        lines += [f"**Stack** for {', '.join(f'`{t}`' for t in comb.stack)}: a logistic layer over every tag's "
                  f"combined logit, fitted on the {s['fitted_on']}. The weak negatives: {w['train_photos']} train "
                  f"and {w['val_photos']} val photos labelled {', '.join(w['scenes'])} (and not "
                  f"{', '.join(w['unless'])}), taken as showing no person, which the members never saw. "
                  "Largest weights:", ""]
        for tag, layer in comb.stack.items():
            top = sorted(layer.weights.items(), key=lambda kv: -abs(kv[1]))[:STACK_WEIGHTS_SHOWN]
            lines.append(f"- `{tag}`: bias {layer.bias:+.2f}, " + ", ".join(f"{t} {v:+.2f}" for t, v in top))
        lines.append("")
    t = tuning["thresholds"]
    on_val = [tag for tag, where in t["decided_on"].items() if where == VAL_NAME]
    lines += [f"**Thresholds**: {t['rule']}; on the tune half: {t['tune_probabilities']}; tags with fewer than "
              f"{t['min_tune_positives']} positives on the tune half use corpus val ({', '.join(on_val) or 'none'}). "
              "Below the target: "
              f"{', '.join(t['below_target']) or 'none'}.", ""]
    return lines


def per_tag_rows(bundle: Bundle, report: Mapping[str, Any]) -> list[list[str]]:
    """AP per tag on the report half with its support, for the members and the ensemble."""
    names = [*bundle.ensemble_names, ENSEMBLE]
    ens = report[ENSEMBLE]["per_tag"]
    return [[t, str(ens[t]["support"]), *(fmt(report[n]["per_tag"][t]["ap"]) for n in names)]
            for t in bundle.tags if ens[t]["support"]]


def real_photos_section(bundle: Bundle, report: Mapping[str, Any], test: Mapping[str, Any]) -> str:
    """The marked section, from the manifest's ``ensemble.tuning`` and the two bundle_eval results."""
    tuning = bundle.raw["ensemble"].get("tuning")
    if not tuning:
        raise ExportError("the manifest has no ensemble.tuning record; run hashtag.export.tune_ensemble first")
    names = [n for n in (*bundle.ensemble_names, ENSEMBLE, *(m.name for m in bundle.models if m.role == "fast"))
             if n in report]
    precision = report.get("precision", {})
    ensemble_precision = "/".join(sorted({precision.get(n, "?") for n in bundle.ensemble_names}))
    rows = [_row(n, report[n], ensemble_precision if n == ENSEMBLE else precision.get(n, "?")) for n in names]
    test_rows = [[n, fmt(test[n].get("mAP_base"), 4), fmt(test[n].get("mAP_added"), 4), fmt(test[n]["mAP"], 4),
                  fmt(test[n]["micro_precision"]), fmt(test[n]["micro_recall"])] for n in names if n in test]
    people = bundle.raw["ensemble"]["tuning"]["people_on_scene_test_photos"]
    lines = [
        SECTION.begin,
        f"## On real photos (everyday photos, report half: {report[ENSEMBLE]['n_images']} photos)", "",
        "The everyday photos (real aspect ratio, 320 px long side) are split once by photo id into a *tune* half, "
        "on which every decision below was made, and a *report* half, which nothing was trained or tuned on. "
        "Scored with `python -m hashtag.export.bundle_eval --split report` through the runtime, with the "
        "manifest's combination and thresholds; hashtag precision and recall are micro-averaged over the tags "
        "these photos label.", "",
        *table(("model", "precision", "original ten mAP", "all tags mAP", "hashtag precision", "hashtag recall",
                "photos"), rows), "",
        "Targets (issue 22):", "", *verdicts(bundle, report, test, tuning), "",
        *combination_lines(bundle, tuning),
        f"`#human` / `#person` on the {people['after']['photos']} corpus test photos labelled "
        f"{', '.join(tuning['stack']['weak_negatives']['scenes'])}: {people['before']['human']:.1%} / "
        f"{people['before']['person']:.1%} before retuning, {people['after']['human']:.1%} / "
        f"{people['after']['person']:.1%} after.", "",
        f"Corpus test split ({test[ENSEMBLE]['n_images']} photos) with the same rules (the card's \"Results on the "
        "test split\" further down predates the retuning: the plain mean at validation thresholds, scored where "
        "the bundle was exported; INT8 rounds a little differently across CPUs):", "",
        *table(("model", "original ten mAP", "added tags mAP", "all tags mAP", "hashtag precision", "hashtag recall"),
               test_rows), "",
        "### Average precision per tag (report half)", "",
        *table(("tag", "positives", *bundle.ensemble_names, ENSEMBLE), per_tag_rows(bundle, report)), "",
        "Reproduce (after `hashtag data build`; the members' probabilities are cached):", "", "```bash",
        "python -m hashtag.export.tune_ensemble --bundle models --everyday ../shared/everyday-photos "
        "--data data/corpus-v2 --fast-run runs/fast --json runs/eval/tune_ensemble.json",
        "python -m hashtag.export.bundle_eval --bundle models --tables ../shared/everyday-photos --split report "
        "--json runs/eval/report.json",
        "python -m hashtag.export.bundle_eval --bundle models --tables ../shared/corpus --json runs/eval/test.json",
        "python -m hashtag.export.ensemble_card --bundle models --report runs/eval/report.json "
        "--test runs/eval/test.json --card models/README.md", "```",
        SECTION.end,
    ]
    return "\n".join(lines)


def replace_thresholds(text: str, bundle: Bundle) -> str:
    """The card with its '## Thresholds' section rewritten from the manifest."""
    new = "\n".join(thresholds_section(bundle)).rstrip("\n") + "\n\n"
    replaced, n = re.subn(r"## Thresholds\n.*?(?=\n## )", lambda _: new.rstrip("\n") + "\n", text, count=1,
                          flags=re.S)
    if not n:
        raise ExportError("the card has no '## Thresholds' section to rewrite")
    return replaced


@click.command()
@click.option("--bundle", "bundle_dir", type=click.Path(path_type=Path, file_okay=False), required=True)
@click.option("--report", type=click.Path(path_type=Path, dir_okay=False), required=True,
              help="bundle_eval --split report --json on the everyday photos, every model.")
@click.option("--test", type=click.Path(path_type=Path, dir_okay=False), required=True,
              help="bundle_eval --json on the corpus test split, every model.")
@click.option("--card", type=click.Path(path_type=Path, dir_okay=False), required=True)
def main(bundle_dir: Path, report: Path, test: Path, card: Path) -> None:
    """Write the card's real-photo section and thresholds from the manifest and bundle_eval's results."""
    try:
        bundle = load_bundle(bundle_dir)
        if not card.is_file():
            raise ExportError(f"{card} does not exist; write the card with hashtag.export.card first")
        section = real_photos_section(bundle, read_input(report), read_input(test))
        SECTION.write(card, section, transform=lambda text: replace_thresholds(text, bundle))
    except (HashtagError, KeyError) as exc:
        raise click.ClickException(f"cannot write the real-photo section: {exc}") from None
    click.echo(f"{card}: real-photo section and thresholds written")


if __name__ == "__main__":
    main()
