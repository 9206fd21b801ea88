"""Same photos, two machines: does the shipped bundle give the same hashtags on aarch64 as on x86-64?

``benchmarks/arm64/run.sh`` runs ``hashtag predict --json`` on the x86-64 host and, under qemu-user
emulation, in an aarch64 Debian root, then uses this module to compare the two JSON Lines outputs and to
write the results folder. Standard library only (plus ``hashtag.train.splits`` for the corpus split rule),
so it runs in the base install on either machine:

    python -m hashtag.benchmarks.arm_compare select-photos CORPUS DEST [--n 20] [--extra FILE ...]
    python -m hashtag.benchmarks.arm_compare env OUT.json            # this machine: versions, ISA, bundle files
    python -m hashtag.benchmarks.arm_compare peak-rss OUT.json -- CMD ...   # runs CMD, records its peak RSS
    python -m hashtag.benchmarks.arm_compare compare REF.jsonl CAND.jsonl --out OUT.json [--tolerance 0.02]
    python -m hashtag.benchmarks.arm_compare report RESULTS_DIR       # RESULTS_DIR/README.md from the JSON files

Nothing here measures or reports time: under emulation it says nothing about the speed of a real board.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from hashtag.runtime.contract import Prediction
from hashtag.runtime.cpu import arm_hwcaps
from hashtag.runtime.cpu import cpu_features as runtime_cpu_features

DEFAULT_TOLERANCE = 0.02
ENSEMBLE = "ensemble"  # the key used for the ensemble's scores next to the model names



class CompareError(ValueError):
    """An output that cannot be compared (unreadable line, duplicate image name)."""


# --------------------------------------------------------------------------------------------- reading


def read_predictions(path: Path) -> dict[str, dict[str, Any]]:
    """`hashtag predict --json` output keyed by the image's file name (the folders differ between machines)."""
    records: dict[str, dict[str, Any]] = {}
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise CompareError(f"{path}:{number}: not JSON ({exc.msg})") from None
        if not isinstance(rec, dict) or "image" not in rec:
            raise CompareError(f"{path}:{number}: not a prediction record")
        name = Path(str(rec["image"])).name
        if name in records:
            raise CompareError(f"{path}:{number}: image name {name!r} appears twice")
        records[name] = rec
    return records


def score_tables(rec: Mapping[str, Any]) -> dict[str, tuple[list[str], dict[str, float]]]:
    """{'ensemble' | model name: (hashtags, {tag: probability})} of one prediction record (the contract's)."""
    try:
        prediction = Prediction.from_json(rec)
    except ValueError as exc:
        raise CompareError(f"{rec.get('image')}: {exc}") from None
    tables = {ENSEMBLE: (prediction.hashtags, prediction.scores)}
    tables.update({name: (model.hashtags, model.scores) for name, model in prediction.models.items()})
    return tables


# ------------------------------------------------------------------------------------------- comparing


def _logit(p: float) -> float:
    p = min(max(p, 1e-7), 1 - 1e-7)
    return math.log(p / (1 - p))


