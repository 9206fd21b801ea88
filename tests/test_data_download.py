"""The image downloader against a real loopback HTTP server with scripted faults.

``ImageServer`` (also used by test_data_build.py) serves generated JPEG/PNG images plus 404s, 5xx and 429s
that recover (optionally asking for a Retry-After pause), responses slower than the timeout, bodies cut
short, and non-image bodies; it counts requests per path so retries and resume skips are asserted on the
server side.
"""
from __future__ import annotations

import io
import json
import os
import struct
import threading
import time
import zlib
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pytest
from PIL import Image

from hashtag.runtime.images import load_image
from hashtag.train.download import Downloader, DownloadConfig, Job, RunReport
from hashtag.train.fetch import sized_url
from hashtag.train.store import Journal, Outcome, encode_image

FAST = dict(timeout=2.0, retries=2, backoff=0.01, workers=4)


def image_bytes(size: tuple[int, int] = (64, 48), fmt: str = "JPEG", seed: int = 0, mode: str = "RGB",
                orientation: int | None = None) -> bytes:
    """A generated image (gradient plus noise) encoded in memory."""
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    arr = np.stack([xx * 255 // max(w - 1, 1), yy * 255 // max(h - 1, 1), np.full_like(xx, 40 * (seed % 6))], -1)
    arr = np.clip(arr + rng.normal(0, 12, arr.shape), 0, 255).astype(np.uint8)
    img = Image.fromarray(arr, "RGB").convert(mode)
    buf = io.BytesIO()
    kwargs = {}
    if orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = orientation
        kwargs["exif"] = exif.tobytes()
    img.save(buf, fmt, **kwargs)
    return buf.getvalue()


def png_header(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` pixels and holds none (decompression-bomb bait)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


@dataclass
class Route:
    """What one path answers: ``fail_first`` requests get ``fail_status``; then ``body`` after ``delay`` seconds.

    ``truncate`` declares the full Content-Length but sends half and hangs up; ``drop`` closes the
    connection after a complete HTTP/1.1 response without announcing it (a stale keep-alive connection).
    """

    body: bytes = b""
    status: int = 200
    content_type: str = "image/jpeg"
    fail_first: int = 0
    fail_status: int = 500
    delay: float = 0.0
    truncate: bool = False
    drop: bool = False
    location: str = ""
    retry_after: str = ""


class ImageServer:
    """A ThreadingHTTPServer on 127.0.0.1 (port 0) that keeps connections alive and counts what it serves."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.requests: Counter[str] = Counter()
        self.queries: dict[str, list[dict[str, list[str]]]] = {}
        self.clients: set[tuple[str, int]] = set()
        self.delay = 0.0
        self._lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        self.httpd.handle_error = lambda request, client_address: None  # clients that time out hang up on us
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def add(self, path: str, body: bytes = b"", **kwargs: object) -> str:
        self.routes[path] = Route(body=body, **kwargs)  # type: ignore[arg-type]
        return self.url(path)

    def reset_counts(self) -> None:
        with self._lock:
            self.requests.clear()
            self.queries.clear()
            self.clients.clear()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                parts = urlsplit(self.path)
                with server._lock:
                    server.requests[parts.path] += 1
                    n = server.requests[parts.path]
                    server.queries.setdefault(parts.path, []).append(parse_qs(parts.query))
                    server.clients.add(self.client_address)
                route = server.routes.get(parts.path)
                time.sleep(server.delay)
                if route is None:
                    return self._send(404, b"no such image", "text/plain")
                if n <= route.fail_first:
                    return self._send(route.fail_status, b"try again", "text/plain", route.retry_after)
                time.sleep(route.delay)
                if route.location:
                    self.send_response(route.status)
                    self.send_header("Location", route.location)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return None
                if route.truncate:
                    self.send_response(200)
                    self.send_header("Content-Type", route.content_type)
                    self.send_header("Content-Length", str(len(route.body)))
                    self.end_headers()
                    self.wfile.write(route.body[: len(route.body) // 2])
                    self.close_connection = True
                    return None
                self._send(route.status, route.body, route.content_type)
                if route.drop:
                    self.close_connection = True
                return None

            def _send(self, status: int, body: bytes, content_type: str, retry_after: str = "") -> None:
                self.send_response(status)
                if retry_after:
                    self.send_header("Retry-After", retry_after)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler

    def __enter__(self) -> "ImageServer":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=5)


@pytest.fixture()
def server() -> Iterator[ImageServer]:
    with ImageServer() as srv:
        yield srv


def run(out: Path, jobs: list[Job], stop: threading.Event | None = None, retry_failed: bool = False,
        progress=None, **config: object) -> RunReport:  # noqa: ANN001
    with Journal(out / "journal.jsonl") as journal:
        downloader = Downloader(DownloadConfig(**{**FAST, **config}), journal, out / ".partial", stop)  # type: ignore[arg-type]
        return downloader.run(jobs, len(jobs), progress, retry_failed)


def job(out: Path, photo_id: str, source: str) -> Job:
    return Job(photo_id, source, out / "images" / f"{photo_id}.jpg")


def journal_records(out: Path) -> dict[str, dict]:
    lines = (out / "journal.jsonl").read_text().splitlines()
    return {rec["id"]: rec for rec in map(json.loads, lines)}


def test_sized_url_asks_for_the_shorter_side() -> None:
    base = "https://images.unsplash.com/photo-123"
    assert sized_url(base, 6000, 4000, 299) == base + "?w=449&fit=max&fm=jpg&q=85"
    assert sized_url(base, 3000, 4500, 299) == base + "?w=299&fit=max&fm=jpg&q=85"
    assert sized_url(base, None, None, 299) == base + "?w=598&fit=max&fm=jpg&q=85"
    assert sized_url(base + "?ixid=abc&w=4000", 100, 100, 299) == base + "?ixid=abc&w=299&fit=max&fm=jpg&q=85"


def test_concurrent_download_stores_rgb_images_at_the_right_size(server: ImageServer, tmp_path: Path) -> None:
    specs = {
        "big": ((800, 500), "JPEG", "RGB"),
        "tall": ((300, 700), "JPEG", "RGB"),
        "small": ((120, 90), "JPEG", "RGB"),
        "grey": ((400, 400), "JPEG", "L"),
        "alpha": ((500, 320), "PNG", "RGBA"),
        "palette": ((90, 60), "PNG", "P"),
    }
    jobs = [job(tmp_path, pid, server.add(f"/{pid}", image_bytes(size, fmt, i, mode)))
            for i, (pid, (size, fmt, mode)) in enumerate(specs.items())]
    report = run(tmp_path, jobs)
    assert report.stored == len(specs) and report.failures == 0 and not report.interrupted
    for pid, (size, _, _) in specs.items():
        path = tmp_path / "images" / f"{pid}.jpg"
        with Image.open(path) as img:
            assert img.format == "JPEG" and img.mode == "RGB"
            short = min(size)
            expect = size if short <= 299 else tuple(round(s * 299 / short) for s in size)
            assert img.size == expect
        assert server.requests[f"/{pid}"] == 1
    # A small plain RGB JPEG is kept byte for byte: no second lossy encode.
    assert (tmp_path / "images" / "small.jpg").read_bytes() == server.routes["/small"].body
    assert journal_records(tmp_path).keys() == specs.keys()


def test_exif_orientation_is_applied_before_storing() -> None:
    stored = encode_image(image_bytes((64, 32), orientation=6), 299, 90)
    with Image.open(io.BytesIO(stored)) as img:
        assert img.size == (32, 64)
        assert img.getexif().get(0x0112, 1) == 1


def test_faults_retries_and_recorded_failures(server: ImageServer, tmp_path: Path) -> None:
    good, big = image_bytes(seed=3), image_bytes((300, 200), seed=4)
    jobs = [
        job(tmp_path, "missing", server.url("/missing")),                       # 404: no retry
        job(tmp_path, "gone", server.add("/gone", good, fail_first=9, fail_status=410)),
        job(tmp_path, "flaky", server.add("/flaky", good, fail_first=2, fail_status=500)),
        job(tmp_path, "down", server.add("/down", good, fail_first=99, fail_status=503)),
        job(tmp_path, "busy", server.add("/busy", good, fail_first=1, fail_status=429)),
        job(tmp_path, "slow", server.add("/slow", good, delay=1.5)),
        job(tmp_path, "cut", server.add("/cut", good, truncate=True)),
        job(tmp_path, "html", server.add("/html", b"<html>not a photo</html>", content_type="text/html")),
        job(tmp_path, "corrupt", server.add("/corrupt", big[: len(big) * 3 // 4])),
        job(tmp_path, "empty", server.add("/empty", b"")),
        job(tmp_path, "moved", server.add("/moved", status=302, location="/flaky2")),
        job(tmp_path, "local-missing", str(tmp_path / "nope.jpg")),
    ]
    server.add("/flaky2", good)
    report = run(tmp_path, jobs, timeout=0.4, retries=2)
    got = {pid: o for pid, o in report.outcomes.items()}
    assert {pid for pid, o in got.items() if o.ok} == {"flaky", "busy", "moved"}
    assert (tmp_path / "images" / "flaky.jpg").is_file()
    expected = {"missing": ("http 404", 1), "gone": ("http 410", 1), "down": ("http 503", 3),
                "slow": ("timeout", 3), "cut": ("truncated download", 3), "html": ("not an image", 1),
                "corrupt": ("corrupt image", 1), "empty": ("empty", 1), "local-missing": ("missing file", 1)}
    for pid, (reason, attempts) in expected.items():
        assert (got[pid].reason, got[pid].attempts) == (reason, attempts), pid
        assert not (tmp_path / "images" / f"{pid}.jpg").exists()
    # Server-side request counts prove the retry policy.
    assert server.requests["/missing"] == 1 and server.requests["/gone"] == 1
    assert server.requests["/flaky"] == 3 and server.requests["/busy"] == 2 and server.requests["/down"] == 3
    assert server.requests["/slow"] == 3 and server.requests["/cut"] == 3
    assert server.requests["/html"] == 1 and server.requests["/corrupt"] == 1
    assert report.failures_by_reason()["http 404"] == 1
    records = journal_records(tmp_path)
    assert records["down"] == {"id": "down", "ok": False, "reason": "http 503", "detail": "", "attempts": 3,
                               "retryable": True}
    assert records["missing"]["retryable"] is False and records["flaky"]["ok"] is True
    assert not list((tmp_path / ".partial").iterdir())


def test_resume_after_interruption_downloads_only_the_rest(server: ImageServer, tmp_path: Path) -> None:
    server.delay = 0.02
    jobs = [job(tmp_path, f"p{i:02d}", server.add(f"/p{i:02d}", image_bytes((200, 150), seed=i))) for i in range(30)]
    stop = threading.Event()

    def stop_after_eight(report: RunReport) -> None:
        if report.stored >= 8:
            stop.set()

    first = run(tmp_path, jobs, stop=stop, progress=stop_after_eight, workers=3)
    assert first.interrupted and 8 <= first.stored < 30
    stored = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in (tmp_path / "images").iterdir()}
    assert len(stored) == first.stored
    server.reset_counts()

    second = run(tmp_path, jobs, workers=3)
    assert not second.interrupted
    assert second.already_stored == len(stored) and second.stored == 30 - len(stored)
    for name, before in stored.items():
        p = tmp_path / "images" / name
        assert (p.stat().st_ino, p.stat().st_mtime_ns) == before  # untouched
        assert server.requests[f"/{p.stem}"] == 0  # not downloaded again
    assert sum(server.requests.values()) == 30 - len(stored)
    assert len(list((tmp_path / "images").iterdir())) == 30


def test_rerun_retries_transient_failures_but_not_permanent_ones(server: ImageServer, tmp_path: Path) -> None:
    good = image_bytes(seed=5)
    jobs = [job(tmp_path, "missing", server.url("/missing")),
            job(tmp_path, "down", server.add("/down", good, fail_first=99, fail_status=502)),
            job(tmp_path, "html", server.add("/html", b"oops", content_type="text/html"))]
    first = run(tmp_path, jobs, retries=1)
    assert first.failed == 3
    assert server.requests["/down"] == 2
    server.add("/down", good)  # the server has recovered
    server.reset_counts()
    second = run(tmp_path, jobs, retries=1)
    assert second.outcomes["down"].ok and second.failed_before == 2
    assert dict(server.requests) == {"/down": 1}
    assert second.outcomes["missing"].reason == "http 404"  # still reported, from the journal
    server.reset_counts()
    third = run(tmp_path, jobs, retry_failed=True)
    assert dict(server.requests) == {"/missing": 1, "/html": 1}
    assert third.already_stored == 1 and third.failed == 2


def test_file_stored_before_a_kill_is_checked_not_refetched(server: ImageServer, tmp_path: Path) -> None:
    good, other = image_bytes(seed=1), image_bytes(seed=2)
    jobs = [job(tmp_path, "done", server.add("/done", good)), job(tmp_path, "broken", server.add("/broken", other))]
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "done.jpg").write_bytes(good)  # renamed into place, journal line never written
    (tmp_path / "images" / "broken.jpg").write_bytes(other[:40])  # damaged on disk
    report = run(tmp_path, jobs)
    assert report.outcomes["done"] == Outcome("done", True, bytes=len(good))
    assert dict(server.requests) == {"/broken": 1}
    assert (tmp_path / "images" / "broken.jpg").read_bytes() == other


def test_stored_file_changed_after_journal_is_rechecked(server: ImageServer, tmp_path: Path) -> None:
    good = image_bytes(seed=4)
    jobs = [job(tmp_path, "a", server.add("/a", good))]
    run(tmp_path, jobs)
    (tmp_path / "images" / "a.jpg").write_bytes(b"garbage")  # size no longer matches the journal
    server.reset_counts()
    assert run(tmp_path, jobs).stored == 1 and server.requests["/a"] == 1
    load_image(tmp_path / "images" / "a.jpg")


def test_journal_survives_a_line_cut_by_a_kill(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    path.write_text('{"id": "a", "ok": true, "bytes": 5}\n{"id": "b", "ok": fal')
    with Journal(path) as journal:
        assert set(journal.records) == {"a"}
        journal.append(Outcome("c", False, "http 404"))
    with Journal(path) as journal:
        assert set(journal.records) == {"a", "c"} and journal.records["c"]["reason"] == "http 404"


def test_keep_alive_and_stale_connections(server: ImageServer, tmp_path: Path) -> None:
    jobs = [job(tmp_path, f"k{i}", server.add(f"/k{i}", image_bytes(seed=i))) for i in range(12)]
    jobs += [job(tmp_path, f"d{i}", server.add(f"/d{i}", image_bytes(seed=i), drop=True)) for i in range(4)]
    report = run(tmp_path, jobs, workers=1, retries=0)
    assert report.stored == 16 and report.failures == 0
    assert all(o.attempts == 1 for o in report.outcomes.values())  # a stale connection costs no attempt
    assert sum(server.requests.values()) == 16
    assert len(server.clients) <= 1 + 4  # one connection reused, a new one after each server hang-up


def test_retry_after_is_honoured(server: ImageServer, tmp_path: Path) -> None:
    url = server.add("/busy", image_bytes(seed=6), fail_first=1, fail_status=429, retry_after="1")
    start = time.monotonic()
    report = run(tmp_path, [job(tmp_path, "busy", url)])
    assert report.outcomes["busy"].ok and report.outcomes["busy"].attempts == 2
    assert server.requests["/busy"] == 2
    assert time.monotonic() - start >= 0.9  # the backoff alone (0.01 s) would have retried at once


def test_too_large_is_not_retried(server: ImageServer, tmp_path: Path) -> None:
    report = run(tmp_path, [job(tmp_path, "huge", server.add("/huge", image_bytes((300, 300))))], max_bytes=1000)
    assert report.outcomes["huge"].reason == "too large" and server.requests["/huge"] == 1


def test_local_files_and_bad_sources(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.png").write_bytes(image_bytes((400, 350), "PNG"))
    (tmp_path / "src" / "bad.jpg").write_bytes(os.urandom(2000))
    (tmp_path / "src" / "bomb.png").write_bytes(png_header(100_000, 100_000))
    src = tmp_path / "src"
    jobs = [job(tmp_path, "a", str(src / "a.png")), job(tmp_path, "bad", str(src / "bad.jpg")),
            job(tmp_path, "dir", str(src)), job(tmp_path, "ftp", "ftp://example.invalid/x.jpg"),
            job(tmp_path, "bomb", str(src / "bomb.png"))]
    report = run(tmp_path, jobs)
    assert report.outcomes["a"].ok
    with Image.open(tmp_path / "images" / "a.jpg") as img:
        assert img.size == (342, 299)
    assert report.outcomes["bad"].reason == "not an image"
    assert report.outcomes["dir"].reason == "unreadable file"
    assert report.outcomes["ftp"].reason == "bad url"
    assert report.outcomes["bomb"].reason == "too many pixels"


def test_config_is_validated() -> None:
    with pytest.raises(ValueError, match="workers"):
        DownloadConfig(workers=0)
    with pytest.raises(ValueError, match="timeout"):
        DownloadConfig(timeout=0)
