"""The typed settings reader: a dataclass states keys, types, defaults and ranges once."""

from __future__ import annotations

import re
from dataclasses import dataclass

from segment_rules.errors import Problem
from segment_rules.tables import TableReader
from sync.settings import read_settings, setting


@dataclass(frozen=True)
class Example:
    name: str = setting(pattern=re.compile(r"^[a-z]+$"), hint="lower-case letters")
    share: float = setting(0.5, minimum=0.0, maximum=1.0)
    count: int = setting(3, minimum=1)
    flag: bool = True
    limit: float | None = None
    mode: str = setting("a", choices=("a", "b"))


def read(table: dict[str, object]) -> tuple[Example | None, list[str]]:
    problems: list[Problem] = []
    result = read_settings(TableReader(problems), table, Example, "example")
    return result, [f"{p.path}: {p.message}" for p in problems]


def test_defaults_come_from_the_dataclass() -> None:
    assert read({"name": "abc"}) == (Example("abc", 0.5, 3, True, None, "a"), [])


def test_values_are_read_with_their_types() -> None:
    result, problems = read({"name": "x", "share": 1, "count": 7, "flag": False,
                             "limit": 2.5, "mode": "b"})
    assert problems == []
    assert result == Example("x", 1.0, 7, False, 2.5, "b")
    assert isinstance(result.share, float)


def test_every_problem_is_reported_at_once_with_its_key_path() -> None:
    result, problems = read({"share": 1.5, "count": 0, "flag": "yes", "mode": "c",
                             "limt": 1, "name": "ABC"})
    assert result is None
    assert problems == [
        "example.limt: is not a known key",
        "example.name: 'ABC' is not valid",
        "example.share: must be at most 1 (got 1.5)",
        "example.count: must be at least 1 (got 0)",
        "example.flag: must be true or false (got a string)",
        "example.mode: must be one of 'a', 'b' (got 'c')",
    ]


def test_a_required_key_and_a_given_value() -> None:
    assert read({})[1] == ["example.name: is required"]
    problems: list[Problem] = []
    given = read_settings(TableReader(problems), {"count": 2}, Example, "example", name="set")
    assert given == Example("set", 0.5, 2)
    assert problems == []
