"""What this tool writes into a photo's XMP besides the keywords, so that a later run knows what was its own.

Everything lives in one XMP namespace (prefix ``hashtag``): the keywords this tool added to each list,
the settings that chose them (a rerun with the same settings skips the photo), the bundle's manifest
hash, per-tag scores, and whether this tool created the sidecar (``--remove`` then deletes it when empty).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Mapping

NAMESPACE = "https://hashtag.invalid/xmp/1.0/"
PREFIX = "hashtag"


@dataclass(frozen=True)
class Settings:
    """What decides the keywords written: same settings on the same bundle, same keywords."""

    bundle_sha256: str
    models: tuple[str, ...]
    threshold: float | None
    top_k: int | None
    hierarchy_root: str

    def to_text(self) -> str:
        """Canonical JSON, compared as text by a rerun."""
        data: dict[str, Any] = {"bundle_sha256": self.bundle_sha256, "models": list(self.models),
                                "threshold": self.threshold, "top_k": self.top_k,
                                "hierarchy_root": self.hierarchy_root}
        return json.dumps(data, sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True)
class TagRecord:
    """This tool's own record in a photo's XMP (``hashtag:*`` properties)."""

    settings: str = ""  # Settings.to_text() of the run that wrote it
    tool: str = ""
    date: str = ""
    keywords: tuple[str, ...] = ()  # added to dc:subject by this tool
    hierarchical: tuple[str, ...] = ()  # added to lr:hierarchicalSubject
    iptc_keywords: tuple[str, ...] = ()  # added to IPTC Keywords
    scores: Mapping[str, float] = field(default_factory=dict)
    created_sidecar: bool = False

    @property
    def bundle_sha256(self) -> str | None:
        """The manifest hash the record's settings name, if readable."""
        try:
            return str(json.loads(self.settings)["bundle_sha256"])
        except (ValueError, KeyError, TypeError):
            return None


# XMP property names (after "Xmp.hashtag.") of each TagRecord field; bags hold lists.
TEXT_PROPERTIES = {"settings": "Settings", "tool": "Tool", "date": "WrittenAt"}
BAG_PROPERTIES = {"keywords": "WrittenKeywords", "hierarchical": "WrittenHierarchicalKeywords",
                  "iptc_keywords": "WrittenIptcKeywords"}
SCORES_PROPERTY = "Scores"  # a bag of "tag=0.123"
CREATED_PROPERTY = "CreatedSidecar"  # "True" when this tool created the sidecar file
