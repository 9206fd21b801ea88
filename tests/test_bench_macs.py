"""MAC counting on hand-made ONNX graphs whose multiply-accumulates are known, in float and in QDQ INT8."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from hashtag.benchmarks.macs import count_macs  # noqa: E402

# Conv 3->8, 3x3, pad 1 on 16x16: 8*16*16 outputs x 3*3*3 = 55296
# grouped Conv 8->8, groups 4, 3x3, pad 1: 8*16*16 x (8/4)*3*3 = 36864
# MatMul [1, 2048] x [2048, 10] = 20480; Gemm [1, 10] x [10, 5]^T (transB) = 50
EXPECTED = {"Conv": 55296 + 36864, "MatMul": 20480, "Gemm": 50}


def known_graph() -> onnx.ModelProto:
    rng = np.random.default_rng(0)

    def init(name: str, shape: tuple[int, ...]) -> onnx.TensorProto:
        return numpy_helper.from_array(rng.normal(0, 0.1, shape).astype(np.float32), name)

    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], pads=[1, 1, 1, 1], group=4),
        helper.make_node("Reshape", ["c2", "shape"], ["flat"]),
        helper.make_node("MatMul", ["flat", "w3"], ["m"]),
        helper.make_node("Gemm", ["m", "w4", "b4"], ["y"], transB=1),
    ]
    graph = helper.make_graph(
        nodes, "known",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 5])],
        initializer=[init("w1", (8, 3, 3, 3)), init("w2", (8, 2, 3, 3)), init("w3", (2048, 10)),
                     init("w4", (5, 10)), init("b4", (5,)),
                     numpy_helper.from_array(np.array([-1, 2048], dtype=np.int64), "shape")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    return model


def test_counts_known_graph(tmp_path: Path) -> None:
    path = tmp_path / "known.onnx"
    onnx.save(known_graph(), path)
    count = count_macs(path)
    assert count.unknown == 0
    assert dict(count.by_op) == EXPECTED
    assert count.total == sum(EXPECTED.values())


def test_qdq_int8_graph_counts_the_same(tmp_path: Path) -> None:
    """A statically quantized (QDQ) copy has the same Conv/MatMul shapes, so the same MACs."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    fp32, int8 = tmp_path / "fp32.onnx", tmp_path / "int8.onnx"
    onnx.save(known_graph(), fp32)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            rng = np.random.default_rng(1)
            self.items = iter([{"x": rng.normal(0, 1, (1, 3, 16, 16)).astype(np.float32)} for _ in range(4)])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.items, None)

    quantize_static(str(fp32), str(int8), Reader(), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    assert any(n.op_type == "DequantizeLinear" for n in onnx.load(str(int8)).graph.node)
    assert count_macs(int8).total == count_macs(fp32).total == sum(EXPECTED.values())


def test_tiny_bundle_model(tiny_bundle: Path) -> None:
    """The tiny test models are one MatMul [1, 3] x [3, 4]."""
    assert count_macs(tiny_bundle / "vgg16.fp32.onnx").total == 12
