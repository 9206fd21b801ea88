"""The 'openvino' provider: the bundle's ONNX files compiled by OpenVINO for the CPU, unchanged.

OpenVINO is optional (``pip install 'hashtag[openvino]'``): it is imported inside these functions
only, so the base install never needs it.
"""
from __future__ import annotations

import importlib.util
import logging
import threading
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from hashtag.runtime.cache import cache_dir
from hashtag.runtime.errors import BundleError, ProviderError
from hashtag.runtime.providers import ModelSession, first_line

log = logging.getLogger(__name__)
# OpenVINO's Python bindings initialise statics on first use (pybind11's numpy API under the GIL);
# two threads doing that at once can deadlock (seen: all threads parked on futexes). So each thread's
# first inference runs alone: once any one has finished, the statics exist and later calls run freely.
_FIRST_CALL = threading.Lock()
DEVICE = "CPU"
CACHE_NAME = "openvino"  # under $HASHTAG_CACHE
INSTALL_HINT = "pip install 'hashtag[openvino]'"


def openvino_installed() -> bool:
    """Whether the openvino package can be imported (checked without importing it)."""
    return importlib.util.find_spec("openvino") is not None


@lru_cache(maxsize=1)
def _core() -> Any:
    """One OpenVINO Core per process, caching compiled models in ``$HASHTAG_CACHE/openvino`` when writable.

    Compiling the three shipped models takes seconds; loading them from the cache a fraction of that,
    which keeps `hashtag predict`'s cold start short from the second run on.
    """
    try:
        import openvino
    except ImportError:
        raise ProviderError(f"OpenVINO was requested but is not installed; {INSTALL_HINT}") from None
    core = openvino.Core()
    folder = cache_dir(CACHE_NAME)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        log.info("OpenVINO model cache %s is not writable; compiling without it", folder)
    else:
        core.set_property({"CACHE_DIR": str(folder)})
    return core


def compile_config(threads: int | None) -> dict[str, Any]:
    """Compile settings for models that run side by side (see ``Tagger.run_all``).

    No CPU pinning: pinned, the models' threads queue on the same cores instead of sharing them
    (measured 150 ms instead of 78 ms for the ensemble on 2 cores). f32 where the graph is not INT8,
    as ONNX Runtime runs it: OpenVINO's default on bf16-capable CPUs would run the float parts (heads,
    sigmoid) in bfloat16, which measured no faster here (benchmarks/results/cpu-2core-2026-11-30).
    """
    config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32",
                              "ENABLE_CPU_PINNING": False}
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    return config


def _dims(partial_shape: Any) -> tuple[Any, ...]:
    return tuple(d.get_length() if d.is_static else None for d in partial_shape)


def open_openvino(path: Path, threads: int | None = None, config: dict[str, Any] | None = None) -> ModelSession:
    """Compile ``path`` for the CPU; ``run`` is thread-safe (one infer request per calling thread)."""
    core = _core()
    try:
        compiled = core.compile_model(str(path), DEVICE, compile_config(threads) if config is None else config)
    except Exception as exc:  # OpenVINO raises untyped RuntimeErrors for unreadable or unsupported graphs
        # A provider failure, not a bundle one: 'auto' then falls back to ONNX Runtime, which names a bad file.
        raise ProviderError(f"OpenVINO cannot load {path.name}: {first_line(exc)}") from None
    if len(compiled.inputs) != 1 or len(compiled.outputs) < 1:
        raise BundleError(f"{path.name}: expected one input and one output, "
                          f"got {len(compiled.inputs)} and {len(compiled.outputs)}")
    dtype = np.float16 if compiled.inputs[0].element_type.get_type_name() == "f16" else np.float32
    local = threading.local()

    def run(batch: np.ndarray) -> np.ndarray:
        request = getattr(local, "request", None)
        if request is None:
            with _FIRST_CALL:
                request = local.request = compiled.create_infer_request()
                return request.infer([batch.astype(dtype, copy=False)])[0]
        return request.infer([batch.astype(dtype, copy=False)])[0]

    return ModelSession("openvino", compiled, _dims(compiled.inputs[0].partial_shape), dtype,
                        _dims(compiled.outputs[0].partial_shape), run, (f"OpenVINO {DEVICE}",))
