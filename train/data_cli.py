"""``hashtag data build``: Unsplash Lite tables -> dataset folder (images, labels.tsv, dataset.json)."""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, TextIO

import click

from hashtag.runtime.errors import HashtagError
from hashtag.train.config import field_defaults
from hashtag.train.dataset import BuildConfig, build_dataset
from hashtag.train.download import DownloadConfig, RunReport
from hashtag.train.errors import SettingsError
from hashtag.train.splits import SPLITS
from hashtag.train.tables import DEFAULT_TAGS, KeywordFilter

LOG_EVERY_S = 10.0  # progress lines when stderr is not a terminal (nohup logs)
DRAW_EVERY_S = 0.2
BUILD, KEYWORDS, DOWNLOAD = (field_defaults(c) for c in (BuildConfig, KeywordFilter, DownloadConfig))


class ProgressLine:
    """Counts of done/stored/failed on stderr: redrawn in place on a terminal, a line every few seconds in a log."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.started = self.last = time.monotonic()

    def __call__(self, report: RunReport) -> None:
        now = time.monotonic()
        if now - self.last < (DRAW_EVERY_S if self.tty else LOG_EVERY_S) and report.done < report.total:
            return
        self.last = now
        rate = (report.stored + report.failed) / max(now - self.started, 1e-9)
        text = (f"{report.done}/{report.total} done: {report.stored} stored, {report.already_stored} already there, "
                f"{report.failures} failed ({rate:.0f} img/s)")
        self.stream.write(f"\r{text}\x1b[K" if self.tty else text + "\n")
        if self.tty and report.done == report.total:
            self.stream.write("\n")
        self.stream.flush()


def _tags(value: str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    tags = tuple(t.strip() for t in value.split(",") if t.strip())
    if not tags:
        raise click.BadParameter("give at least one tag, e.g. --tags sea,tree", param_hint="--tags")
    return tags


def format_summary(meta: dict[str, Any]) -> str:
    """The summary as a few readable lines: counts, failures by reason, photos and positives per split."""
    s = meta["summary"]
    lines = [f"photos read {s['photos_read']}, kept {s['kept']}, stored {s['stored']}, failed {s['failed']}"
             + (f", pending {s['pending']}" if s["pending"] else "")]
    if s["failures_by_reason"]:
        lines.append("failures: " + ", ".join(f"{r} {n}" for r, n in s["failures_by_reason"].items()))
    tags = meta["tags"]
    width = max(len(t) for t in (*tags, "photos")) + 1
    lines.append("split".ljust(6) + "photos".rjust(width) + "".join(t.rjust(width) for t in tags))
    for split in SPLITS:
        lines.append(split.ljust(6) + str(s["splits"][split]).rjust(width)
                     + "".join(str(s["positives"][split][t]).rjust(width) for t in tags))
    return "\n".join(lines)


@click.group()
def data() -> None:
    """Build training sets from Unsplash Lite tables."""


@data.command()
@click.option("--tables", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True,
              help="Folder holding photos.tsv* and keywords.tsv* (or .csv*).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Dataset folder to create or resume.")
@click.option("--tags", "tags_text", default=None,
              help=f"Comma-separated vocabulary (default: the original ten tags, {','.join(DEFAULT_TAGS)}).")
@click.option("--top-n", type=click.IntRange(min=1), default=BUILD["top_n"],
              help="Use the N most frequent keywords that pass the filter instead.")
@click.option("--min-confidence", type=click.FloatRange(0, 100), default=KEYWORDS["min_confidence"],
              show_default=True, help="Minimum ai_service_1_confidence for a keyword to count.")
@click.option("--accept-ai2", is_flag=True, default=KEYWORDS["accept_ai2"],
              help="Also accept ai_service_2_confidence at the same minimum.")
@click.option("--accept-user", is_flag=True, default=KEYWORDS["accept_user"],
              help="Also accept keywords with suggested_by_user = t.")
@click.option("--require-tag", is_flag=True, default=BUILD["require_tag"],
              help="Keep only photos with at least one vocabulary tag.")
@click.option("--limit", type=click.IntRange(min=1), default=BUILD["limit"],
              help="Build from the first N kept photos only.")
@click.option("--workers", type=click.IntRange(min=1), default=DOWNLOAD["workers"], show_default=True,
              help="Concurrent downloads.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=DOWNLOAD["timeout"],
              show_default=True, help="Seconds without data before a request fails.")
@click.option("--retries", type=click.IntRange(min=0), default=DOWNLOAD["retries"], show_default=True,
              help="Retries after timeouts, connection errors and HTTP 5xx/408/429 (never after 404).")
@click.option("--max-side", type=click.IntRange(min=32), default=DOWNLOAD["max_side"], show_default=True,
              help="Store images with the shorter side at most this many pixels.")
@click.option("--retry-failed", is_flag=True, default=BUILD["retry_failed"],
              help="Also retry photos that failed permanently in an earlier run.")
def build(tables: Path, out: Path, tags_text: str | None, top_n: int | None, min_confidence: float,
          accept_ai2: bool, accept_user: bool, require_tag: bool, limit: int | None, workers: int,
          timeout: float, retries: int, max_side: int, retry_failed: bool) -> None:
    """Store every photo once (resumable: re-run to finish) and write labels.tsv and dataset.json."""
    tags = _tags(tags_text)
    if tags is not None and top_n is not None:
        raise click.UsageError("give --tags or --top-n, not both")
    try:
        config = BuildConfig(
            tables=tables, out=out, tags=tags, top_n=top_n,
            keyword_filter=KeywordFilter(min_confidence, accept_ai2, accept_user),
            download=DownloadConfig(workers=workers, timeout=timeout, retries=retries, max_side=max_side),
            require_tag=require_tag, limit=limit, retry_failed=retry_failed,
        )
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from None
    try:
        meta = build_dataset(config, progress=ProgressLine(sys.stderr))
    except HashtagError as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(f"cannot write the dataset: {exc}") from None
    click.echo(format_summary(meta))
    click.echo(f"dataset: {out} (labels.tsv, dataset.json)")
    if meta["summary"]["pending"]:
        click.echo("interrupted: re-run the same command to finish", err=True)
        sys.exit(130)
