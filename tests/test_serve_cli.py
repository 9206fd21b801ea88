"""`hashtag serve` as a process: SIGTERM drains requests in flight, the key stays out of logs, clear config errors."""
from __future__ import annotations

import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from hashtag.runtime.cli import main as hashtag_main
from hashtag.runtime.options import DEPRECATED_MODELS_DIR
from servekit import ServeProcess, busy_uploads, in_flight, wait_for

KEY = "proc-key_Zz9-never-logged"


def test_sigterm_finishes_the_request_in_flight_and_the_key_is_never_logged(
        tiny_bundle: Path, tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(KEY + "\n")
    server = ServeProcess(tmp_path, ["--bundle", str(tiny_bundle), "--workers", "1", "--api-key-file", str(key_file)])
    try:
        server.wait_ready()
        auth = {"Authorization": f"Bearer {KEY}"}
        assert httpx.post(server.url + "/v1/tags", content=b"x", headers={"Content-Type": "image/jpeg"}).status_code == 401
        assert httpx.get(server.url + "/v1/models", headers={"Authorization": "Bearer " + KEY[::-1]}).status_code == 401
        big = busy_uploads(12)
        result: dict[str, Any] = {}
        thread = threading.Thread(target=lambda: result.update(
            answer=httpx.post(server.url + "/v1/tags", files=big, headers=auth, timeout=60), done_at=time.monotonic()))
        thread.start()
        wait_for(lambda: in_flight(server.url) == 1, "the upload received and being tagged by the only worker")
        signalled_at = time.monotonic()
        code = server.stop()
        thread.join(60)
    finally:
        server.stop()
    assert code == -signal.SIGTERM, server.output()  # drained, then exits by the signal (as uvicorn does)
    assert result["done_at"] > signalled_at  # the answer came after the signal: it was in flight
    answer = result["answer"]
    assert answer.status_code == 200 and [r["image"] for r in answer.json()["results"]] == [f"big{i}.png" for i in range(12)]
    with pytest.raises(httpx.ConnectError):
        httpx.get(server.url + "/healthz")
    log = server.output()
    assert "Shutting down" in log and "POST /v1/tags" in log
    assert KEY not in log and KEY[::-1] not in log and "Traceback" not in log


def test_old_models_dir_option_still_serves_the_bundle(tiny_bundle: Path, tmp_path: Path) -> None:
    server = ServeProcess(tmp_path, ["--models", str(tiny_bundle)])
    try:
        server.wait_ready()
        assert httpx.get(server.url + "/v1/models").json()["served"] == ["vgg16", "inceptionv3", "xception"]
    finally:
        assert server.stop() == -signal.SIGTERM
    assert DEPRECATED_MODELS_DIR in server.output()


def run(*args: str) -> Any:
    return CliRunner().invoke(hashtag_main, ["serve", *args], catch_exceptions=False)


def test_configuration_errors_are_one_line(tiny_bundle: Path, tmp_path: Path) -> None:
    missing = run("--bundle", str(tmp_path / "nowhere"))
    assert missing.exit_code == 1 and missing.stderr.startswith("Error: ") and missing.stderr.count("\n") == 1
    unknown = run("--bundle", str(tiny_bundle), "--models", "resnet")
    assert unknown.exit_code == 1 and "resnet" in unknown.stderr
    (tmp_path / "empty").write_text("\n")
    empty_key = run("--bundle", str(tiny_bundle), "--api-key-file", str(tmp_path / "empty"))
    assert empty_key.exit_code == 1 and "is empty" in empty_key.stderr
    ray_only = run("--bundle", str(tiny_bundle), "--replicas", "3")
    assert ray_only.exit_code == 2 and "--replicas needs --ray" in ray_only.stderr


def test_ray_missing_says_which_extra(tiny_bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "hashtag.serve.ray_app", raising=False)
    monkeypatch.setitem(sys.modules, "ray", None)  # as if ray were not installed
    result = run("--ray", "--bundle", str(tiny_bundle))
    assert result.exit_code == 1
    assert result.stderr == "Error: --ray needs ray: pip install 'hashtag[serve]'\n"
