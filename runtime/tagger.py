"""The ensemble tagger: one ONNX Runtime session per model, mean of probabilities, thresholds per tag."""
from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np
from PIL import Image

from hashtag.runtime.contract import Prediction, upload_name
from hashtag.runtime.cpu import CpuFeatures, cpu_features, faster_cpu_precision
from hashtag.runtime.ensemble import combine
from hashtag.runtime.errors import BundleError, ImageError, ModelSelectionError, ProviderError
from hashtag.runtime.images import ImageSource, describe, load_image
from hashtag.runtime.manifest import PRECISIONS, Bundle, ModelSpec, Variant, load_bundle
from hashtag.runtime.pipeline import DECODE_WORKERS, Decoded, decode_ahead
from hashtag.runtime.prediction import Options, build_predictions, ensemble_thresholds, model_thresholds
from hashtag.runtime.preprocess import InputKey, input_key, prepare_inputs
from hashtag.runtime.providers import (
    PRECISION_ORDER,
    check_provider,
    ModelSession,
    auto_providers,
    default_threads,
    open_model,
    usable_cpus,
)

log = logging.getLogger(__name__)
# The smallest batch within 5% of the best throughput on 12-Mpx photos with either engine (97-98% of
# batch 4's), at 255-335 MB peak RSS where batch 8 needs 620-910 MB (python -m hashtag.benchmarks.bench_batch).
DEFAULT_BATCH_SIZE = 1


@dataclass(frozen=True)
class LoadedModel:
    """A model spec with its running session."""

    spec: ModelSpec
    variant: Variant
    model: ModelSession
    order: np.ndarray  # column indices mapping the model's tag order onto the bundle's
    why: str  # why this precision was picked

    @property
    def session(self) -> Any:
        """The engine's own object: an onnxruntime InferenceSession, or an OpenVINO CompiledModel."""
        return self.model.engine


def pick_variant(spec: ModelSpec, provider: str, precision: str | None,
                 cpu: CpuFeatures | None = None) -> tuple[Variant, str]:
    """The file to run and why: the asked precision; on a CPU, between INT8 and FP32 the one faster on this
    CPU (``cpu``, default this machine's; see ``hashtag.runtime.cpu``); else the provider's first precision
    the model ships in."""
    if precision is not None:
        return spec.variant(precision), "asked for (--precision)"
    if provider in ("cpu", "openvino") and {"int8", "fp32"} <= set(spec.variants):
        chosen, why = faster_cpu_precision(cpu or cpu_features(), spec.cpu_precision)
        return spec.variants[chosen], why
    for p in PRECISION_ORDER[provider]:
        if p in spec.variants:
            only = len(spec.variants) == 1
            return spec.variants[p], "the only precision shipped" if only else f"{provider}'s preferred precision"
    raise ModelSelectionError(f"model {spec.name!r} has no usable file")  # unreachable: validated non-empty


