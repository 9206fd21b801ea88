"""bench_serve end to end on the tiny bundle: a real `hashtag serve` process, real HTTP load, sane figures."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from hashtag.benchmarks import bench_serve


def test_bench_serve_single_process(tiny_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bench.json"
    bench_serve.main(["--bundle", str(tiny_bundle), "--clients", "1,3", "--seconds", "1", "--max-requests", "40",
                      "--modes", "single", "--size", "320x240", "--json", str(out)])
    result = json.loads(out.read_text())
    single = result["modes"]["single"]
    assert [r["clients"] for r in single["levels"]] == [1, 3]
    for row in single["levels"]:
        assert 0 < row["answers"] < 40 + row["clients"] and row["errors"] == 0  # in-flight ones finish
        assert row["p50_ms"] > 0 and row["p99_ms"] >= row["p50_ms"] and row["runtime_per_s"] > 0
    assert len(single["runtime_rounds"]) == 3  # before, between and after the two levels
    assert single["exit_code"] == -15 and single["verdicts"]["no_errors"]
    printed = capsys.readouterr().out
    assert "targets (single process)" in printed and "clients  answers" in printed
