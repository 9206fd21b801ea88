"""Which keywords become hashtags: the original ten, plus every keyword the training photos support well,
minus a deny-list and minus synonyms of tags already kept.

The rule, in the order it is applied (and recorded in dataset.json so a bundle can say how its tags came about):

1. The original project's ten tags always stay, whatever their counts.
2. Every other keyword with at least ``min_positives`` confident photos in the training split is a candidate.
   Counting the training split only keeps val and test out of every decision.
3. A candidate on the deny-list (``GENDER_WORDS`` plus ``--deny``) is dropped: the keyword itself or any of its
   words, so "young woman" goes with "woman". Tags asked for by name (``--tags``) are held to 2 and 3 too.
4. Candidates are taken by training positives, most first, ties alphabetically; one whose positive photos are
   (almost) the same set as a tag already kept (Jaccard >= ``synonym_jaccard``) is dropped as that tag's synonym.
   The original ten are never dropped, even when two of them are synonyms (person, human).

Light on purpose (no table reading here): the tables module calls it with the keywords it read.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence, Set

from hashtag.train.errors import SettingsError

DEFAULT_TAGS = ("animal", "human", "mountain", "nature", "outdoors", "person", "plant", "sea", "tree", "water")

# Words that name or imply a person's gender. A tagger sees pixels, not identity: a tag like #woman is a guess
# about someone's gender from their looks, often wrong and hurtful when wrong, so no such keyword becomes a tag
# however often the tables use it.
GENDER_WORDS = frozenset({
    "female", "male", "feminine", "masculine", "femininity", "masculinity",
    "woman", "women", "man", "men", "girl", "girls", "boy", "boys", "lady", "ladies", "gentleman", "gentlemen",
    "guy", "guys", "gal", "gals", "mother", "father", "mom", "mum", "dad", "son", "daughter", "sister", "brother",
    "wife", "husband", "bride", "groom", "bridegroom", "girlfriend", "boyfriend", "grandmother", "grandfather",
    "grandma", "grandpa", "aunt", "uncle", "niece", "nephew", "king", "queen", "prince", "princess",
    "businessman", "businesswoman", "businessmen", "businesswomen", "actress", "waitress", "policeman",
    "policewoman", "fireman", "sportsman", "sportswoman", "schoolgirl", "schoolboy",
})
BELOW_SHOWN = 10  # keywords just under the minimum recorded by name (the tables hold thousands below it)

# Reasons a keyword with enough positives is dropped.
GENDER = "gender"
DENIED = "deny"
SYNONYM = "synonym"
REASONS = {GENDER: "names or implies a person's gender", DENIED: "on the --deny list", SYNONYM: "synonym"}


def normalize_keyword(keyword: str) -> str:
    """Lower case, trimmed, inner whitespace collapsed: ' Sea  Water ' -> 'sea water'."""
    return " ".join(keyword.split()).lower()


@dataclass(frozen=True)
class VocabularyRule:
    """The settings of the rule above; ``deny`` adds keywords to ``GENDER_WORDS``."""

    min_positives: int = 150
    deny: tuple[str, ...] = ()
    synonym_jaccard: float = 0.95

    def __post_init__(self) -> None:
        if self.min_positives < 1:
            raise SettingsError(f"min_positives must be at least 1, got {self.min_positives}")
        if not 0.0 < self.synonym_jaccard <= 1.0:
            raise SettingsError(f"synonym_jaccard must be within (0, 1], got {self.synonym_jaccard}")
        deny = tuple(sorted({normalize_keyword(d) for d in self.deny} - {""}))
        object.__setattr__(self, "deny", deny)
        clash = [t for t in DEFAULT_TAGS if self.denial(t)]
        if clash:
            raise SettingsError(f"cannot deny {', '.join(clash)}: the original ten tags always stay")

    def denial(self, keyword: str) -> str | None:
        """GENDER or DENIED when the keyword or any of its words is on the deny-list, else None."""
        words = {keyword, *keyword.split()}
        if words & GENDER_WORDS:
            return GENDER
        return DENIED if words & set(self.deny) else None

    def to_dict(self) -> dict[str, Any]:
        return {"min_positives": self.min_positives, "synonym_jaccard": self.synonym_jaccard,
                "deny": list(self.deny), "gender_words": sorted(GENDER_WORDS)}


@dataclass(frozen=True)
class Dropped:
    """A keyword with enough positives that the rule still left out, and why."""

    keyword: str
    train_positives: int
    reason: str  # a key of REASONS
    synonym_of: str | None = None
    jaccard: float | None = None

    def describe(self) -> str:
        if self.reason == SYNONYM:
            return f"synonym of {self.synonym_of} (Jaccard {self.jaccard:.3f})"
        return REASONS[self.reason]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"keyword": self.keyword, "train_positives": self.train_positives,
                               "reason": self.reason}
        if self.reason == SYNONYM:
            out.update(synonym_of=self.synonym_of, jaccard=round(float(self.jaccard or 0.0), 4))
        return out


@dataclass(frozen=True)
class Vocabulary:
    """The tags the rule gives, with what it left out: dataset.json's ``vocabulary`` record."""

    tags: tuple[str, ...]
    rule: VocabularyRule
    dropped: tuple[Dropped, ...] = ()
    below_minimum: int = 0  # keywords with at least one training photo but fewer than min_positives
    largest_below: tuple[tuple[str, int], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"mode": "rule", "base_tags": list(DEFAULT_TAGS), **self.rule.to_dict(),
                "counted_on": "train split",
                "dropped": [d.to_dict() for d in self.dropped],
                "below_min_positives": {"count": self.below_minimum,
                                        "largest": [{"keyword": k, "train_positives": n}
                                                    for k, n in self.largest_below]}}


