"""Progress for long training work: a bar on a terminal, a status line every so often in a log file."""
from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import TextIO

import click

LOG_EVERY_S = 30.0


class Progress:
    """Counts finished items out of ``total``; use as a context manager and call ``update(n)``.

    Off a terminal it writes a line every LOG_EVERY_S seconds and (if ``closing_line``) one at the end.
    """

    def __init__(self, total: int, label: str, enabled: bool = True, stream: TextIO | None = None,
                 closing_line: bool = True) -> None:
        self.total, self.label, self.done, self.closing_line = total, label, 0, closing_line
        self.stream = stream or sys.stderr
        self.enabled = enabled and total > 0
        self._bar = None
        self._reported = -1
        self._start = self._last = time.monotonic()

    def __enter__(self) -> "Progress":
        if self.enabled and self.stream.isatty():
            self._bar = click.progressbar(length=self.total, label=self.label, file=self.stream, show_pos=True,
                                          show_eta=True)
            self._bar.__enter__()
        return self

    def update(self, n: int) -> None:
        """Record ``n`` more finished items."""
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
        elif self.enabled and time.monotonic() - self._last >= LOG_EVERY_S:
            self._line()

    def _line(self) -> None:
        self._last, self._reported = time.monotonic(), self.done
        elapsed = self._last - self._start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.done) / rate if rate > 0 else float("nan")
        click.echo(f"{self.label}: {self.done}/{self.total} ({rate:.1f}/s, {elapsed:.0f}s elapsed, eta {eta:.0f}s)",
                   file=self.stream)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._bar is not None:
            self._bar.__exit__(exc_type, exc, tb)
        elif self.enabled and self.closing_line and self._reported != self.done:
            self._line()
