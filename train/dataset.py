"""The dataset folder: build it from Unsplash Lite tables, and load it for training.

Storage decision: one RGB JPEG per photo (EXIF applied, shorter side at most 299 px, never upscaled,
aspect kept) under ``images/<hh>/<photo_id>.jpg``, plus ``labels.tsv`` (photo id, split, file, one column
per tag: 1 present, 0 absent, -1 unknown, see ``partial_labels``) and ``dataset.json`` (settings, vocabulary
rule, summary). Why: 299 px serves every model (VGG16 at
224, Inception/Xception at 299) from one copy; JPEG at ~10-30 kB a photo keeps 25k photos near half a
gigabyte instead of the original's RAM-crashing pickled float arrays; single files make the build
resumable photo by photo (atomic rename, journal) and let training stream with tf.data or any loader
without reading the whole set into memory; a TSV manifest is readable by anything and diffable. Photos
that already arrive as plain RGB JPEGs at or below the size are stored byte for byte (no second lossy
encode). The price is one small-file read plus a JPEG decode per image per epoch, which the training
step avoids anyway by caching backbone features.

Layout of ``DIR``: ``dataset.json``, ``labels.tsv``, ``failures.tsv`` (photo, reason, detail),
``journal.jsonl`` (append-only download log used for resume), ``images/``.

Format version 2 added unknown labels (-1); readers of version 1 refuse it rather than read -1 as a negative,
and version 1 folders (0/1 only: every label known) still load.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, TextIO

import numpy as np

from hashtag.runtime.files import atomic_path, write_text_atomically
from hashtag.train.download import Downloader, DownloadConfig, Job, RunReport
from hashtag.train.errors import SettingsError, TrainError
from hashtag.train.fetch import is_url, sized_url
from hashtag.train.partial_labels import UNKNOWN
from hashtag.train.splits import SPLITS, TEST_FRACTION, VAL_FRACTION, split_of
from hashtag.train.store import Journal
from hashtag.train.table_rows import PHOTO_SOURCE_COLUMN, KeywordFilter, Photo
from hashtag.train.tables import LabelledPhotos, select
from hashtag.train.vocabulary import VocabularyRule

FORMAT_VERSION = 2
LABEL_VALUES = {1: frozenset({"0", "1"}), 2: frozenset({"0", "1", str(UNKNOWN)})}  # per format version
META_NAME = "dataset.json"
LABELS_NAME = "labels.tsv"
FAILURES_NAME = "failures.tsv"
JOURNAL_NAME = "journal.jsonl"
PARTIAL_DIR = ".partial"
LABEL_COLUMNS = ("photo_id", "split", "file")


class DatasetError(TrainError):
    """A dataset folder is missing, malformed, or was built with settings that a resume cannot change."""


@dataclass(frozen=True)
class BuildConfig:
    """Everything ``hashtag data build`` decides; ``limit`` keeps only the first N selected photos."""

    tables: Path
    out: Path
    tags: tuple[str, ...] | None = None
    top_n: int | None = None
    keyword_filter: KeywordFilter = field(default_factory=KeywordFilter)
    download: DownloadConfig = field(default_factory=DownloadConfig)
    require_tag: bool = False
    limit: int | None = None
    retry_failed: bool = False
    rule: VocabularyRule = field(default_factory=VocabularyRule)

    def __post_init__(self) -> None:
        if self.tags is not None and self.top_n is not None:
            raise SettingsError("give tags or top_n, not both")
        if self.limit is not None and self.limit < 1:
            raise SettingsError(f"limit must be at least 1, got {self.limit}")


@dataclass(frozen=True)
class Record:
    """One stored photo: its split, image file and targets in the dataset's tag order (int8: 1, 0 or UNKNOWN)."""

    photo_id: str
    split: str
    path: Path
    targets: np.ndarray

    @property
    def labels(self) -> np.ndarray:
        """uint8 multi-hot: 1 where the tag is present, 0 where it is absent or unknown."""
        return (self.targets > 0).astype(np.uint8)


