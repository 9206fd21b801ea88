"""One photo's change: from a prediction (or ``--remove``) and what the photo holds now, to what it will hold."""
from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any, Mapping, Sequence

from hashtag.runtime.prediction import Options
from hashtag.tag.keywords import KeywordChange, hierarchical, merge, unmerge
from hashtag.tag.metadata import Keywords, Target
from hashtag.tag.record import Settings, TagRecord

# What happened to a photo; the summary counts each.
STATUSES = ("tagged", "unchanged", "skipped", "removed", "failed")


@dataclass(frozen=True)
class Plan:
    """How keywords are chosen and written: the settings recorded, the prediction options, the tool's name,
    and whether IPTC is wanted."""

    settings: Settings
    options: Options
    tool: str
    iptc: bool = False  # write IPTC Keywords even where the photo has no IPTC yet (embedded only)


def _same(a: Keywords, b: Keywords) -> bool:
    """Equal but for the record's date: rewriting would change nothing a reader cares about."""
    if a.record is None or b.record is None:
        return a == b
    return replace(a, record=replace(a.record, date="")) == replace(b, record=replace(b.record, date=""))


def retag(current: Keywords | None, tags: Sequence[str], scores: Mapping[str, float], plan: Plan,
          embed: bool) -> Keywords | None:
    """``current`` with this tool's earlier keywords replaced by ``tags``; None if that changes nothing."""
    present = current or Keywords()
    previous = present.record or TagRecord()
    subject = merge(present.subject, previous.keywords, tags)
    tree = merge(present.hierarchical, previous.hierarchical, hierarchical(plan.settings.hierarchy_root, tags))
    iptc: KeywordChange | None = None
    if present.iptc is not None or (embed and plan.iptc):
        iptc = merge(present.iptc or (), previous.iptc_keywords, tags)
    record = TagRecord(
        settings=plan.settings.to_text(), tool=plan.tool, date=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        keywords=subject.ours, hierarchical=tree.ours, iptc_keywords=iptc.ours if iptc else (),
        scores={t: round(float(s), 4) for t, s in scores.items()},
        created_sidecar=not embed and (current is None or previous.created_sidecar),
    )
    after = Keywords(subject.after, tree.after, iptc.after if iptc else None, record)
    return None if current is not None and _same(current, after) else after


def untag(current: Keywords | None) -> Keywords | None:
    """``current`` without anything this tool wrote; None if it holds nothing of this tool's."""
    if current is None or current.record is None:
        return None
    record = current.record
    iptc = unmerge(current.iptc, record.iptc_keywords).after if current.iptc is not None else None
    return Keywords(unmerge(current.subject, record.keywords).after,
                    unmerge(current.hierarchical, record.hierarchical).after, iptc, None)


@dataclass(frozen=True)
class Outcome:
    """What was (or, in a dry run, would be) done to one photo."""

    target: Target
    status: str
    subject: KeywordChange = KeywordChange((), (), ())  # the flat keyword list (dc:subject) before and after
    error: str | None = None  # one line naming the file and the reason
    prediction: Mapping[str, Any] | None = None  # the prediction's JSON record, when one was made

    @classmethod
    def of_change(cls, target: Target, status: str, before: Keywords | None, after: Keywords | None,
                  prediction: Mapping[str, Any] | None = None) -> "Outcome":
        """The outcome of ``update``'s (before, after): "unchanged" when after is None."""
        if after is None:
            return cls(target, "unchanged", prediction=prediction)
        ours = after.record.keywords if after.record else ()
        return cls(target, status, KeywordChange(before.subject if before else (), after.subject, ours),
                   prediction=prediction)

    def to_json(self, dry_run: bool = False) -> dict[str, Any]:
        """The ``--json`` line: the prediction record (as ``hashtag predict --json``) plus what was written where."""
        record: dict[str, Any] = dict(self.prediction or {"image": str(self.target.photo)})
        record.update({
            "image": str(self.target.photo),
            "status": self.status,
            "dry_run": dry_run,
            "written": {"path": str(self.target.path), "embedded": self.target.embed,
                        "added": list(self.subject.added), "removed": list(self.subject.removed)},
            "error": self.error,
        })
        return record
