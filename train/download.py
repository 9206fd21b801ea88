"""A bounded, concurrent, resumable image downloader: fetch, decode, normalise and store each photo once.

Threads from the standard library, not asyncio: each image is a blocking fetch plus Pillow work, and
Pillow releases the GIL while it decodes, resizes and encodes, so a small pool overlaps network waits
and uses every core. At most ``2 * workers`` jobs are in flight, so memory does not grow with the
number of images. Each thread keeps one keep-alive connection per host (no TLS handshake per photo).

Resume: an image is written to a temporary file and renamed into place, so a file at its final path
is complete. Every outcome is appended to a JSON-lines journal (flushed per line). A re-run skips
photos the journal records as stored (file present, recorded size) and photos whose file is present
and decodes (stored just before a kill, not yet journaled); it retries transient failures (timeouts,
connection errors, truncated bodies, HTTP 5xx/408/429) and skips permanent ones (other HTTP 4xx,
missing files, undecodable data) unless ``retry_failed``.
"""
from __future__ import annotations

import io
import json
import math
import os
import random
import threading
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from http.client import HTTPConnection, HTTPException, HTTPSConnection, IncompleteRead, RemoteDisconnected
from pathlib import Path
from typing import Any, Callable, Iterable
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

from PIL import Image

from hashtag.runtime.errors import ImageError
from hashtag.runtime.images import load_image

RETRYABLE_STATUS = frozenset({408, 429})  # and every 5xx
REDIRECT_STATUS = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 5
SIZING_PARAMS = ("w", "h", "fit", "fm", "q")
USER_AGENT = "hashtag-dataset-builder/1"
EXIF_ORIENTATION = 0x0112


@dataclass(frozen=True)
class DownloadConfig:
    """How hard to try and how to store: ``backoff`` seconds doubles after each failed attempt."""

    workers: int = 16
    timeout: float = 20.0
    retries: int = 3
    backoff: float = 0.5
    max_side: int = 299
    jpeg_quality: int = 90
    max_bytes: int = 64 * 2**20

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError(f"workers must be at least 1, got {self.workers}")
        if self.timeout <= 0:
            raise ValueError(f"timeout must be positive, got {self.timeout}")
        if self.retries < 0 or self.backoff < 0:
            raise ValueError("retries and backoff must not be negative")
        if self.max_side < 32:
            raise ValueError(f"max_side must be at least 32, got {self.max_side}")
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality must be within 1..100, got {self.jpeg_quality}")


class FetchError(Exception):
    """Getting the bytes failed; ``reason`` is the short category reported in summaries."""

    def __init__(self, reason: str, detail: str = "", retryable: bool = False) -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
        self.retryable = retryable


class _StaleConnection(Exception):
    """A kept-alive connection turned out to be closed before any response: not the server's fault."""


@dataclass(frozen=True, slots=True)
class Job:
    """Fetch ``source`` (an http(s) URL or a local path) and store it at ``dest``."""

    photo_id: str
    source: str
    dest: Path


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one photo; ``attempts`` counts fetches this run (0: found already stored)."""

    photo_id: str
    ok: bool
    reason: str = ""
    detail: str = ""
    attempts: int = 0
    bytes: int = 0
    retryable: bool = False

    def to_record(self) -> dict[str, Any]:
        if self.ok:
            return {"id": self.photo_id, "ok": True, "bytes": self.bytes}
        return {"id": self.photo_id, "ok": False, "reason": self.reason, "detail": self.detail,
                "attempts": self.attempts, "retryable": self.retryable}

    @classmethod
    def from_record(cls, rec: dict[str, Any]) -> "Outcome":
        return cls(rec["id"], bool(rec["ok"]), rec.get("reason", ""), rec.get("detail", ""), 0,
                   int(rec.get("bytes", 0)), bool(rec.get("retryable", False)))


class Journal:
    """Append-only JSON lines, one per outcome; the last line for a photo wins. A line cut by a kill is ignored.

    ``records`` is what the file held when opened (appends are not mirrored: a fresh build keeps no
    per-photo state here).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.records: dict[str, dict[str, Any]] = {}
        ends_cleanly = True
        if path.exists():
            text = path.read_text(encoding="utf-8", errors="replace")
            ends_cleanly = not text or text.endswith("\n")
            for line in text.splitlines():
                try:
                    rec = json.loads(line)
                    self.records[str(rec["id"])] = rec
                except (ValueError, KeyError, TypeError):
                    continue
        self._fh = path.open("a", encoding="utf-8")
        if not ends_cleanly:
            self._fh.write("\n")

    def append(self, outcome: Outcome) -> None:
        self._fh.write(json.dumps(outcome.to_record()) + "\n")
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> "Journal":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def is_url(source: str) -> bool:
    return source.startswith(("http://", "https://"))


