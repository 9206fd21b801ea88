"""The bot load benchmark runs end to end on a tiny bundle and reports every level (numbers not judged here);
outside a source checkout it says it needs one."""
from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path


def test_bench_bot_runs_and_reports_each_level(tiny_bundle: Path, tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "hashtag.benchmarks.bench_bot", "--bundle", str(tiny_bundle), "--provider", "cpu",
         "--users", "1,3", "--seconds", "1", "--size", "320x240", "--json", str(out)],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert [lv["users"] for lv in result["levels"]] == [1, 3]
    for level in result["levels"]:
        assert level["replies"] >= 1 and level["wrong_replies"] == 0
        assert 0 < level["p50_ms"] <= level["p95_ms"]
        assert level["runtime_p50_ms"] > 0 and level["runtime_per_s"] > 0
        assert level["answered_429"] == 0  # the bot kept to the server's flood limits
        assert 0 < level["net_p50_ms"] <= level["p50_ms"]
    single = result["levels"][0]  # one user sending photo after photo: flood control paces the replies
    assert single["replies"] >= 2 and single["flood_wait_total_s"] > 0.5
    assert len(result["runtime_rounds"]) == 3  # before the first level and after each
    assert result["bot_exit_code"] == 0 and result["verdicts"]["all_replies_correct"]
    assert "replies/s" in proc.stdout and "target p50 at 1 user" in proc.stdout


def test_bench_bot_outside_a_source_checkout_says_in_one_line_that_it_needs_one(tmp_path: Path) -> None:
    """Installed from the wheel, bench_bot has no tests/ beside it, so no fake Bot API server to play Telegram."""
    installed = tmp_path / "site-packages" / "hashtag" / "benchmarks" / "bench_bot.py"
    installed.parent.mkdir(parents=True)
    shutil.copy(importlib.util.find_spec("hashtag.benchmarks.bench_bot").origin, installed)
    proc = subprocess.run([sys.executable, str(installed), "--users", "1"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and not proc.stdout
    assert proc.stderr.count("\n") == 1 and "needs a source checkout" in proc.stderr, proc.stderr
