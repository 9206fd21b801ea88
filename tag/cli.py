"""``hashtag tag``: write the suggested keywords into XMP sidecars (default) or into the photos themselves."""
from __future__ import annotations

import json
import signal
import sys
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from importlib.metadata import version
from pathlib import Path
from typing import Callable, Iterator, Sequence

import click

from hashtag.runtime.errors import HashtagError, ImageError
from hashtag.runtime.images import find_images
from hashtag.runtime.manifest import PRECISIONS, manifest_sha256
from hashtag.runtime.options import bundle_option, models_option, provider_option, resolve_bundle, threads_option
from hashtag.runtime.contract import Prediction
from hashtag.runtime.prediction import Options
from hashtag.runtime.progress import progress
from hashtag.runtime.tagger import DEFAULT_BATCH_SIZE, Tagger
from hashtag.tag.metadata import SIDECAR_NAMINGS, MetadataError, Snapshot, Target, read, update
from hashtag.tag.record import Settings
from hashtag.tag.writer import STATUSES, Outcome, Plan, retag, untag

DEFAULT_ROOT = "hashtag"
WRITES_AHEAD = 2  # photos whose writing may lag behind inference: overlap without unbounded memory
INTERRUPTED_EXIT = 130


@contextmanager
def _stop_requests() -> Iterator[threading.Event]:
    """An event set by Ctrl-C or SIGTERM: the current photo is finished, then the run stops."""
    stop = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _done(outcome: Outcome) -> Future[Outcome]:
    future: Future[Outcome] = Future()
    future.set_result(outcome)
    return future


def _write(snapshot: Snapshot, result: Prediction | ImageError, plan: Plan, dry_run: bool) -> Outcome:
    """Merge one prediction into what the first look read of its target."""
    target = snapshot.target
    if isinstance(result, ImageError):
        return Outcome(target, "failed", error=str(result))
    record = result.to_json()
    try:
        before, after = update(snapshot, lambda now: retag(now, result.tags, result.scores, plan, target.embed),
                               dry_run)
    except (MetadataError, OSError) as exc:
        return Outcome(target, "failed", error=str(exc), prediction=record)
    return Outcome.of_change(target, "tagged", before, after, record)


def _remove(target: Target, dry_run: bool) -> Outcome:
    try:
        before, after = update(read(target), untag, dry_run)
    except (MetadataError, OSError) as exc:
        return Outcome(target, "failed", error=str(exc))
    return Outcome.of_change(target, "removed", before, after)


def _clashes(targets: list[Target]) -> dict[Path, str]:
    """Photos whose sidecar another photo of the run already uses (photo.jpg and photo.png -> photo.xmp)."""
    first: dict[Path, Path] = {}
    clashes = {}
    for target in targets:
        owner = first.setdefault(target.path, target.photo)
        if owner != target.photo:
            clashes[target.photo] = (f"{target.path}: also the sidecar of {owner}; "
                                     "use --sidecar-name darktable (photo.jpg.xmp) for such folders")
    return clashes


def _first_look(target: Target, settings: str, force: bool, clash: str | None) -> Outcome | Snapshot:
    """The photo's one read of its metadata, for the models and then the writer; or an outcome decided without
    the models (failed, or already tagged with these settings)."""
    if clash:
        return Outcome(target, "failed", error=clash)
    try:
        snapshot = read(target)
    except (MetadataError, OSError) as exc:
        return Outcome(target, "failed", error=str(exc))
    current = snapshot.keywords
    if not force and current is not None and current.record is not None and current.record.settings == settings:
        return Outcome(target, "skipped")
    return snapshot


class Report:
    """Prints each outcome as it completes (in input order) and counts them for the summary."""

    def __init__(self, as_json: bool, dry_run: bool, advance: Callable[[], None]) -> None:
        self.as_json, self.dry_run, self.advance = as_json, dry_run, advance
        self.counts = dict.fromkeys(STATUSES, 0)
        self.added = self.removed = 0

    def __call__(self, outcome: Outcome) -> None:
        self.advance()
        self.counts[outcome.status] += 1
        self.added += len(outcome.subject.added)
        self.removed += len(outcome.subject.removed)
        if self.as_json:
            click.echo(json.dumps(outcome.to_json(self.dry_run), ensure_ascii=False))
        elif outcome.status == "failed":
            click.echo(f"error: {outcome.error}", err=True)
        elif outcome.status in ("tagged", "removed"):
            change = " ".join([*(f"+{k}" for k in outcome.subject.added), *(f"-{k}" for k in outcome.subject.removed)])
            verb = "would write" if self.dry_run else "wrote"
            click.echo(f"{outcome.target.photo}: {verb} {outcome.target.path.name}: {change or '(record only)'}")

    def summary(self, left: int) -> str:
        """One line for stderr: what happened to how many photos, and what is left after an interruption."""
        c = self.counts
        lead = "dry run, nothing written: " if self.dry_run else ""
        line = (f"{lead}tagged {c['tagged']}, removed from {c['removed']}, unchanged {c['unchanged']}, "
                f"skipped {c['skipped']} (already tagged with these settings), failed {c['failed']}; "
                f"keywords added {self.added}, removed {self.removed}")
        return line + (f"; interrupted, {left} photos not done (run again to continue)" if left else "")


@click.command("tag")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@bundle_option
@models_option
@click.option("--embed", is_flag=True, help="Write into the photos' own XMP (JPEG, PNG, WebP) instead of sidecars.")
@click.option("--iptc", is_flag=True, help="With --embed: also write IPTC Keywords where a photo has no IPTC yet.")
@click.option("--sidecar-name", type=click.Choice(SIDECAR_NAMINGS), default=SIDECAR_NAMINGS[0], show_default=True,
              help="darktable: photo.jpg.xmp (darktable, digiKam, Immich); adobe: photo.xmp (Lightroom).")
