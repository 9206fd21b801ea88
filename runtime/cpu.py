"""What this CPU offers for integer inference, and which precision that makes faster on it.

INT8 pays off where the CPU has 8-bit dot-product instructions: AVX-512 VNNI, AVX-VNNI or AMX on x86, the
dot-product or int8 matrix-multiply extensions (``asimddp``, ``i8mm``) on ARM. Without them ONNX Runtime's
INT8 kernels widen to 16-bit multiplies: the ensemble's models ran 0.97-1.09x of their FP32 speed on an
AVX2-only EPYC (issue 23's table), while EfficientNet-Lite0 still ran 1.35x faster in INT8 there. So the choice
is measured per model and kind of CPU (``hashtag bench`` times both precisions in one run and records the
CPU's flags) and written into the model's manifest entry (``cpu_precision``); kinds nobody measured get INT8
with dot products and FP32 without.
"""
from __future__ import annotations

import ctypes
import platform
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

X86_INT8_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")  # any of these: INT8 dot products in hardware
X86_REPORTED_FLAGS = ("avx2", "fma", "avx512f", "avx512bw", *X86_INT8_FLAGS)
# Linux aarch64 auxiliary-vector bits (asm/hwcap.h).
HWCAP_BITS = {"asimd": 1 << 1, "asimddp": 1 << 20, "sve": 1 << 22}
HWCAP2_BITS = {"sve2": 1 << 1, "i8mm": 1 << 13, "bf16": 1 << 14}
AT_HWCAP, AT_HWCAP2 = 16, 26
ARM_INT8_FLAGS = ("asimddp", "i8mm")


@dataclass(frozen=True)
class CpuFeatures:
    """The machine type and the instruction-set flags that decide INT8 speed (as the process sees them)."""

    machine: str
    flags: frozenset[str]

    @property
    def int8_flags(self) -> tuple[str, ...]:
        """The flags present that give INT8 dot products in hardware."""
        return tuple(f for f in (*X86_INT8_FLAGS, *ARM_INT8_FLAGS) if f in self.flags)


def _x86_flags(cpuinfo: str) -> frozenset[str]:
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            return frozenset(f for f in line.split(":", 1)[1].split() if f in X86_REPORTED_FLAGS)
    return frozenset()


def arm_hwcaps() -> tuple[list[str], list[str]]:
    """The named AT_HWCAP and AT_HWCAP2 features of this aarch64 Linux process (what qemu says it emulates)."""
    getauxval = ctypes.CDLL(None).getauxval
    getauxval.restype = ctypes.c_ulong
    hwcap, hwcap2 = getauxval(AT_HWCAP), getauxval(AT_HWCAP2)
    return ([k for k, bit in HWCAP_BITS.items() if hwcap & bit], [k for k, bit in HWCAP2_BITS.items() if hwcap2 & bit])


def cpu_features() -> CpuFeatures:
    """This process's view of the CPU: /proc/cpuinfo flags on x86, the auxiliary vector on aarch64 Linux."""
    machine = platform.machine().lower()
    if machine in ("aarch64", "arm64") and sys.platform.startswith("linux"):
        hwcap, hwcap2 = arm_hwcaps()
        return CpuFeatures(machine, frozenset(hwcap + hwcap2))
    try:
        return CpuFeatures(machine, _x86_flags(Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")))
    except OSError:
        return CpuFeatures(machine, frozenset())


CPU_KINDS = ("x86_64", "x86_64-int8dot", "aarch64", "aarch64-int8dot")


def cpu_kind(features: CpuFeatures) -> str:
    """The kind of CPU a measured precision applies to: its architecture, with or without INT8 dot products."""
    machine = {"amd64": "x86_64", "arm64": "aarch64"}.get(features.machine, features.machine)
    return machine + ("-int8dot" if features.int8_flags else "")


def faster_cpu_precision(features: CpuFeatures, measured: Mapping[str, str] | None = None) -> tuple[str, str]:
    """("int8" or "fp32", why) for a model shipped in both, on a CPU with these features: the precision
    ``measured`` faster on this kind of CPU (the model's manifest entry, see ``cpu_kind``), else INT8 with INT8
    dot products and FP32 without."""
    kind = cpu_kind(features)
    if measured and kind in measured:
        return measured[kind], f"measured faster for this model on {kind} CPUs (its manifest's cpu_precision)"
    if features.int8_flags:
        return "int8", f"{features.machine} CPU has INT8 dot products ({', '.join(features.int8_flags)})"
    return "fp32", (f"{features.machine} CPU has no INT8 dot-product instructions (no VNNI/AMX/asimddp/i8mm) and "
                    "nothing was measured for this kind: FP32")
