"""Keras -> ONNX with tf2onnx, one child process per model.

Route: ``tf2onnx.convert.from_keras`` with an explicit ``input_signature`` (probed on tf2onnx 1.17.0 +
TF 2.21 / Keras 3 to parity ~2e-7). tf2onnx holds 4-12 GB per real model and never gives it back,
so each conversion runs in ``python -m hashtag.export.convert``; the child also computes the Keras
reference probabilities for the parity check, so the parent process never imports TensorFlow.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import onnx

from hashtag.export.errors import ExportError

INPUT_NAME = "image"
OUTPUT_NAME = "probabilities"
BATCH_DIM = "batch"
ROUTE = "tf2onnx.convert.from_keras(input_signature=[None, S, S, 3] float32)"
REFERENCE_BATCH = 16


@dataclass(frozen=True)
class Conversion:
    """A converted FP32 ONNX file with Keras' probabilities for the reference inputs."""

    onnx_path: Path
    reference: np.ndarray
    info: dict[str, Any]


def _rename(graph: onnx.GraphProto, old: str, new: str) -> None:
    if old == new:
        return
    for node in graph.node:
        node.input[:] = [new if n == old else n for n in node.input]
        node.output[:] = [new if n == old else n for n in node.output]
    for value in [*graph.input, *graph.output, *graph.value_info]:
        if value.name == old:
            value.name = new


def finalize_graph(model: onnx.ModelProto, input_size: int, n_tags: int) -> onnx.ModelProto:
    """Name the input 'image' and the output 'probabilities', make the batch dimension a named
    dynamic one, and check the shapes the runtime expects."""
    graph = model.graph
    if len(graph.input) != 1 or len(graph.output) != 1:
        raise ExportError(f"expected one graph input and one output, got {len(graph.input)} and {len(graph.output)}")
    _rename(graph, graph.input[0].name, INPUT_NAME)
    _rename(graph, graph.output[0].name, OUTPUT_NAME)
    for value, expected in ((graph.input[0], [input_size, input_size, 3]), (graph.output[0], [n_tags])):
        dims = value.type.tensor_type.shape.dim
        if value.type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
            raise ExportError(f"graph {value.name} must be float32")
        fixed = [d.dim_value for d in dims[1:]]
        if len(dims) != len(expected) + 1 or fixed != expected:
            raise ExportError(f"graph {value.name} has shape {[d.dim_value or d.dim_param for d in dims]}, "
                              f"expected [batch, {', '.join(map(str, expected))}]")
        dims[0].Clear()
        dims[0].dim_param = BATCH_DIM
    onnx.checker.check_model(model)
    return model


def _versions() -> dict[str, str]:
    import keras
    import tensorflow as tf
    import tf2onnx

    return {"tensorflow": tf.__version__, "keras": keras.__version__, "tf2onnx": tf2onnx.__version__,
            "onnx": onnx.__version__}


def convert_keras(keras_path: Path, onnx_path: Path, input_size: int, opset: int,
                  reference_inputs: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
    """Convert in this process (it imports TensorFlow); returns Keras' reference probabilities and facts."""
    import keras
    import tensorflow as tf
    import tf2onnx

    start = time.perf_counter()
    model = keras.models.load_model(keras_path, compile=False)
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ExportError(f"{keras_path}: expected one input and one output")
    in_shape, out_shape = tuple(model.inputs[0].shape), tuple(model.outputs[0].shape)
    if in_shape[1:] != (input_size, input_size, 3):
        raise ExportError(f"{keras_path}: input shape {in_shape} does not match input_size {input_size}")
    spec = (tf.TensorSpec((None, input_size, input_size, 3), tf.float32, name=INPUT_NAME),)
    proto, _ = tf2onnx.convert.from_keras(model, input_signature=spec, opset=opset)
    proto = finalize_graph(proto, input_size, int(out_shape[-1]))
    proto.producer_name = "hashtag-export (tf2onnx)"
    onnx.save(proto, onnx_path)
    seconds = time.perf_counter() - start
    reference = model.predict(reference_inputs, batch_size=REFERENCE_BATCH, verbose=0).astype(np.float32)
    info = {"route": ROUTE, "opset": opset, "versions": _versions(), "seconds": round(seconds, 1),
            "keras_input_shape": list(in_shape), "keras_output_shape": list(out_shape)}
    return reference, info


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no error message"


def convert_in_subprocess(keras_path: Path, onnx_path: Path, input_size: int, reference_inputs: np.ndarray,
                          opset: int = 17, timeout_s: float = 3600.0) -> Conversion:
    """Run ``convert_keras`` in a fresh interpreter so tf2onnx's memory goes away with it."""
    with tempfile.TemporaryDirectory(prefix="hashtag-convert-") as tmp:
        inputs, outputs, info_path = Path(tmp, "inputs.npy"), Path(tmp, "reference.npy"), Path(tmp, "info.json")
        np.save(inputs, np.ascontiguousarray(reference_inputs, dtype=np.float32))
        cmd = [sys.executable, "-m", "hashtag.export.convert", "--keras", str(keras_path), "--onnx", str(onnx_path),
               "--input-size", str(input_size), "--opset", str(opset), "--inputs", str(inputs),
               "--reference", str(outputs), "--info", str(info_path)]
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, env=env, check=False)
        except subprocess.TimeoutExpired:
            raise ExportError(f"converting {keras_path} took longer than {timeout_s:.0f} s") from None
        if proc.returncode < 0:
            name = signal.Signals(-proc.returncode).name
            raise ExportError(f"converting {keras_path}: the converter was killed by {name} (out of memory?)")
        if proc.returncode != 0:
            raise ExportError(f"converting {keras_path} failed: {_last_line(proc.stderr)}")
        return Conversion(Path(onnx_path), np.load(outputs), json.loads(info_path.read_text()))


def main(argv: Sequence[str] | None = None) -> int:
    """Child entry point; prints 'error: ...' as its last stderr line on failure."""
    parser = argparse.ArgumentParser(prog="python -m hashtag.export.convert", description=__doc__)
    parser.add_argument("--keras", type=Path, required=True)
    parser.add_argument("--onnx", type=Path, required=True)
    parser.add_argument("--input-size", type=int, required=True)
    parser.add_argument("--opset", type=int, default=17)
    parser.add_argument("--inputs", type=Path, required=True, help="float32 .npy of preprocessed images")
    parser.add_argument("--reference", type=Path, required=True, help="where Keras' probabilities go (.npy)")
    parser.add_argument("--info", type=Path, required=True, help="where conversion facts go (.json)")
    args = parser.parse_args(argv)
    try:
        reference, info = convert_keras(args.keras, args.onnx, args.input_size, args.opset, np.load(args.inputs))
    except Exception as exc:  # the parent shows this one line
        print(f"error: {type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}",
              file=sys.stderr)
        return 1
    np.save(args.reference, reference)
    args.info.write_text(json.dumps(info))
    return 0


if __name__ == "__main__":
    sys.exit(main())
