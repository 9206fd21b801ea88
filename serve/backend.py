"""Where inference runs, behind one interface: a bounded thread pool in this process, or Ray Serve replicas."""
from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, Sequence

from hashtag.runtime.prediction import Options
from hashtag.runtime.tagger import Tagger
from hashtag.serve.catalog import models_document
from hashtag.serve.tagging import Record, Upload, tag_uploads


class Backend(Protocol):
    """What the HTTP app needs from inference; it never blocks the event loop."""

    async def tag(self, uploads: Sequence[Upload], options: Options) -> list[Record]:
        """One record per upload, in order (see ``tagging.tag_uploads``)."""

    async def catalog(self) -> dict[str, Any]:
        """The ``GET /v1/models`` document."""

    @property
    def in_flight(self) -> int:
        """Requests handed to ``tag`` whose tagging has not ended yet (``/healthz`` reports it)."""

    async def close(self) -> None:
        """Finish the work in flight and release the workers."""


class LocalBackend:
    """One Tagger shared by a fixed number of worker threads (ONNX Runtime releases the GIL)."""

    def __init__(self, tagger: Tagger, workers: int) -> None:
        self.tagger = tagger
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="hashtag-serve")
        self._catalog = models_document(tagger)
        self._in_flight = 0
        self._count_lock = threading.Lock()

    async def tag(self, uploads: Sequence[Upload], options: Options) -> list[Record]:
        self._count(1)
        try:
            job = self._pool.submit(tag_uploads, self.tagger, [(u, options) for u in uploads])
        except BaseException:
            self._count(-1)
            raise
        job.add_done_callback(lambda _: self._count(-1))  # run, failed, or cancelled while still queued
        return await asyncio.wrap_future(job)

    @property
    def in_flight(self) -> int:
        """Queued and running requests, counting one given up on by its timeout until its worker lets go."""
        return self._in_flight

    def _count(self, step: int) -> None:
        with self._count_lock:  # the pool's threads end jobs, the event loop starts them
            self._in_flight += step

    async def catalog(self) -> dict[str, Any]:
        return self._catalog

    async def close(self) -> None:
        await asyncio.to_thread(self._pool.shutdown, wait=True, cancel_futures=True)
