"""`hashtag predict` and `hashtag models` as users run them: output shapes, exit codes, errors."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from hashtag.runtime.cpu import cpu_features, faster_cpu_precision
from hashtag.runtime import Options, Tagger
from hashtag.runtime.cli import main
from tinybundle import TAGS, make_photo


def run(*args: str) -> "CliResult":
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return CliResult(result.exit_code, result.stdout, result.stderr)


class CliResult:
    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err


def test_json_lines_schema(tiny_bundle: Path, photos: list[Path]) -> None:
    res = run("predict", "--bundle", str(tiny_bundle), "--json", "--threshold", "0.3", *map(str, photos))
    assert res.code == 0, res.err
    records = [json.loads(line) for line in res.out.splitlines()]
    assert [r["image"] for r in records] == [str(p) for p in photos]
    expected = Tagger(tiny_bundle, provider="auto").predict(photos, Options(threshold=0.3))  # what the CLI runs by default
    for rec, pred in zip(records, expected):
        assert rec["error"] is None
        assert set(rec["scores"]) == set(TAGS)
        assert rec["hashtags"] == pred.hashtags and rec["hashtags"]
        assert all(h.startswith("#") for h in rec["hashtags"])
        assert set(rec["models"]) == {"vgg16", "inceptionv3", "xception"}
        for name, model in rec["models"].items():
            assert set(model) >= {"hashtags", "scores"}
            assert set(model["scores"]) == set(TAGS)
            assert model["scores"] == pytest.approx(pred.models[name].scores)


def test_folder_recursion_and_bad_image_exit_code(tiny_bundle: Path, tmp_path: Path) -> None:
    make_photo(tmp_path / "a.jpg")
    make_photo(tmp_path / "sub" / "deeper" / "b.png", fmt="PNG")
    (tmp_path / "sub" / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    (tmp_path / "notes.txt").write_text("ignored: not an image suffix")
    res = run("predict", "--bundle", str(tiny_bundle), "--json", str(tmp_path))
    assert res.code == 1
    records = {Path(r["image"]).name: r for r in map(json.loads, res.out.splitlines())}
    assert set(records) == {"a.jpg", "b.png", "broken.jpg"}
    assert records["a.jpg"]["error"] is None and records["b.png"]["error"] is None
    assert records["broken.jpg"]["error"] and "\n" not in records["broken.jpg"]["error"]
    assert set(records["broken.jpg"]) == {"image", "error"}


def test_human_output_and_verbose(tiny_bundle: Path, photos: list[Path]) -> None:
    res = run("predict", "--bundle", str(tiny_bundle), "--threshold", "0.0", "--top-k", "2", "-v", str(photos[0]))
    assert res.code == 0
    lines = res.out.splitlines()
    assert lines[0].startswith(f"{photos[0]}: #") and len(lines[0].split("#")) == 3
    assert [ln.split(":")[0].strip() for ln in lines[1:]] == ["vgg16", "inceptionv3", "xception"]
    assert all(len(ln.split("#")) == 3 for ln in lines[1:])


def test_single_model_option(tiny_bundle: Path, photos: list[Path]) -> None:
    res = run("predict", "--bundle", str(tiny_bundle), "--json", "--model", "vgg16", str(photos[0]))
    assert list(json.loads(res.out)["models"]) == ["vgg16"]


def test_models_option_takes_names(tiny_bundle: Path, photos: list[Path]) -> None:
    res = run("predict", "--bundle", str(tiny_bundle), "--json", "--models", "xception, vgg16", str(photos[0]))
    assert res.code == 0, res.err
    assert list(json.loads(res.out)["models"]) == ["xception", "vgg16"]


def test_old_models_dir_spelling_still_works_with_a_warning(tiny_bundle: Path, photos: list[Path]) -> None:
    res = run("predict", "--models", str(tiny_bundle), "--json", str(photos[0]))
    assert res.code == 0, res.err
    assert "'--models DIR' is deprecated, use '--bundle DIR'" in res.err
    assert list(json.loads(res.out)["models"]) == ["vgg16", "inceptionv3", "xception"]
    both = run("predict", "--models", str(tiny_bundle), "--bundle", str(tiny_bundle), str(photos[0]))
    assert both.code == 2 and "give the bundle folder once" in both.err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "resnet"], "no model named 'resnet'"),
        (["--provider", "cuda"], "CUDA"),
        (["--precision", "fp16"], "has no fp16 file"),
    ],
)
def test_option_errors_are_one_line(tiny_bundle: Path, photos: list[Path], args: list[str], message: str) -> None:
    if args[0] == "--provider":
        from hashtag.runtime.providers import cuda_listed

        if cuda_listed():
            pytest.skip("CUDA provider present")
    res = run("predict", "--bundle", str(tiny_bundle), *args, str(photos[0]))
    assert res.code == 1
    assert message in res.err and res.err.count("\n") == 1 and "Traceback" not in res.err


def test_missing_bundle_and_missing_images(tmp_path: Path, tiny_bundle: Path) -> None:
    res = run("predict", "--bundle", str(tmp_path / "nope"), str(tmp_path))
    assert res.code == 1 and "no model bundle" in res.err
    res = run("predict", "--bundle", str(tiny_bundle), str(tmp_path / "empty-dir-or-missing"))
    assert res.code == 1 and "no such file" in res.err
    (tmp_path / "empty").mkdir()
    res = run("predict", "--bundle", str(tiny_bundle), str(tmp_path / "empty"))
    assert res.code == 1 and "no image files found" in res.err


def test_usage_errors_exit_2(tiny_bundle: Path, photos: list[Path]) -> None:
    assert run("predict").code == 2
    assert run("predict", "--top-k", "0", str(photos[0])).code == 2
    assert run("predict", "--threshold", "1.5", str(photos[0])).code == 2


def test_models_command(tiny_bundle: Path) -> None:
    res = run("models", "--bundle", str(tiny_bundle))
    assert res.code == 0
    here = faster_cpu_precision(cpu_features())
    assert f"on this CPU: {here[0]} ({here[1]}; --precision overrides)" in res.out
    assert "vgg16: ensemble member; input 32x32" in res.out
    for text in ( "caffe", "xception", "int8", "fp32", "CPUExecutionProvider", "thresholds"):
        assert text in res.out


def test_console_script_runs(tiny_bundle: Path, photos: list[Path]) -> None:
    """The installed `hashtag` entry point itself, as a user runs it."""
    proc = subprocess.run(["hashtag", "predict", "--bundle", str(tiny_bundle), "--json", str(photos[0])],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["image"] == str(photos[0])


def test_missing_extra_says_what_to_install() -> None:
    """With python-telegram-bot absent, `hashtag bot` names the extra in one line and exits 2."""
    code = "import sys; sys.modules['telegram'] = None; from hashtag.runtime.cli import main; main(['bot'])"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "pip install 'hashtag[bot]'" in proc.stderr and proc.stderr.count("\n") == 1


def test_help_lists_all_commands_without_heavy_imports() -> None:
    code = ("import sys; from hashtag.runtime.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print('TF', 'tensorflow' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    for command in ("bench", "bot", "data", "evaluate", "export", "models", "predict", "train"):
        assert command in proc.stdout
    assert "TF False" in proc.stdout


def test_records_follow_input_order_with_errors_in_place(tiny_bundle: Path, tmp_path: Path) -> None:
    names = ["a.jpg", "b.jpg", "c.jpg", "d.jpg", "e.jpg"]
    for i, name in enumerate(names):
        make_photo(tmp_path / name, seed=i)
    (tmp_path / "b.jpg").write_bytes(b"not an image")
    res = run("predict", "--bundle", str(tiny_bundle), "--json", "--batch-size", "2", str(tmp_path))
    assert res.code == 1
    records = [json.loads(line) for line in res.out.splitlines()]
    assert [Path(r["image"]).name for r in records] == names
    assert [r["error"] is None for r in records] == [True, False, True, True, True]


def test_progress_bar_goes_to_a_terminal_stderr_only(tiny_bundle: Path, tmp_path: Path) -> None:
    """stderr on a terminal shows the bar; the JSON Lines on stdout stay clean."""
    import os
    import pty

    for i in range(6):
        make_photo(tmp_path / f"p{i}.jpg", seed=i)
    leader, follower = pty.openpty()
    proc = subprocess.run(["hashtag", "predict", "--bundle", str(tiny_bundle), "--json", str(tmp_path)],
                          stdout=subprocess.PIPE, stderr=follower, timeout=120)
    os.close(follower)
    shown = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:
            break
        if not chunk:
            break
        shown += chunk
    os.close(leader)
    assert proc.returncode == 0
    assert [json.loads(line)["error"] for line in proc.stdout.decode().splitlines()] == [None] * 6
    assert b"Tagging" in shown and b"6/6" in shown


def test_openvino_provider_option(tiny_bundle: Path, photos: list[Path]) -> None:
    pytest.importorskip("openvino")
    res = run("predict", "--bundle", str(tiny_bundle), "--json", "--provider", "openvino", str(photos[0]))
    assert res.code == 0, res.err
    expected = Tagger(tiny_bundle, provider="cpu").predict_one(photos[0])
    assert json.loads(res.out)["scores"] == pytest.approx(expected.scores, abs=1e-4)