def sized_url(url: str, width: int | None, height: int | None, max_side: int) -> str:
    """Ask Unsplash's imgix for a JPEG whose shorter side is about ``max_side``, never upscaled.

    Only ``w`` is needed: with the photo's size from the table, ``w`` is chosen so that the shorter side
    lands on ``max_side``; without it, ``2 * max_side`` covers aspect ratios up to 2:1.
    """
    if width and height:
        w = max_side if width <= height else math.ceil(max_side * width / height)
    else:
        w = 2 * max_side
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in SIZING_PARAMS]
    query += [("w", str(w)), ("fit", "max"), ("fm", "jpg"), ("q", "85")]
    return urlunsplit(parts._replace(query=urlencode(query)))


class HttpClient:
    """GET with per-thread keep-alive connections, redirects, a size cap, and clear failure categories."""

    def __init__(self, timeout: float, max_bytes: int) -> None:
        self.timeout = timeout
        self.max_bytes = max_bytes
        self._local = threading.local()

    def get(self, url: str) -> bytes:
        for _ in range(MAX_REDIRECTS + 1):
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise FetchError("bad url", url)
            status, location, body = self._request(parts.scheme, parts.netloc,
                                                   (parts.path or "/") + (f"?{parts.query}" if parts.query else ""))
            if status == 200:
                return body
            if status in REDIRECT_STATUS and location:
                url = urljoin(url, location)
                continue
            raise FetchError(f"http {status}", retryable=status >= 500 or status in RETRYABLE_STATUS)
        raise FetchError("too many redirects", url)

    def _pool(self) -> dict[tuple[str, str], HTTPConnection]:
        if not hasattr(self._local, "pool"):
            self._local.pool = {}
        return self._local.pool

    def _drop(self, key: tuple[str, str]) -> None:
        conn = self._pool().pop(key, None)
        if conn is not None:
            conn.close()

    def _request(self, scheme: str, netloc: str, target: str) -> tuple[int, str, bytes]:
        try:
            return self._exchange((scheme, netloc), target)
        except _StaleConnection:  # the server closed an idle keep-alive connection: one free retry, fresh
            return self._exchange((scheme, netloc), target)

    def _exchange(self, key: tuple[str, str], target: str) -> tuple[int, str, bytes]:
        pool = self._pool()
        reused = key in pool
        if not reused:
            cls = HTTPSConnection if key[0] == "https" else HTTPConnection
            pool[key] = cls(key[1], timeout=self.timeout)
        conn = pool[key]
        try:
            conn.request("GET", target, headers={"User-Agent": USER_AGENT, "Accept": "image/*"})
            resp = conn.getresponse()
            if resp.status != 200:
                self._drop(key)  # cheaper than draining an error page to keep the connection
                return resp.status, resp.getheader("Location") or "", b""
            return 200, "", self._read_body(resp)
        except FetchError:
            self._drop(key)
            raise
        except (RemoteDisconnected, BrokenPipeError, ConnectionResetError) as exc:
            self._drop(key)
            if reused:
                raise _StaleConnection from None
            raise FetchError("connection error", str(exc) or type(exc).__name__, retryable=True) from None
        except TimeoutError:
            self._drop(key)
            raise FetchError("timeout", f"no data for {self.timeout:g}s", retryable=True) from None
        except IncompleteRead as exc:
            self._drop(key)
            raise FetchError("truncated download", f"{len(exc.partial)} bytes received", retryable=True) from None
        except (OSError, HTTPException) as exc:
            self._drop(key)
            raise FetchError("connection error", str(exc) or type(exc).__name__, retryable=True) from None

    def _read_body(self, resp: Any) -> bytes:
        declared = resp.getheader("Content-Length")
        if declared is not None and declared.isdigit():
            if int(declared) > self.max_bytes:
                raise FetchError("too large", f"{declared} bytes")
            return resp.read()  # raises IncompleteRead when the body stops short
        body = resp.read(self.max_bytes + 1)
        if len(body) > self.max_bytes:
            raise FetchError("too large", f"over {self.max_bytes} bytes")
        return body


