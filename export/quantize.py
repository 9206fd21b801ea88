"""INT8 static QDQ quantization (calibrated on real images) and FP16 conversion of FP32 exports.

Never QOperator (it silently zeroed Xception's features) and never dynamic quantization (ConvInteger
made these CNNs 5-8x slower): only ``quantize_static`` in QDQ format, which ONNX Runtime fuses into
QLinearConv at load time.
"""
from __future__ import annotations

import contextlib
import io
import logging
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from hashtag.export.config import QuantizationConfig
from hashtag.export.errors import ExportError
from hashtag.runtime.manifest import Preprocessing
from hashtag.runtime.preprocess import normalize

_METHODS = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
            "percentile": CalibrationMethod.Percentile}
_TYPES = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}
_HEAD_START = ("MatMul", "Gemm")


class PixelReader(CalibrationDataReader):
    """Feeds uint8 calibration pixels, normalized batch by batch, to ONNX Runtime's calibrator.

    ``__len__``/``set_range`` let the calibrator collect one batch at a time (CalibStridedMinMax=1):
    otherwise it keeps every intermediate tensor of every calibration image in memory at once.
    """

    def __init__(self, pixels: np.ndarray, prep: Preprocessing, input_name: str, batch_size: int) -> None:
        self.pixels, self.prep, self.input_name, self.batch_size = pixels, prep, input_name, batch_size
        self._next, self._end = 0, len(self)

    def __len__(self) -> int:
        return (len(self.pixels) + self.batch_size - 1) // self.batch_size

    def set_range(self, start_index: int, end_index: int) -> None:
        self._next, self._end = start_index, min(end_index, len(self))

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._next >= self._end:
            return None
        start = self._next * self.batch_size
        self._next += 1
        return {self.input_name: normalize(self.pixels[start : start + self.batch_size], self.prep)}

    def rewind(self) -> None:
        """Start over (every calibration run reads the images from the beginning)."""
        self.set_range(0, len(self))


def prepare_for_quantization(fp32_path: Path, out_path: Path) -> Path:
    """ONNX Runtime's pre-processing: symbolic shape inference and graph optimization (needs sympy)."""
    quant_pre_process(str(fp32_path), str(out_path), skip_symbolic_shape=False)
    return out_path


def _consumers(graph: onnx.GraphProto) -> dict[str, list[onnx.NodeProto]]:
    users: dict[str, list[onnx.NodeProto]] = defaultdict(list)
    for node in graph.node:
        for name in node.input:
            users[name].append(node)
    return users


def _descendants(graph: onnx.GraphProto, start: onnx.NodeProto) -> list[str]:
    users, seen, todo = _consumers(graph), {start.name}, [start]
    while todo:
        for out in todo.pop().output:
            for user in users.get(out, []):
                if user.name not in seen:
                    seen.add(user.name)
                    todo.append(user)
    return [n.name for n in graph.node if n.name in seen]


def excluded_nodes(model: onnx.ModelProto, config: QuantizationConfig) -> list[str]:
    """Node names to keep in float for ``config``, always including the node producing the output
    (the final Sigmoid)."""
    graph = model.graph
    if any(not n.name for n in graph.node):
        raise ExportError("every node needs a name before quantization (run prepare_for_quantization first)")
    outputs = {o.name for o in graph.output}
    names = [n.name for n in graph.node if outputs & set(n.output)]
    convs = [n for n in graph.node if n.op_type == "Conv"]
    if config.exclude_first_conv and convs:
        names.append(convs[0].name)
    head = [n for n in graph.node if n.op_type in _HEAD_START]
    if config.exclude_head and head:
        names += _descendants(graph, head[0])
    if config.exclude_residual_adds:
        constants = {i.name for i in graph.initializer} | {o for n in graph.node if n.op_type == "Constant" for o in n.output}
        names += [n.name for n in graph.node
                  if n.op_type in ("Add", "Sum") and sum(i not in constants for i in n.input) >= 2]
    names += [n.name for n in graph.node if n.op_type in config.exclude_op_types]
    known = {n.name for n in graph.node}
    unknown = [n for n in config.exclude_nodes if n not in known]
    if unknown:
        raise ExportError(f"cannot exclude nodes that the graph lacks: {unknown}")
    names += list(config.exclude_nodes)
    return list(dict.fromkeys(names))


