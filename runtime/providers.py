"""Choosing ONNX Runtime execution providers and creating sessions that report what really loaded."""
from __future__ import annotations

from pathlib import Path

import onnxruntime as ort

from hashtag.runtime.errors import BundleError, ProviderError

PROVIDER_CHOICES = ("auto", "cpu", "cuda")
CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
# Precision preferred on each provider: QDQ INT8 is fast on CPU only; CUDA wants FP16.
PRECISION_ORDER = {"cpu": ("int8", "fp32", "fp16"), "cuda": ("fp16", "fp32", "int8")}


def available_providers() -> list[str]:
    """Providers this onnxruntime build lists (a CUDA build lists CUDA even without a GPU)."""
    return list(ort.get_available_providers())


def session_options(threads: int | None, spinning: bool = False, quiet: bool = False) -> ort.SessionOptions:
    """Options for one model's session.

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
    """Create a session on ``provider`` ('cpu' or 'cuda'); returns it with the provider that actually runs it.

    onnxruntime silently falls back to CPU when the CUDA libraries or the GPU are missing, so the
    answer comes from ``session.get_providers()`` after creation, and 'cuda' fails loudly then.
    """
    if provider not in ("cpu", "cuda"):
        raise ProviderError(f"unknown provider {provider!r} (choose from {', '.join(PROVIDER_CHOICES)})")
    if provider == "cuda" and CUDA not in available_providers():
        raise ProviderError(
            "CUDA was requested but this onnxruntime has no CUDA provider; install hashtag[gpu] (onnxruntime-gpu)"
        )
    providers = [CUDA, CPU] if provider == "cuda" else [CPU]
    opts = session_options(threads, spinning, quiet=provider == "cuda")
    try:
        session = ort.InferenceSession(str(path), sess_options=opts, providers=providers)
    except Exception as exc:  # onnxruntime raises its own untyped errors for bad graphs
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BundleError(f"cannot load {path.name}: {first_line}") from None
    if provider == "cuda" and session.get_providers()[0] != CUDA:
        raise ProviderError(
            "CUDA was requested but did not load (no GPU, or the CUDA/cuDNN libraries are missing); "
            "use --provider cpu"
        )
    return session, provider


def cuda_listed() -> bool:
    """Whether CUDA is worth trying for provider 'auto'."""
    return CUDA in available_providers()