def compare(reference: Mapping[str, Mapping[str, Any]], candidate: Mapping[str, Mapping[str, Any]],
            tolerance: float = DEFAULT_TOLERANCE,
            thresholds: Mapping[str, Mapping[str, float]] | None = None) -> dict[str, Any]:
    """Compare two runs on the same photos: hashtags (ensemble and every model) and per-tag probabilities.

    ``ok`` (the verdict): the same images on both sides, no read errors, every tag scored on both, and the
    same hashtags for every image and every model. Hashtags are compared as sets: the order only ranks
    the chosen tags by score, and two nearly tied tags (person and human are) may swap; such swaps are
    listed in ``order_differences``. ``within_tolerance`` says whether every probability is within
    ``tolerance``: reported beside the verdict, not part of it. ``thresholds`` ({'ensemble' | model:
    {tag: t}}, from the manifest) adds how close the reference came to a threshold.
    """
    names = sorted(set(reference) | set(candidate))
    missing = sorted(set(reference) - set(candidate))
    extra = sorted(set(candidate) - set(reference))
    errors = {side: sorted(n for n, r in recs.items() if r.get("error"))
              for side, recs in (("reference", reference), ("candidate", candidate))}
    mismatches: list[dict[str, Any]] = []
    order: list[dict[str, Any]] = []
    missing_scores: list[dict[str, Any]] = []
    worst: dict[str, Any] | None = None
    by_model_max: dict[str, float] = {}
    by_model_logit: dict[str, float] = {}
    by_model_sum: dict[str, float] = {}
    by_model_n: dict[str, int] = {}
    over: dict[str, int] = {}
    margin: dict[str, Any] | None = None
    compared = 0
    for name in names:
        if name in missing or name in extra or name in errors["reference"] or name in errors["candidate"]:
            continue
        compared += 1
        ref_tables, cand_tables = score_tables(reference[name]), score_tables(candidate[name])
        for model in sorted(set(ref_tables) | set(cand_tables), key=lambda m: (m != ENSEMBLE, m)):
            if model not in ref_tables or model not in cand_tables:
                missing_scores.append({"image": name, "model": model, "tag": None})
                continue
            (ref_tags, ref_scores), (cand_tags, cand_scores) = ref_tables[model], cand_tables[model]
            if set(ref_tags) != set(cand_tags) or len(ref_tags) != len(cand_tags):
                mismatches.append({"image": name, "model": model, "reference": ref_tags, "candidate": cand_tags})
            elif ref_tags != cand_tags:
                order.append({"image": name, "model": model, "reference": ref_tags, "candidate": cand_tags})
            for tag in sorted(set(ref_scores) | set(cand_scores)):
                if tag not in ref_scores or tag not in cand_scores:
                    missing_scores.append({"image": name, "model": model, "tag": tag})
                    continue
                a, b = float(ref_scores[tag]), float(cand_scores[tag])
                diff = abs(a - b)
                by_model_max[model] = max(by_model_max.get(model, 0.0), diff)
                by_model_logit[model] = max(by_model_logit.get(model, 0.0), abs(_logit(a) - _logit(b)))
                by_model_sum[model] = by_model_sum.get(model, 0.0) + diff
                by_model_n[model] = by_model_n.get(model, 0) + 1
                over[model] = over.get(model, 0) + (diff > tolerance)
                if worst is None or diff > worst["abs_diff"]:
                    worst = {"image": name, "model": model, "tag": tag, "reference": a, "candidate": b,
                             "abs_diff": diff}
                limit = (thresholds or {}).get(model, {}).get(tag)
                if limit is not None and (margin is None or abs(a - limit) < margin["margin"]):
                    margin = {"image": name, "model": model, "tag": tag, "reference": a, "threshold": float(limit),
                              "margin": abs(a - float(limit))}
    max_diff = worst["abs_diff"] if worst else 0.0
    complete = not missing and not extra and not any(errors.values()) and not missing_scores and compared > 0
    hashtags_identical = complete and not mismatches
    return {
        "tolerance": tolerance,
        "images": len(names),
        "compared": compared,
        "missing_on_candidate": missing,
        "extra_on_candidate": extra,
        "errors": errors,
        "hashtag_mismatches": mismatches,
        "order_differences": order,
        "missing_scores": missing_scores,
        "max_abs_diff": max_diff,
        "max_abs_diff_at": worst,
        "max_abs_diff_by_model": by_model_max,
        "max_logit_diff_by_model": by_model_logit,
        "mean_abs_diff_by_model": {m: by_model_sum[m] / by_model_n[m] for m in by_model_sum},
        "scores_over_tolerance_by_model": over,
        "scores_compared_by_model": by_model_n,
        "closest_to_threshold": margin,
        "hashtags_identical": hashtags_identical,
        "within_tolerance": complete and max_diff <= tolerance,
        "ok": hashtags_identical,
    }


