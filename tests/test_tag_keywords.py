"""The keyword merge rule alone: a person's keywords are never removed, this tool's are replaced."""
from __future__ import annotations

from hashtag.tag.keywords import hierarchical, merge, unmerge


def test_new_keywords_are_added_after_a_persons_and_recorded_as_ours() -> None:
    change = merge(["holiday", "Rome"], [], ["dog", "sea"])
    assert change.after == ("holiday", "Rome", "dog", "sea")
    assert change.ours == ("dog", "sea")
    assert change.added == ("dog", "sea") and change.removed == ()


def test_a_keyword_the_person_already_has_stays_theirs_in_any_case() -> None:
    change = merge(["Dog"], [], ["dog", "sea"])
    assert change.after == ("Dog", "sea")
    assert change.ours == ("sea",)
    assert unmerge(change.after, change.ours).after == ("Dog",)


def test_a_rerun_replaces_only_what_this_tool_wrote() -> None:
    first = merge(["holiday"], [], ["dog", "sea"])
    second = merge(first.after + ("beach",), first.ours, ["sea", "person"])
    assert second.after == ("holiday", "beach", "sea", "person")
    assert second.removed == ("dog",)
    assert second.ours == ("sea", "person")


def test_unmerge_leaves_exactly_the_persons_keywords() -> None:
    first = merge(["a", "b"], [], ["c", "a"])
    assert unmerge(first.after, first.ours).after == ("a", "b")
    assert unmerge(["x"], []).changed is False


def test_hierarchy_paths() -> None:
    assert hierarchical("auto-tags", ["dog", "sea"]) == ["auto-tags|dog", "auto-tags|sea"]