def quantize_int8(prepared_path: Path, out_path: Path, reader: PixelReader, config: QuantizationConfig,
                  cache_dir: Path) -> list[str]:
    """Write the INT8 QDQ model; returns the nodes kept in float.

    Calibration ranges are cached per model and calibration method in ``cache_dir`` (exclusions do
    not change them), so a search over exclusions calibrates once per method.
    """
    model = onnx.load(str(prepared_path))
    excluded = excluded_nodes(model, config)
    extra = {"CalibStridedMinMax": 1, "CalibPercentile": config.percentile}
    reader.rewind()
    quiet = io.StringIO()  # the calibrators print progress lines to stdout
    logger = logging.getLogger()
    level = logger.level
    try:
        logger.setLevel(logging.ERROR)
        with contextlib.redirect_stdout(quiet):
            quantize_static(
                str(prepared_path), str(out_path), reader,
                quant_format=QuantFormat.QDQ,
                activation_type=_TYPES[config.activation_type],
                weight_type=_TYPES[config.weight_type],
                per_channel=config.per_channel,
                calibrate_method=_METHODS[config.calibration],
                nodes_to_exclude=excluded,
                extra_options=extra,
                calibration_cache_path=str(cache_dir / f"{prepared_path.stem}.calibration-{config.calibration_key}.json"),
            )
    except (ValueError, RuntimeError, onnx.checker.ValidationError) as exc:
        raise ExportError(f"quantization {config.name} failed: {str(exc).strip().splitlines()[0]}") from None
    finally:
        logger.setLevel(level)
    return excluded


def convert_fp16(fp32_path: Path, out_path: Path) -> Path:
    """FP16 weights and compute with float32 input/output, for the CUDA provider.

    Uses the float16 converter that ships inside onnxruntime (onnxruntime.transformers.float16, the
    same code as onnxconverter-common's), so no extra dependency is needed.
    """
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(fp32_path)), keep_io_types=True)
    _sort_topologically(model.graph)  # the converter appends the input Casts after their users
    onnx.checker.check_model(model)
    onnx.save(model, str(out_path))
    return out_path


def _sort_topologically(graph: onnx.GraphProto) -> None:
    available = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        ready = [n for n in pending if all(i in available for i in n.input)]
        if not ready:
            raise ExportError("the FP16 graph has a cycle or an undefined input")
        for node in ready:
            available.update(node.output)
        ordered += ready
        done = {id(n) for n in ready}
        pending = [n for n in pending if id(n) not in done]
    del graph.node[:]
    graph.node.extend(ordered)


@dataclass(frozen=True)
class NodeCounts:
    """What ONNX Runtime actually runs after its graph fusions, plus the Q/DQ nodes in the file."""

    quantized_ops: int  # QLinearConv, QLinearMatMul, ... (also ConvInteger/MatMulInteger if any)
    float_ops: int  # Conv/MatMul/Gemm left in float
    qdq_nodes: int  # QuantizeLinear + DequantizeLinear in the file
    total: int  # nodes after fusion

    def to_dict(self) -> dict[str, int]:
        """JSON form for the manifest."""
        return {"quantized_ops": self.quantized_ops, "float_ops": self.float_ops, "qdq_nodes": self.qdq_nodes,
                "total_nodes_after_fusion": self.total}


_FLOAT_COMPUTE = {"Conv", "FusedConv", "MatMul", "FusedMatMul", "Gemm", "FusedGemm", "ConvTranspose"}


def count_nodes(path: Path, work_dir: Path) -> NodeCounts:
    """Count quantized vs float compute nodes as ONNX Runtime's CPU provider fuses them.

    Uses the portable optimization level (extended, no NCHWc layout), which already performs the
    QDQ -> QLinearConv fusion.
    """
    import onnxruntime as ort

    file_nodes = onnx.load(str(path), load_external_data=False).graph.node
    qdq = sum(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in file_nodes)
    optimized = work_dir / f"{Path(path).stem}.optimized.onnx"
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    opts.optimized_model_filepath = str(optimized)
    opts.log_severity_level = 3
    ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    nodes = onnx.load(str(optimized)).graph.node
    optimized.unlink()
    quantized = sum(n.op_type.startswith("QLinear") or n.op_type.endswith("Integer") or n.op_type == "QGemm"
                    for n in nodes)
    float_ops = sum(n.op_type in _FLOAT_COMPUTE for n in nodes)
    return NodeCounts(quantized, float_ops, qdq, len(nodes))
