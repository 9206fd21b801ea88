"""`hashtag bench` end to end on the tiny bundle: JSON/CSV/PNG outputs, environment, summary, options."""
from __future__ import annotations

import csv
import hashlib
import itertools
import json
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy
import onnxruntime
import pytest
from click.testing import CliRunner
from PIL import Image

from hashtag.benchmarks.e2e import run_timed
from hashtag.benchmarks.macs import macs_per_cycle
from hashtag.runtime.cli import main
from hashtag.runtime.cpu import cpu_features, faster_cpu_precision
from hashtag.runtime.ov_session import openvino_installed
from tinybundle import DEFAULT_MODELS, FAST_MODEL, make_bundle

MODELS = ("vgg16", "inceptionv3", "xception", "efficientnet_lite0", "ensemble")
BATCHES = (1, 4, 8, 16)
OPENVINO = openvino_installed()
RUNTIME_PROVIDERS = ("cpu", "openvino") if OPENVINO else ("cpu",)
ENSEMBLE = [m["name"] for m in DEFAULT_MODELS]
FAST = FAST_MODEL["name"]
# one MatMul [1,3]x[3,4] each; the ensemble is the three members, not the fast model
TINY_MACS = {"vgg16": 12, "inceptionv3": 12, "xception": 12, "efficientnet_lite0": 12, "ensemble": 36}


