"""Validation: every problem reported at once, located by key path, with hints."""

from __future__ import annotations

import datetime as dt
import tomllib

import pytest

from segment_rules.errors import Problem
from segment_rules.parse import parse_segments
from segment_rules.schema import Group, PropertyCondition


def parse(text: str) -> tuple[list, list[Problem]]:
    problems: list[Problem] = []
    segments = parse_segments(tomllib.loads(text).get("segment"), problems)
    return segments, problems


def messages(text: str) -> list[str]:
    return [str(p) for p in parse(text)[1]]


def test_valid_segment_builds_the_rule_tree() -> None:
    segments, problems = parse("""
        [[segment]]
        key = "vip"
        name = "VIPs"
        all = [
          { field = "age", op = "between", value = [25, 40] },
          { any = [{ field = "city", op = "eq", value = "Berlin" },
                   { not = { field = "company.industry", op = "in", value = ["retail"] } }] },
        ]
    """)
    assert problems == []
    (segment,) = segments
    assert segment.key == "vip"
    assert segment.mode == "mirror"
    assert segment.exclude_opted_out is True
    assert isinstance(segment.rule, Group)
    age, nested = segment.rule.children
    assert age == PropertyCondition("age", "between", (25, 40))
    assert isinstance(nested, Group)
    assert nested.kind == "any"
    negated = nested.children[1]
    assert isinstance(negated, Group)
    assert negated.kind == "not"
    assert negated.children[0] == PropertyCondition("company.industry", "in", ("retail",))


def test_typo_wrong_type_and_unknown_operator_are_all_reported() -> None:
    found = messages("""
        [[segment]]
        key = "a"
        nmae = "Typo"
        all = [
          { field = "age", op = "gte", value = "forty" },
          { field = "city", op = "equals", value = "Berlin" },
        ]
    """)
    assert len(found) == 3, found
    assert "segment[a].nmae: is not a known key (did you mean 'name'?)" in found
    assert any(m.startswith("segment[a].all[0].value: 'gte' compares") for m in found)
    assert any(m.startswith("segment[a].all[1].op: must be one of") and "equals" in m
               for m in found)


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ('{ field = "a", op = "in", value = [] }', "needs a non-empty array"),
        ('{ field = "a", op = "in", value = [1, "x"] }', "mixes values of different types"),
        ('{ field = "a", op = "between", value = [5, 1] }', "low end 5 is above high end 1"),
        ('{ field = "a", op = "between", value = [1] }', "needs exactly 2 values"),
        ('{ field = "a", op = "is_set", value = 1 }', "takes no value"),
        ('{ field = "a", op = "eq" }', "is required for 'eq'"),
        ('{ field = "a", op = "within_last_days", value = -3 }', "must be at least 0"),
        ('{ field = "a", op = "within_last_days", value = 99999999 }', "must be at most 36500"),
        ('{ field = "a", op = "contains", value = 3 }', "'contains' compares text values"),
        ('{ field = "a", op = "before", value = 3 }', "compares date or datetime"),
        ('{ field = "a b", op = "eq", value = 1 }', "'a b' is not valid"),
        ('{ field = "_cid", op = "eq", value = 1 }', "'_cid' is not valid"),
        ('{ field = "a", op = "gt", value = 1e400 }', "finite number"),
        ('{ fild = "a", op = "eq", value = 1 }', "did you mean 'field'?"),
        ("{}", "is an empty condition"),
        ('{ any = [] }', "must not be empty"),
        ('{ not = 3 }', "must be a condition table"),
        ('"age > 3"', "must be a table"),
    ],
)
def test_bad_conditions_name_the_problem(condition: str, expected: str) -> None:
    found = messages(f'[[segment]]\nkey = "s"\nall = [{condition}]\n')
    assert any(expected in m for m in found), found
    assert all(m.startswith("segment[s]") for m in found), found


def test_segment_level_problems() -> None:
    found = messages("""
        [[segment]]
        key = "Bad Key"
        all = []
        [[segment]]
        key = "dup"
        all = []
        [[segment]]
        key = "dup"
        all = []
        [[segment]]
        key = "norule"
        mode = "sometimes"
    """)
    assert any("segment[0].key: 'Bad Key' is not valid" in m for m in found), found
    assert any("segment[dup].key: 'dup' is already used" in m for m in found), found
    assert any("segment[norule]: has no rule" in m for m in found), found
    assert any("segment[norule].mode: must be one of 'add_only', 'mirror'" in m for m in found)


def test_literal_types_are_kept_for_comparison() -> None:
    (segment,), problems = parse("""
        [[segment]]
        key = "d"
        all = [
          { field = "created", op = "after", value = 2025-01-01 },
          { field = "seen", op = "before", value = 2025-01-01T10:00:00Z },
          { field = "vip", op = "eq", value = true },
        ]
    """)
    assert problems == []
    values = [c.value for c in segment.rule.children]  # type: ignore[union-attr]
    assert values[0] == dt.date(2025, 1, 1)
    assert values[1] == dt.datetime(2025, 1, 1, 10, tzinfo=dt.UTC)
    assert values[2] is True


def test_deep_nesting_is_rejected_not_a_crash() -> None:
    condition = '{ field = "a", op = "is_set" }'
    for _ in range(40):
        condition = f"{{ not = {condition} }}"
    found = messages(f'[[segment]]\nkey = "s"\nall = [{condition}]\n')
    assert any("nest deeper than" in m for m in found)
