"""A results folder's summary.json and README.md, from the files both sides and the comparisons wrote.

Layout (written by ``tests/portability/arm64.sh``): ``x86_64/`` the reference side, one ``aarch64-<cpu>/``
per emulated CPU (each with predict.jsonl, env.json, rss.json), ``compare-<cpu>.json`` and
``compare-fast-<cpu>.json`` beside them, and ``photos.tsv``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from portability import DEFAULT_TOLERANCE
from portability.compare import ENSEMBLE, compare, format_tags, read_predictions

REFERENCE_DIR = "x86_64"
CANDIDATE_PREFIX = "aarch64-"


def build_summary(results: Path, **meta: Any) -> dict[str, Any]:
    """summary.json of a results folder: the reference, one run per aarch64-<cpu>/ folder, the verdict."""
    results = Path(results)
    runs = []
    for d in sorted(results.glob(CANDIDATE_PREFIX + "*")):
        label = d.name[len(CANDIDATE_PREFIX):]
        cmp_path = results / f"compare-{label}.json"
        cmp = json.loads(cmp_path.read_text()) if cmp_path.is_file() else None
        fast_path = results / f"compare-fast-{label}.json"
        fast = json.loads(fast_path.read_text()) if fast_path.is_file() else None
        runs.append({"label": label, "dir": d.name, "compare": cmp_path.name,
                     "fast_compare": fast_path.name if fast else None,
                     "fast_ok": None if fast is None else bool(fast["ok"]),
                     "fast_max_abs_diff": fast["max_abs_diff"] if fast else None,
                     "ok": bool(cmp and cmp["ok"]) and (fast is None or bool(fast["ok"])),
                     "hashtags_identical": bool(cmp and cmp["hashtags_identical"]),
                     "within_tolerance": bool(cmp and cmp["within_tolerance"]),
                     "max_abs_diff": cmp["max_abs_diff"] if cmp else None})
    reference = read_predictions(results / REFERENCE_DIR / "predict.jsonl")
    models = sorted({m for rec in reference.values() for m in (rec.get("models") or {})})
    # the aarch64 runs against each other: do the emulated CPUs' kernels agree among themselves?
    between = []
    done = [r for r in runs if (results / r["dir"] / "predict.jsonl").is_file()]
    for i, a in enumerate(done):
        for b in done[i + 1:]:
            cmp = compare(read_predictions(results / a["dir"] / "predict.jsonl"),
                          read_predictions(results / b["dir"] / "predict.jsonl"))
            between.append({"a": a["label"], "b": b["label"], "hashtags_identical": cmp["hashtags_identical"],
                            "max_abs_diff": cmp["max_abs_diff"], "max_abs_diff_by_model": cmp["max_abs_diff_by_model"]})
    photos = (results / "photos.tsv").read_text().splitlines()[1:] if (results / "photos.tsv").is_file() else []
    sources: dict[str, int] = {}
    for row in photos:
        origin = row.split("\t")[1]
        sources[origin] = sources.get(origin, 0) + 1
    return {**meta, "reference": REFERENCE_DIR, "runs": runs, "between_runs": between, "models": [ENSEMBLE] + models,
            "n_photos": len(photos), "photo_sources": ", ".join(f"{n} {o}" for o, n in sources.items()),
            "ok": bool(runs) and all(r["ok"] for r in runs)}


def render_report(results: Path, summary: Mapping[str, Any]) -> str:
    """README.md of a results folder written by run.sh (the JSON files beside it are the record)."""
    results = Path(results)

    def load(*parts: str) -> dict[str, Any]:
        return json.loads(results.joinpath(*parts).read_text())

    runs = [(r, load(r["compare"]) if (results / r["compare"]).is_file() else None, load(r["dir"], "env.json"),
             load(r["dir"], "rss.json")) for r in summary["runs"]]
    ref_env, ref_rss = load(summary["reference"], "env.json"), load(summary["reference"], "rss.json")
    tol = summary.get("tolerance", DEFAULT_TOLERANCE)
    lines = [f"# aarch64 (emulated) vs x86-64: the shipped bundle, {summary.get('date', '')}", "",
             "Made by `tests/portability/arm64.sh`: the same commit installed with `pip install <repo>` (base install, "
             "PyPI wheels) on the x86-64 host and in a Debian bookworm arm64 root run under qemu-user, "
             "`hashtag predict --json` (default bundle, INT8 on CPU) on the same photos on both sides, compared by "
             "the portability check (`tests/portability/`). Emulation says nothing about speed: no time is reported. "
             "The photos are not committed; `photos.tsv` lists their names and SHA-256.", "",
             f"Commit: `{summary.get('commit', '?')}`. Photos: {summary.get('n_photos', '?')} "
             f"({summary.get('photo_sources', '')}). Verdict: **{'same hashtags' if summary['ok'] else 'DIFFERENT'}**"
             f" on every run.", "",
             "## Hashtags and probabilities", "",
             f"| emulated CPU | CPU features the process sees | same hashtags, ensemble and each model | "
             f"order swaps | largest probability difference (target <= {tol}) | where |",
             "|---|---|---|---|---|---|"]
    for run, cmp, env, _ in runs:
        if cmp is None:
            lines.append(f"| {run['label']} | | **run failed** | | | |")
            continue
        at = cmp.get("max_abs_diff_at") or {}
        feats = ", ".join(env["cpu"]["features"])
        same = (f"yes, {cmp['compared']}/{cmp['images']} photos" if cmp["hashtags_identical"]
                else f"**no**: {len(cmp['hashtag_mismatches'])} differ")
        within = "within" if cmp["within_tolerance"] else "**over**"
        lines.append(f"| {run['label']} | {feats} | {same} | {len(cmp.get('order_differences', []))} "
                     f"| {cmp['max_abs_diff']:.3f} ({within}) | {at.get('model', '')} `{at.get('tag', '')}` on "
                     f"{at.get('image', '')}: {at.get('reference', 0):.4f} vs {at.get('candidate', 0):.4f} |")
    fast_runs = [(run, load(run["fast_compare"])) for run, _, _, _ in runs if run.get("fast_compare")]
    if fast_runs:
        lines += ["", "The fast model alone in FP32 (`hashtag predict --fast --precision fp32 --json`), against the same "
                      "command on x86-64:", "",
                  "| emulated CPU | same hashtags | largest probability difference | where |", "|---|---|---|---|"]
        for run, cmp in fast_runs:
            at = cmp.get("max_abs_diff_at") or {}
            same = (f"yes, {cmp['compared']}/{cmp['images']} photos" if cmp["hashtags_identical"]
                    else f"**no**: {len(cmp['hashtag_mismatches'])} differ")
            lines.append(f"| {run['label']} | {same} | {cmp['max_abs_diff']:.3f} | {at.get('model', '')} "
                         f"`{at.get('tag', '')}` on {at.get('image', '')} |")
    lines += ["", f"x86-64 reference CPU features: {', '.join(ref_env['cpu']['features']) or 'none reported'}.", "",
              "Per model: largest probability difference / largest logit difference / tag scores over the target "
              "(of all photos x tags):", "",
              "| emulated CPU | " + " | ".join(summary["models"]) + " |", "|---|" + "---|" * len(summary["models"])]
    for run, cmp, _, _ in runs:
        if cmp is None:
            continue
        cells = []
        for m in summary["models"]:
            cells.append(f"{cmp['max_abs_diff_by_model'].get(m, float('nan')):.3f} / "
                         f"{cmp.get('max_logit_diff_by_model', {}).get(m, float('nan')):.3f} / "
                         f"{cmp.get('scores_over_tolerance_by_model', {}).get(m, 0)} of "
                         f"{cmp.get('scores_compared_by_model', {}).get(m, 0)}")
        lines.append(f"| {run['label']} | " + " | ".join(cells) + " |")
    for pair in summary.get("between_runs", []):
        lines += ["", f"{pair['a']} vs {pair['b']} (aarch64 against aarch64): largest probability difference "
                      f"{pair['max_abs_diff']:.3g}, hashtags identical: {'yes' if pair['hashtags_identical'] else 'no'}."]
    close = next((c["closest_to_threshold"] for _, c, _, _ in runs if c and c.get("closest_to_threshold")), None)
    if close:
        lines += ["", f"Closest a reference score came to its threshold: {close['margin']:.3g} "
                      f"({close['model']} `{close['tag']}` on {close['image']}: {close['reference']:.4f}, threshold "
                      f"{close['threshold']:.4f})."]
    for run, cmp, _, _ in runs:
        for m in (cmp or {}).get("hashtag_mismatches", []):
            lines.append(f"- {run['label']}, different hashtags: {m['image']} {m['model']}: x86-64 "
                         f"{format_tags(m['reference'])}, aarch64 {format_tags(m['candidate'])}")
        for m in (cmp or {}).get("order_differences", []):
            lines.append(f"- {run['label']}, same hashtags in another order: {m['image']} {m['model']}: x86-64 "
                         f"{format_tags(m['reference'])}, aarch64 {format_tags(m['candidate'])}")
    arm_env = runs[0][2] if runs else {}
    bundle = arm_env.get("bundle") or ref_env.get("bundle", {})
    same_files = arm_env.get("bundle") == ref_env.get("bundle")
    total = sum(f["bytes"] for f in bundle.values())
    lines += ["", "## Memory and model size", "",
              "- Bundle as installed in the aarch64 root: " + ", ".join(
                  f"`{n}` {f['bytes'] / 1e6:.1f} MB" for n, f in bundle.items()) + f"; {total / 1e6:.1f} MB in all"
              + (" (same SHA-256 as on x86-64)." if same_files else " (**differs from x86-64**).")]
    for run, _, _, rss in runs:
        lines.append(f"- Peak RSS, aarch64 {run['label']} (emulated): `hashtag predict` on the {summary.get('n_photos')} "
                     f"photos {rss['predict']['peak_rss_mb']:.0f} MB; `python3 -c pass` "
                     f"{rss['baseline']['peak_rss_mb']:.0f} MB.")
    lines.append(f"- Peak RSS, x86-64 host: `hashtag predict` {ref_rss['predict']['peak_rss_mb']:.0f} MB; "
                 f"`python3 -c pass` {ref_rss['baseline']['peak_rss_mb']:.0f} MB.")
    lines += ["", "Under qemu-user the RSS is the emulator process's: the guest program's memory plus qemu's own "
                  "(translated code, its heap); the `python3 -c pass` lines show each side's floor. A real board runs "
                  "the same aarch64 code without qemu: expect about the emulated figure less qemu's share, give or "
                  "take per-thread buffers on boards with more cores.", "", "## Software", ""]
    for label, env in [("x86-64 host", ref_env)] + [(f"aarch64 root ({r['label']})", e) for r, _, e, _ in runs[:1]]:
        sw = env["software"]
        lines.append(f"- {label}: {env['os'] or '?'}, Python {sw['python']}, hashtag {sw['hashtag']}, "
                     f"{sw['onnxruntime_distribution']} {sw['onnxruntime']}, numpy {sw['numpy']}, "
                     f"pillow {sw['pillow']}; providers {', '.join(sw['onnxruntime_providers'])}.")
    if summary.get("qemu"):
        lines.append(f"- Emulator: {summary['qemu']}.")
    lines += ["", "Files: `x86_64/` and `aarch64-*/` hold each side's `predict.jsonl` (scores of every model and the "
                  "ensemble), `models.txt` (`hashtag models`), `env.json`, `rss.json` (and `stderr.txt` on aarch64); "
                  "`compare-*.json` the comparisons, `summary.json` this page's figures.", ""]
    return "\n".join(lines)
