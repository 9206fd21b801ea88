"""What `hashtag bench` measures and for how long: one checked, frozen configuration."""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hashtag.benchmarks.timing import MIN_CALLS
from hashtag.runtime.manifest import PRECISIONS
from hashtag.runtime.providers import check_provider

PHOTO_SIZES = ((4000, 3000), (1280, 960), (320, 240))  # 12 Mpx as phones take them, Telegram's size, small


@dataclass(frozen=True)
class BenchConfig:
    """What to measure and how long; see `hashtag bench --help` for each field's meaning."""

    bundle: Path
    images: tuple[Path, ...]
    provider: str = "auto"
    precisions: tuple[str, ...] = PRECISIONS
    threads: int | None = None
    rounds: int = 3
    runs: int = 30
    budget_s: float = 10.0
    warmup: int = 3
    batch_sizes: tuple[int, ...] = (1, 4, 8, 16)
    throughput_images: int = 32
    keras_run: Path | None = None
    e2e_images: int = 100
    e2e_repeats: int = 3
    e2e: bool = True
    photo_sizes: tuple[tuple[int, int], ...] = PHOTO_SIZES
    photo_count: int = 100  # photos per size for `hashtag predict FOLDER`
    e2e_photos: int = 16  # photos per size and round for the in-process end-to-end rows

    def __post_init__(self) -> None:
        if not self.images:
            raise ValueError("no images to benchmark with")
        check_provider(self.provider)
        unknown = [p for p in self.precisions if p not in PRECISIONS]
        if unknown or not self.precisions:
            raise ValueError(f"precisions must be some of {', '.join(PRECISIONS)}, got {list(self.precisions)}")
        if not self.batch_sizes or 1 not in self.batch_sizes or any(b < 1 for b in self.batch_sizes):
            raise ValueError(f"batch sizes must be positive and include 1, got {list(self.batch_sizes)}")
        if list(self.batch_sizes) != sorted(set(self.batch_sizes)):
            raise ValueError(f"batch sizes must be increasing without repeats, got {list(self.batch_sizes)}")
        if any(len(s) != 2 or min(s) < 1 for s in self.photo_sizes):
            raise ValueError(f"photo sizes must be positive (width, height) pairs, got {list(self.photo_sizes)}")
        for name in ("rounds", "runs", "warmup", "throughput_images", "e2e_images", "e2e_repeats", "photo_count",
                     "e2e_photos"):
            minimum = 0 if name == "warmup" else 1
            if getattr(self, name) < minimum:
                raise ValueError(f"{name} must be at least {minimum}, got {getattr(self, name)}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be at least 1, got {self.threads}")
        if self.budget_s <= 0:
            raise ValueError(f"budget must be positive, got {self.budget_s}")

    def calls(self, batch: int) -> int:
        """Timed calls per round at ``batch``: ``runs`` at batch 1, else enough for ``throughput_images``."""
        return self.runs if batch == 1 else max(MIN_CALLS, math.ceil(self.throughput_images / batch))

    def to_dict(self) -> dict[str, Any]:
        return {
            "bundle": str(self.bundle), "provider": self.provider, "precisions": list(self.precisions),
            "threads": self.threads, "rounds": self.rounds, "runs": self.runs, "budget_s": self.budget_s,
            "warmup": self.warmup, "batch_sizes": list(self.batch_sizes), "throughput_images": self.throughput_images,
            "keras_run": str(self.keras_run) if self.keras_run else None, "e2e_images": self.e2e_images,
            "e2e_repeats": self.e2e_repeats if self.e2e else 0,
            "photo_sizes": [list(s) for s in self.photo_sizes], "photo_count": self.photo_count,
            "e2e_photos": min(self.e2e_photos, self.photo_count),
        }
