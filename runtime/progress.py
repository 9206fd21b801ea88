"""A progress bar for long work over many photos, shared by the commands that walk folders."""
from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Callable, Iterator

import click

PROGRESS_MIN_IMAGES = 5


@contextmanager
def progress(total: int, label: str, enabled: bool = True) -> Iterator[Callable[[], None]]:
    """A callable that advances a bar on stderr, drawn only on a terminal and for enough images."""
    if not (enabled and total >= PROGRESS_MIN_IMAGES and sys.stderr.isatty()):
        yield lambda: None
        return
    with click.progressbar(length=total, label=label, file=sys.stderr, show_pos=True) as bar:
        yield lambda: bar.update(1)
