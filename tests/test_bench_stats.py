"""The benchmark's statistics, MAC-rate estimate and environment parsing on known inputs."""
from __future__ import annotations

import numpy as np
import pytest

from hashtag.benchmarks import envinfo, stats
from hashtag.benchmarks.macs import macs_per_cycle, peak_gmacs


def test_percentiles_match_known_values_and_numpy() -> None:
    samples = [float(v) for v in range(10, 0, -1)]  # 10..1, unsorted on purpose
    assert stats.percentile(samples, 50) == pytest.approx(5.5)
    assert stats.percentile(samples, 90) == pytest.approx(9.1)
    assert stats.percentile(samples, 99) == pytest.approx(9.91)
    assert stats.percentile(samples, 0) == 1.0 and stats.percentile(samples, 100) == 10.0
    rng = np.random.default_rng(0)
    data = list(rng.exponential(3.0, 37))
    for q in (1, 25, 50, 90, 99):
        assert stats.percentile(data, q) == pytest.approx(float(np.percentile(data, q)))
    assert stats.percentile([7.0], 99) == 7.0


def test_percentile_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        stats.percentile([], 50)
    with pytest.raises(ValueError):
        stats.percentile([1.0], 101)


def test_summary_and_scaling() -> None:
    s = stats.Summary.of([0.004, 0.001, 0.002, 0.003])
    assert (s.n, s.min, s.mean) == (4, 0.001, pytest.approx(0.0025))
    assert s.p50 == pytest.approx(0.0025)
    ms = s.scaled(1e3)
    assert (ms.min, ms.p50, ms.p90) == (pytest.approx(1.0), pytest.approx(2.5), pytest.approx(3.7))
    assert set(ms.to_dict()) == {"n", "min", "p50", "p90", "p99", "mean"}


def test_best_and_median_round() -> None:
    latencies = [12.0, 9.0, 30.0, 10.0]  # round 3 hit by background load
    assert stats.best_round(latencies) == 9.0
    assert stats.median_of_rounds(latencies) == 11.0
    assert stats.best_round([100.0, 250.0, 180.0], lower_is_better=False) == 250.0
    assert stats.median_of_rounds([3.0, 1.0, 2.0]) == 2.0
    with pytest.raises(ValueError):
        stats.best_round([])


def test_round_ratios_pair_same_rounds() -> None:
    assert stats.round_ratios([2.0, 6.0], [4.0, 12.0]) == [0.5, 0.5]
    with pytest.raises(ValueError):
        stats.round_ratios([1.0], [1.0, 2.0])


def test_throughput() -> None:
    assert stats.throughput(8, [0.5, 0.5]) == pytest.approx(16.0)
    assert stats.throughput(1, [0.1, 0.2, 0.2]) == pytest.approx(6.0)


def test_peak_estimate() -> None:
    vnni = {"avx2": True, "fma": True, "avx512f": True, "avx512bw": True, "avx512_vnni": True}
    assert peak_gmacs("int8", vnni, 2, 2600.0) == pytest.approx(2 * 2.6 * 2 * 64)
    assert peak_gmacs("fp32", vnni, 2, 2600.0) == pytest.approx(2 * 2.6 * 2 * 16)
    assert macs_per_cycle("int8", {"avx2": True}) == 16
    assert macs_per_cycle("fp32", {"avx2": True, "fma": True}) == 8
    assert peak_gmacs("int8", {}, 2, 2600.0) is None
    assert peak_gmacs("int8", vnni, 2, None) is None


CPUINFO = """processor\t: 0
model name\t: Test CPU 9000
cpu MHz\t\t: 2400.000
flags\t\t: fpu sse avx2 fma avx512f avx512bw avx512_vnni

processor\t: 1
model name\t: Test CPU 9000
cpu MHz\t\t: 3100.500
flags\t\t: fpu sse avx2 fma avx512f avx512bw avx512_vnni
"""


def test_cpuinfo_parsing_and_hardware_line() -> None:
    info = envinfo._cpuinfo(CPUINFO)
    assert info["model"] == "Test CPU 9000"
    assert info["mhz"] == 3100.5
    assert info["flags"] == {"avx2": True, "fma": True, "avx512f": True, "avx512bw": True, "avx512_vnni": True,
                             "avx_vnni": False, "amx_int8": False}
    env = {"cpu": {**info, "usable_cpus": 2, "clock_mhz": 3100.5}, "gpu": None,
           "software": {"onnxruntime": "1.2.3", "python": "3.11.0"}}
    line = envinfo.hardware_line(env)
    assert line.startswith("Test CPU 9000, 2 CPUs @ 3100 MHz (AVX2 AVX512F AVX512BW AVX512-VNNI); no GPU")
    assert "onnxruntime 1.2.3" in line
