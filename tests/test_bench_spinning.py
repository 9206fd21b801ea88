"""The spinning comparison runs on a real (tiny) bundle and reports both variants and their ratio."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from hashtag.benchmarks.bench_spinning import main


def test_reports_both_variants_and_ratio(tiny_bundle: Path) -> None:
    result = CliRunner().invoke(main, ["--bundle", str(tiny_bundle), "--rounds", "2", "--runs", "3"])
    assert result.exit_code == 0, result.output
    off = re.search(r"spinning off: p50 per round \(ms\) ([0-9.]+) ([0-9.]+) \|", result.output)
    on = re.search(r"spinning on : p50 per round \(ms\) ([0-9.]+) ([0-9.]+) \|", result.output)
    ratio = re.search(r"on/off ratio: median ([0-9.]+), per round ([0-9.]+) ([0-9.]+)", result.output)
    assert off and on and ratio
    per_round = [float(ratio.group(i)) for i in (2, 3)]
    assert float(ratio.group(1)) == pytest.approx(sum(per_round) / 2, abs=0.01)  # the median of two rounds
    for i, value in zip((1, 2), per_round):  # each round's ratio is on over off (printed p50s are rounded)
        assert value == pytest.approx(float(on.group(i)) / float(off.group(i)), rel=0.05)