def read_local(path: Path, max_bytes: int) -> bytes:
    try:
        if path.stat().st_size > max_bytes:
            raise FetchError("too large", f"{path.stat().st_size} bytes")
        return path.read_bytes()
    except FileNotFoundError:
        raise FetchError("missing file", str(path)) from None
    except OSError as exc:
        raise FetchError("unreadable file", f"{path}: {exc.strerror or exc}") from None


def _image_reason(reason: str) -> str:
    for category in ("not an image", "too many pixels", "empty"):
        if reason.startswith(category):
            return category
    return "corrupt image"


def _plain_jpeg(data: bytes) -> bool:
    """An RGB JPEG with no EXIF rotation: can be stored byte for byte, no second lossy encode."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            return img.format == "JPEG" and img.mode == "RGB" and img.getexif().get(EXIF_ORIENTATION, 1) == 1
    except Exception:  # noqa: BLE001 - any oddity just means "re-encode"
        return False


def _scaled(size: tuple[int, int], max_side: int) -> tuple[int, int] | None:
    """The size with the shorter side at ``max_side`` (aspect kept), or None if already small enough."""
    w, h = size
    if min(w, h) <= max_side:
        return None
    scale = max_side / min(w, h)
    return max(1, round(w * scale)), max(1, round(h * scale))


def encode_image(data: bytes, max_side: int, quality: int) -> bytes:
    """Decode (RGB, EXIF applied), shrink so the shorter side is at most ``max_side``, encode JPEG.

    Every decoding problem, including the odd exception types Pillow plugins raise on hostile data,
    becomes an ImageError, so one bad photo can never stop a run.
    """
    try:
        img = load_image(data)
        target = _scaled(img.size, max_side)
        if target is None and _plain_jpeg(data):
            return data
        if target is not None:
            img = img.resize(target, Image.Resampling.LANCZOS, reducing_gap=3.0)
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=quality)
    except ImageError:
        raise
    except Exception as exc:  # noqa: BLE001 - see docstring
        raise ImageError(f"<{len(data)} bytes>", f"cannot decode: {exc or type(exc).__name__}") from None
    return buf.getvalue()


def is_stored(path: Path) -> bool:
    """A stored file counts only if it decodes completely."""
    try:
        load_image(path)
    except Exception:  # noqa: BLE001 - ImageError or anything odder: not a usable file either way
        return False
    return True


def write_atomically(payload: bytes, dest: Path, partial_dir: Path) -> None:
    """Write to ``partial_dir`` (same filesystem) and rename: ``dest`` is either absent or complete."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = partial_dir / f"{dest.name}.{threading.get_ident()}.part"
    tmp.write_bytes(payload)
    os.replace(tmp, dest)


