"""The merge rule for keyword lists: this tool's own keywords change, a person's never do.

Pure list logic, no file access: the same rule serves dc:subject, lr:hierarchicalSubject and IPTC
Keywords, for tagging, re-tagging with other settings, and removal.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

HIERARCHY_SEPARATOR = "|"  # Lightroom's, read by darktable, digiKam, Immich and exiftool alike


@dataclass(frozen=True)
class KeywordChange:
    """One keyword list before and after, and which of its keywords this tool owns afterwards."""

    before: tuple[str, ...]
    after: tuple[str, ...]
    ours: tuple[str, ...]

    @property
    def added(self) -> tuple[str, ...]:
        """Keywords in ``after`` that were not in ``before``."""
        return tuple(k for k in self.after if k not in self.before)

    @property
    def removed(self) -> tuple[str, ...]:
        """Keywords in ``before`` that are not in ``after``."""
        return tuple(k for k in self.before if k not in self.after)

    @property
    def changed(self) -> bool:
        """Whether the list or the set of keywords this tool owns differs."""
        return self.after != self.before


def _key(keyword: str) -> str:
    return keyword.casefold()


def merge(present: Sequence[str], previously_ours: Sequence[str], new: Sequence[str]) -> KeywordChange:
    """``present`` without what this tool wrote before, plus ``new``; a keyword already there (any case) is not added.

    ``ours`` afterwards is what this tool added: a keyword a person had given as well stays theirs, so
    a later removal leaves it.
    """
    previous = {_key(k) for k in previously_ours}
    kept = [k for k in present if _key(k) not in previous]
    kept_keys = {_key(k) for k in kept}
    ours = list(dict.fromkeys(k for k in new if _key(k) not in kept_keys))
    return KeywordChange(tuple(present), tuple(kept + ours), tuple(ours))


def unmerge(present: Sequence[str], previously_ours: Sequence[str]) -> KeywordChange:
    """``present`` without what this tool wrote: what ``hashtag tag --remove`` leaves."""
    return merge(present, previously_ours, ())


def hierarchical(root: str, keywords: Sequence[str]) -> list[str]:
    """``root|keyword`` for each keyword, as lr:hierarchicalSubject spells a path."""
    return [f"{root}{HIERARCHY_SEPARATOR}{k}" for k in keywords]