def jaccard(a: Set[str], b: Set[str]) -> float:
    union = len(a | b)
    return len(a & b) / union if union else 0.0


def positives_by_keyword(keywords: Mapping[str, Set[str]], photo_ids: Set[str]) -> dict[str, set[str]]:
    """keyword -> the photos among ``photo_ids`` that carry it."""
    out: dict[str, set[str]] = {}
    for photo_id, words in keywords.items():
        if photo_id in photo_ids:
            for word in words:
                out.setdefault(word, set()).add(photo_id)
    return out


def choose_vocabulary(keywords: Mapping[str, Set[str]], train_ids: Set[str], rule: VocabularyRule) -> Vocabulary:
    """Apply the rule to ``keywords`` (photo id -> keywords passing the filter) of the ``train_ids`` photos.

    Tags come out as the original ten in their usual order, then the added keywords alphabetically.
    """
    sets = positives_by_keyword(keywords, train_ids)
    count = {k: len(v) for k, v in sets.items()}
    kept: list[str] = list(DEFAULT_TAGS)
    dropped: list[Dropped] = []
    below: list[tuple[str, int]] = []
    for keyword in sorted(set(sets) - set(DEFAULT_TAGS), key=lambda k: (-count[k], k)):
        n = count[keyword]
        if n < rule.min_positives:
            below.append((keyword, n))
        elif (denial := rule.denial(keyword)) is not None:
            dropped.append(Dropped(keyword, n, denial))
        else:
            score, twin = max(((jaccard(sets[keyword], sets.get(t, set())), t) for t in kept),
                              key=lambda st: st[0])  # first of equals: the earlier kept tag
            if score >= rule.synonym_jaccard:
                dropped.append(Dropped(keyword, n, SYNONYM, twin, score))
            else:
                kept.append(keyword)
    tags = (*DEFAULT_TAGS, *sorted(kept[len(DEFAULT_TAGS):]))
    return Vocabulary(tags, rule, tuple(dropped), len(below), tuple(below[:BELOW_SHOWN]))


def check_asked_tags(tags: Sequence[str], train_positives: Mapping[str, int], rule: VocabularyRule) -> None:
    """Tags asked for by name must pass the rule too: enough training positives, not on the deny-list."""
    denied = [f"{t} ({REASONS[d]})" for t in tags if (d := rule.denial(t)) is not None]
    if denied:
        raise SettingsError(f"cannot make a tag of {', '.join(denied)}: on the deny-list")
    few = [f"{t} ({train_positives.get(t, 0)})" for t in tags if train_positives.get(t, 0) < rule.min_positives]
    if few:
        raise SettingsError(f"too few confident training photos for {', '.join(few)}: each tag needs at least "
                            f"{rule.min_positives} (--min-positives)")
