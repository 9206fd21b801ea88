"""``python -m portability COMMAND``: the commands tests/portability/arm64.sh runs on each side (see __init__).

Each command imports only its own module: ``peak-rss`` must run from a process as small as Python itself
(``peak_rss``), where the others load the runtime.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence

import portability


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m portability", description=portability.__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("compare", help="compare two `hashtag predict --json` outputs; exit 1 unless ok")
    p.add_argument("reference", type=Path)
    p.add_argument("candidate", type=Path)
    p.add_argument("--tolerance", type=float, default=portability.DEFAULT_TOLERANCE)
    p.add_argument("--manifest", type=Path, default=None, help="bundle manifest.json, for threshold margins")
    p.add_argument("--out", type=Path, default=None)
    p = sub.add_parser("select-photos", help="copy the fixed photo set into a folder; print photos.tsv")
    p.add_argument("corpus", type=Path)
    p.add_argument("dest", type=Path)
    p.add_argument("--n", type=int, default=20)
    p.add_argument("--extra", type=Path, action="append", default=[])
    p = sub.add_parser("env", help="write this machine's CPU features, versions and bundle files as JSON")
    p.add_argument("out", type=Path)
    p = sub.add_parser("peak-rss", help="run the command after --, merge its peak RSS into OUT under KEY")
    p.add_argument("out", type=Path)
    p.add_argument("--key", required=True)
    p.add_argument("--stdout", type=Path, default=None)
    p = sub.add_parser("report", help="write RESULTS/summary.json and RESULTS/README.md; exit 1 unless all ok")
    p.add_argument("results", type=Path)
    p.add_argument("--meta", action="append", default=[], metavar="KEY=VALUE", help="commit=..., date=..., qemu=...")
    return parser


def _compare(args: argparse.Namespace) -> int:
    from portability.compare import compare, format_tags, manifest_thresholds, read_predictions

    thresholds = manifest_thresholds(json.loads(args.manifest.read_text())) if args.manifest else None
    result = compare(read_predictions(args.reference), read_predictions(args.candidate), args.tolerance, thresholds)
    if args.out:
        args.out.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    verdict = "OK" if result["ok"] else "DIFFERENT"
    print(f"{verdict}: {result['compared']}/{result['images']} photos, hashtags identical: "
          f"{result['hashtags_identical']}, largest probability difference {result['max_abs_diff']:.3g} "
          f"({'within' if result['within_tolerance'] else 'over'} the {args.tolerance} target)")
    for m in result["hashtag_mismatches"]:
        print(f"  {m['image']} {m['model']}: {format_tags(m['reference'])} vs {format_tags(m['candidate'])}")
    return 0 if result["ok"] else 1


def _select_photos(args: argparse.Namespace) -> int:
    from portability.photos import select_photos

    rows = select_photos(args.dest, args.corpus, args.n, args.extra)
    print("name\tsource\tbytes\tsha256")
    for r in rows:
        print(f"{r['name']}\t{r['source']}\t{r['bytes']}\t{r['sha256']}")
    return 0 if rows else 1


def _env(args: argparse.Namespace) -> int:
    from portability.machine import machine_env

    args.out.write_text(json.dumps(machine_env(), indent=1, sort_keys=True) + "\n")
    return 0


def _report(args: argparse.Namespace) -> int:
    from portability.report import build_summary, render_report

    meta: dict[str, Any] = dict(item.split("=", 1) for item in args.meta)
    summary = build_summary(args.results, **meta)
    (args.results / "summary.json").write_text(json.dumps(summary, indent=1, sort_keys=True) + "\n")
    (args.results / "README.md").write_text(render_report(args.results, summary))
    print(f"{'OK' if summary['ok'] else 'DIFFERENT'}: " + "; ".join(
        f"{r['label']}: hashtags identical {r['hashtags_identical']}, max diff {r['max_abs_diff']}"
        for r in summary["runs"]))
    return 0 if summary["ok"] else 1


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    cmd: list[str] = []
    if "--" in argv:  # peak-rss: the command to run follows --
        cmd, argv = argv[argv.index("--") + 1:], argv[:argv.index("--")]
    parser = argument_parser()
    args = parser.parse_args(argv)
    if args.command == "peak-rss":
        if not cmd:
            parser.error("peak-rss needs a command after --")
        from portability.peak_rss import record_peak_rss

        return record_peak_rss(args.out, args.key, cmd, args.stdout)
    return {"compare": _compare, "select-photos": _select_photos, "env": _env, "report": _report}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
