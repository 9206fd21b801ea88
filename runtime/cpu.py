"""What this CPU offers for integer inference, and which precision that makes faster on it.

INT8 pays off where the CPU has 8-bit dot-product instructions: AVX-512 VNNI, AVX-VNNI or AMX on x86, the
dot-product extension (``asimddp``) on ARM. Without them ONNX Runtime's INT8 kernels widen to 16-bit
multiplies and run no faster than FP32 (measured: 0.97-1.09x on an AVX2-only EPYC, see
benchmarks/results), so a model shipped in both precisions runs in FP32 there.
"""
from __future__ import annotations

import ctypes
import platform
import sys
from dataclasses import dataclass
from pathlib import Path

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


def faster_cpu_precision(features: CpuFeatures) -> tuple[str, str]:
    """("int8" or "fp32", why) for a model shipped in both, on a CPU with these features."""
    if features.int8_flags:
        return "int8", f"{features.machine} CPU has INT8 dot products ({', '.join(features.int8_flags)})"
    return "fp32", f"{features.machine} CPU has no INT8 dot-product instructions (no VNNI/AMX/asimddp): FP32 is as fast"
