"""A bounded, concurrent, resumable image downloader: fetch, decode, normalise and store each photo once.

Threads from the standard library, not asyncio: each image is a blocking fetch plus Pillow work, and
Pillow releases the GIL while it decodes, resizes and encodes, so a small pool overlaps network waits
and uses every core. At most ``2 * workers`` jobs are in flight, so memory does not grow with the
number of images. Fetching (with its retries) is ``fetch.py``, storing and the journal ``store.py``.

Resume: a re-run skips photos the journal records as stored (file present, recorded size) and photos
whose file is present and decodes (stored just before a kill, not yet journaled); it retries transient
failures (timeouts, connection errors, truncated bodies, HTTP 5xx/408/429) and skips permanent ones
(other HTTP 4xx, missing files, undecodable data) unless ``retry_failed``.
"""
from __future__ import annotations

import threading
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from hashtag.runtime.errors import ImageError
from hashtag.train.backbones import SPECS
from hashtag.train.errors import SettingsError
from hashtag.train.fetch import Fetcher, FetchError
from hashtag.train.store import Journal, Outcome, encode_image, image_reason, is_stored, write_atomically


@dataclass(frozen=True)
class DownloadConfig:
    """How hard to try and how to store.

    ``retries`` is per kind of failure; retries wait ``backoff`` x 0, 2, 4, ... seconds plus up to ``backoff``
    of jitter, or what a Retry-After header asks. ``max_side`` defaults to the largest native input size of
    the backbones, so one stored copy serves every model.
    """

    workers: int = 16
    timeout: float = 20.0
    retries: int = 3
    backoff: float = 0.5
    max_side: int = max(s.native_size for s in SPECS.values())
    jpeg_quality: int = 90
    max_bytes: int = 64 * 2**20

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise SettingsError(f"workers must be at least 1, got {self.workers}")
        if self.timeout <= 0:
            raise SettingsError(f"timeout must be positive, got {self.timeout}")
        if self.retries < 0 or self.backoff < 0:
            raise SettingsError("retries and backoff must not be negative")
        if self.max_side < 32:
            raise SettingsError(f"max_side must be at least 32, got {self.max_side}")
        if not 1 <= self.jpeg_quality <= 100:
            raise SettingsError(f"jpeg_quality must be within 1..100, got {self.jpeg_quality}")
        if self.max_bytes < 1:
            raise SettingsError(f"max_bytes must be at least 1, got {self.max_bytes}")


@dataclass(frozen=True, slots=True)
class Job:
    """Fetch ``source`` (an http(s) URL or a local path) and store it at ``dest``."""

    photo_id: str
    source: str
    dest: Path


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
        self.fetcher = Fetcher(config.timeout, config.retries, config.backoff, config.max_bytes, config.workers)

    def process(self, job: Job) -> Outcome:
        """Fetch (with retries) and store one photo; fetch and image problems become a failed Outcome."""
        if job.dest.exists():
            if is_stored(job.dest):
                return Outcome(job.photo_id, True, bytes=job.dest.stat().st_size)
            job.dest.unlink()
        try:
            fetched = self.fetcher.fetch(job.source)
        except FetchError as exc:
            return Outcome(job.photo_id, False, exc.reason, exc.detail, exc.attempts, retryable=exc.retryable)
        try:
            payload = encode_image(fetched.data, self.config.max_side, self.config.jpeg_quality)
        except ImageError as exc:
            return Outcome(job.photo_id, False, image_reason(exc.reason), exc.reason, fetched.attempts)
        write_atomically(payload, job.dest, self.partial_dir)
        return Outcome(job.photo_id, True, attempts=fetched.attempts, bytes=len(payload))

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
                while in_flight:  # running jobs end after their current retries; their results are kept
                    collect()
        report.interrupted = report.done < report.total
        return report