def bench(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["bench", *args], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(scope="module")
def bench_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny ensemble with a tiny fast model: every row of `hashtag bench` has something to measure."""
    return make_bundle(tmp_path_factory.mktemp("bench-bundle") / "bundle", (*DEFAULT_MODELS, FAST_MODEL))


@pytest.fixture(scope="module")
def quick_run(bench_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path, str]:
    """One full --quick run (with the `hashtag predict` subprocesses), shared by the tests below."""
    out = tmp_path_factory.mktemp("bench")
    code, stdout, stderr = bench("--bundle", str(bench_bundle), "--quick", "--threads", "1", "--e2e-images", "20",
                                 "--out", str(out))
    assert code == 0, stderr
    return json.loads((out / "bench.json").read_text()), out, stdout


def test_rows_cover_every_model_precision_provider_batch(quick_run) -> None:  # noqa: ANN001 - fixture
    result, _, _ = quick_run
    rows = result["rows"]
    keys = [(r["model"], r["precision"], r["provider"], r["batch"]) for r in rows]
    expected = [*itertools.product(MODELS, ("int8", "fp32"), RUNTIME_PROVIDERS, BATCHES),
                *(itertools.product(MODELS, ("int8",), ("openvino-stock",), BATCHES) if OPENVINO else [])]
    assert sorted(keys) == sorted(expected)
    for r in rows:
        assert r["threads"] == 1 and r["rounds"] == 2
        assert 0 < r["latency_ms_min"] <= r["latency_ms_p50"] <= r["latency_ms_p90"] <= r["latency_ms_p99"]
        assert r["throughput_ips_best_round"] >= r["throughput_ips_median_round"] > 0
        assert r["latency_ms_p50_best_round"] <= r["latency_ms_p50_median_round"]
        assert r["session_create_s"] > 0 and r["cold_first_call_ms"] > 0
        assert r["macs_per_image"] == TINY_MACS[r["model"]]
        cpu = result["environment"]["cpu"]
        known = cpu["clock_mhz"] and macs_per_cycle("int8" if r["precision"] == "int8" else "fp32", cpu["flags"])
        assert (r["peak_gmacs_per_s_estimate"] is not None) == bool(known)  # an estimate wherever one can be made
        assert r["peak_gmacs_per_s_estimate"] is None or r["peak_gmacs_per_s_estimate"] > r["gmacs_per_s"] > 0
    batch1 = [r for r in rows if r["batch"] == 1]
    assert all(r["calls"] == 2 * 5 for r in batch1)  # --quick: 2 rounds x 5 runs


def test_csv_matches_json(quick_run) -> None:  # noqa: ANN001
    result, out, _ = quick_run
    with (out / "bench.csv").open(newline="") as fh:
        reader = csv.DictReader(fh)
        rows = list(reader)
    assert reader.fieldnames == list(result["rows"][0])
    assert len(rows) == len(result["rows"]) == len(MODELS) * (2 * len(RUNTIME_PROVIDERS) + OPENVINO) * len(BATCHES)
    for csv_row, json_row in zip(rows, result["rows"]):
        assert (csv_row["model"], csv_row["precision"], int(csv_row["batch"])) == (
            json_row["model"], json_row["precision"], json_row["batch"])
        assert float(csv_row["latency_ms_p50"]) == pytest.approx(json_row["latency_ms_p50"])


def test_png_is_a_real_plot(quick_run) -> None:  # noqa: ANN001
    _, out, _ = quick_run
    path = out / "bench.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as img:
        assert img.format == "PNG"
        assert img.width >= 800 and img.height >= 400
        assert len(numpy.unique(numpy.asarray(img.convert("RGB")).reshape(-1, 3), axis=0)) > 50  # not a blank canvas


def test_markdown_table_for_the_readme(quick_run) -> None:  # noqa: ANN001
    result, out, _ = quick_run
    text = (out / "bench.md").read_text()
    assert text.startswith(f"Measured {result['created'][:10]} on {result['hardware']}")
    table_rows = [line for line in text.splitlines() if line.startswith("| ") and "/cpu |" in line]
    assert len(table_rows) == len(MODELS) * 2
    assert "INT8/FP32 ensemble p50" in text and "cold start" in text


def test_environment_is_recorded(quick_run, bench_bundle: Path) -> None:  # noqa: ANN001
    result, _, _ = quick_run
    env = result["environment"]
    assert env["cpu"]["model"] and env["cpu"]["usable_cpus"] >= 1
    assert set(env["cpu"]["flags"]) >= {"avx2", "avx512f", "avx512_vnni"}
    assert env["software"]["onnxruntime"] == onnxruntime.__version__
    assert env["software"]["numpy"] == numpy.__version__
    assert env["software"]["python"] == platform.python_version()
    assert env["bundle"]["manifest_sha256"] == hashlib.sha256((bench_bundle / "manifest.json").read_bytes()).hexdigest()
    assert "gpu" in env and result["hardware"].startswith(env["cpu"]["model"])
    assert result["process"]["peak_rss_mb"] > 10
    assert result["images"]["source"].startswith("synthetic") and result["images"]["count"] == 3


def test_variants_are_interleaved_in_rotating_rounds(quick_run) -> None:  # noqa: ANN001
    result, _, _ = quick_run
    first, second = result["schedule"]
    assert first[0] == "preprocessing" and second == first[1:] + first[:1]
    for v in result["variants"]:
        assert len(v["latency_ms_p50_per_round"]) == 2


def test_summary_and_end_to_end(quick_run) -> None:  # noqa: ANN001
    result, _, stdout = quick_run
    ratio = result["summary"]["int8_fp32_ensemble_p50_ratio"]
    assert (ratio["numerator"], ratio["denominator"]) == ("ensemble/int8/cpu", "ensemble/fp32/cpu")
    assert len(ratio["per_round"]) == 2 and ratio["ratio_median_of_rounds"] > 0
    assert ratio["target_max"] == 0.4 and ratio["met"] == (ratio["ratio_median_of_rounds"] <= 0.4)
    keras = result["summary"]["int8_keras_ensemble_p50_ratio"]
    assert keras["ratio_median_of_rounds"] is None and "keras-run" in keras["reason"]
    e2e = result["e2e"]
    assert e2e["errors"] == []
    assert set(e2e["wall_s"]) == {"startup", "predict_1", "predict_20", "predict_640x480", "predict_160x120",
                                  "predict_fast_1", "predict_fast_640x480", "predict_fast_160x120"}
    cold = result["summary"]["predict_cold_start_s"]
    assert cold["min"] == e2e["wall_s"]["predict_1"]["min"] > 0.05
    assert all(20 < mb < 2000 for mb in e2e["peak_rss_mb"].values())
    prep = result["preprocessing"]
    assert {"decode", "decode full size", "prepare vgg16", "prepare ensemble"} <= set(prep["steps"])
    assert prep["decode_min_side"] == 40
    steps = prep["steps"]
    assert prep["ensemble"] == pytest.approx(steps["decode"] + steps["prepare ensemble"])
    assert prep["per_model"]["vgg16"] == pytest.approx(steps["decode"] + steps["prepare vgg16"])
    assert all(v > 0 for v in steps.values())
    for text in ("Summary (cpu", "INT8/FP32 ensemble p50", "INT8/Keras FP32 ensemble p50", "predict cold start",
                 "ensemble/int8/cpu", "hardware:", "default path/OpenVINO stock ensemble p50",
                 "`hashtag predict` wall, largest/smallest photos", "`hashtag predict` peak RSS"):
        assert text in stdout


def test_fast_model_against_the_ensemble_in_the_same_run(quick_run) -> None:  # noqa: ANN001
    """The fast model's rows, its ratios to the ensemble round by round, `predict --fast`, the CPU's flags."""
    result, _, stdout = quick_run
    summary = result["summary"]
    here = faster_cpu_precision(cpu_features())[0]
    assert summary["fast_model"] == FAST and summary["fast_precision_here"] == here
    assert summary["int8_dot_product_flags"] == list(cpu_features().int8_flags)
    model = summary["fast_vs_ensemble_model_p50_ratio"]
    assert (model["numerator"], model["denominator"]) == (f"{FAST}/{here}/cpu", "ensemble/int8/cpu")
    per = {v["label"]: v["latency_ms_p50_per_round"] for v in result["variants"]}
    assert model["per_round"] == pytest.approx([a / b for a, b in zip(per[f"{FAST}/{here}/cpu"],
                                                                      per["ensemble/int8/cpu"])])
    assert model["target_max"] == pytest.approx(1 / 15)
    wall = summary["fast_vs_ensemble_predict_wall_ratio"]
    walls = result["e2e"]["wall_s"]
    assert wall["per_round"] == [walls["predict_fast_640x480"]["runs"][0] / walls["predict_640x480"]["runs"][0]]
    assert wall["cpu_kind"] == ("vnni" if cpu_features().int8_flags else "no_vnni")
    assert wall["target_max"] == pytest.approx(1 / 3 if cpu_features().int8_flags else 1 / 8)
    cold = summary["fast_predict_cold_start_s"]
    assert cold["median"] == walls["predict_fast_1"]["median"] and cold["target_max"] == 0.5
    times = result["end_to_end"]["fast_vs_ensemble_time"]["640x480"]
    assert len(times["per_round"]) == 2 and times["time_ratio_median_of_rounds"] > 0
    for text in ("fast model efficientnet_lite0", "fast/ensemble model p50", "`predict --fast` cold start"):
        assert text in stdout


def test_predict_on_large_and_small_photos(quick_run) -> None:  # noqa: ANN001
    """`hashtag predict FOLDER` per photo size: the wall-time ratio of largest to smallest, and peak RSS."""
    result, _, _ = quick_run
    e2e, summary = result["e2e"], result["summary"]
    ratio = summary["predict_large_vs_small_wall_ratio"]
    assert (ratio["numerator"], ratio["denominator"]) == ("predict_640x480", "predict_160x120")
    walls = e2e["wall_s"]
    assert ratio["per_round"] == [walls["predict_640x480"]["runs"][0] / walls["predict_160x120"]["runs"][0]]
    assert ratio["target_max"] == 1.25 and ratio["met"] == (ratio["ratio_median_of_rounds"] <= 1.25)
    rss = summary["predict_peak_rss_mb"]
    assert rss["per_size"] == {"640x480": e2e["peak_rss_mb"]["predict_640x480"],
                               "160x120": e2e["peak_rss_mb"]["predict_160x120"]}
    assert rss["max"] == max(rss["per_size"].values()) and rss["target_max"] == 450


def test_end_to_end_rows_per_photo_size(quick_run) -> None:  # noqa: ANN001
    result, out, _ = quick_run
    e2e = result["end_to_end"]
    assert e2e["provider"] == result["summary"]["default_cpu_provider"]
    assert [(r["size"], r["way"], r["models"]) for r in e2e["rows"]] == [
        ([640, 480], "pipelined", ENSEMBLE), ([640, 480], "full-decode", ENSEMBLE),
        ([160, 120], "pipelined", ENSEMBLE), ([160, 120], "full-decode", ENSEMBLE),
        ([640, 480], "pipelined", [FAST]), ([160, 120], "pipelined", [FAST])]
    for r in e2e["rows"]:
        assert r["photos"] == 3 and len(r["photos_per_s_per_round"]) == 2
        assert r["photos_per_s_best_round"] >= r["photos_per_s_median_round"] > 0
        assert r["rss_growth_mb_max"] is not None and r["rss_growth_mb_max"] >= 0  # Linux reports VmHWM
    speedup = e2e["pipelined_vs_full_decode"]["640x480"]
    rows = {(r["size"][0], r["way"]): r for r in e2e["rows"] if r["models"] == ENSEMBLE}
    pipelined, full = (rows[(640, way)]["photos_per_s_per_round"] for way in ("pipelined", "full-decode"))
    assert speedup["per_round"] == pytest.approx([a / b for a, b in zip(pipelined, full)])
    assert "| 640x480 | pipelined |" in (out / "bench.md").read_text()
    assert any(label.startswith("e2e/640x480/") for label in result["schedule"][0])


@pytest.mark.skipif(not OPENVINO, reason="needs openvino (hashtag[openvino])")
def test_openvino_rows_and_ratio(quick_run) -> None:  # noqa: ANN001
    result, _, stdout = quick_run
    labels = {v["label"] for v in result["variants"]}
    assert {"ensemble/int8/openvino", "ensemble/int8/openvino-stock"} <= labels
    ratio = result["summary"]["default_vs_openvino_ensemble_p50_ratio"]
    assert (ratio["numerator"], ratio["denominator"]) == ("ensemble/int8/openvino", "ensemble/int8/openvino-stock")
    assert ratio["target_max"] == 1.0 and len(ratio["per_round"]) == 2
    assert "ensemble/int8/openvino-stock" in stdout


def test_folder_of_images_precision_filter_and_batches(tiny_bundle: Path, photos: list[Path], tmp_path: Path) -> None:
    code, stdout, stderr = bench("--bundle", str(tiny_bundle), "--images", str(photos[0].parent), "--quick",
                                 "--precision", "int8", "--batch-sizes", "4,1", "--skip-e2e", "--out", str(tmp_path))
    assert code == 0, stderr
    result = json.loads((tmp_path / "bench.json").read_text())
    providers = (*RUNTIME_PROVIDERS, *(("openvino-stock",) if OPENVINO else ()))
    assert sorted((r["model"], r["provider"], r["batch"]) for r in result["rows"]) == sorted(
        itertools.product([m for m in MODELS if m != FAST], providers, (1, 4)))
    assert {r["precision"] for r in result["rows"]} == {"int8"}
    assert result["images"] == {"source": str(photos[0].parent), "count": 3, "files": [p.name for p in photos]}
    assert result["e2e"] is None
    assert result["summary"]["int8_fp32_ensemble_p50_ratio"]["ratio_median_of_rounds"] is None
    assert "predict cold start: n/a" in stdout


@pytest.mark.parametrize("args, message", [
    (["--batch-sizes", "4,8"], "include 1"),
    (["--batch-sizes", "1,x"], "comma-separated"),
    (["--rounds", "0"], "--rounds"),
    (["--photo-sizes", "4000x3000"], "at least two"),
    (["--photo-sizes", "4000by3000,1x1"], "like 4000x3000"),
])
def test_bad_options_are_usage_errors(tiny_bundle: Path, args: list[str], message: str) -> None:
    code, _, stderr = bench("--bundle", str(tiny_bundle), *args)
    assert code == 2 and message in stderr


def test_missing_bundle_is_one_line_error(tmp_path: Path) -> None:
    code, _, stderr = bench("--bundle", str(tmp_path / "nope"), "--quick", "--skip-e2e")
    assert code == 1 and "no model bundle" in stderr


@pytest.mark.skipif("CUDAExecutionProvider" in onnxruntime.get_available_providers(), reason="CUDA build")
def test_cuda_request_without_cuda_fails_clearly(tiny_bundle: Path) -> None:
    code, _, stderr = bench("--bundle", str(tiny_bundle), "--provider", "cuda", "--quick", "--skip-e2e")
    assert code == 1 and "CUDA" in stderr


def test_help_from_the_installed_command() -> None:
    proc = subprocess.run([sys.executable, "-c", "from hashtag.runtime.cli import main; main()", "bench", "--help"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    for option in ("--bundle", "--images", "--threads", "--rounds", "--runs", "--batch-sizes", "--out",
                   "--provider", "--quick", "--keras-run", "--photo-sizes", "--photo-count"):
        assert option in proc.stdout


def test_subprocess_peak_rss_is_the_childs_own() -> None:
    """A child that touches 150 MB reports about that, a small one far less: nothing inherited from pytest."""
    big = run_timed([sys.executable, "-c", "import time; b = b'x' * 150_000_000; time.sleep(0.3)"], timeout_s=60)
    small = run_timed([sys.executable, "-c", "import time; time.sleep(0.3)"], timeout_s=60)
    assert big.returncode == small.returncode == 0
    assert big.wall_s >= 0.3 and small.wall_s >= 0.3
    assert 150 <= big.peak_rss_mb < 250
    assert small.peak_rss_mb < 60


def make_keras_run(run: Path) -> Path:
    import keras

    for name, size in (("vgg16", 32), ("inceptionv3", 40), ("xception", 40)):
        inp = keras.Input((size, size, 3))
        out = keras.layers.Dense(4, activation="sigmoid")(keras.layers.GlobalAveragePooling2D()(inp))
        (run / name).mkdir(parents=True)
        keras.Model(inp, out).save(run / name / "model.keras")
    return run


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # raised inside keras under numpy 2
def test_keras_comparison(tiny_bundle: Path, tmp_path: Path) -> None:
    pytest.importorskip("tensorflow")
    run = make_keras_run(tmp_path / "run")
    code, stdout, stderr = bench("--bundle", str(tiny_bundle), "--quick", "--threads", "1", "--skip-e2e",
                                 "--precision", "int8", "--batch-sizes", "1,4", "--keras-run", str(run),
                                 "--out", str(tmp_path / "out"))
    assert code == 0, stderr
    result = json.loads((tmp_path / "out" / "bench.json").read_text())
    keras_rows = [r for r in result["rows"] if r["provider"] == "keras"]
    assert sorted((r["model"], r["batch"]) for r in keras_rows) == sorted(itertools.product([m for m in MODELS if m != FAST], (1, 4)))
    assert all(r["precision"] == "fp32" and r["latency_ms_p50"] > 0 for r in keras_rows)
    ratio = result["summary"]["int8_keras_ensemble_p50_ratio"]
    assert ratio["denominator"] == "ensemble/fp32/keras" and ratio["ratio_median_of_rounds"] > 0
    assert "INT8/Keras FP32 ensemble p50: n/a" not in stdout


def test_keras_run_without_models_is_an_error(tiny_bundle: Path, tmp_path: Path) -> None:
    code, _, stderr = bench("--bundle", str(tiny_bundle), "--quick", "--skip-e2e", "--keras-run", str(tmp_path))
    assert code == 1 and "model.keras" in stderr
