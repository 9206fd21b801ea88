"""Where inference runs, behind one interface: a bounded thread pool in this process, or Ray Serve replicas."""
from __future__ import annotations

import asyncio
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

    async def close(self) -> None:
        """Finish the work in flight and release the workers."""


class LocalBackend:
    """One Tagger shared by a fixed number of worker threads (ONNX Runtime releases the GIL)."""

    def __init__(self, tagger: Tagger, workers: int) -> None:
        self.tagger = tagger
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="hashtag-serve")
        self._catalog = models_document(tagger)

    async def tag(self, uploads: Sequence[Upload], options: Options) -> list[Record]:
        items = [(u, options) for u in uploads]
        return await asyncio.get_running_loop().run_in_executor(self._pool, tag_uploads, self.tagger, items)

    async def catalog(self) -> dict[str, Any]:
        return self._catalog

    async def close(self) -> None:
        await asyncio.to_thread(self._pool.shutdown, wait=True, cancel_futures=True)