class Tagger:
    """Loads a bundle once and predicts hashtags for images; each call may ask for its own Options.

    ``provider``: 'auto' (CUDA when it really loads, else OpenVINO when installed, else ONNX Runtime on
    CPU), 'cpu' (ONNX Runtime), 'cuda' or 'openvino' (these two fail when unavailable).
    ``precision``: force 'int8'/'fp16'/'fp32'; by default see ``pick_variant`` (INT8 or FP32 on CPU by what
    the CPU offers, FP16 else FP32 on CUDA).
    ``models``: the models to load (default: the bundle's ensemble; the fast model loads when named).
    ``default_models``: what a call without ``Options.models`` runs (default: ``models`` when given, else the
    ensemble); the loaded ones among them, else every loaded one.
    ``threads``: intra-op threads per model; the models run side by side, by default with the
    threads that measured fastest for the provider (see ``providers.default_threads``).
    """

    def __init__(
        self,
        bundle: Bundle | str | Path,
        provider: str = "auto",
        threads: int | None = None,
        models: Iterable[str] | None = None,
        precision: str | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        spinning: bool = False,
        default_models: Iterable[str] | None = None,
    ) -> None:
        self.bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
        check_provider(provider)
        if precision is not None and precision not in PRECISIONS:
            raise ModelSelectionError(f"unknown precision {precision!r} (choose from {', '.join(PRECISIONS)})")
        if batch_size < 1:
            raise ModelSelectionError(f"batch size must be at least 1, got {batch_size}")
        names = list(dict.fromkeys(models)) if models else list(self.bundle.ensemble_names)
        specs = [self.bundle.model(n) for n in names]
        self.batch_size = batch_size
        self.threads = threads
        self.provider = self._load(specs, provider, threads, precision, spinning)
        # One thread per model, always the same: engines keep working memory per calling thread
        # (OpenVINO: one infer request each), so a shared pool would multiply it by the pool's size.
        self._threads = ({m.spec.name: ThreadPoolExecutor(1, f"hashtag-{m.spec.name}") for m in self.models}
                         if len(self.models) > 1 else {})
        self.names = tuple(m.spec.name for m in self.models)
        # What a call without Options.models runs: the models asked for (all of them), or by default the loaded
        # ensemble members; a server that loads every model to switch per request names the ensemble here.
        if default_models is None:
            default_models = self.names if models else self.bundle.ensemble_names
        self.default_names = tuple(n for n in self.names if n in set(default_models)) or self.names

    def _load(
        self, specs: list[ModelSpec], provider: str, threads: int | None, precision: str | None, spinning: bool
    ) -> str:
        """Open every model; for 'auto', try each of ``auto_providers()`` until one loads them all."""
        attempts = auto_providers() if provider == "auto" else [provider]
        if provider == "auto" and all(s.role == "fast" for s in specs):
            # OpenVINO compiles each model when it loads (0.43 s for the fast model against 0.03 s for ONNX
            # Runtime) and runs this small one no faster (9.5 vs 10.0 ms, benchmarks/results/fast-cpu-2core-
            # 2026-12-03): for the fast model alone, 'auto' skips it and keeps the cold start short.
            attempts = [p for p in attempts if p != "openvino"]
        # Models that run together share the cores: the ensemble members side by side; a fast model runs alone.
        together = sum(s.role == "ensemble" for s in specs) or len(specs)
        for attempt in attempts:
            try:
                self.models = [self._load_one(s, attempt, threads or default_threads(
                    attempt, 1 if s.role == "fast" else together), precision, spinning) for s in specs]
                return attempt
            except ProviderError as exc:
                if attempt == attempts[-1]:
                    raise
                log.info("%s did not load (%s); trying %s", attempt, exc, attempts[attempts.index(attempt) + 1])
        raise ProviderError("no provider could be loaded")  # unreachable: the last attempt raises

    def _load_one(
        self, spec: ModelSpec, provider: str, threads: int | None, precision: str | None, spinning: bool
    ) -> LoadedModel:
        variant, why = pick_variant(spec, provider, precision)
        model = open_model(variant.path, provider, threads, spinning)
        shape = model.input_shape
        if len(shape) != 4 or any(isinstance(d, int) and d != e for d, e in zip(shape[1:], (spec.input_size, spec.input_size, 3))):
            raise BundleError(
                f"{variant.path.name}: input shape {list(shape)} does not match input_size {spec.input_size} (NHWC, 3 channels)"
            )
        out_shape = model.output_shape
        if len(out_shape) != 2 or (isinstance(out_shape[1], int) and out_shape[1] != len(spec.tags)):
            raise BundleError(
                f"{variant.path.name}: output shape {list(out_shape)} does not match the {len(spec.tags)} tags in the manifest"
            )
        order = np.array([spec.tags.index(t) for t in self.bundle.tags])
        return LoadedModel(spec, variant, model, order, why)

    def describe(self) -> list[dict[str, Any]]:
        """What is loaded: model, precision, file and the provider that really runs it."""
        return [
            {
                "model": m.spec.name,
                "precision": m.variant.precision,
                "precision_reason": m.why,
                "role": m.spec.role,
                "file": m.variant.path.name,
                "providers": list(m.model.devices),
            }
            for m in self.models
        ]

    @property
    def min_decode_size(self) -> int:
        """The largest input side of the loaded models: photos need decoding no larger (see ``load_image``)."""
        return max(m.spec.input_size for m in self.models)

    def run_model(self, model: LoadedModel, batch: np.ndarray) -> np.ndarray:
        """Probabilities ``[batch, tags]`` in the bundle's tag order for an already preprocessed batch."""
        out = np.asarray(model.model.run(batch), dtype=np.float32)
        if out.ndim != 2 or out.shape[1] != len(model.spec.tags):
            raise BundleError(f"{model.variant.path.name}: produced shape {out.shape}, expected [N, {len(model.spec.tags)}]")
        return out[:, model.order]

    def _loaded(self, names: Sequence[str] | None) -> list[LoadedModel]:
        if names is None:
            return self.models
        return [m for m in self.models if m.spec.name in names]

    def input_keys_of(self, names: Sequence[str] | None = None) -> list[InputKey]:
        """The distinct inputs the named (default: all loaded) models take (see ``prepare_inputs``)."""
        return list(dict.fromkeys(input_key(m.spec) for m in self._loaded(names)))

    def run_all(self, batches: Mapping[InputKey, np.ndarray], names: Sequence[str] | None = None
                ) -> dict[str, np.ndarray]:
        """The named (default: every loaded) models on their batch of ``prepare_inputs``' result, side by side."""
        models = self._loaded(names)
        if not self._threads or len(models) == 1:
            return {m.spec.name: self.run_model(m, batches[input_key(m.spec)]) for m in models}
        running = {m.spec.name: self._threads[m.spec.name].submit(self.run_model, m, batches[input_key(m.spec)])
                   for m in models}
        return {name: future.result() for name, future in running.items()}

    def probabilities(self, images: Sequence[Image.Image], names: Sequence[str] | None = None
                      ) -> dict[str, np.ndarray]:
        """Per-model probabilities ``[len(images), tags]`` of the named (default: every loaded) models,
        preprocessing once per input size and scheme."""
        models = self._loaded(names)
        keys = self.input_keys_of(names)
        results: dict[str, list[np.ndarray]] = {m.spec.name: [] for m in models}
        for start in range(0, len(images), self.batch_size):
            batches = prepare_inputs(images[start : start + self.batch_size], keys)
            for name, probs in self.run_all(batches, names).items():
                results[name].append(probs)
        return {name: np.concatenate(parts) if parts else np.zeros((0, len(self.bundle.tags)), np.float32)
                for name, parts in results.items()}

    def ensemble(self, per_model: Mapping[str, np.ndarray]) -> np.ndarray:
        """The ensemble's probabilities from ``probabilities()``' output, combined as the manifest says."""
        return combine(per_model, self.bundle.combination)

    def predictions(self, per_model: Mapping[str, np.ndarray], names: Sequence[str],
                    options: Options = Options()) -> list[Prediction]:
        """Predictions for ``names`` from ``probabilities()``' output, under ``options``: the rules of
        ``hashtag.runtime.prediction`` (ensemble of the chosen models, thresholds, cut) applied once, here."""
        if any(len(p) != len(names) for p in per_model.values()):
            raise ValueError("names and probabilities differ in length")
        chosen = options.chosen(self.names, self.default_names)
        missing = [n for n in chosen if n not in per_model]
        if missing:
            raise ValueError(f"no probabilities of {missing} given")
        probs = {n: per_model[n] for n in chosen}
        return build_predictions(names, self.bundle.tags, probs, self.ensemble(probs),
                                 {n: model_thresholds(self.bundle, n, options.threshold) for n in chosen},
                                 ensemble_thresholds(self.bundle, chosen, options.threshold), options.top_k)

    def predict_images(self, images: Sequence[Image.Image], names: Sequence[str] | None = None,
                       options: Options = Options()) -> list[Prediction]:
        """Predict for decoded RGB images (see ``hashtag.runtime.images.load_image``)."""
        names = list(names) if names is not None else [upload_name(i) for i in range(len(images))]
        if len(names) != len(images):
            raise ValueError("names and images differ in length")
        chosen = options.chosen(self.names, self.default_names)  # refuse unknown models before running any
        return self.predictions(self.probabilities(images, chosen), names, options)

    def decode(self, source: ImageSource) -> Image.Image:
        """One photo decoded no larger than the loaded models need (see ``load_image``'s ``min_side``)."""
        return load_image(source, min_side=self.min_decode_size)

    def predict(self, sources: Sequence[ImageSource], options: Options = Options()) -> list[Prediction]:
        """Decode and predict; raises ImageError on the first image that cannot be read."""
        return self.predict_images([self.decode(s) for s in sources], [describe(s) for s in sources], options)

    def predict_one(self, source: ImageSource, options: Options = Options()) -> Prediction:
        """Predict for one image path or encoded bytes."""
        return self.predict([source], options)[0]

    def predict_stream(self, sources: Iterable[ImageSource],
                       options: Options = Options()) -> Iterator[Prediction | ImageError]:
        """A Prediction per source in input order, or the ImageError of a source that cannot be read.

        Photos are decoded in a worker thread (the fast model alone: one per core) while the models run on the
        previous batch; at most a batch (or a photo per decoder) is decoded ahead, so memory does not grow with
        the number of sources.
        """
        options.chosen(self.names, self.default_names)  # refuse unknown models before decoding any
        # One decoder keeps up with the ensemble; the fast model alone outruns it (10 ms against ~20 ms to
        # draft-decode a 12-Mpx JPEG), so there every core decodes.
        workers = DECODE_WORKERS if any(m.spec.role == "ensemble" for m in self.models) else usable_cpus()
        pending: list[tuple[str, Decoded]] = []
        for name, item in decode_ahead(sources, self.min_decode_size, ahead=max(self.batch_size, workers),
                                       workers=workers):
            pending.append((name, item))
            if sum(isinstance(i, Image.Image) for _, i in pending) == self.batch_size:
                yield from self._finish(pending, options)
                pending = []
        yield from self._finish(pending, options)

    def _finish(self, pending: list[tuple[str, Decoded]], options: Options) -> Iterator[Prediction | ImageError]:
        decoded = [(name, item) for name, item in pending if isinstance(item, Image.Image)]
        predictions = iter(self.predict_images([img for _, img in decoded], [name for name, _ in decoded], options))
        for _, item in pending:
            yield item if isinstance(item, ImageError) else next(predictions)
