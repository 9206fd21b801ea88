"""Helpers for the serve tests: the app on a free loopback port (in a thread or as `hashtag serve`), photos."""
from __future__ import annotations

import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import httpx
import numpy as np
import uvicorn
from click.testing import CliRunner
from PIL import Image

from hashtag.runtime import Tagger
from hashtag.runtime.cli import main as hashtag_main
from hashtag.serve.app import create_app
from hashtag.serve.backend import LocalBackend
from hashtag.serve.config import ServeConfig

PROVIDER = "cpu"  # every test server and CLI run pins the same engine, so their records can be compared exactly
START_TIMEOUT_S = 60  # interpreter and imports on a busy 2-core machine (Ray: its processes too)
EVENT_TIMEOUT_S = 60  # the outer bound of waiting for something a server does (an upload arriving, a worker freed)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def hashtag_command() -> list[str]:
    """The installed `hashtag` console script, or the same entry point through this interpreter."""
    script = shutil.which("hashtag")
    return [script] if script else [sys.executable, "-c", "from hashtag.runtime.cli import main; main()"]


def wait_for(condition: Callable[[], bool], what: str, timeout_s: float = EVENT_TIMEOUT_S) -> None:
    """Poll ``condition`` until it holds; fail saying ``what`` was awaited once ``timeout_s`` has passed."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout_s} s: {what}"
        time.sleep(0.02)


def in_flight(url: str) -> int:
    """How many requests the server at ``url`` is tagging now, by its ``/healthz``."""
    return httpx.get(url + "/healthz", timeout=30).json()["in_flight"]


@contextmanager
def thread_server(config: ServeConfig) -> Iterator[str]:
    """The app for ``config`` (its own Tagger and pool) served by uvicorn in a thread; yields its base URL."""
    load, default = config.served_models()
    tagger = Tagger(config.bundle, provider=PROVIDER, threads=config.threads,
                    models=load, default_models=default)
    app = create_app(config, LocalBackend(tagger, config.pool_size))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
    thread.start()
    wait_for(lambda: server.started or not thread.is_alive(), "uvicorn starting", START_TIMEOUT_S)
    assert server.started, "uvicorn did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


class ServeProcess:
    """`hashtag serve ...` as users run it, its output in a file (never a full pipe), in its own session."""

    def __init__(self, tmp_path: Path, args: list[str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tmp_path / f"serve-{self.port}.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen([*hashtag_command(), "serve", "--port", str(self.port), *args],
                                         stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)

    def wait_ready(self, timeout_s: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            assert self.proc.poll() is None, f"hashtag serve exited {self.proc.returncode}:\n{self.output()}"
            assert time.monotonic() < deadline, f"hashtag serve not ready in {timeout_s} s:\n{self.output()}"
            try:
                if httpx.get(self.url + "/readyz", timeout=5).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)

    def stop(self, timeout_s: float = 60) -> int:
        """SIGTERM, then wait; the whole process group is killed only if it does not exit in time."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
                raise
        return self.proc.returncode

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def cli_records(*args: str) -> list[dict[str, Any]]:
    """What `hashtag predict --json` prints for these arguments (ONNX Runtime on CPU, as the test servers run)."""
    result = CliRunner().invoke(hashtag_main, ["predict", "--json", "--provider", PROVIDER, *args],
                                catch_exceptions=False)
    return [json.loads(line) for line in result.stdout.splitlines()]


def jpeg_bytes(width: int, height: int, seed: int = 0) -> bytes:
    """A noisy photo-like JPEG: large ones cost real decoding time."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (max(height // 16, 1), max(width // 16, 1), 3), dtype=np.uint8)
    img = Image.fromarray(small, "RGB").resize((width, height), Image.BILINEAR)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90)
    return buf.getvalue()


def busy_uploads(count: int) -> list[tuple[str, tuple[str, bytes, str]]]:
    """``count`` 4000x3000 PNG parts named big0.png...: the server decodes JPEGs at a reduced scale but PNGs
    only in full (about 0.1 s each here), so these keep a worker busy for a while."""
    ramp = np.tile(np.linspace(0, 255, 4000, dtype=np.uint8), (3000, 1))
    parts = []
    for i in range(count):
        buf = io.BytesIO()
        Image.fromarray(np.stack([ramp, np.roll(ramp, 37 * i, axis=1), ramp[::-1]], axis=-1)).save(
            buf, "PNG", compress_level=1)
        parts.append(("image", (f"big{i}.png", buf.getvalue(), "image/png")))
    return parts


def bomb_png(side: int = 10_000) -> bytes:
    """A decompression bomb: a few kilobytes of PNG that claim side x side pixels (100 Mpx by default)."""
    buf = io.BytesIO()
    Image.new("1", (side, side)).save(buf, "PNG", optimize=True)
    return buf.getvalue()
