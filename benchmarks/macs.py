"""Multiply-accumulates per image of an ONNX graph, and an estimate of the CPU's peak MAC rate.

MACs / measured time says how close a variant is to the hardware's floor. Counting needs the
``onnx`` package (extras ``train``/``test``), imported lazily: without it the count is 'n/a'.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

# Which inputs hold the A (data) and B (weight) operands for each op counted.
_OPERANDS = {
    "Conv": (0, 1), "ConvInteger": (0, 1), "QLinearConv": (0, 3),
    "MatMul": (0, 1), "MatMulInteger": (0, 1), "QLinearMatMul": (0, 3), "Gemm": (0, 1),
}
# Initializers above this many bytes lose their data before shape inference (only their dims matter),
# so a 500 MB VGG16 does not get copied again by the inference.
_KEEP_DATA_BYTES = 4096
FMA_UNITS = 2


@dataclass(frozen=True)
class MacCount:
    """MACs for one image (batch 1); ``unknown`` counts nodes whose shapes could not be inferred."""

    total: int
    by_op: Mapping[str, int] = field(default_factory=dict)
    unknown: int = 0


def onnx_available() -> bool:
    """Whether MACs can be counted here."""
    try:
        import onnx  # noqa: F401
    except ImportError:
        return False
    return True


def _shapes(graph: Any) -> dict[str, list[int | None]]:
    shapes: dict[str, list[int | None]] = {}
    for info in [*graph.input, *graph.value_info, *graph.output]:
        t = info.type.tensor_type
        if t.HasField("shape"):
            shapes[info.name] = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
    for init in graph.initializer:
        shapes[init.name] = list(init.dims)
    return shapes


def _node_macs(op: str, a: list[int | None] | None, b: list[int | None] | None,
               out: list[int | None] | None, attrs: Mapping[str, Any]) -> int | None:
    """MACs of one node, or None when a needed dimension is unknown."""
    if out is None or b is None or any(d is None for d in out):
        return None
    if op in ("Conv", "ConvInteger", "QLinearConv"):
        # out [N, M, H', W'] x weight [M, C/group, kH, kW]: every output element costs C/group*kH*kW MACs.
        inner = b[1:]
    elif op == "Gemm":
        if a is None:
            return None
        inner = [a[0] if attrs.get("transA") else a[-1]]
    else:  # MatMul family: [..., M, K] x [..., K, N]
        inner = [b[-2] if len(b) >= 2 else b[0]]
    if any(d is None for d in inner):
        return None
    return math.prod(out) * math.prod(inner)  # type: ignore[arg-type]


def count_macs(path: Path) -> MacCount:
    """MACs per image of the ONNX file at ``path``: Conv/QLinearConv/ConvInteger/MatMul*/Gemm nodes.

    The batch dimension of every graph input is fixed to 1 before shape inference.
    Raises ImportError when onnx is not installed.
    """
    import onnx
    from onnx import shape_inference

    model = onnx.load(str(path))
    for init in model.graph.initializer:
        if len(init.raw_data) > _KEEP_DATA_BYTES:
            init.ClearField("raw_data")
    for inp in model.graph.input:
        dims = inp.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].dim_value = 1
    inferred = shape_inference.infer_shapes(model, strict_mode=False)
    shapes = _shapes(inferred.graph)
    total, unknown, by_op = 0, 0, {}
    for node in inferred.graph.node:
        if node.op_type not in _OPERANDS:
            continue
        ia, ib = _OPERANDS[node.op_type]
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        macs = _node_macs(node.op_type, shapes.get(node.input[ia]) if len(node.input) > ia else None,
                          shapes.get(node.input[ib]) if len(node.input) > ib else None,
                          shapes.get(node.output[0]), attrs)
        if macs is None:
            unknown += 1
            continue
        total += macs
        by_op[node.op_type] = by_op.get(node.op_type, 0) + macs
    return MacCount(total, by_op, unknown)


def macs_per_cycle(precision: str, flags: Mapping[str, bool | None]) -> int | None:
    """MACs one SIMD FMA unit retires per cycle for ``precision`` on a CPU with these flags.

    INT8: 64 with AVX-512 VNNI (512-bit VPDPBUSD), 32 with 256-bit AVX-VNNI or AVX-512BW
    (two-instruction sequence), 16 with AVX2. FP32 (and FP16, which ORT's CPU kernels run as FP32):
    16 with AVX-512F, 8 with AVX2+FMA.
    """
    if precision == "int8":
        if flags.get("avx512_vnni"):
            return 64
        if flags.get("avx_vnni") or flags.get("avx512bw"):
            return 32
        return 16 if flags.get("avx2") else None
    if flags.get("avx512f"):
        return 16
    return 8 if flags.get("avx2") and flags.get("fma") else None


def peak_gmacs(precision: str, flags: Mapping[str, bool | None], cores: int | None, mhz: float | None) -> float | None:
    """An ESTIMATE of peak GMAC/s: cores x clock x 2 FMA units x MACs per unit per cycle.

    It ignores turbo limits, memory bandwidth and cores whose 512-bit units are double-pumped,
    so it is a ceiling to compare against, not a promise.
    """
    per_cycle = macs_per_cycle(precision, flags)
    if per_cycle is None or not cores or not mhz:
        return None
    return cores * mhz * 1e6 * FMA_UNITS * per_cycle / 1e9
