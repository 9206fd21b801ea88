"""Partial labels: when a missing keyword means "absent" and when it means "nobody looked".

Photo sources label different concepts: in the offline corpus the Flickr photos were never labelled for
street or glacier, the scene photos never for dog or portrait. So a missing keyword is a negative only for
photos of a source (the photos table's ``photo_source`` column) whose photos carry that keyword somewhere;
for the other photos it is unknown, and unknown labels are left out of the loss, of AP/F1 and of threshold
tuning. Tables without a source column (the real Unsplash tables) are one source: every missing keyword is
a negative, as before.

Label arrays hold 1 (present), 0 (absent) or ``UNKNOWN`` (-1): one encoding from labels.tsv through the
loss to the metrics, and one that a reader expecting 0/1 refuses instead of taking for a negative.
"""
from __future__ import annotations

from typing import Mapping, Sequence, Set

import numpy as np

UNKNOWN = -1


def source_keywords(source_of: Mapping[str, str], keywords: Mapping[str, Set[str]]) -> dict[str, frozenset[str]]:
    """Each photo source -> the keywords that at least one of its photos carries.

    ``source_of`` maps photo id to source for the photos in the tables; keywords of other photos are ignored.
    """
    found: dict[str, set[str]] = {source: set() for source in source_of.values()}
    for photo_id, words in keywords.items():
        source = source_of.get(photo_id)
        if source is not None:
            found[source] |= words
    return {source: frozenset(words) for source, words in found.items()}


def label_row(present: Set[str], tags: Sequence[str], known: Set[str] | None) -> list[int]:
    """1 for each tag in ``present``, 0 for one in ``known`` (the photo's source uses it), else UNKNOWN.

    ``known`` None: every label is known (tables without sources).
    """
    return [1 if t in present else 0 if known is None or t in known else UNKNOWN for t in tags]


def is_known(labels: np.ndarray) -> np.ndarray:
    """Boolean mask of the known entries of a label array (anything below 0 is unknown)."""
    return np.asarray(labels) >= 0
