"""env.json: what each side records of its machine, with the benchmarks' own machine information."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from hashtag.benchmarks import envinfo
from hashtag.runtime.settings import settings
from hashtag.train.files import sha256_file


def bundle_files(root: Path) -> dict[str, dict[str, Any]]:
    """Size and SHA-256 of each ONNX file as installed: the files on disk, which the manifest's hashes only name."""
    return {p.name: {"bytes": p.stat().st_size, "sha256": sha256_file(p)} for p in sorted(Path(root).glob("*.onnx"))}


def machine_env() -> dict[str, Any]:
    """The CPU features the runtime sees (and the CPU qemu was told to emulate), the OS, the software versions
    the benchmarks record and the files of the bundle ``hashtag predict`` runs by default (``$HASHTAG_MODELS``,
    else the shipped one)."""
    return {"cpu": {**envinfo.cpu_features_seen(), "qemu_cpu": os.environ.get("QEMU_CPU")},
            "os": envinfo.os_name(), "software": envinfo.software(), "bundle": bundle_files(settings().bundle)}
