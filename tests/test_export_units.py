"""Fast checks of export settings, run-folder validation, graph naming and calibration feeding (no TensorFlow)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from hashtag.export.config import SEARCH_CANDIDATES, ExportConfig, QuantizationConfig
from hashtag.export.convert import finalize_graph
from hashtag.export.errors import ExportError
from hashtag.export.quantize import PixelReader, excluded_nodes
from hashtag.export.run import load_run
from hashtag.runtime import Preprocessing
from hashtag.runtime.cli import main

from tinybundle import CAFFE, TAGS, tiny_model


def test_quantization_config_names_and_validation() -> None:
    assert [c.name for c in SEARCH_CANDIDATES] == [
        "u8s8-minmax", "u8s8-percentile", "u8s8-percentile-float-adds", "u8s8-minmax-float-ends", "u8s8-entropy"]
    cfg = QuantizationConfig(calibration="percentile", percentile=99.9, per_channel=False, exclude_head=True,
                             exclude_op_types=["Add"])
    assert cfg.name == "u8s8-percentile99.9-per-tensor-float-head-float-Add"
    assert cfg.to_dict()["format"] == "QDQ" and cfg.exclude_op_types == ("Add",)
    with pytest.raises(ExportError, match="unknown calibration method"):
        QuantizationConfig(calibration="kl")
    with pytest.raises(ExportError, match="unknown activation type"):
        QuantizationConfig(activation_type="int4")
    with pytest.raises(ExportError, match="percentile"):
        QuantizationConfig(percentile=101)


def test_export_config_validation(tmp_path: Path) -> None:
    cfg = ExportConfig(tmp_path / "run", tmp_path / "data", tmp_path / "out", precisions=("fp32", "int8"))
    assert cfg.precisions == ("int8", "fp32")  # canonical order
    assert cfg.candidates[0] == cfg.quantization and len(cfg.candidates) == len(SEARCH_CANDIDATES)
    custom = QuantizationConfig(calibration="percentile")
    searched = ExportConfig(tmp_path / "run", tmp_path / "data", tmp_path / "out", quantization=custom)
    assert [c.name for c in searched.candidates][:2] == ["u8s8-percentile", "u8s8-minmax"]
    assert len(searched.candidates) == len(SEARCH_CANDIDATES)  # the duplicate is tried once
    single = ExportConfig(tmp_path / "run", tmp_path / "data", tmp_path / "out", quant_search=False)
    assert single.candidates == (single.quantization,)
    bad = {"precisions": ("int4",), "latency_runs": 5, "opset": 13, "on_map_drop": "ignore", "max_map_drop": 2.0,
           "parity_tolerance": 0.0, "calibration_images": 0}
    for key, value in bad.items():
        with pytest.raises(ExportError):
            ExportConfig(tmp_path / "run", tmp_path / "data", tmp_path / "out", **{key: value})
    with pytest.raises(ExportError, match="must not be the training run"):
        ExportConfig(tmp_path / "run", tmp_path / "data", tmp_path / "run")


def _fake_run(root: Path, models: tuple[str, ...] = ("vgg16", "xception", "inceptionv3")) -> Path:
    root.mkdir(parents=True)
    (root / "run.json").write_text(json.dumps({"version": 1, "tags": list(TAGS), "models": list(models)}))
    (root / "ensemble.json").write_text(json.dumps({"thresholds": {t: 0.5 for t in TAGS}}))
    for i, name in enumerate(models):
        (root / name).mkdir()
        (root / name / "model.keras").write_bytes(b"not read by load_run")
        (root / name / "model.json").write_text(json.dumps({
            "name": name, "input_size": 32, "preprocessing": CAFFE, "tags": list(TAGS),
            "thresholds": {t: 0.1 * (i + 1) for t in TAGS}}))
    return root


def test_load_run_validates_and_picks_ensemble_thresholds(tmp_path: Path) -> None:
    root = _fake_run(tmp_path / "run")
    assert load_run(root).ensemble_thresholds() == ({t: 0.5 for t in TAGS}, "ensemble.json")
    one = load_run(root, ["xception"])
    assert [m.name for m in one.models] == ["xception"]
    assert one.ensemble_thresholds()[0] == {t: 0.2 for t in TAGS}
    two = load_run(root, ["vgg16", "xception"]).ensemble_thresholds()[0]
    assert two == pytest.approx({t: 0.15 for t in TAGS})
    with pytest.raises(ExportError, match="has no model 'resnet'"):
        load_run(root, ["resnet"])
    card = json.loads((root / "vgg16" / "model.json").read_text())
    other = ["a", "b", "c", "d"]  # consistent in itself, not with run.json
    card.update(tags=other, thresholds=dict.fromkeys(other, 0.5))
    (root / "vgg16" / "model.json").write_text(json.dumps(card))
    with pytest.raises(ExportError, match="differ from run.json"):
        load_run(root)
    (root / "xception" / "model.keras").unlink()
    with pytest.raises(ExportError, match="model.keras does not exist"):
        load_run(root, ["xception"])
    with pytest.raises(ExportError, match="run.json does not exist"):
        load_run(tmp_path)


def test_finalize_graph_names_io_and_batch() -> None:
    model = tiny_model(32, len(TAGS), seed=1)
    graph = model.graph
    for value in (graph.input[0], graph.output[0]):
        value.type.tensor_type.shape.dim[0].dim_param = "unk__1"
    graph.node[0].input[0] = graph.input[0].name = "input_1"
    graph.node[-1].output[0] = graph.output[0].name = "dense"
    fixed = finalize_graph(model, 32, len(TAGS))
    assert (fixed.graph.input[0].name, fixed.graph.output[0].name) == ("image", "probabilities")
    assert fixed.graph.node[0].input[0] == "image" and fixed.graph.node[-1].output[0] == "probabilities"
    assert fixed.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    with pytest.raises(ExportError, match="expected \\[batch, 40, 40, 3\\]"):
        finalize_graph(tiny_model(32, len(TAGS), seed=1), 40, len(TAGS))


def test_excluded_nodes_always_include_the_output_node() -> None:
    model = tiny_model(32, len(TAGS), seed=1)
    for i, node in enumerate(model.graph.node):
        node.name = f"n{i}"
    assert excluded_nodes(model, QuantizationConfig()) == ["n3"]  # the Sigmoid
    head = excluded_nodes(model, QuantizationConfig(exclude_head=True))
    assert head == ["n3", "n1", "n2"]  # MatMul and everything after it
    assert excluded_nodes(model, QuantizationConfig(exclude_residual_adds=True)) == ["n3"]  # bias Add is not residual
    with pytest.raises(ExportError, match="lacks"):
        excluded_nodes(model, QuantizationConfig(exclude_nodes=("conv_typo",)))


def test_pixel_reader_feeds_normalized_batches_in_ranges() -> None:
    pixels = np.arange(10 * 4 * 4 * 3, dtype=np.uint8).reshape(10, 4, 4, 3)
    prep = Preprocessing.from_dict(CAFFE)
    reader = PixelReader(pixels, prep, "image", 4)
    assert len(reader) == 3
    sizes = []
    while (batch := reader.get_next()) is not None:
        sizes.append(len(batch["image"]))
    assert sizes == [4, 4, 2]
    reader.set_range(1, 2)
    only = reader.get_next()
    assert only is not None and reader.get_next() is None
    expected = pixels[4:8, ..., ::-1].astype(np.float32) - np.array(CAFFE["mean"], dtype=np.float32)
    assert np.allclose(only["image"], expected)


def test_cli_reports_bad_options(tmp_path: Path) -> None:
    run, data = _fake_run(tmp_path / "run"), tmp_path / "data"
    data.mkdir()
    runner = CliRunner()
    missing = runner.invoke(main, ["export", "--data", str(data), "--out", str(tmp_path / "o")])
    assert missing.exit_code == 2 and "--run" in missing.output
    bad = runner.invoke(main, ["export", "--run", str(run), "--data", str(data), "--out", str(tmp_path / "o"),
                               "--precisions", "int8,int4"])
    assert bad.exit_code == 1 and "precisions must be a non-empty subset" in bad.output
    no_data = runner.invoke(main, ["export", "--run", str(run), "--data", str(data), "--out", str(tmp_path / "o")])
    assert no_data.exit_code == 1 and "not a dataset folder" in no_data.output
    assert not (tmp_path / "o").exists()
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "manifest.json").write_text('{"something": "else"}')
    foreign = runner.invoke(main, ["export", "--run", str(run), "--data", str(data), "--out", str(tmp_path / "o")])
    assert foreign.exit_code == 1 and "is not a bundle manifest" in foreign.output
