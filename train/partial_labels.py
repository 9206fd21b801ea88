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

from dataclasses import dataclass
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


@dataclass(frozen=True)
class WeakNegatives:
    """Unknown labels read as negatives where a photo's other labels make the concept unlikely.

    The scene photos were never labelled for people, so the members never saw a scene photo without a person
    labelled as such, and print ``#human`` on empty buildings and glaciers. A photo labelled with one of
    ``scenes`` (the scene source's own labels: buildings, forest, glacier, mountain, sea), none of ``unless``
    (streets often show people) and ``tags`` unknown is taken to show no person: people there are absent or
    specks, by eye. Used to fit the ensemble's stack, not to score it.
    """

    scenes: tuple[str, ...] = ("architecture", "forest", "glacier", "mountain", "sea")
    unless: tuple[str, ...] = ("city",)
    tags: tuple[str, ...] = ("human", "person", "portrait")

    def rows(self, labels: np.ndarray, tags: Sequence[str]) -> np.ndarray:
        """Boolean mask of the rows of ``labels`` ([n, tags] with UNKNOWN) this rule applies to."""
        column = {t: j for j, t in enumerate(tags)}
        scene = np.any(labels[:, [column[t] for t in self.scenes]] > 0, axis=1)
        street = np.any(labels[:, [column[t] for t in self.unless]] > 0, axis=1)
        unknown = np.all(labels[:, [column[t] for t in self.tags]] == UNKNOWN, axis=1)
        return scene & ~street & unknown

    def apply(self, labels: np.ndarray, tags: Sequence[str]) -> np.ndarray:
        """A copy of ``labels`` with the rule's tags set to 0 on the rows it applies to."""
        out = labels.copy()
        rows = self.rows(labels, tags)
        for t in self.tags:
            out[rows, list(tags).index(t)] = 0
        return out