@dataclass
class Dataset:
    """A loaded dataset folder; images stay on disk, only paths and labels are in memory."""

    root: Path
    tags: tuple[str, ...]
    records: list[Record]
    meta: dict[str, Any]

    def split(self, name: str) -> list[Record]:
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r} (known: {', '.join(SPLITS)})")
        return [r for r in self.records if r.split == name]

    def labels(self, split: str | None = None) -> np.ndarray:
        """[n, len(tags)] uint8 positives of one split (or all records); unknown reads 0, so train and score
        on ``targets``."""
        return (self.targets(split) > 0).astype(np.uint8)

    def targets(self, split: str | None = None) -> np.ndarray:
        """[n, len(tags)] int8 targets of one split (or all records): 1, 0, or UNKNOWN."""
        records = self.records if split is None else self.split(split)
        if not records:
            return np.zeros((0, len(self.tags)), dtype=np.int8)
        return np.stack([r.targets for r in records])


def image_relpath(photo_id: str) -> str:
    """images/<2 hex digits>/<photo_id>.jpg: 256 folders keep directory listings short at millions of photos."""
    return f"images/{hashlib.sha1(photo_id.encode('utf-8')).hexdigest()[:2]}/{photo_id}.jpg"


def _source(photo: Photo, tables: Path, max_side: int) -> str:
    if is_url(photo.source):
        return sized_url(photo.source, photo.width, photo.height, max_side)
    return str(tables / photo.source)


@contextmanager
def _atomic_open(path: Path) -> Iterator[TextIO]:
    """A text file written under a temporary name and renamed into place only when complete."""
    with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8") as fh:
        yield fh


def _check_resumable(out: Path, download: DownloadConfig) -> None:
    """Refuse to mix images stored at another size or quality into one folder."""
    meta_path = out / META_NAME
    if not meta_path.exists():
        return
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise DatasetError(f"{meta_path}: not valid JSON ({exc})") from None
    for key, value in (("image_max_side", download.max_side), ("jpeg_quality", download.jpeg_quality)):
        if meta.get(key, value) != value:
            raise DatasetError(f"{out} holds images stored with {key}={meta[key]}, not {value}; use another --out")


def _meta(config: BuildConfig, labelled: LabelledPhotos, summary: dict[str, Any]) -> dict[str, Any]:
    return {
        "version": FORMAT_VERSION,
        "tags": list(labelled.tags),
        **config.keyword_filter.to_dict(),
        "vocabulary": labelled.vocabulary,
        "partial_labels": partial_labels_record(labelled),
        "require_tag": config.require_tag,
        "image_max_side": config.download.max_side,
        "jpeg_quality": config.download.jpeg_quality,
        "splits": {"method": "sha256(photo_id)", "test": TEST_FRACTION, "val_of_rest": VAL_FRACTION},
        "tables": str(config.tables.resolve()),
        "built": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "summary": summary,
    }


def partial_labels_record(labelled: LabelledPhotos) -> dict[str, Any]:
    """dataset.json's account of unknown labels: the source column used, and per tag the sources that never
    carry it (its labels are unknown on their photos)."""
    if labelled.source_tags is None:
        return {"source_column": None, "rule": "no source column: every missing keyword is a negative"}
    return {"source_column": PHOTO_SOURCE_COLUMN,
            "rule": "a missing keyword is a negative on photos of a source that carries it somewhere, else unknown",
            "sources": sorted(labelled.source_tags),
            "unknown_for": {t: s for t, s in labelled.unknown_for().items() if s}}


def _summary(photos_read: int, kept: list[Photo], labelled: LabelledPhotos, report: RunReport, dropped: int,
             seconds: float) -> dict[str, Any]:
    stored = [p for p in kept if (o := report.outcomes.get(p.photo_id)) is not None and o.ok]
    counts = labelled.split_counts(stored)
    return {
        "photos_read": photos_read,
        "kept": len(kept),
        "dropped_untagged": dropped,
        "stored": len(stored),
        "failed": report.failures,
        "pending": len(kept) - report.done,
        "complete": report.done == len(kept),
        "failures_by_reason": report.failures_by_reason(),
        "this_run": {"stored": report.stored, "already_stored": report.already_stored, "failed": report.failed,
                     "failed_before": report.failed_before, "requests": report.requests,
                     "seconds": round(seconds, 2)},
        "splits": counts["splits"],
        "positives": counts["positives"],
        "unknown": counts["unknown"],
        "tables": labelled.stats.to_dict(),
    }


