"""What gets measured: each model and the ensemble, per precision and provider, ready to call on fixed inputs.

A variant is a callable ``call(batch_size, k)`` that runs the k-th fixed batch of that size. Inputs are
preprocessed once, so the timings are inference only (preprocessing is measured on its own).
"""
from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

import numpy as np
from PIL import Image

from hashtag.benchmarks.macs import count_macs
from hashtag.benchmarks.memory import current_rss_mb
from hashtag.runtime.ensemble import Combination, combine
from hashtag.runtime.errors import HashtagError, ProviderError
from hashtag.runtime.manifest import PRECISIONS, Bundle, ModelSpec
from hashtag.runtime.ov_session import openvino_installed
from hashtag.runtime.preprocess import InputKey, input_key, prepare_inputs
from hashtag.runtime.providers import cuda_listed
from hashtag.runtime.tagger import Tagger

log = logging.getLogger(__name__)
ENSEMBLE = "ensemble"
KERAS = "keras"
# OpenVINO as a user who picks it instead of hashtag runs it: the ONNX file compiled with the defaults.
STOCK_OPENVINO = "openvino-stock"
MAX_DISTINCT_BATCHES = 4  # per batch size; bounds the memory of pre-built batches of large inputs

Call = Callable[[int, int], np.ndarray]
T = TypeVar("T")


class Inputs:
    """The benchmark images preprocessed for every (input size, preprocessing) and pre-cut into batches.

    Batch k of size b holds images ``k*b .. k*b+b-1`` (mod the image count): fixed order, same images
    for every variant.
    """

    def __init__(self, images: Sequence[Image.Image], specs: Sequence[ModelSpec], batch_sizes: Sequence[int]) -> None:
        if not images:
            raise ValueError("no images to benchmark with")
        self.count = len(images)
        self._batches: dict[tuple[InputKey, int], list[np.ndarray]] = {}
        for key, full in prepare_inputs(images, [input_key(s) for s in specs]).items():
            for b in batch_sizes:
                if b == 1:
                    batches = [full[i : i + 1] for i in range(self.count)]
                else:
                    distinct = min(MAX_DISTINCT_BATCHES, math.ceil(self.count / b))
                    batches = [np.ascontiguousarray(full[[(k * b + i) % self.count for i in range(b)]])
                               for k in range(distinct)]
                self._batches[(key, b)] = batches

    def batch(self, spec: ModelSpec, size: int, k: int) -> np.ndarray:
        """The k-th fixed batch of ``size`` images for ``spec``'s input."""
        batches = self._batches[(input_key(spec), size)]
        return batches[k % len(batches)]


@dataclass
class Variant:
    """One measured configuration; for the ensemble, creation and cold figures are sums over its members."""

    model: str
    precision: str
    provider: str
    members: tuple[str, ...]
    call: Call
    create_s: float
    cold_ms: float
    rss_delta_mb: float | None
    macs: int | None

    @property
    def label(self) -> str:
        return f"{self.model}/{self.precision}/{self.provider}"


def _timed(fn: Callable[..., T], *args: Any, **kwargs: Any) -> tuple[T, float]:
    start = time.perf_counter()
    value = fn(*args, **kwargs)
    return value, time.perf_counter() - start


def _rss_delta(before: float | None) -> float | None:
    after = current_rss_mb()
    return None if before is None or after is None else after - before


def _macs(path: Path, cache: dict[Path, int | None]) -> int | None:
    """MACs per image of one file (cached); None when onnx is absent or the count failed."""
    if path not in cache:
        try:
            count = count_macs(path)
            if count.unknown:
                log.warning("%s: %d MAC nodes have unknown shapes; its MACs are undercounted", path.name, count.unknown)
            cache[path] = count.total or None
        except ImportError:
            cache[path] = None
        except Exception as exc:  # onnx raises many untyped errors on odd graphs; MACs are optional
            log.warning("cannot count MACs of %s: %s", path.name, exc)
            cache[path] = None
    return cache[path]


def _warm(call: Call, batch_sizes: Sequence[int], warmup: int) -> None:
    for b in batch_sizes:
        for k in range(warmup):
            call(b, k)


def ensemble_of(members: Sequence[Variant], precision: str, provider: str, combination: Combination) -> Variant:
    """An ensemble of separately loaded members (stock OpenVINO, Keras): each in turn, then the ensemble rule.

    Its creation, cold and RSS figures are sums over the members.
    """
    calls = {m.model: m.call for m in members}

    def call(b: int, k: int) -> np.ndarray:
        return combine({name: c(b, k) for name, c in calls.items()}, combination)

    rss = [m.rss_delta_mb for m in members]
    macs = [m.macs for m in members]
    return Variant(ENSEMBLE, precision, provider, tuple(m.model for m in members), call,
                   sum(m.create_s for m in members), sum(m.cold_ms for m in members),
                   None if None in rss else sum(rss), None if None in macs else sum(macs))  # type: ignore[arg-type]


