"""Ensemble latency with ONNX Runtime's intra-op thread spinning on vs off, interleaved in rounds.

Why: three sessions share the cores; a spinning idle pool of one session can steal the cores the next
session needs. The runtime turns spinning off by default; this measures that choice on the real bundle.
Spinning needs a thread pool, so each session gets every usable core here unless --threads says otherwise
(by default the runtime gives ONNX Runtime models one thread each on 2 cores, with no pool to spin).

    python -m hashtag.benchmarks.bench_spinning [--bundle DIR] [--rounds 5] [--runs 10] [--threads N]
"""
from __future__ import annotations

import math
from pathlib import Path

import click

from hashtag.benchmarks.photos import synthetic_photo
from hashtag.benchmarks.stats import Summary, best_round, median_of_rounds, round_ratios
from hashtag.benchmarks.timing import time_calls
from hashtag.runtime.options import bundle_option, deprecated_models_dir_option, resolve_bundle, threads_option
from hashtag.runtime.providers import usable_cpus
from hashtag.runtime.tagger import Tagger


def _timed_calls(tagger: Tagger, images: list, runs: int) -> list[float]:
    """Seconds per batch-1 ensemble call, cycling through ``images``."""
    return time_calls(lambda _batch, k: tagger.probabilities([images[k % len(images)]]), 1, runs, math.inf)


@click.command()
@bundle_option
@deprecated_models_dir_option
@click.option("--rounds", type=click.IntRange(min=1), default=5, show_default=True)
@click.option("--runs", type=click.IntRange(min=1), default=10, show_default=True)
@threads_option.described("Intra-op threads per model (default: every usable CPU, so that there is a pool to spin).")
def main(bundle_dir: Path | None, models_arg: str | None, rounds: int, runs: int, threads: int | None) -> None:
    """Print batch-1 ensemble p50 with spinning off and on, per round, and their ratio."""
    bundle = resolve_bundle(bundle_dir, models_arg, names_allowed=False)[0]
    threads = threads or usable_cpus()
    taggers = {s: Tagger(bundle, provider="cpu", threads=threads, spinning=s) for s in (False, True)}
    images = [synthetic_photo(640, 480, seed) for seed in range(4)]
    p50: dict[bool, list[float]] = {False: [], True: []}
    for r in range(rounds):
        order = (False, True) if r % 2 == 0 else (True, False)
        for spinning in order:
            _timed_calls(taggers[spinning], images, 2)  # warm-up after the other variant ran
            p50[spinning].append(Summary.of(_timed_calls(taggers[spinning], images, runs)).p50 * 1000)
    ratios = round_ratios(p50[True], p50[False])
    click.echo(f"bundle {bundle}, threads {threads} per model, {rounds} rounds x {runs} runs, batch 1")
    for spinning in (False, True):
        click.echo(f"  spinning {'on ' if spinning else 'off'}: p50 per round (ms) "
                   + " ".join(f"{v:.1f}" for v in p50[spinning])
                   + f" | best {best_round(p50[spinning]):.1f} median {median_of_rounds(p50[spinning]):.1f}")
    click.echo(f"  on/off ratio: median {median_of_rounds(ratios):.2f}, per round "
               + " ".join(f"{v:.2f}" for v in ratios))


if __name__ == "__main__":
    main()
