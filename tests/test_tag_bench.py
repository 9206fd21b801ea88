"""The tag benchmark runs end to end on a tiny bundle and reports per-round ratios over predict."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from hashtag.benchmarks.bench_tag import VARIANTS, main


@pytest.mark.skipif(shutil.which("hashtag") is None, reason="needs the installed hashtag command (pip install -e .)")
def test_bench_tag_times_every_variant_in_the_same_rounds(tiny_bundle: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["--bundle", str(tiny_bundle), "--count", "2", "--size", "320x240",
                                       "--rounds", "2", "--out", str(tmp_path)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "bench_tag.json").read_text())
    assert all(len(report["wall_s"][v]) == 2 and min(report["wall_s"][v]) > 0 for v in VARIANTS)
    for variant in VARIANTS[1:]:
        ratios = report["ratio_over_predict"][variant]["rounds"]
        assert ratios == [t / p for t, p in zip(report["wall_s"][variant], report["wall_s"]["predict"])]
    assert "flags" in report["environment"]["cpu"]
    assert "| tag_sidecar |" in result.output and "over predict (target <= 5%)" in result.output
    assert not list(tmp_path.glob("*.xmp"))  # the photos lived in a temp folder
