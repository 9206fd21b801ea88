"""The portability check behind tests/portability/arm64.sh (package ``portability``), on real x86-64 output.

The script itself (debootstrap, qemu) is not run here; these tests check that the verdict it writes is
right (identical runs pass, a flipped hashtag or a probability off by more than the tolerance fails), that
each side's records are, and that the script runs the package's commands.
"""
from __future__ import annotations

import copy
import json
import os
import platform
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from hashtag.models import DEFAULT_BUNDLE
from hashtag.runtime.cli import main as hashtag_main
from hashtag.runtime.cpu import cpu_features
from hashtag.train.files import sha256_file
from hashtag.train.splits import split_of
from portability.__main__ import argument_parser, main
from portability.compare import CompareError, compare, manifest_thresholds, read_predictions
from portability.machine import machine_env
from portability.photos import corpus_test_photos, select_photos
from tinybundle import make_photo

TESTS = Path(__file__).resolve().parent
SCRIPT = TESTS / "portability" / "arm64.sh"


@pytest.fixture(scope="module")
def x86_output(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`hashtag predict --json` with the shipped bundle (no bundle option) on a real photo and two synthetic ones."""
    cbook = pytest.importorskip("matplotlib.cbook")
    folder = tmp_path_factory.mktemp("photos")
    photos = [Path(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))]
    photos += [make_photo(folder / f"synthetic{i}.jpg", seed=i) for i in range(2)]
    result = CliRunner().invoke(hashtag_main, ["predict", "--json", *map(str, photos)], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    out = tmp_path_factory.mktemp("x86") / "predict.jsonl"
    out.write_text(result.stdout)
    return out


def write_jsonl(path: Path, records: dict[str, dict[str, Any]], folder: str = "/elsewhere") -> Path:
    path.write_text("".join(json.dumps({**r, "image": f"{folder}/{name}"}) + "\n" for name, r in records.items()))
    return path


def shipped_thresholds() -> dict[str, dict[str, float]]:
    return manifest_thresholds(json.loads((DEFAULT_BUNDLE / "manifest.json").read_text()))


def test_identical_runs_pass_and_name_by_file(x86_output: Path, tmp_path: Path) -> None:
    ref = read_predictions(x86_output)
    assert set(ref) == {"grace_hopper.jpg", "synthetic0.jpg", "synthetic1.jpg"}
    # the aarch64 side prints other folders: records are matched by file name
    cand = read_predictions(write_jsonl(tmp_path / "arm.jsonl", ref, "/tmp/hashtag-run/photos"))
    result = compare(ref, cand, thresholds=shipped_thresholds())
    assert result["ok"] and result["hashtags_identical"] and result["within_tolerance"]
    assert result["compared"] == 3 and result["max_abs_diff"] == 0.0
    assert set(result["max_abs_diff_by_model"]) == {"ensemble", "vgg16", "inceptionv3", "xception"}
    close = result["closest_to_threshold"]
    assert close["margin"] == pytest.approx(abs(close["reference"] - close["threshold"]))
    assert "#person" in ref["grace_hopper.jpg"]["hashtags"]


def test_small_differences_pass_and_the_largest_is_reported(x86_output: Path) -> None:
    ref = read_predictions(x86_output)
    cand = copy.deepcopy(ref)
    thresholds = shipped_thresholds()
    # nudge every score of one model by 0.004 away from its threshold (hashtags cannot change), one by 0.011
    scores = cand["synthetic0.jpg"]["models"]["xception"]["scores"]
    for tag, p in scores.items():
        scores[tag] = p + (0.004 if p >= thresholds["xception"][tag] else -0.004)
    tag = max(scores, key=lambda t: abs(scores[t] - thresholds["xception"][t]))
    scores[tag] += 0.011 if scores[tag] >= thresholds["xception"][tag] else -0.011
    result = compare(ref, cand)
    assert result["ok"]
    assert result["max_abs_diff"] == pytest.approx(0.015)
    assert result["max_abs_diff_at"]["image"] == "synthetic0.jpg"
    assert (result["max_abs_diff_at"]["model"], result["max_abs_diff_at"]["tag"]) == ("xception", tag)
    assert result["max_abs_diff_by_model"]["ensemble"] == 0.0


def test_a_probability_beyond_the_tolerance_is_reported_not_a_verdict(x86_output: Path) -> None:
    ref = read_predictions(x86_output)
    cand = copy.deepcopy(ref)
    scores = cand["grace_hopper.jpg"]["scores"]
    tag = min(scores, key=scores.get)  # the least likely tag: moving it up 0.03 keeps it under its threshold
    scores[tag] += 0.03
    result = compare(ref, cand)
    assert result["ok"] and result["hashtags_identical"] and not result["within_tolerance"]
    assert result["max_abs_diff"] == pytest.approx(0.03)
    assert result["scores_over_tolerance_by_model"]["ensemble"] == 1
    assert result["max_logit_diff_by_model"]["ensemble"] > 0
    assert compare(ref, cand, tolerance=0.05)["within_tolerance"]


def test_a_different_hashtag_fails_even_within_the_tolerance(x86_output: Path) -> None:
    ref = read_predictions(x86_output)
    cand = copy.deepcopy(ref)
    cand["grace_hopper.jpg"]["models"]["vgg16"]["hashtags"] = ref["grace_hopper.jpg"]["models"]["vgg16"]["hashtags"][:-1]
    result = compare(ref, cand)
    assert not result["ok"] and not result["hashtags_identical"] and result["within_tolerance"]
    assert [(m["image"], m["model"]) for m in result["hashtag_mismatches"]] == [("grace_hopper.jpg", "vgg16")]
    # one tag for another is a difference too
    cand = copy.deepcopy(ref)
    cand["synthetic1.jpg"]["models"]["xception"]["hashtags"] = ["#sea"] if ref["synthetic1.jpg"]["models"]["xception"][
        "hashtags"] != ["#sea"] else ["#tree"]
    assert not compare(ref, cand)["ok"]


def test_nearly_tied_tags_in_another_order_are_the_same_hashtags(x86_output: Path) -> None:
    ref = read_predictions(x86_output)
    assert len(ref["grace_hopper.jpg"]["hashtags"]) > 1  # #person and #human: the same photos carry both labels
    cand = copy.deepcopy(ref)
    cand["grace_hopper.jpg"]["hashtags"] = list(reversed(ref["grace_hopper.jpg"]["hashtags"]))
    result = compare(ref, cand)
    assert result["ok"] and result["hashtags_identical"] and not result["hashtag_mismatches"]
    assert [(d["image"], d["model"]) for d in result["order_differences"]] == [("grace_hopper.jpg", "ensemble")]


def test_missing_photos_errors_and_missing_scores_fail(x86_output: Path) -> None:
    ref = read_predictions(x86_output)
    cand = copy.deepcopy(ref)
    del cand["synthetic1.jpg"]
    result = compare(ref, cand)
    assert not result["ok"] and result["missing_on_candidate"] == ["synthetic1.jpg"] and result["compared"] == 2

    cand = copy.deepcopy(ref)
    cand["synthetic1.jpg"] = {"image": "synthetic1.jpg", "error": "cannot identify image file"}
    result = compare(ref, cand)
    assert not result["ok"] and result["errors"]["candidate"] == ["synthetic1.jpg"]

    cand = copy.deepcopy(ref)
    del cand["synthetic0.jpg"]["models"]["inceptionv3"]
    result = compare(ref, cand)
    assert not result["ok"] and not result["within_tolerance"]
    assert result["missing_scores"] == [{"image": "synthetic0.jpg", "model": "inceptionv3", "tag": None}]

    assert not compare({}, {})["ok"]  # nothing compared is no proof


def test_unreadable_output_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"image": "a.jpg"}\nnot json\n')
    with pytest.raises(CompareError, match="bad.jsonl:2"):
        read_predictions(bad)
    bad.write_text('{"image": "x/a.jpg"}\n{"image": "y/a.jpg"}\n')
    with pytest.raises(CompareError, match="twice"):
        read_predictions(bad)


def test_compare_command_exit_codes(x86_output: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = DEFAULT_BUNDLE / "manifest.json"
    out = tmp_path / "cmp.json"
    assert main(["compare", str(x86_output), str(x86_output), "--manifest", str(manifest), "--out", str(out)]) == 0
    assert json.loads(out.read_text())["ok"] and capsys.readouterr().out.startswith("OK: 3/3 photos")
    ref = read_predictions(x86_output)
    ref["grace_hopper.jpg"]["hashtags"] = []
    changed = write_jsonl(tmp_path / "arm.jsonl", ref)
    assert main(["compare", str(x86_output), str(changed)]) == 1
    assert "DIFFERENT" in capsys.readouterr().out


def test_photo_selection_is_fixed_and_from_the_test_split(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    (corpus / "images").mkdir(parents=True)
    ids = [f"mir{i:05d}" for i in range(200)]
    for i in ids[:60]:
        make_photo(corpus / "images" / f"{i}.jpg", seed=1, size=(16, 16))
    for i in ids[60:]:
        (corpus / "images" / f"{i}.jpg").write_bytes(b"\xff\xd8 not decoded here")
    chosen = corpus_test_photos(corpus, 5)
    assert len(chosen) == 5 and all(split_of(p.stem) == "test" for p in chosen)
    assert chosen == corpus_test_photos(corpus, 5)
    extra = make_photo(tmp_path / "grace.jpg", seed=2)
    rows = select_photos(tmp_path / "dest", corpus, 5, [extra])
    assert [r["name"] for r in rows] == ["grace.jpg"] + [p.name for p in chosen]
    assert rows[0]["source"] == "extra" and rows[1]["source"] == "corpus test split"
    assert rows[0]["sha256"] == sha256_file(extra)
    assert sorted(p.name for p in (tmp_path / "dest").iterdir()) == sorted(r["name"] for r in rows)
    with pytest.raises(FileExistsError, match="two photos"):
        select_photos(tmp_path / "dest2", None, 0, [extra, extra])


def test_env_record_on_this_machine(tmp_path: Path) -> None:
    out = tmp_path / "env.json"
    assert main(["env", str(out)]) == 0
    env = json.loads(out.read_text())
    seen = cpu_features()
    assert env["cpu"]["machine"] == seen.machine and env["cpu"]["features"] == sorted(seen.flags)
    assert env["software"]["onnxruntime"] and env["software"]["python"] == platform.python_version()
    bundle = DEFAULT_BUNDLE
    assert {"vgg16.int8.onnx", "inceptionv3.int8.onnx", "xception.int8.onnx"} <= set(env["bundle"])
    assert env["bundle"]["vgg16.int8.onnx"] == {"bytes": (bundle / "vgg16.int8.onnx").stat().st_size,
                                               "sha256": sha256_file(bundle / "vgg16.int8.onnx")}


def run_check(*args: str) -> int:
    """``python -m portability ARGS`` in its own process, as the script runs it."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, "-m", "portability", *args], env=env, timeout=300).returncode


def test_peak_rss_of_a_command(tmp_path: Path) -> None:
    out, printed = tmp_path / "rss.json", tmp_path / "stdout.txt"
    assert run_check("peak-rss", str(out), "--key", "big", "--stdout", str(printed), "--",
                     sys.executable, "-c", "x = bytearray(64 << 20); print('done')") == 0
    assert run_check("peak-rss", str(out), "--key", "baseline", "--", sys.executable, "-c", "pass") == 0
    assert run_check("peak-rss", str(out), "--key", "failed", "--", sys.executable, "-c", "raise SystemExit(3)") == 3
    rec = json.loads(out.read_text())
    assert printed.read_text() == "done\n"
    assert [rec[k]["returncode"] for k in ("big", "baseline", "failed")] == [0, 0, 3]
    assert rec["big"]["peak_rss_mb"] >= 64 * 1.048  # 64 MiB in MB
    # the figure includes the measuring process: it stays as small as Python, not the runtime's ~60 MB
    assert rec["baseline"]["peak_rss_mb"] < 40


def test_peak_rss_is_the_child_s_own_not_an_earlier_one_s(tmp_path: Path) -> None:
    """RUSAGE_CHILDREN can report a bigger process that ran before in the same shell: the script runs them in a row."""
    out = tmp_path / "rss.json"
    script = (f"{sys.executable} -c 'x = bytearray(256 << 20)'; "
              f"{sys.executable} -m portability peak-rss {out} --key small -- {sys.executable} -c pass")
    subprocess.run(["bash", "-c", script], check=True, cwd=TESTS, timeout=300)
    assert json.loads(out.read_text())["small"]["peak_rss_mb"] < 128


def test_report_of_a_results_folder(x86_output: Path, tmp_path: Path) -> None:
    results = tmp_path / "results"
    env = machine_env()
    rss = {"predict": {"peak_rss_mb": 300.0}, "baseline": {"peak_rss_mb": 10.0}}
    ref = read_predictions(x86_output)
    for side in ("x86_64", "aarch64-cortex-a72", "aarch64-max"):
        (results / side).mkdir(parents=True)
        arm_cpu = {"machine": "aarch64", "features": ["asimd"], "int8_flags": [], "qemu_cpu": side.split("-", 1)[-1]}
        side_env = {**env, "cpu": arm_cpu} if side != "x86_64" else env
        (results / side / "env.json").write_text(json.dumps(side_env))
        (results / side / "rss.json").write_text(json.dumps(rss))
        records = copy.deepcopy(ref)
        if side == "aarch64-max":
            records["synthetic0.jpg"]["hashtags"] = ["#sea"]
        write_jsonl(results / side / "predict.jsonl", records)
        if side != "x86_64":
            main(["compare", str(x86_output), str(results / side / "predict.jsonl"),
                  "--out", str(results / f"compare-{side.split('-', 1)[1]}.json")])
    main(["compare", str(x86_output), str(x86_output), "--out", str(results / "compare-fast-cortex-a72.json")])
    (results / "photos.tsv").write_text("name\tsource\tbytes\tsha256\n" + "".join(
        f"{n}\t{'extra' if n.startswith('grace') else 'corpus test split'}\t1\tx\n" for n in ref))
    assert main(["report", str(results), "--meta", "commit=abc123", "--meta", "tolerance=0.02"]) == 1
    summary = json.loads((results / "summary.json").read_text())
    assert [(r["label"], r["ok"]) for r in summary["runs"]] == [("cortex-a72", True), ("max", False)]
    assert [(r["fast_ok"], r["fast_max_abs_diff"]) for r in summary["runs"]] == [(True, 0.0), (None, None)]
    assert summary["commit"] == "abc123" and summary["n_photos"] == 3 and not summary["ok"]
    assert summary["models"] == ["ensemble", "inceptionv3", "vgg16", "xception"]
    readme = (results / "README.md").read_text()
    assert "| cortex-a72 | asimd | yes, 3/3 photos | 0 | 0.000 (within) |" in readme
    assert "different hashtags: synthetic0.jpg ensemble" in readme and "**no**: 1 differ" in readme
    assert "cortex-a72 vs max (aarch64 against aarch64)" in readme and summary["between_runs"][0]["a"] == "cortex-a72"
    assert "same SHA-256 as on x86-64" in readme
    assert "The fast model alone in FP32 (`hashtag predict --fast --precision fp32 --json`)" in readme
    assert "| cortex-a72 | yes, 3/3 photos | 0.000 |" in readme
    assert "`hashtag predict` on the 3 photos 300 MB; `python3 -c pass` 10 MB." in readme
    assert f"x86-64 reference CPU features: {', '.join(env['cpu']['features']) or 'none reported'}." in readme
    assert f"- x86-64 host: {env['os']}, Python {env['software']['python']}, hashtag " in readme
    assert " ms" not in readme and "second" not in readme  # no timing is ever reported


def script_commands(script: str) -> list[list[str]]:
    """The arguments of every ``python -m portability`` command in the script, before any ``--``, with the
    script's numeric variables given example values."""
    values = {"$N_PHOTOS": "20", "$TOLERANCE": "0.02"}
    commands = []
    for line in script.replace("\\\n", " ").splitlines():
        for marker in ('"${CHECK[@]}"', '"${AV_CHECK[@]}"'):
            if marker in line and not line.lstrip().startswith("#"):
                words = shlex.split(re.split(r"\s(?:>|\|\|)", line.split(marker, 1)[1])[0])
                words = words[:words.index("--")] if "--" in words else words
                commands.append([values.get(w, w) for w in words])
    return commands


def test_the_script_runs_this_package_s_commands() -> None:
    script = SCRIPT.read_text()
    # on each side the package comes from that side's copy of the checkout, beside the installed hashtag
    assert 'CHECK=(env PYTHONPATH="$HOST_TMP/src/tests" "$HX/python" -m portability)' in script
    assert 'AV_CHECK=(PYTHONPATH="$RUN_IN_ROOT/src/tests" "$AV/python" -m portability)' in script
    commands = script_commands(script)
    assert {c[0] for c in commands} == {"select-photos", "env", "peak-rss", "compare", "report"}
    for words in commands:  # every command and option the script passes is one the package takes
        argument_parser().parse_args(words)
    assert script.count("predict --fast --precision fp32 --json \"$") == 2 and "compare-fast-$cpu.json" in script
    assert "$REPO/benchmarks/results/arm64-emulated-" in script  # the results stay with the benchmarks' results
    assert "--bundle" not in script and "/sys" in script  # default bundle; /sys is named only to say it is not mounted
    assert "mount_in_root --bind /sys" not in script
