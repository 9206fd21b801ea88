"""``hashtag data build``: Unsplash Lite tables -> dataset folder (images, labels.tsv, dataset.json);
``hashtag data vocab``: the vocabulary the same settings give, from the tables alone."""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, Callable, Mapping, TextIO

import click

from hashtag.runtime.errors import HashtagError
from hashtag.train.config import field_defaults
from hashtag.train.dataset import BuildConfig, build_dataset
from hashtag.train.download import DownloadConfig, RunReport
from hashtag.train.errors import SettingsError
from hashtag.train.splits import SPLITS
from hashtag.train.table_rows import KeywordFilter
from hashtag.train.tables import select
from hashtag.train.vocabulary import DEFAULT_TAGS, Dropped, VocabularyRule

LOG_EVERY_S = 10.0  # progress lines when stderr is not a terminal (nohup logs)
DRAW_EVERY_S = 0.2
BUILD, KEYWORDS, DOWNLOAD, RULE = (field_defaults(c) for c in (BuildConfig, KeywordFilter, DownloadConfig,
                                                                 VocabularyRule))


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


def _words(value: str | None, option: str, what: str) -> tuple[str, ...] | None:
    """A comma-separated option's words (None when not given)."""
    if value is None:
        return None
    words = tuple(t.strip() for t in value.split(",") if t.strip())
    if not words:
        raise click.BadParameter(f"give at least one {what}, e.g. {option} sea,tree", param_hint=option)
    return words


def _counts_table(tags: tuple[str, ...], counts: Mapping[str, Any], unknown_for: Mapping[str, list[str]]) -> list[str]:
    """One line per tag: positives per split, and where its labels are unknown; photos per split last."""
    width = max(len(t) for t in (*tags, "photos")) + 1
    lines = ["tag".ljust(width) + "".join(s.rjust(8) for s in SPLITS) + "  unknown on"]
    for tag in tags:
        unknown = sum(counts["unknown"][s][tag] for s in SPLITS)
        where = f"{', '.join(unknown_for.get(tag, []))} ({unknown} photos)" if unknown else "-"
        lines.append(tag.ljust(width) + "".join(str(counts["positives"][s][tag]).rjust(8) for s in SPLITS)
                     + f"  {where}")
    lines.append("photos".ljust(width) + "".join(str(counts["splits"][s]).rjust(8) for s in SPLITS))
    return lines


def format_vocabulary(record: Mapping[str, Any]) -> list[str]:
    """How the vocabulary was chosen, and for the rule what it dropped and why."""
    if record.get("mode") != "rule":
        mode = record.get("mode", "default")
        return [f"vocabulary: {mode}" + (f" {record['top_n']}" if mode == "top-n" else "")]
    extra = f" (+ {', '.join(record['deny'])})" if record["deny"] else ""
    lines = [f"vocabulary rule: the original ten + keywords on at least {record['min_positives']} confident "
             f"training photos, minus the deny-list{extra} and synonyms (Jaccard >= {record['synonym_jaccard']})"]
    if record["dropped"]:
        lines.append("dropped (training photos, reason):")
        width = max(len(d["keyword"]) for d in record["dropped"]) + 2
        for d in (Dropped(**fields) for fields in record["dropped"]):
            lines.append(f"  {d.keyword.ljust(width)}{str(d.train_positives).rjust(6)}  {d.describe()}")
    below = record["below_min_positives"]
    if below["count"]:
        largest = ", ".join(f"{b['keyword']} {b['train_positives']}" for b in below["largest"])
        lines.append(f"below {record['min_positives']} training photos: {below['count']} keywords "
                     f"(largest: {largest})")
    return lines


def format_summary(meta: dict[str, Any]) -> str:
    """The summary as a few readable lines: counts, failures by reason, the vocabulary, positives per split."""
    s = meta["summary"]
    lines = [f"photos read {s['photos_read']}, kept {s['kept']}, stored {s['stored']}, failed {s['failed']}"
             + (f", pending {s['pending']}" if s["pending"] else "")]
    if s["failures_by_reason"]:
        lines.append("failures: " + ", ".join(f"{r} {n}" for r, n in s["failures_by_reason"].items()))
    lines += format_vocabulary(meta["vocabulary"])
    unknown_for = meta["partial_labels"].get("unknown_for", {})
    lines += _counts_table(tuple(meta["tags"]), s, unknown_for)
    return "\n".join(lines)


