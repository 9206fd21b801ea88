"""Generated sections of the model card: text between two markers, replaced on every run.

``hashtag.export.card`` writes the card; later steps (the fast model, the ensemble retuned on real photos)
each own one marked section, so rewriting one leaves the rest as it was.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from hashtag.runtime.files import write_text_atomically


@dataclass(frozen=True)
class Section:
    """A section's markers and where it goes the first time: before the heading ``before`` (else at the end)."""

    begin: str
    end: str
    before: str

    def replace(self, text: str, section: str) -> str:
        """``text`` with the marked section replaced by ``section`` (inserted the first time)."""
        if self.begin in text and self.end in text:
            head, rest = text.split(self.begin, 1)
            return head + section + rest.split(self.end, 1)[1]
        if self.before in text:
            head, tail = text.split(self.before, 1)
            return head.rstrip("\n") + "\n\n" + section + "\n\n" + self.before.lstrip("\n") + tail
        return text.rstrip("\n") + "\n\n" + section + "\n"

    def write(self, card: Path, section: str, transform: Callable[[str], str] | None = None) -> None:
        """Replace the section in ``card`` (and apply ``transform`` to the whole text), atomically."""
        text = self.replace(card.read_text(encoding="utf-8"), section)
        write_text_atomically(card, transform(text) if transform else text)