def manifest_thresholds(manifest: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """{'ensemble' | model name: {tag: threshold}} from a bundle manifest."""
    out = {ENSEMBLE: dict(manifest.get("ensemble", {}).get("thresholds", {}))}
    for spec in manifest.get("models", []):
        out[spec["name"]] = dict(spec.get("thresholds", {}))
    return out


# ------------------------------------------------------------------------------------------ the photos


def corpus_test_photos(corpus: Path, n: int) -> list[Path]:
    """n photos of the corpus' test split, the same on every machine: test ids in the order of their hash."""
    from hashtag.train.splits import split_of, unit_interval  # stdlib-only module, no TensorFlow

    ids = [p.stem for p in (Path(corpus) / "images").glob("*.jpg") if split_of(p.stem) == "test"]
    ids.sort(key=lambda i: (unit_interval(i), i))
    return [Path(corpus) / "images" / f"{i}.jpg" for i in ids[:n]]


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def select_photos(dest: Path, corpus: Path | None, n: int, extra: Sequence[Path] = ()) -> list[dict[str, Any]]:
    """Copy the extra photos and n corpus test photos into dest (flat); return one row per photo."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    rows = []
    sources = [(Path(p), "extra") for p in extra]
    if corpus is not None and (Path(corpus) / "images").is_dir() and n > 0:
        sources += [(p, "corpus test split") for p in corpus_test_photos(Path(corpus), n)]
    for src, origin in sources:
        target = dest / src.name
        if target.exists():
            raise CompareError(f"two photos named {src.name}")
        shutil.copyfile(src, target)
        rows.append({"name": src.name, "source": origin, "bytes": target.stat().st_size, "sha256": sha256_file(target)})
    return rows


# ------------------------------------------------------------------------------------- this machine


def cpu_features() -> dict[str, Any]:
    """What the process sees of the CPU (hashtag.runtime.cpu): on aarch64 the auxiliary vector (what qemu says
    it emulates), on x86 the /proc/cpuinfo flags that decide INT8 speed."""
    info: dict[str, Any] = {"machine": platform.machine()}
    if platform.machine() in ("aarch64", "arm64") and sys.platform.startswith("linux"):
        info["hwcap"], info["hwcap2"] = arm_hwcaps()
    else:
        info["int8_flags"] = sorted(runtime_cpu_features().flags)
    if os.environ.get("QEMU_CPU"):
        info["qemu_cpu"] = os.environ["QEMU_CPU"]
    return info


def machine_env() -> dict[str, Any]:
    """Versions, CPU features and the installed bundle's files (sizes and hashes)."""
    from importlib.metadata import PackageNotFoundError, version

    env: dict[str, Any] = {"python": platform.python_version(), "cpu": cpu_features(), "packages": {}}
    try:
        env["os"] = dict(platform.freedesktop_os_release())
    except (OSError, AttributeError):
        env["os"] = {}
    env["os"] = {k: env["os"][k] for k in ("PRETTY_NAME",) if k in env["os"]}
    for pkg in ("hashtag", "onnxruntime", "numpy", "pillow", "click"):
        try:
            env["packages"][pkg] = version(pkg)
        except PackageNotFoundError:
            env["packages"][pkg] = None
    try:
        import onnxruntime

        env["onnxruntime_providers"] = onnxruntime.get_available_providers()
    except ImportError:
        env["onnxruntime_providers"] = []
    import hashtag.models

    root = Path(hashtag.models.__file__).parent
    env["bundle"] = {p.name: {"bytes": p.stat().st_size, "sha256": sha256_file(p)}
                     for p in sorted(root.glob("*.onnx"))}
    manifest = root / "manifest.json"
    env["bundle_manifest_sha256"] = sha256_file(manifest) if manifest.is_file() else None
    return env


def peak_rss(cmd: Sequence[str], stdout: Path | None = None) -> dict[str, Any]:
    """Run cmd (stdout to a file) and return its exit code and peak resident set size in MiB.

    Under qemu-user the figure is the emulator process's: the guest's memory plus qemu's own.
    """
    with open(stdout, "wb") if stdout else open(os.devnull, "wb") as out:
        child = subprocess.Popen(list(cmd), stdout=out)
        # wait4 gives this child's own figure; RUSAGE_CHILDREN can carry a figure inherited from the caller's past
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
    return {"cmd": list(cmd), "returncode": child.returncode, "peak_rss_mib": round(usage.ru_maxrss / 1024, 1)}  # KiB


# ----------------------------------------------------------------------------------------- the report


def _fmt_tags(tags: Iterable[str]) -> str:
    return " ".join(tags) or "(none)"


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
             "Made by `benchmarks/arm64/run.sh`: the same commit installed with `pip install <repo>` (base install, "
             "PyPI wheels) on the x86-64 host and in a Debian bookworm arm64 root run under qemu-user, "
             "`hashtag predict --json` (default bundle, INT8 on CPU) on the same photos on both sides, compared by "
             "`hashtag.benchmarks.arm_compare`. Emulation says nothing about speed: no time is reported. The photos "
             "are not committed; `photos.tsv` lists their names and SHA-256.", "",
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
        feats = ", ".join(env["cpu"].get("hwcap", []) + env["cpu"].get("hwcap2", []))
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
    lines += ["", f"x86-64 reference CPU: {', '.join(ref_env['cpu'].get('int8_flags', []))}.", "",
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
                         f"{_fmt_tags(m['reference'])}, aarch64 {_fmt_tags(m['candidate'])}")
        for m in (cmp or {}).get("order_differences", []):
            lines.append(f"- {run['label']}, same hashtags in another order: {m['image']} {m['model']}: x86-64 "
                         f"{_fmt_tags(m['reference'])}, aarch64 {_fmt_tags(m['candidate'])}")
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
                     f"photos {rss['predict']['peak_rss_mib']:.0f} MiB; `python3 -c pass` "
                     f"{rss['baseline']['peak_rss_mib']:.0f} MiB.")
    lines.append(f"- Peak RSS, x86-64 host: `hashtag predict` {ref_rss['predict']['peak_rss_mib']:.0f} MiB; "
                 f"`python3 -c pass` {ref_rss['baseline']['peak_rss_mib']:.0f} MiB.")
    lines += ["", "Under qemu-user the RSS is the emulator process's: the guest program's memory plus qemu's own "
                  "(translated code, its heap); the `python3 -c pass` lines show each side's floor. A real board runs "
                  "the same aarch64 code without qemu: expect about the emulated figure less qemu's share, give or "
                  "take per-thread buffers on boards with more cores.", "", "## Software", ""]
    for label, env in [("x86-64 host", ref_env)] + [(f"aarch64 root ({r['label']})", e) for r, _, e, _ in runs[:1]]:
        lines.append(f"- {label}: {env['os'].get('PRETTY_NAME', '?')}, Python {env['python']}, "
                     + ", ".join(f"{k} {v}" for k, v in env["packages"].items())
                     + f"; providers {', '.join(env['onnxruntime_providers'])}.")
    if summary.get("qemu"):
        lines.append(f"- Emulator: {summary['qemu']}.")
    lines += ["", "Files: `x86_64/` and `aarch64-*/` hold each side's `predict.jsonl` (scores of every model and the "
                  "ensemble), `models.txt` (`hashtag models`), `env.json`, `rss.json` (and `stderr.txt` on aarch64); "
                  "`compare-*.json` the comparisons, `summary.json` this page's figures.", ""]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ CLI


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hashtag.benchmarks.arm_compare", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("compare", help="compare two `hashtag predict --json` outputs; exit 1 unless ok")
    p.add_argument("reference", type=Path)
    p.add_argument("candidate", type=Path)
    p.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE)
    p.add_argument("--manifest", type=Path, default=None, help="bundle manifest.json, for threshold margins")
    p.add_argument("--out", type=Path, default=None)
    p = sub.add_parser("select-photos", help="copy the fixed photo set into a folder; print photos.tsv")
    p.add_argument("corpus", type=Path)
    p.add_argument("dest", type=Path)
    p.add_argument("--n", type=int, default=20)
    p.add_argument("--extra", type=Path, action="append", default=[])
    p = sub.add_parser("env", help="write this machine's versions, CPU features and bundle files as JSON")
    p.add_argument("out", type=Path)
    p = sub.add_parser("peak-rss", help="run the command after --, merge its peak RSS into OUT under KEY")
    p.add_argument("out", type=Path)
    p.add_argument("--key", required=True)
    p.add_argument("--stdout", type=Path, default=None)
    p = sub.add_parser("report", help="write RESULTS/summary.json and RESULTS/README.md; exit 1 unless all ok")
    p.add_argument("results", type=Path)
    p.add_argument("--meta", action="append", default=[], metavar="KEY=VALUE", help="commit=..., date=..., qemu=...")
    argv = list(sys.argv[1:] if argv is None else argv)
    cmd: list[str] = []
    if "--" in argv:  # peak-rss: the command to run follows --
        cmd, argv = argv[argv.index("--") + 1:], argv[:argv.index("--")]
    args = parser.parse_args(argv)

    if args.command == "compare":
        thresholds = manifest_thresholds(json.loads(args.manifest.read_text())) if args.manifest else None
        result = compare(read_predictions(args.reference), read_predictions(args.candidate), args.tolerance, thresholds)
        text = json.dumps(result, indent=1, sort_keys=True)
        if args.out:
            args.out.write_text(text + "\n")
        verdict = "OK" if result["ok"] else "DIFFERENT"
        print(f"{verdict}: {result['compared']}/{result['images']} photos, hashtags identical: "
              f"{result['hashtags_identical']}, largest probability difference {result['max_abs_diff']:.3g} "
              f"({'within' if result['within_tolerance'] else 'over'} the {args.tolerance} target)")
        for m in result["hashtag_mismatches"]:
            print(f"  {m['image']} {m['model']}: {_fmt_tags(m['reference'])} vs {_fmt_tags(m['candidate'])}")
        return 0 if result["ok"] else 1
    if args.command == "select-photos":
        rows = select_photos(args.dest, args.corpus, args.n, args.extra)
        print("name\tsource\tbytes\tsha256")
        for r in rows:
            print(f"{r['name']}\t{r['source']}\t{r['bytes']}\t{r['sha256']}")
        return 0 if rows else 1
    if args.command == "env":
        args.out.write_text(json.dumps(machine_env(), indent=1, sort_keys=True) + "\n")
        return 0
    if args.command == "peak-rss":
        if not cmd:
            parser.error("peak-rss needs a command after --")
        rec = peak_rss(cmd, args.stdout)
        data = json.loads(args.out.read_text()) if args.out.is_file() else {}
        data[args.key] = rec
        args.out.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
        return rec["returncode"]
    if args.command == "report":
        meta: dict[str, Any] = dict(item.split("=", 1) for item in args.meta)
        summary = build_summary(args.results, **meta)
        (args.results / "summary.json").write_text(json.dumps(summary, indent=1, sort_keys=True) + "\n")
        (args.results / "README.md").write_text(render_report(args.results, summary))
        print(f"{'OK' if summary['ok'] else 'DIFFERENT'}: " + "; ".join(
            f"{r['label']}: hashtags identical {r['hashtags_identical']}, max diff {r['max_abs_diff']}" for r in summary["runs"]))
        return 0 if summary["ok"] else 1
    return 2


if __name__ == "__main__":
    sys.exit(main())
