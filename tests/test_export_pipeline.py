"""hashtag export end to end on tiny Keras models: real tf2onnx conversion, real images, real ONNX Runtime.

The tiny models score colour tags ("red", "green", "blue", "bright") from the image's mean colour
(plus a small contribution from real conv layers, one with a residual Add), and the dataset labels
come from the same colours, so validation mAP is meaningful and a broken export shows up in it.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from click.testing import CliRunner
from onnx import numpy_helper
from PIL import Image

from hashtag.export.config import QuantizationConfig
from hashtag.export.errors import ParityError
from hashtag.export.evaluate import Accuracy, accuracy, predict
from hashtag.export.parity import check_parity
from hashtag.export.quantize import PixelReader, prepare_for_quantization
from hashtag.export.report import MODEL_COLUMNS, REPORT_NAME
from hashtag.export.search import SearchSettings, search_int8
from hashtag.runtime import Preprocessing, Tagger, load_bundle
from hashtag.runtime.cli import main
from hashtag.runtime.images import load_image
from hashtag.runtime.preprocess import normalize, prepare_batch, resize_rgb
from hashtag.train.dataset import load_dataset

keras = pytest.importorskip("keras")

TAGS = ("red", "green", "blue", "bright")
# score_t = sum_c COLOUR[c, t] * mean pixel value of channel c (RGB) + OFFSET[t]; label = score > 0
COLOUR = np.array([[1.0, -0.5, -0.5, 1 / 3], [-0.5, 1.0, -0.5, 1 / 3], [-0.5, -0.5, 1.0, 1 / 3]])
OFFSET = np.array([0.0, 0.0, 0.0, -128.0])
LOGIT_SCALE = 1 / 20
CAFFE = {"family": "caffe", "color_order": "BGR", "mean": [103.939, 116.779, 123.68], "std": [1.0, 1.0, 1.0],
         "resize": "bilinear"}
TF = {"family": "tf", "color_order": "RGB", "mean": [127.5] * 3, "std": [127.5] * 3, "resize": "bilinear"}
MODELS = {"vgg16": (32, CAFFE, False), "xception": (40, TF, True)}  # name: (input size, preprocessing, residual)
N_IMAGES = {"train": 36, "val": 24, "test": 4}


def _colour_head(prep: Preprocessing) -> tuple[np.ndarray, np.ndarray]:
    """Dense weights turning the mean of preprocessed input channels back into the colour scores."""
    rgb_of_input = [2, 1, 0] if prep.color_order == "BGR" else [0, 1, 2]
    w = np.stack([COLOUR[rgb_of_input[i]] * prep.std[i] for i in range(3)]) * LOGIT_SCALE
    b = (sum(COLOUR[rgb_of_input[i]] * prep.mean[i] for i in range(3)) + OFFSET) * LOGIT_SCALE
    return w.astype(np.float32), b.astype(np.float32)


def _tiny_model(size: int, prep: Preprocessing, residual: bool, seed: int) -> Any:
    keras.utils.set_random_seed(seed)
    inp = keras.Input((size, size, 3))
    colour = keras.layers.GlobalAveragePooling2D()(inp)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inp)
    if residual:
        y = keras.layers.Conv2D(8, 3, padding="same")(x)
        y = keras.layers.BatchNormalization()(y)
        x = keras.layers.ReLU()(keras.layers.Add()([x, y]))
    x = keras.layers.GlobalAveragePooling2D()(x)
    dense = keras.layers.Dense(len(TAGS), activation="sigmoid")
    out = dense(keras.layers.Concatenate()([colour, x]))
    model = keras.Model(inp, out)
    w, b = _colour_head(prep)
    rng = np.random.default_rng(seed)
    conv_w = rng.normal(0, 1e-3, (8, len(TAGS))).astype(np.float32)
    dense.set_weights([np.concatenate([w, conv_w]), b])
    return model


def _photo(path: Path, rng: np.random.Generator) -> None:
    w, h = [(64, 48), (48, 64), (56, 56)][int(rng.integers(3))]
    base = rng.uniform(0, 255, 3)
    yy, xx = np.mgrid[0:h, 0:w]
    arr = base + 30 * np.sin(xx[..., None] / 7 + rng.uniform(0, 6, 3)) + rng.normal(0, 12, (h, w, 3))
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.clip(arr + 0 * yy[..., None], 0, 255).astype(np.uint8), "RGB").save(path, quality=92)


def make_dataset(root: Path, seed: int = 0) -> Path:
    """A dataset folder in the documented format; labels are the colour scores' signs."""
    rng = np.random.default_rng(seed)
    rows = ["\t".join(["photo_id", "split", "file", *TAGS])]
    for split, n in N_IMAGES.items():
        for i in range(n):
            pid = f"{split}{i:03d}"
            rel = f"images/{pid[:2]}/{pid}.jpg"
            _photo(root / rel, rng)
            mean_rgb = np.asarray(load_image(root / rel), dtype=np.float64).reshape(-1, 3).mean(0)
            labels = (mean_rgb @ COLOUR + OFFSET > 0).astype(int)
            rows.append("\t".join([pid, split, rel, *map(str, labels)]))
    (root / "labels.tsv").write_text("\n".join(rows) + "\n")
    summary = {"photos": sum(N_IMAGES.values()), "splits": N_IMAGES}
    (root / "dataset.json").write_text(json.dumps({"version": 1, "tags": list(TAGS), "summary": summary}))
    return root


