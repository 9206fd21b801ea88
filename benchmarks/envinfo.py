"""What the numbers were measured on: CPU, GPU, software versions and the exact bundle (manifest hash)."""
from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from hashtag.runtime.cpu import X86_REPORTED_FLAGS, cpu_features
from hashtag.runtime.manifest import manifest_sha256
from hashtag.runtime.providers import usable_cpus

CPU_FLAGS = X86_REPORTED_FLAGS  # the SIMD flags that decide INT8/FP32 speed (hashtag.runtime.cpu)
TOOL_TIMEOUT_S = 10


def _cpuinfo(text: str) -> dict[str, Any]:
    """Model name, flags and current MHz (max over cores) from /proc/cpuinfo text."""
    model, flags, mhz = None, set(), []
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key == "model name" and model is None:
            model = value
        elif key == "flags" and not flags:
            flags = set(value.split())
        elif key == "cpu MHz":
            try:
                mhz.append(float(value))
            except ValueError:
                pass
    return {"model": model, "flags": {f: f in flags for f in CPU_FLAGS}, "mhz": max(mhz) if mhz else None}


def _lscpu_max_mhz() -> float | None:
    """``CPU max MHz`` from lscpu; virtual machines often do not report it."""
    if not shutil.which("lscpu"):
        return None
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=TOOL_TIMEOUT_S).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"^CPU max MHz:\s*([\d.]+)", out, re.MULTILINE)
    return float(match.group(1)) if match else None


def cpu_info() -> dict[str, Any]:
    """CPU model, the SIMD flags that decide INT8/FP32 speed, core counts and clock (for the peak estimate)."""
    try:
        info = _cpuinfo(Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace"))
    except OSError:
        info = {"model": None, "flags": {f: None for f in CPU_FLAGS}, "mhz": None}
    info["model"] = info["model"] or platform.processor() or platform.machine()
    max_mhz = _lscpu_max_mhz()
    info["max_mhz"] = max_mhz
    info["clock_mhz"] = max_mhz or info["mhz"]
    info["clock_source"] = "lscpu CPU max MHz" if max_mhz else ("/proc/cpuinfo cpu MHz" if info["mhz"] else None)
    info["logical_cpus"] = os.cpu_count()
    info["usable_cpus"] = usable_cpus()
    return info


def cpu_features_seen() -> dict[str, Any]:
    """The CPU features this process sees, read as the runtime reads them to pick a precision
    (``hashtag.runtime.cpu``): /proc/cpuinfo's SIMD flags on x86, the auxiliary vector on aarch64 Linux (under
    qemu-user, what qemu emulates, where ``cpu_info``'s model and flags may be the host's)."""
    features = cpu_features()
    return {"machine": features.machine, "features": sorted(features.flags), "int8_flags": list(features.int8_flags)}


def os_name() -> str | None:
    """The distribution's PRETTY_NAME from os-release (e.g. Debian GNU/Linux 12 (bookworm)), None where absent."""
    try:
        return platform.freedesktop_os_release().get("PRETTY_NAME")
    except OSError:
        return None


def gpu_name() -> str | None:
    """The first GPU's name from nvidia-smi, or None when there is none."""
    if not shutil.which("nvidia-smi"):
        return None
    try:
        proc = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=TOOL_TIMEOUT_S)
    except (OSError, subprocess.SubprocessError):
        return None
    names = [line.strip() for line in proc.stdout.splitlines() if line.strip()]
    return names[0] if proc.returncode == 0 and names else None


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def software() -> dict[str, Any]:
    """Versions that change timings; onnxruntime may be the CPU or the GPU distribution."""
    import onnxruntime

    return {
        "python": platform.python_version(),
        "implementation": sys.implementation.name,
        "platform": platform.platform(),
        "onnxruntime": onnxruntime.__version__,
        "onnxruntime_distribution": "onnxruntime-gpu" if _version("onnxruntime-gpu") else "onnxruntime",
        "onnxruntime_providers": list(onnxruntime.get_available_providers()),
        "numpy": _version("numpy"),
        "pillow": _version("pillow"),
        "hashtag": _version("hashtag"),
    }


def load_average() -> list[float] | None:
    """1/5/15-minute load averages: a busy machine explains slow rounds."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def collect(bundle_root: Path) -> dict[str, Any]:
    """Everything recorded about the machine and the bundle."""
    return {
        "cpu": cpu_info(),
        "gpu": gpu_name(),
        "software": software(),
        "bundle": {"path": str(bundle_root), "manifest_sha256": manifest_sha256(bundle_root)},
        "load_average_start": load_average(),
    }


def hardware_line(env: dict[str, Any]) -> str:
    """One line for tables and README: CPU, cores, clock, SIMD flags, GPU, onnxruntime."""
    cpu = env["cpu"]
    flags = " ".join(f.upper().replace("_", "-") for f, on in cpu["flags"].items() if on and f != "fma") or "no AVX2"
    clock = f" @ {cpu['clock_mhz']:.0f} MHz" if cpu.get("clock_mhz") else ""
    gpu = env.get("gpu") or "no GPU"
    return (f"{cpu['model']}, {cpu['usable_cpus']} CPUs{clock} ({flags}); {gpu}; "
            f"onnxruntime {env['software']['onnxruntime']}, Python {env['software']['python']}")
