"""Streaming readers for Unsplash Lite tables: photos and keywords, sharded, TSV or CSV.

The keyword table has millions of rows in the real dataset, so it is read row by row and only the
keywords that pass the confidence filter (and, with a fixed vocabulary, only vocabulary keywords)
are kept in memory. Shards (``keywords.tsv000``, ``keywords.tsv001``, ...) each carry their own header,
as the Unsplash dataset ships them. Fields may be quoted (the tables are PostgreSQL ``COPY ... CSV``
exports with a tab delimiter), so the ``csv`` module parses them.

Reading only: which photos and tags make a dataset is ``hashtag.train.tables``' job.
"""
from __future__ import annotations

import csv
import re
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

from hashtag.train.errors import SettingsError, TrainError
from hashtag.train.vocabulary import normalize_keyword

PHOTO_COLUMNS = ("photo_id", "photo_image_url")
PHOTO_SIZE_COLUMNS = ("photo_width", "photo_height")
PHOTO_SOURCE_COLUMN = "photo_source"  # which collection a photo comes from; absent in the real Unsplash tables
KEYWORD_COLUMNS = ("photo_id", "keyword", "ai_service_1_confidence")
AI2_COLUMN = "ai_service_2_confidence"
USER_COLUMN = "suggested_by_user"
# Photo ids become file names: Unsplash ids are 11 characters of [A-Za-z0-9_-]; allow a little more, never a path.
PHOTO_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_SHARD_RE = r"{name}\.(tsv|csv)(\d*)"
_DELIMITERS = {"tsv": "\t", "csv": ","}
_TRUE = frozenset({"t", "true", "1", "y", "yes"})

FIELD_SIZE_LIMIT = 2**31 - 1  # photo descriptions can outgrow csv's default of 128 KiB


class TableError(TrainError):
    """A table is missing, ambiguous, or lacks a required column."""


@dataclass(frozen=True)
class KeywordFilter:
    """Which keyword rows count as evidence: AI service 1 at ``min_confidence``, optionally service 2 or users."""

    min_confidence: float = 99.0
    accept_ai2: bool = False
    accept_user: bool = False

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_confidence <= 100.0:
            raise SettingsError(f"min_confidence must be within 0..100, got {self.min_confidence}")

    def required_columns(self) -> tuple[str, ...]:
        extra = ((AI2_COLUMN,) if self.accept_ai2 else ()) + ((USER_COLUMN,) if self.accept_user else ())
        return KEYWORD_COLUMNS + extra

    def passes(self, ai1: str, ai2: str = "", user: str = "") -> bool:
        """True when any accepted source of evidence supports the keyword; empty confidences never do."""
        if _confidence(ai1) >= self.min_confidence:
            return True
        if self.accept_ai2 and _confidence(ai2) >= self.min_confidence:
            return True
        return self.accept_user and user.strip().lower() in _TRUE

    def to_dict(self) -> dict[str, object]:
        return {"min_confidence": self.min_confidence, "accept_ai2": self.accept_ai2, "accept_user": self.accept_user}


@dataclass(frozen=True, slots=True)
class Photo:
    """One photo row: where its image is (https URL or path relative to the tables folder), its size if known,
    and the collection it comes from (``photo_source``; None when the table has no such column)."""

    photo_id: str
    source: str
    width: int | None = None
    height: int | None = None
    photo_source: str | None = None


@dataclass
class TableStats:
    """Counts of what the readers saw and skipped, for the build summary."""

    photo_rows: int = 0
    duplicate_photo_rows: int = 0
    photos_without_image: int = 0
    invalid_photo_ids: int = 0
    keyword_rows: int = 0
    keyword_rows_kept: int = 0
    malformed_rows: int = 0

    def to_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


def _confidence(text: str) -> float:
    try:
        return float(text) if text.strip() else -1.0
    except ValueError:
        return -1.0


def table_files(folder: Path, name: str) -> list[Path]:
    """``name.tsv``/``name.tsv000``, ``name.tsv001``... (or ``.csv``) in shard order; one format per table."""
    if not folder.is_dir():
        raise TableError(f"tables folder {folder} does not exist")
    pattern = re.compile(_SHARD_RE.format(name=re.escape(name)))
    found = [(m.group(1), m.group(2), p) for p in folder.iterdir() if (m := pattern.fullmatch(p.name)) and p.is_file()]
    formats = {fmt for fmt, _, _ in found}
    if not found:
        raise TableError(f"no {name}.tsv* or {name}.csv* table in {folder}")
    if len(formats) > 1:
        raise TableError(f"{folder} holds both {name}.tsv* and {name}.csv*; keep one format")
    return [p for _, _, p in sorted(found, key=lambda f: (len(f[1]), f[1]))]