@click.option("--hierarchy-root", default=DEFAULT_ROOT, show_default=True,
              help="Parent keyword in lr:hierarchicalSubject (root|dog).")
@click.option("--remove", is_flag=True, help="Take off exactly what this tool wrote, and nothing else.")
@click.option("--force", is_flag=True, help="Redo photos already tagged with the same bundle and settings.")
@click.option("--dry-run", is_flag=True, help="Say what would change; write nothing.")
@click.option("--top-k", type=click.IntRange(min=1), default=None, help="At most this many keywords per photo.")
@click.option("--threshold", type=click.FloatRange(0.0, 1.0), default=None,
              help="One threshold for every tag instead of the tuned per-tag thresholds.")
@provider_option
@click.option("--precision", type=click.Choice(PRECISIONS), default=None,
              help="Force a precision (default: int8 on CPU, fp16 on CUDA).")
@threads_option
@click.option("--batch-size", type=click.IntRange(min=1), default=DEFAULT_BATCH_SIZE, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="JSON Lines: the prediction record plus what was written where.")
def tag(paths: Sequence[Path], bundle_dir: Path | None, models_arg: str | None, embed: bool, iptc: bool,
        sidecar_name: str, hierarchy_root: str, remove: bool, force: bool, dry_run: bool, top_k: int | None,
        threshold: float | None, provider: str, precision: str | None, threads: int | None, batch_size: int,
        as_json: bool) -> None:
    """Write suggested keywords into photo metadata: XMP sidecars by default, the photos with --embed.

    Keywords go to dc:subject and lr:hierarchicalSubject (and IPTC Keywords where the photo has IPTC);
    keywords a person added are never removed. Reruns skip photos already tagged with the same settings.
    """
    if iptc and not embed:
        raise click.UsageError("--iptc needs --embed (sidecars hold XMP only)")
    if not hierarchy_root.strip() or "|" in hierarchy_root:
        raise click.UsageError("--hierarchy-root must be a non-empty name without '|'")
    files = find_images(list(paths))
    if not files:
        raise click.ClickException("no image files found in " + ", ".join(map(str, paths)))
    targets = [Target.for_photo(f, embed, sidecar_name) for f in files]
    bundle, names = resolve_bundle(bundle_dir, models_arg)
    tagger = None
    if not remove:
        try:
            tagger = Tagger(bundle, provider=provider, threads=threads, models=names, precision=precision,
                            batch_size=batch_size)
        except HashtagError as exc:
            raise click.ClickException(str(exc)) from None
    with _stop_requests() as stop, progress(len(targets), "Tagging") as advance, \
            ThreadPoolExecutor(1, thread_name_prefix="hashtag-write") as writer:
        report = Report(as_json, dry_run, advance)
        if tagger is None:
            left = _run_remove(targets, dry_run, stop, report)
        else:
            settings = Settings(manifest_sha256(tagger.bundle.root), tagger.names, threshold, top_k,
                                hierarchy_root.strip())
            plan = Plan(settings, Options(threshold=threshold, top_k=top_k), f"hashtag {version('hashtag')}", iptc)
            left = _run_tagging(tagger, targets, plan, force, dry_run, stop, writer, report)
    click.echo(report.summary(left), err=True)
    if left:
        sys.exit(INTERRUPTED_EXIT)
    if report.counts["failed"]:
        sys.exit(1)


def _run_remove(targets: list[Target], dry_run: bool, stop: threading.Event, report: Report) -> int:
    clashes = _clashes(targets)
    for i, target in enumerate(targets):
        if stop.is_set():
            return len(targets) - i
        clash = clashes.get(target.photo)
        report(Outcome(target, "failed", error=clash) if clash else _remove(target, dry_run))
    return 0


def _run_tagging(tagger: Tagger, targets: list[Target], plan: Plan, force: bool, dry_run: bool,
                 stop: threading.Event, writer: ThreadPoolExecutor, report: Report) -> int:
    """Tag in input order: the models run on the next photo while the writer thread writes the last one.

    Each photo's metadata is read once, when the models' decoder asks for the photo (a few ahead of the
    models): that read decides whether it needs the models at all, and the writer merges into it.
    """
    settings = plan.settings.to_text()
    clashes = _clashes(targets)
    looked: deque[Outcome | Snapshot] = deque()  # first looks in input order, not handed on yet

    def photos_for_the_models() -> Iterator[Path]:
        for target in targets:
            looked.append(_first_look(target, settings, force, clashes.get(target.photo)))
            if isinstance(looked[-1], Snapshot):
                yield target.photo

    stream = tagger.predict_stream(photos_for_the_models(), plan.options)
    pending: deque[Future[Outcome]] = deque()
    handed = 0

    def hand_on(outcome: Future[Outcome]) -> None:
        nonlocal handed
        handed += 1
        pending.append(outcome)
        while pending and (len(pending) > WRITES_AHEAD or pending[0].done()):
            report(pending.popleft().result())

    try:
        while not stop.is_set():
            result = next(stream, None)
            while looked and isinstance(looked[0], Outcome):  # decided without the models
                hand_on(_done(looked.popleft()))
            if result is None:
                break
            hand_on(writer.submit(_write, looked.popleft(), result, plan, dry_run))
    finally:
        stream.close()
        while pending:
            report(pending.popleft().result())
    return len(targets) - handed