VOCABULARY = {"vocabulary": {"mode": "rule", "min_positives": 150, "deny": ["blue"]},
              "partial_labels": {"source_column": "photo_source", "unknown_for": {TAGS[0]: ["scenes"]}}}


def make_run(root: Path) -> Path:
    """A training run folder as ``hashtag train`` writes it, with tiny Keras models."""
    root.mkdir(parents=True, exist_ok=True)
    for seed, (name, (size, prep, residual)) in enumerate(MODELS.items()):
        folder = root / name
        folder.mkdir()
        _tiny_model(size, Preprocessing.from_dict(prep), residual, seed).save(folder / "model.keras")
        (folder / "model.json").write_text(json.dumps({
            "name": name, "backbone": f"tiny-{name}", "input_size": size, "preprocessing": prep,
            "tags": list(TAGS), "thresholds": {t: 0.4 + 0.05 * i for i, t in enumerate(TAGS)},
            "weights_source": {"source": "random init", "seed": seed}, "head": {"pooled": True},
            "loss": "bce", "metrics": {"val": {"mAP": 0.9}, "test": {"mAP": 0.88}}, "training": {"epochs": 0},
        }))
    (root / "run.json").write_text(json.dumps({"version": 1, "tags": list(TAGS), "dataset": "tiny-colours",
                                               "models": list(MODELS), "seed": 0, **VOCABULARY}))
    (root / "ensemble.json").write_text(json.dumps({"thresholds": {t: 0.5 for t in TAGS}, "metrics": {"val": {}}}))
    return root


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A full export through the CLI: both models, int8 + fp16 + fp32, with the recipe search."""
    tmp = tmp_path_factory.mktemp("export")
    data, run, out = make_dataset(tmp / "data"), make_run(tmp / "run"), tmp / "bundle"
    result = CliRunner().invoke(main, ["export", "--run", str(run), "--data", str(data), "--out", str(out),
                                       "--calibration-images", "16", "--parity-images", "8", "--threads", "1"])
    assert result.exit_code == 0, result.output
    return {"data": data, "run": run, "out": out}


def _keras_probs(run: Path, name: str, images: list[Image.Image]) -> np.ndarray:
    size, prep, _ = MODELS[name]
    model = keras.models.load_model(run / name / "model.keras", compile=False)
    return model.predict(prepare_batch(images, size, Preprocessing.from_dict(prep)), verbose=0)


def _val_images(data: Path) -> list[Image.Image]:
    return [load_image(r.path) for r in load_dataset(data).split("val")]


def test_runtime_loads_bundle_and_agrees_with_keras(exported: dict[str, Path]) -> None:
    images = _val_images(exported["data"])
    fp32 = Tagger(exported["out"], provider="cpu", precision="fp32").probabilities(images)
    int8_tagger = Tagger(exported["out"], provider="cpu", precision="int8")
    assert {m.variant.precision for m in int8_tagger.models} == {"int8"}
    int8 = int8_tagger.probabilities(images)
    for name in MODELS:
        keras_probs = _keras_probs(exported["run"], name, images)
        assert np.abs(fp32[name] - keras_probs).max() < 1e-4
        int8_error = np.abs(int8[name] - keras_probs)
        assert int8_error.max() < 0.1 and int8_error.mean() < 0.02
        assert np.std(keras_probs, axis=0).min() > 0.05  # the models really discriminate
    labels = load_dataset(exported["data"]).labels("val")
    assert accuracy(labels, fp32["vgg16"], TAGS).map > 0.9


def test_manifest_records_everything(exported: dict[str, Path]) -> None:
    out = exported["out"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["format"] == "hashtag-bundle" and manifest["version"] == 1
    assert manifest["ensemble"]["thresholds"] == {t: 0.5 for t in TAGS}  # from ensemble.json: all models exported
    assert [m["name"] for m in manifest["models"]] == list(MODELS)
    for entry in manifest["models"]:
        size, prep, _ = MODELS[entry["name"]]
        assert entry["input_size"] == size and entry["preprocessing"] == prep and entry["tags"] == list(TAGS)
        assert entry["thresholds"] == {t: 0.4 + 0.05 * i for i, t in enumerate(TAGS)}
        assert [v["precision"] for v in entry["variants"]] == ["int8", "fp16", "fp32"]
        for v in entry["variants"]:
            data = (out / v["file"]).read_bytes()
            assert v["sha256"] == hashlib.sha256(data).hexdigest() and v["bytes"] == len(data)
        meta = entry["metadata"]
        assert meta["backbone"] == f"tiny-{entry['name']}" and meta["weights_source"]["source"] == "random init"
        assert meta["metrics"]["val"]["mAP"] == 0.9
        assert meta["training_data"]["summary"]["photos"] == sum(N_IMAGES.values())
        export = meta["export"]
        assert export["parity_vs_keras"]["fp32"]["max_abs_diff"] < 1e-4
        assert export["parity_vs_keras"]["fp32"]["n_images"] == 8
        assert set(export["validation"]) == {"int8", "fp16", "fp32"}
        assert export["validation"]["int8"]["map_delta_vs_fp32"] >= -0.01
        assert export["quantization"]["config"]["activation_type"] == "uint8"
        assert export["quantization"]["calibration_images"] == 16
        assert export["nodes"]["int8"]["quantized_ops"] > 0
        assert export["latency_ms_batch1_cpu"]["int8"]["runs"] == 20
        assert export["conversion"]["versions"]["tf2onnx"]
    assert manifest["export"]["val_images"] == N_IMAGES["val"]
    for key, value in VOCABULARY.items():  # the vocabulary rule and partial labels travel with the models
        assert manifest[key] == value
    bundle = load_bundle(out)
    assert bundle.tags == TAGS


def test_onnx_graphs_have_named_io_and_dynamic_batch(exported: dict[str, Path]) -> None:
    model = onnx.load(str(exported["out"] / "vgg16.fp32.onnx"))
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17
    (inp,), (out,) = model.graph.input, model.graph.output
    assert (inp.name, out.name) == ("image", "probabilities")
    assert inp.type.tensor_type.shape.dim[0].dim_param == "batch"
    session = ort.InferenceSession(str(exported["out"] / "xception.fp32.onnx"), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).uniform(-1, 1, (3, 40, 40, 3)).astype(np.float32)
    batched = session.run(None, {"image": x})[0]
    single = np.concatenate([session.run(None, {"image": x[i : i + 1]})[0] for i in range(3)])
    assert batched.shape == (3, len(TAGS)) and np.abs(batched - single).max() < 1e-6


def test_int8_is_static_qdq_with_float_sigmoid(exported: dict[str, Path]) -> None:
    model = onnx.load(str(exported["out"] / "xception.int8.onnx"))
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("QuantizeLinear") > 0 and ops.count("DequantizeLinear") > 0
    assert not {"QLinearConv", "ConvInteger", "DynamicQuantizeLinear"} & set(ops)  # QDQ, never QOperator/dynamic
    last = next(n for n in model.graph.node if "probabilities" in n.output)
    assert last.op_type == "Sigmoid"  # the output is not quantized to a 1/256 grid
    probs = Tagger(exported["out"], provider="cpu", precision="int8").probabilities(_val_images(exported["data"]))
    levels = np.unique(np.round(probs["xception"] * 256, 3))
    assert not np.allclose(levels, np.round(levels))


def test_fp16_variant_keeps_float32_io(exported: dict[str, Path]) -> None:
    path = exported["out"] / "vgg16.fp16.onnx"
    model = onnx.load(str(path))
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in model.graph.initializer)
    images = _val_images(exported["data"])
    tagger = Tagger(exported["out"], provider="cpu", precision="fp16")
    assert tagger.models[0].session.get_inputs()[0].type == "tensor(float)"
    assert tagger.models[0].session.get_outputs()[0].type == "tensor(float)"
    fp16 = tagger.probabilities(images)["vgg16"]
    assert np.abs(fp16 - _keras_probs(exported["run"], "vgg16", images)).max() < 1e-2


def test_report_has_every_model_and_precision(exported: dict[str, Path]) -> None:
    text = (exported["out"] / REPORT_NAME).read_text()
    assert "**Status: OK**" in text
    header = "| " + " | ".join(MODEL_COLUMNS) + " |"
    assert header in text
    models_section = text.split("## Models")[1].split("\n## ")[0]
    rows = [line for line in models_section.splitlines() if line.startswith(("| vgg16 |", "| xception |"))]
    assert [r.split("|")[2].strip() for r in rows] == ["int8", "fp16", "fp32"] * 2
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert len(cells) == len(MODEL_COLUMNS) and "n/a" not in cells[3:9]
    assert "### INT8 recipes tried for xception" in text and "**chosen**" in text
    assert "Ensemble latency" in text


def test_parity_check_fails_on_a_wrong_graph(exported: dict[str, Path], tmp_path: Path) -> None:
    images = _val_images(exported["data"])[:8]
    reference = _keras_probs(exported["run"], "vgg16", images)
    x = prepare_batch(images, 32, Preprocessing.from_dict(CAFFE))
    good = exported["out"] / "vgg16.fp32.onnx"
    assert check_parity(good, x, reference, tolerance=1e-4).max_abs_diff < 1e-4
    model = onnx.load(str(good))
    matmul = next(n for n in model.graph.node if n.op_type == "MatMul")
    init = next(i for i in model.graph.initializer if i.name == matmul.input[1])
    init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) + np.float32(1e-3), init.name))
    bad = tmp_path / "bad.onnx"
    onnx.save(model, str(bad))
    with pytest.raises(ParityError, match="differs from Keras"):
        check_parity(bad, x, reference, tolerance=1e-4)


def test_recipe_search_tries_levers_and_keeps_nodes_float(exported: dict[str, Path], tmp_path: Path) -> None:
    prep = Preprocessing.from_dict(TF)
    dataset = load_dataset(exported["data"])
    def pixels(split: str) -> np.ndarray:
        return np.stack([resize_rgb(load_image(r.path), 40) for r in dataset.split(split)])

    val, labels = pixels("val"), dataset.labels("val")
    prepared = prepare_for_quantization(exported["out"] / "xception.fp32.onnx", tmp_path / "x.prepared.onnx")
    reader = PixelReader(pixels("train")[:12], prep, "image", 4)
    def evaluate(path: Path) -> Accuracy:
        return accuracy(labels, predict(path, val, prep), TAGS)

    baseline = evaluate(exported["out"] / "xception.fp32.onnx")
    recipes = [QuantizationConfig(), QuantizationConfig(exclude_first_conv=True, exclude_head=True),
               QuantizationConfig(calibration="percentile", exclude_residual_adds=True)]
    settings = SearchSettings(stop_drop=-1.0, tie=1.0, latency_runs=20, latency_warmup=1, threads=1)
    chosen, tried = search_int8(prepared, tmp_path, reader, recipes, evaluate, baseline,
                                normalize(val[:1], prep), settings, log=lambda msg: None)
    assert [c.config.name for c in tried] == ["u8s8-minmax", "u8s8-minmax-float-ends", "u8s8-percentile-float-adds"]
    graph = onnx.load(str(prepared)).graph
    ops = {n.name: n.op_type for n in graph.node}
    assert [ops[n] for n in tried[0].excluded] == ["Sigmoid"]
    float_ends = {ops[n] for n in tried[1].excluded}
    assert {"Conv", "Sigmoid"} <= float_ends and float_ends & {"MatMul", "Gemm"}  # pre-processing fuses the bias
    assert "Add" in {ops[n] for n in tried[2].excluded}
    assert all(c.latency is not None for c in tried) and chosen.chosen  # all tie, so latency decided
    assert sorted(p.name for p in tmp_path.glob("*.calibration-*.json")) == [
        "x.prepared.calibration-minmax.json", "x.prepared.calibration-percentile-99.99.json"]


def test_selected_models_and_precisions_only(exported: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "one"
    shutil.copytree(exported["out"], out)  # re-exporting over a bundle replaces all of its files
    result = CliRunner().invoke(main, [
        "export", "--run", str(exported["run"]), "--data", str(exported["data"]), "--out", str(out),
        "--models", "xception", "--precisions", "int8", "--no-quant-search", "--calibration", "percentile",
        "--exclude-residual-adds", "--calibration-images", "8", "--parity-images", "4", "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == [REPORT_NAME, "manifest.json", "xception.int8.onnx"]
    manifest = json.loads((out / "manifest.json").read_text())
    (entry,) = manifest["models"]
    assert [v["precision"] for v in entry["variants"]] == ["int8"]
    assert entry["metadata"]["export"]["quantization"]["config"]["name"] == "u8s8-percentile-float-adds"
    assert [c["name"] for c in entry["metadata"]["export"]["quantization"]["candidates"]] == [
        "u8s8-percentile-float-adds"]
    assert manifest["ensemble"]["thresholds"] == entry["thresholds"]  # one model keeps its own thresholds
    assert "| xception | fp32 | no (reference) |" in (out / REPORT_NAME).read_text()