def onnx_variants(
    bundle: Bundle, provider: str, threads: int | None, precisions: Sequence[str], inputs: Inputs,
    batch_sizes: Sequence[int], warmup: int, macs_cache: dict[Path, int | None],
) -> list[Variant]:
    """Sessions for every model x precision on ``provider`` (then the ensembles), created, cold-called and warmed.

    Raises ProviderError when ``provider`` does not really load (e.g. CUDA without a GPU).
    """
    out: list[Variant] = []
    for precision in [p for p in PRECISIONS if p in precisions]:
        members = []
        for spec in bundle.models:
            if precision not in spec.variants:
                continue
            rss0 = current_rss_mb()
            tagger, create_s = _timed(Tagger, bundle, provider=provider, threads=threads, models=[spec.name],
                                      precision=precision)
            loaded = tagger.models[0]

            def call(b: int, k: int, tagger: Tagger = tagger, loaded=loaded, spec: ModelSpec = spec) -> np.ndarray:
                return tagger.run_model(loaded, inputs.batch(spec, b, k))

            _, cold_s = _timed(call, 1, 0)
            _warm(call, batch_sizes, warmup)
            members.append(Variant(spec.name, precision, provider, (spec.name,), call, create_s, cold_s * 1e3,
                                   _rss_delta(rss0), _macs(spec.variants[precision].path, macs_cache)))
        out.extend(members)
        in_ensemble = [m for m in members if m.model in bundle.ensemble_names]
        if len(in_ensemble) == len(bundle.ensemble_names) > 1:
            out.append(runtime_ensemble(bundle, provider, threads, precision, inputs, batch_sizes, warmup,
                                        in_ensemble))
    return out


def runtime_ensemble(
    bundle: Bundle, provider: str, threads: int | None, precision: str, inputs: Inputs, batch_sizes: Sequence[int],
    warmup: int, members: Sequence[Variant],
) -> Variant:
    """The bundle's ensemble in one Tagger, run as the runtime runs it (``Tagger.run_all``, then the mean)."""
    rss0 = current_rss_mb()
    tagger, create_s = _timed(Tagger, bundle, provider=provider, threads=threads, precision=precision)
    specs = [m.spec for m in tagger.models]

    def call(b: int, k: int) -> np.ndarray:
        return tagger.ensemble(tagger.run_all({input_key(s): inputs.batch(s, b, k) for s in specs}))

    _, cold_s = _timed(call, 1, 0)
    _warm(call, batch_sizes, warmup)
    macs = [m.macs for m in members]
    return Variant(ENSEMBLE, precision, provider, tuple(m.model for m in members), call, create_s, cold_s * 1e3,
                   _rss_delta(rss0), None if None in macs else sum(macs))  # type: ignore[arg-type]


def stock_openvino_variants(
    bundle: Bundle, threads: int | None, inputs: Inputs, batch_sizes: Sequence[int], warmup: int,
    macs_cache: dict[Path, int | None],
) -> list[Variant]:
    """The INT8 files compiled by OpenVINO with its default settings (the peer users would pick instead)."""
    from hashtag.runtime.ov_session import open_openvino

    members = []
    for spec in bundle.models:
        if "int8" not in spec.variants:
            continue
        path = spec.variants["int8"].path
        rss0 = current_rss_mb()
        session, create_s = _timed(open_openvino, path, threads,
                                   config={"INFERENCE_NUM_THREADS": threads} if threads else {})

        def call(b: int, k: int, session=session, spec: ModelSpec = spec) -> np.ndarray:
            return session.run(inputs.batch(spec, b, k))

        _, cold_s = _timed(call, 1, 0)
        _warm(call, batch_sizes, warmup)
        members.append(Variant(spec.name, "int8", STOCK_OPENVINO, (spec.name,), call, create_s, cold_s * 1e3,
                               _rss_delta(rss0), _macs(path, macs_cache)))
    in_ensemble = [m for m in members if m.model in bundle.ensemble_names]
    if len(in_ensemble) == len(bundle.ensemble_names) > 1:
        members.append(ensemble_of(in_ensemble, "int8", STOCK_OPENVINO, bundle.combination))
    return members


