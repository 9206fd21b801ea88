"""Choosing where models run and opening them there, reporting what really loaded.

Providers: ONNX Runtime on CPU or CUDA, and OpenVINO (``pip install 'hashtag[openvino]'``) on the
same ONNX files; the choices users see come from ``PROVIDER_CHOICES`` here and nowhere else.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import onnxruntime as ort

from hashtag.runtime.errors import BundleError, ProviderError

PROVIDER_CHOICES = ("auto", "cpu", "cuda", "openvino")
CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
# Precision preferred on each provider: QDQ INT8 is fast on CPU only; CUDA wants FP16.
PRECISION_ORDER = {
    "cpu": ("int8", "fp32", "fp16"),
    "openvino": ("int8", "fp32", "fp16"),
    "cuda": ("fp16", "fp32", "int8"),
}



def check_provider(name: str) -> str:
    """``name`` if it is one of PROVIDER_CHOICES; ProviderError saying the choices otherwise."""
    if name not in PROVIDER_CHOICES:
        raise ProviderError(f"unknown provider {name!r} (choose from {', '.join(PROVIDER_CHOICES)})")
    return name

@dataclass(frozen=True)
class ModelSession:
    """One model file opened on one provider: its input/output signature and a thread-safe ``run``."""

    provider: str  # what really runs it: 'cpu', 'cuda' or 'openvino'
    engine: Any  # the onnxruntime InferenceSession or OpenVINO CompiledModel
    input_shape: tuple[Any, ...]  # ints, or names/None for dynamic dimensions
    input_dtype: type
    output_shape: tuple[Any, ...]
    run: Callable[[np.ndarray], np.ndarray]  # float batch -> first output
    devices: tuple[str, ...]  # for `describe`: onnxruntime's providers, or the OpenVINO device


def available_providers() -> list[str]:
    """Providers this onnxruntime build lists (a CUDA build lists CUDA even without a GPU)."""
    return list(ort.get_available_providers())


def cuda_listed() -> bool:
    """Whether CUDA is worth trying for provider 'auto'."""
    return CUDA in available_providers()


def auto_providers() -> list[str]:
    """What 'auto' tries, in order: CUDA when listed, OpenVINO when installed, then ONNX Runtime on CPU.

    OpenVINO comes before ONNX Runtime's CPU provider because it runs the shipped INT8 files faster
    on x86 CPUs (see benchmarks/results); CUDA is kept only where it really loads.
    """
    from hashtag.runtime.ov_session import openvino_installed

    return [*(["cuda"] if cuda_listed() else []), *(["openvino"] if openvino_installed() else []), "cpu"]


def default_threads(provider: str, n_models: int) -> int | None:
    """Intra-op threads per model when ``n_models`` run side by side; None leaves the engine's default.

    Measured on 2 cores, ensemble of three at batch 1 (benchmarks/results/cpu-2core-2026-11-30):
    ONNX Runtime is fastest with the cores shared out (one thread each: 91-93 ms, against 100 ms one
    model after the other on both cores); OpenVINO with every model on all cores and no CPU pinning
    (78.5 ms, against 88-89 ms for stock OpenVINO running them in turn, 88 ms with one thread each).
    """
    if provider == "openvino":
        return None
    return max(1, usable_cpus() // max(n_models, 1))


def usable_cpus() -> int:
    """CPUs this process may use (its affinity mask on Linux, else every CPU): what threads and pools size to."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def session_options(threads: int | None, spinning: bool = False, quiet: bool = False) -> ort.SessionOptions:
    """Options for one model's ONNX Runtime session.

    Spinning is off by default: with three sessions on two cores, idle spinning threads of one
    session steal the cores of the next (measured 1.6-2.4x slower ensembles; see benchmarks).
    """
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    if quiet:
        opts.log_severity_level = 4
    return opts


def create_session(
    path: Path, provider: str, threads: int | None = None, spinning: bool = False
) -> tuple[ort.InferenceSession, str]:
    """An ONNX Runtime session on ``provider`` ('cpu' or 'cuda') and the provider that really runs it.

    onnxruntime silently falls back to CPU when the CUDA libraries or the GPU are missing, so the
    answer is read from ``session.get_providers()`` after creation; a 'cuda' request fails loudly then.
    """
    if provider not in ("cpu", "cuda"):
        raise ProviderError(f"create_session opens ONNX Runtime sessions on 'cpu' or 'cuda', not {provider!r}")
    if provider == "cuda" and not cuda_listed():
        raise ProviderError(
            "CUDA was requested but this onnxruntime has no CUDA provider; install hashtag[gpu] (onnxruntime-gpu)"
        )
    providers = [CUDA, CPU] if provider == "cuda" else [CPU]
    opts = session_options(threads, spinning, quiet=provider == "cuda")
    try:
        session = ort.InferenceSession(str(path), sess_options=opts, providers=providers)
    except Exception as exc:  # onnxruntime raises its own untyped errors for bad graphs
        raise BundleError(f"cannot load {path.name}: {first_line(exc)}") from None
    running = "cuda" if session.get_providers()[0] == CUDA else "cpu"
    if running != provider:
        raise ProviderError(
            "CUDA was requested but did not load (no GPU, or the CUDA/cuDNN libraries are missing); "
            "use --provider cpu"
        )
    return session, running


def first_line(exc: BaseException) -> str:
    """The first line of an engine's error message (they are often many lines long)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _ort_model(path: Path, provider: str, threads: int | None, spinning: bool) -> ModelSession:
    session, running = create_session(path, provider, threads, spinning)
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1 or len(outputs) < 1:
        raise BundleError(f"{path.name}: expected one input and one output, got {len(inputs)} and {len(outputs)}")
    name = inputs[0].name
    dtype = np.float16 if inputs[0].type == "tensor(float16)" else np.float32

    def run(batch: np.ndarray) -> np.ndarray:
        return session.run(None, {name: batch.astype(dtype, copy=False)})[0]

    return ModelSession(running, session, tuple(inputs[0].shape), dtype, tuple(outputs[0].shape), run,
                        tuple(session.get_providers()))


def open_model(path: Path, provider: str, threads: int | None = None, spinning: bool = False) -> ModelSession:
    """Open one ONNX file on ``provider`` ('cpu', 'cuda' or 'openvino'); fails with ProviderError if it cannot."""
    if provider == "openvino":
        from hashtag.runtime.ov_session import open_openvino

        return open_openvino(path, threads)
    if provider not in ("cpu", "cuda"):
        raise ProviderError(f"unknown provider {provider!r} (choose from {', '.join(PROVIDER_CHOICES)})")
    return _ort_model(path, provider, threads, spinning)
