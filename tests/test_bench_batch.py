"""The batch-size benchmark: real `hashtag predict` runs per batch size, and the rule that picks one."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from hashtag.benchmarks.bench_batch import WITHIN, choose, main


def test_choose_takes_the_smallest_batch_within_five_percent_and_the_budget() -> None:
    results = {1: {"photos_per_s": 9.4, "peak_rss_mb_max": 250.0}, 2: {"photos_per_s": 9.6, "peak_rss_mb_max": 300.0},
               4: {"photos_per_s": 10.0, "peak_rss_mb_max": 420.0}, 8: {"photos_per_s": 9.9, "peak_rss_mb_max": 600.0}}
    assert choose(results) == 2  # 9.4 is 6% below the best; 9.6 is 4% below
    assert choose(results, within=0.1) == 1
    assert choose(results, budget_mb=280.0) is None  # only batch 1 fits, and it is too slow
    assert choose({4: {"photos_per_s": 5.0, "peak_rss_mb_max": 100.0}}) == 4


def test_runs_predict_per_batch_size(tiny_bundle: Path, tmp_path: Path) -> None:
    out = tmp_path / "batch.json"
    result = CliRunner().invoke(main, ["--bundle", str(tiny_bundle), "--provider", "cpu", "--batch-sizes", "1,2",
                                       "--photos", "3", "--size", "200x150", "--rounds", "2", "--json", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert set(data["results"]) == {"1", "2"} and data["photos"] == 3
    for r in data["results"].values():
        assert len(r["wall_s_per_round"]) == 2 and 20 < r["peak_rss_mb_max"] < 2000
        assert r["photos_per_s"] == pytest.approx(3 / min(r["wall_s_per_round"]))
        assert r["photos_per_s_median_round"] == pytest.approx(3 / (sum(r["wall_s_per_round"]) / 2))
    rates = {int(b): r["photos_per_s"] for b, r in data["results"].items()}
    qualifying = [b for b in sorted(rates) if rates[b] >= max(rates.values()) * (1 - WITHIN)]
    assert data["chosen"] == qualifying[0]  # the smallest within 5% of the best (the tiny bundle fits the budget)
    assert "smallest batch within 5% of the best" in result.output