def build_dataset(config: BuildConfig, progress: Callable[[RunReport], None] | None = None,
                  stop: threading.Event | None = None) -> dict[str, Any]:
    """Read the tables, store every selected photo (resuming), write labels.tsv and dataset.json; returns the meta."""
    started = time.perf_counter()
    labelled = select(config.tables, config.keyword_filter, config.tags, config.top_n, config.rule)
    kept = [p for p in labelled.photos if not config.require_tag or p.photo_id in labelled.tags_of]
    dropped = len(labelled.photos) - len(kept)
    if config.limit is not None:
        kept = kept[:config.limit]
    out = config.out
    _check_resumable(out, config.download)
    out.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(out / PARTIAL_DIR, ignore_errors=True)  # leftovers of a killed run are never complete
    jobs = (Job(p.photo_id, _source(p, config.tables, config.download.max_side), out / image_relpath(p.photo_id))
            for p in kept)  # made one at a time: memory stays flat however many photos there are
    empty = RunReport(total=len(kept))
    write_text_atomically(out / META_NAME, json.dumps(_meta(config, labelled, _summary(
        labelled.stats.photo_rows, kept, labelled, empty, dropped, 0.0)), indent=2) + "\n")
    with Journal(out / JOURNAL_NAME) as journal:
        downloader = Downloader(config.download, journal, out / PARTIAL_DIR, stop)
        report = downloader.run(jobs, len(kept), progress, config.retry_failed)
    shutil.rmtree(out / PARTIAL_DIR, ignore_errors=True)

    with _atomic_open(out / LABELS_NAME) as labels, _atomic_open(out / FAILURES_NAME) as failures:
        labels.write("\t".join((*LABEL_COLUMNS, *labelled.tags)) + "\n")
        failures.write("photo_id\treason\tdetail\n")
        for p in kept:
            outcome = report.outcomes.get(p.photo_id)
            if outcome is not None and outcome.ok:
                labels.write("\t".join((p.photo_id, split_of(p.photo_id), image_relpath(p.photo_id),
                                         *map(str, labelled.labels(p.photo_id)))) + "\n")
            elif outcome is not None:
                failures.write(f"{p.photo_id}\t{outcome.reason}\t{' '.join(outcome.detail.split())}\n")
    summary = _summary(labelled.stats.photo_rows, kept, labelled, report, dropped, time.perf_counter() - started)
    meta = _meta(config, labelled, summary)
    write_text_atomically(out / META_NAME, json.dumps(meta, indent=2) + "\n")
    return meta


def load_dataset(root: Path | str) -> Dataset:
    """Read dataset.json and labels.tsv; image paths are absolute, labels uint8 in the dataset's tag order."""
    root = Path(root)
    try:
        meta = json.loads((root / META_NAME).read_text(encoding="utf-8"))
        lines = (root / LABELS_NAME).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError as exc:
        raise DatasetError(f"{root} is not a dataset folder: {Path(exc.filename).name} is missing") from None
    except ValueError as exc:
        raise DatasetError(f"{root / META_NAME}: not valid JSON ({exc})") from None
    values = LABEL_VALUES.get(meta.get("version"))  # type: ignore[arg-type]
    if values is None:
        raise DatasetError(f"{root / META_NAME}: unsupported version {meta.get('version')!r}")
    tags = tuple(meta.get("tags") or ())
    expected = [*LABEL_COLUMNS, *tags]
    if not lines or lines[0].split("\t") != expected:
        raise DatasetError(f"{root / LABELS_NAME}: header must be {' '.join(expected)}")
    records = []
    for n, line in enumerate(lines[1:], start=2):
        fields = line.split("\t")
        if len(fields) != len(expected) or fields[1] not in SPLITS or not set(fields[3:]) <= values:
            raise DatasetError(f"{root / LABELS_NAME}:{n}: malformed row")
        records.append(Record(fields[0], fields[1], root / fields[2], np.array(fields[3:], dtype=np.int8)))
    return Dataset(root, tags, records, meta)