def selection_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The options that decide the photos' labels, shared by ``build`` and ``vocab``."""
    options = [
        click.option("--tables", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True,
                     help="Folder holding photos.tsv* and keywords.tsv* (or .csv*)."),
        click.option("--tags", "tags_text", default=None,
                     help="Comma-separated vocabulary instead of the rule; each tag must pass --min-positives "
                          "and the deny-list."),
        click.option("--top-n", type=click.IntRange(min=1), default=BUILD["top_n"],
                     help="Use the N most frequent keywords that pass the filter instead of the rule."),
        click.option("--min-positives", type=click.IntRange(min=1), default=RULE["min_positives"],
                     show_default=True,
                     help=f"Vocabulary rule: the original ten ({', '.join(DEFAULT_TAGS)}) plus every keyword on "
                          "at least this many confident photos of the training split."),
        click.option("--deny", "deny_text", default=None,
                     help="Comma-separated keywords never to make tags, on top of the built-in list of words "
                          "that name or imply a person's gender."),
        click.option("--synonym-jaccard", type=click.FloatRange(0, 1, min_open=True),
                     default=RULE["synonym_jaccard"], show_default=True,
                     help="Drop a keyword whose positive photos overlap a kept tag's at least this much "
                          "(Jaccard index) as its synonym."),
        click.option("--min-confidence", type=click.FloatRange(0, 100), default=KEYWORDS["min_confidence"],
                     show_default=True, help="Minimum ai_service_1_confidence for a keyword to count."),
        click.option("--accept-ai2", is_flag=True, default=KEYWORDS["accept_ai2"],
                     help="Also accept ai_service_2_confidence at the same minimum."),
        click.option("--accept-user", is_flag=True, default=KEYWORDS["accept_user"],
                     help="Also accept keywords with suggested_by_user = t."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _selection_settings(tags_text: str | None, top_n: int | None, min_positives: int, deny_text: str | None,
                        synonym_jaccard: float, min_confidence: float, accept_ai2: bool,
                        accept_user: bool) -> dict[str, Any]:
    """BuildConfig's fields for the selection options; bad combinations are usage errors."""
    tags = _words(tags_text, "--tags", "tag")
    if tags is not None and top_n is not None:
        raise click.UsageError("give --tags or --top-n, not both")
    try:
        return {"tags": tags, "top_n": top_n,
                "rule": VocabularyRule(min_positives, _words(deny_text, "--deny", "keyword") or (), synonym_jaccard),
                "keyword_filter": KeywordFilter(min_confidence, accept_ai2, accept_user)}
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from None


@click.group()
def data() -> None:
    """Build training sets from Unsplash Lite tables."""


@data.command()
@selection_options
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Dataset folder to create or resume.")
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
def build(tables: Path, out: Path, require_tag: bool, limit: int | None, workers: int, timeout: float,
          retries: int, max_side: int, retry_failed: bool, **selection: Any) -> None:
    """Store every photo once (resumable: re-run to finish) and write labels.tsv and dataset.json."""
    settings = _selection_settings(**selection)
    try:
        config = BuildConfig(
            tables=tables, out=out, **settings,
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


@data.command()
@selection_options
def vocab(tables: Path, **selection: Any) -> None:
    """Print the vocabulary the tables give (tags with positives per split, dropped keywords and why); no images."""
    settings = _selection_settings(**selection)
    try:
        chosen = select(tables, settings["keyword_filter"], settings["tags"], settings["top_n"], settings["rule"])
    except (HashtagError, OSError) as exc:  # the settings do not fit these tables, or they cannot be read
        raise click.ClickException(str(exc)) from None
    lines = format_vocabulary(chosen.vocabulary)
    lines.append(f"{len(chosen.tags)} tags, {len(chosen.photos)} photos:")
    lines += _counts_table(chosen.tags, chosen.split_counts(chosen.photos), chosen.unknown_for())
    click.echo("\n".join(lines))
