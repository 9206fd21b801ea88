"""Choosing a dataset from the Unsplash Lite tables: which photos, which vocabulary, which labels are known.

``select`` reads both tables (``hashtag.train.table_rows``), settles the vocabulary
(``hashtag.train.vocabulary``) and which labels are known (``hashtag.train.partial_labels``: the optional
``photo_source`` column), and returns the ``LabelledPhotos`` a dataset is built or scored from.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from hashtag.train.errors import SettingsError
from hashtag.train.partial_labels import UNKNOWN, label_row, source_keywords
from hashtag.train.splits import SPLITS, split_of
from hashtag.train.table_rows import KeywordFilter, Photo, TableError, TableStats, read_keywords, read_photos
from hashtag.train.vocabulary import (
    DEFAULT_TAGS,
    VocabularyRule,
    check_asked_tags,
    choose_vocabulary,
    normalize_keyword,
    positives_by_keyword,
)


@dataclass
class LabelledPhotos:
    """What a dataset is made of: the photos, the vocabulary, each photo's tags (only photos with any tag
    appear), how the vocabulary was chosen, and which keywords each photo source uses (None: no source column,
    every label is known)."""

    photos: list[Photo]
    tags: tuple[str, ...]
    tags_of: dict[str, frozenset[str]]
    stats: TableStats = field(default_factory=TableStats)
    vocabulary: dict[str, Any] = field(default_factory=dict)  # how the tags were chosen, for dataset.json
    source_tags: dict[str, frozenset[str]] | None = field(init=False)

    def __post_init__(self) -> None:
        self._source_of = {p.photo_id: p.photo_source for p in self.photos if p.photo_source is not None}
        self.source_tags = source_keywords(self._source_of, self.tags_of) if self._source_of else None

    def labels(self, photo_id: str) -> list[int]:
        """1/0 per tag, UNKNOWN where the photo's source never uses the tag."""
        known = None if self.source_tags is None else self.source_tags.get(self._source_of.get(photo_id, ""),
                                                                           frozenset())
        return label_row(self.tags_of.get(photo_id, frozenset()), self.tags, known)

    def unknown_for(self) -> dict[str, list[str]]:
        """tag -> the photo sources whose photos never carry it (empty without a source column)."""
        sources = self.source_tags or {}
        return {t: sorted(s for s, used in sources.items() if t not in used) for t in self.tags}

    def split_counts(self, photos: Iterable[Photo]) -> dict[str, Any]:
        """Photos per split, and per split and tag the positives and the unknown labels."""
        counts: dict[str, Any] = {"splits": {s: 0 for s in SPLITS},
                                  "positives": {s: {t: 0 for t in self.tags} for s in SPLITS},
                                  "unknown": {s: {t: 0 for t in self.tags} for s in SPLITS}}
        for photo in photos:
            split = split_of(photo.photo_id)
            counts["splits"][split] += 1
            for tag, value in zip(self.tags, self.labels(photo.photo_id)):
                if value == 1:
                    counts["positives"][split][tag] += 1
                elif value == UNKNOWN:
                    counts["unknown"][split][tag] += 1
        return counts


def top_keywords(keywords: dict[str, set[str]], n: int, photo_ids: set[str] | None = None) -> list[tuple[str, int]]:
    """The ``n`` keywords on the most photos (among ``photo_ids`` when given), ties broken alphabetically."""
    counts: Counter[str] = Counter()
    for photo_id, words in keywords.items():
        if photo_ids is None or photo_id in photo_ids:
            counts.update(words)
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:n]


def select(folder: Path, keyword_filter: KeywordFilter, tags: Sequence[str] | None = None,
           top_n: int | None = None, rule: VocabularyRule | None = None) -> LabelledPhotos:
    """Read both tables and settle the vocabulary and which labels are known.

    Vocabulary: ``tags``, else the ``top_n`` most frequent keywords, else the vocabulary ``rule`` gives. With a
    rule, asked ``tags`` must pass it too (training positives, deny-list); without one (scoring a bundle on its
    own tags) they are taken as given, and the default vocabulary is the original ten.
    """
    if tags is not None and top_n is not None:
        raise SettingsError("give tags or top_n, not both")
    if top_n is not None and top_n < 1:
        raise SettingsError(f"top_n must be at least 1, got {top_n}")
    stats = TableStats()
    photos = read_photos(folder, stats)
    train_ids = {p.photo_id for p in photos if split_of(p.photo_id) == "train"}
    record: dict[str, Any]
    if top_n is not None:
        keywords = read_keywords(folder, keyword_filter, stats)
        vocabulary = tuple(sorted(k for k, _ in top_keywords(keywords, top_n, {p.photo_id for p in photos})))
        if not vocabulary:
            raise TableError(f"no keyword passes the filter ({keyword_filter.to_dict()}); nothing to choose top-N from")
        record = {"mode": "top-n", "top_n": top_n}
    elif tags is not None or rule is None:
        vocabulary = tuple(dict.fromkeys(normalize_keyword(t) for t in (tags or DEFAULT_TAGS)))
        if not all(vocabulary):
            raise SettingsError("tags must not be empty")
        keywords = read_keywords(folder, keyword_filter, stats, frozenset(vocabulary))
        record = {"mode": "tags" if tags is not None else "default"}
        if rule is not None:
            train_sets = positives_by_keyword(keywords, train_ids)
            check_asked_tags(vocabulary, {t: len(train_sets.get(t, ())) for t in vocabulary}, rule)
            record.update(rule.to_dict())
    else:
        keywords = read_keywords(folder, keyword_filter, stats)
        chosen = choose_vocabulary(keywords, train_ids, rule)
        vocabulary, record = chosen.tags, chosen.to_dict()
    wanted = frozenset(vocabulary)
    tags_of = {pid: frozenset(have) for pid, words in keywords.items() if (have := words & wanted)}
    return LabelledPhotos(photos, vocabulary, tags_of, stats, record)