@contextmanager
def _long_fields() -> Iterator[None]:
    """Raise csv's field size limit while a table is read, and restore it after.

    The limit is process-wide, so it is not left raised for code that relies on csv's default.
    """
    previous = csv.field_size_limit(FIELD_SIZE_LIMIT)
    try:
        yield
    finally:
        csv.field_size_limit(previous)


def _delimiter(path: Path) -> str:
    return _DELIMITERS[path.name.split(".")[-1][:3]]


def has_column(files: Sequence[Path], column: str) -> bool:
    """True when every shard has ``column``, False when none has; shards that disagree are an error."""
    present = []
    for path in files:
        with path.open(newline="", encoding="utf-8-sig") as fh, _long_fields():
            present.append(column in [h.strip() for h in next(csv.reader(fh, delimiter=_delimiter(path)), [])])
    if all(present) or not any(present):
        return all(present)
    having = ", ".join(p.name for p, has in zip(files, present) if has)
    raise TableError(f"only some shards have the {column} column ({having}); give it in all or none")


def iter_rows(files: Sequence[Path], required: Sequence[str], optional: Sequence[str] = (),
              stats: TableStats | None = None) -> Iterator[tuple[str, ...]]:
    """Yield the ``required + optional`` fields of every row, streaming shard after shard.

    Each shard must have every required column (a clear error names the first shard that lacks one);
    a missing optional column reads as empty. Rows too short to hold a required field are counted and skipped.
    """
    for path in files:
        with path.open(newline="", encoding="utf-8-sig") as fh, _long_fields():
            reader = csv.reader(fh, delimiter=_delimiter(path))
            header = [h.strip() for h in next(reader, [])]
            missing = [c for c in required if c not in header]
            if missing:
                raise TableError(f"{path}: missing column(s) {', '.join(missing)} "
                                 f"(has: {', '.join(header) or 'nothing'})")
            idx = [header.index(c) if c in header else -1 for c in (*required, *optional)]
            need = max(header.index(c) for c in required) + 1
            for row in reader:
                if len(row) < need:
                    if stats is not None and row:
                        stats.malformed_rows += 1
                    continue
                yield tuple(row[i] if 0 <= i < len(row) else "" for i in idx)


def _size(text: str) -> int | None:
    try:
        value = int(float(text))
    except ValueError:
        return None
    return value if value > 0 else None


def read_photos(folder: Path, stats: TableStats) -> list[Photo]:
    """Every photo once (first row wins), in table order; rows without an image or usable id are counted, dropped."""
    photos: list[Photo] = []
    seen: set[str] = set()
    files = table_files(folder, "photos")
    with_origin = has_column(files, PHOTO_SOURCE_COLUMN)
    for photo_id, source, width, height, origin in iter_rows(files, PHOTO_COLUMNS,
                                                             (*PHOTO_SIZE_COLUMNS, PHOTO_SOURCE_COLUMN), stats):
        stats.photo_rows += 1
        photo_id, source = photo_id.strip(), source.strip()
        if photo_id in seen:
            stats.duplicate_photo_rows += 1
        elif not PHOTO_ID_RE.fullmatch(photo_id):
            stats.invalid_photo_ids += 1
        elif not source:
            stats.photos_without_image += 1
        else:
            seen.add(photo_id)
            photos.append(Photo(sys.intern(photo_id), source, _size(width), _size(height),
                                sys.intern(origin.strip()) if with_origin else None))
    return photos


def read_keywords(folder: Path, keyword_filter: KeywordFilter, stats: TableStats,
                  vocabulary: frozenset[str] | None = None) -> dict[str, set[str]]:
    """photo_id -> normalised keywords that pass the filter (restricted to ``vocabulary`` when given).

    Duplicate rows collapse because each photo holds a set.
    """
    required = keyword_filter.required_columns()
    optional = tuple(c for c in (AI2_COLUMN, USER_COLUMN) if c not in required)
    columns = (*required, *optional)
    at_ai2, at_user = columns.index(AI2_COLUMN), columns.index(USER_COLUMN)
    kept: dict[str, set[str]] = {}
    for row in iter_rows(table_files(folder, "keywords"), required, optional, stats):
        stats.keyword_rows += 1
        photo_id, keyword, ai1 = row[:3]
        if not keyword_filter.passes(ai1, row[at_ai2], row[at_user]):
            continue
        word = normalize_keyword(keyword)
        if not word or (vocabulary is not None and word not in vocabulary):
            continue
        stats.keyword_rows_kept += 1
        kept.setdefault(sys.intern(photo_id.strip()), set()).add(sys.intern(word))
    return kept
