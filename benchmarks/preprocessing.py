"""What a photo costs before the models run: decoding (full size and as the runtime does it) and preparing inputs."""
from __future__ import annotations

import time
from typing import Any, Callable, Sequence

from hashtag.benchmarks import stats
from hashtag.benchmarks.timing import no_gc
from hashtag.benchmarks.variants import ENSEMBLE
from hashtag.runtime.images import load_image
from hashtag.runtime.manifest import Bundle
from hashtag.runtime.preprocess import input_key, prepare_inputs


class PreprocessingCost:
    """Decoding (full size and as the runtime does it) and ``prepare_inputs`` timed per image."""

    def __init__(self, encoded: Sequence[bytes], bundle: Bundle) -> None:
        self.encoded = encoded
        self.bundle = bundle
        self.min_side = max(s.input_size for s in bundle.models)
        self.keys = {s.name: [input_key(s)] for s in bundle.models}
        self.keys[ENSEMBLE] = [input_key(bundle.model(n)) for n in bundle.ensemble_names]
        self.rounds: dict[str, list[float]] = {}  # step -> per-round median ms per image

    def measure_round(self) -> None:
        steps: dict[str, list[float]] = {}

        def timed(step: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            value = fn(*args, **kwargs)
            steps.setdefault(step, []).append((time.perf_counter() - start) * 1e3)
            return value

        with no_gc():
            for data in self.encoded:
                timed("decode full size", load_image, data)
                img = timed("decode", load_image, data, min_side=self.min_side)
                for name, keys in self.keys.items():
                    timed(f"prepare {name}", prepare_inputs, [img], keys)
        for step, values in steps.items():
            self.rounds.setdefault(step, []).append(stats.percentile(values, 50))

    def result(self) -> dict[str, Any]:
        """Median-of-rounds ms per image for each step, and decode + prepare per model and for the ensemble."""
        med = {step: stats.median_of_rounds(v) for step, v in self.rounds.items()}
        totals = {name: med["decode"] + med[f"prepare {name}"] for name in self.keys}
        return {
            "unit": "ms per image, median of per-round medians",
            "images": len(self.encoded),
            "decode_min_side": self.min_side,
            "steps": med,
            "steps_best_round": {step: stats.best_round(v) for step, v in self.rounds.items()},
            "per_model": {name: v for name, v in totals.items() if name != ENSEMBLE},
            "ensemble": totals[ENSEMBLE],
        }
