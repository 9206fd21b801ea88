"""Decoding ahead of inference: worker threads decode the next photos while the models run.

Pillow and the inference engines release the GIL while they work, so plain threads overlap. The
number of photos decoded ahead is bounded, so memory stays flat whatever the number of photos.
"""
from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Iterable, Iterator, Union

from PIL import Image

from hashtag.runtime.errors import ImageError
from hashtag.runtime.images import ImageSource, describe, load_image

Decoded = Union[Image.Image, ImageError]
DECODE_WORKERS = 1  # one decoder keeps up with the ensemble (draft-decoded JPEGs take ~1/5 of its time)


def _decode(source: ImageSource, min_side: int | None) -> Decoded:
    try:
        return load_image(source, min_side=min_side)
    except ImageError as exc:
        return exc


def decode_ahead(
    sources: Iterable[ImageSource], min_side: int | None, ahead: int, workers: int = DECODE_WORKERS,
) -> Iterator[tuple[str, Decoded]]:
    """Yield ``(name, image or ImageError)`` in input order, decoding up to ``ahead`` sources in advance.

    ``min_side`` is passed to ``load_image``. Closing the iterator early cancels what was not started.
    """
    if ahead < 1 or workers < 1:
        raise ValueError(f"ahead and workers must be at least 1, got {ahead} and {workers}")
    todo = iter(sources)
    queued: deque[tuple[str, Future[Decoded]]] = deque()
    pool = ThreadPoolExecutor(workers, thread_name_prefix="hashtag-decode")

    def submit_next() -> None:
        for source in todo:
            queued.append((describe(source), pool.submit(_decode, source, min_side)))
            return

    try:
        for _ in range(ahead):
            submit_next()
        while queued:
            name, future = queued.popleft()
            submit_next()
            yield name, future.result()
    finally:
        for _, future in queued:
            future.cancel()
        pool.shutdown(wait=True)