@dataclass
class RunReport:
    """Counts for one run; ``outcomes`` holds the final state of every photo handled (journal or fresh)."""

    total: int
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    stored: int = 0
    already_stored: int = 0
    failed: int = 0
    failed_before: int = 0
    requests: int = 0
    interrupted: bool = False

    @property
    def done(self) -> int:
        return len(self.outcomes)

    @property
    def failures(self) -> int:
        return self.failed + self.failed_before

    def failures_by_reason(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for o in self.outcomes.values():
            if not o.ok:
                counts[o.reason] = counts.get(o.reason, 0) + 1
        return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


class Downloader:
    """Runs jobs through a bounded thread pool, journaling every outcome as it arrives (main thread only)."""

    def __init__(self, config: DownloadConfig, journal: Journal, partial_dir: Path,
                 stop: threading.Event | None = None) -> None:
        self.config = config
        self.journal = journal
        self.partial_dir = partial_dir
        self.stop = stop or threading.Event()
        self.http = HttpClient(config.timeout, config.max_bytes)

    def fetch(self, source: str) -> bytes:
        """An http(s) URL over HTTP (other schemes fail as "bad url"), anything else as a local path."""
        return self.http.get(source) if "://" in source else read_local(Path(source), self.config.max_bytes)

    def process(self, job: Job) -> Outcome:
        """Fetch with retries and store one photo; image problems become a failed Outcome, never an exception."""
        if job.dest.exists():
            if is_stored(job.dest):
                return Outcome(job.photo_id, True, bytes=job.dest.stat().st_size)
            job.dest.unlink()
        attempts = 0
        while True:
            attempts += 1
            try:
                payload = encode_image(self.fetch(job.source), self.config.max_side, self.config.jpeg_quality)
            except FetchError as exc:
                if exc.retryable and attempts <= self.config.retries:
                    delay = self.config.backoff * 2 ** (attempts - 1) * random.uniform(0.75, 1.25)
                    if self.stop.wait(delay):
                        return Outcome(job.photo_id, False, "interrupted", attempts=attempts, retryable=True)
                    continue
                return Outcome(job.photo_id, False, exc.reason, exc.detail, attempts, retryable=exc.retryable)
            except ImageError as exc:
                return Outcome(job.photo_id, False, _image_reason(exc.reason), exc.reason, attempts)
            write_atomically(payload, job.dest, self.partial_dir)
            return Outcome(job.photo_id, True, attempts=attempts, bytes=len(payload))

    def _known(self, job: Job, retry_failed: bool) -> Outcome | None:
        """The journal's verdict when it settles the photo without any work, else None."""
        rec = self.journal.records.get(job.photo_id)
        if rec is None:
            return None
        known = Outcome.from_record(rec)
        if known.ok:
            try:
                return known if job.dest.stat().st_size == known.bytes else None
            except OSError:
                return None
        return None if (known.retryable or retry_failed) else known

    def _record(self, report: RunReport, outcome: Outcome) -> None:
        report.requests += outcome.attempts
        if outcome.reason == "interrupted":
            report.interrupted = True
            return
        self.journal.append(outcome)
        report.outcomes[outcome.photo_id] = outcome
        if outcome.ok:
            report.stored += outcome.attempts > 0
            report.already_stored += outcome.attempts == 0
        else:
            report.failed += 1

    def run(self, jobs: Iterable[Job], total: int, progress: Callable[[RunReport], None] | None = None,
            retry_failed: bool = False) -> RunReport:
        """Process every job (skipping what the journal settles); stops early when ``stop`` is set or on Ctrl-C."""
        self.partial_dir.mkdir(parents=True, exist_ok=True)
        report = RunReport(total=total)
        in_flight: set[Future[Outcome]] = set()
        bound = 2 * self.config.workers

        def collect() -> None:
            done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            for fut in done:
                in_flight.discard(fut)
                self._record(report, fut.result())
                if progress:
                    progress(report)

        with ThreadPoolExecutor(self.config.workers, thread_name_prefix="download") as pool:
            try:
                for job in jobs:
                    if self.stop.is_set():
                        break
                    known = self._known(job, retry_failed)
                    if known is not None:
                        report.outcomes[job.photo_id] = known
                        report.already_stored += known.ok
                        report.failed_before += not known.ok
                        if progress:
                            progress(report)
                        continue
                    while len(in_flight) >= bound:
                        collect()
                    in_flight.add(pool.submit(self.process, job))
                while in_flight:
                    collect()
            except KeyboardInterrupt:
                self.stop.set()
                while in_flight:  # running jobs end within one timeout; their results are kept
                    collect()
        report.interrupted = report.interrupted or report.done < report.total
        return report