def providers_to_measure(choice: str) -> list[str]:
    """'auto' -> ONNX Runtime on CPU, OpenVINO when installed, CUDA when listed (whether it loads is checked)."""
    if choice == "auto":
        return ["cpu", *(["openvino"] if openvino_installed() else []), *(["cuda"] if cuda_listed() else [])]
    return [choice]


def load_onnx(
    bundle: Bundle, provider_choice: str, threads: int | None, precisions: Sequence[str], inputs: Inputs,
    batch_sizes: Sequence[int], warmup: int, macs_cache: dict[Path, int | None], notes: list[str],
) -> list[Variant]:
    """All ONNX variants, then stock OpenVINO's when installed; with 'auto', a CUDA that does not load is noted."""
    for spec in bundle.models:  # count MACs before any session exists, so loading graphs skews no RSS figure
        for variant in spec.variants.values():
            if variant.precision in precisions:
                _macs(variant.path, macs_cache)
    variants: list[Variant] = []
    for provider in providers_to_measure(provider_choice):
        try:
            variants.extend(onnx_variants(bundle, provider, threads, precisions, inputs, batch_sizes, warmup,
                                          macs_cache))
        except ProviderError as exc:
            if provider_choice != "auto":
                raise
            notes.append(f"{provider} skipped: {exc}")
    if provider_choice == "auto" and not cuda_listed():
        notes.append("cuda skipped: this onnxruntime has no CUDA provider (install hashtag[gpu] on a GPU machine)")
    if provider_choice != "cuda" and "int8" in precisions:
        if openvino_installed():
            variants.extend(stock_openvino_variants(bundle, threads, inputs, batch_sizes, warmup, macs_cache))
        else:
            notes.append("OpenVINO rows skipped: openvino is not installed (pip install 'hashtag[openvino]')")
    return variants


def keras_model_files(run_dir: Path, bundle: Bundle) -> dict[str, Path]:
    """Where the training run keeps each of the bundle's models as Keras files (``hashtag.train.run_folder``)."""
    from hashtag.train.run_folder import RunFolder

    return {spec.name: RunFolder(run_dir).keras(spec.name) for spec in bundle.models}


def load_keras(
    run_dir: Path, bundle: Bundle, threads: int | None, inputs: Inputs, batch_sizes: Sequence[int], warmup: int,
    macs: dict[str, int | None], notes: list[str],
) -> list[Variant]:
    """Keras FP32 variants as ``tf.function`` calls (not ``predict()``, which adds 2-4x of overhead).

    Imports tensorflow here only. ``macs`` maps model name to its ONNX FP32 count (same architecture).
    """
    files = keras_model_files(run_dir, bundle)
    if not any(path.is_file() for path in files.values()):
        raise HashtagError(f"none of {', '.join(str(path) for path in files.values())} exists")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up chatter out of the report
    try:
        import tensorflow as tf
    except ImportError:
        notes.append("keras skipped: tensorflow is not installed (pip install 'hashtag[train]')")
        return []
    import keras

    if threads:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
        except RuntimeError:
            notes.append("keras: TensorFlow was already initialised; its intra-op threads could not be set")
    members = []
    for spec in bundle.models:
        if not files[spec.name].is_file():
            notes.append(f"keras: {spec.name} skipped, {files[spec.name]} does not exist")
            continue
        rss0 = current_rss_mb()

        def build(spec: ModelSpec = spec) -> Callable[[np.ndarray], np.ndarray]:
            model = keras.models.load_model(files[spec.name], compile=False)
            size = spec.input_size
            fn = tf.function(lambda x: model(x, training=False),
                             input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32)])
            return lambda batch: fn(tf.convert_to_tensor(batch)).numpy()

        run, create_s = _timed(build)

        def call(b: int, k: int, run=run, spec: ModelSpec = spec) -> np.ndarray:
            return run(inputs.batch(spec, b, k))

        _, cold_s = _timed(call, 1, 0)
        _warm(call, batch_sizes, warmup)
        members.append(Variant(spec.name, "fp32", KERAS, (spec.name,), call, create_s, cold_s * 1e3,
                               _rss_delta(rss0), macs.get(spec.name)))
    notes.append(f"keras: tensorflow {tf.__version__}, intra-op threads "
                 f"{tf.config.threading.get_intra_op_parallelism_threads() or 'default'}")
    in_ensemble = [m for m in members if m.model in bundle.ensemble_names]
    if len(in_ensemble) == len(bundle.ensemble_names) > 1:
        members.append(ensemble_of(in_ensemble, "fp32", KERAS, bundle.combination))
    return members
