"""The condition-kind registry: every kind complete, and a new kind is one module.

``test_a_new_kind_needs_nothing_but_its_module`` registers a kind written here, in the
test, and uses it through parsing (with did-you-mean), evaluation, explain and
requirements: if any of those grew an isinstance ladder again, it would fail.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pytest

from segment_rules import requirements
from segment_rules.compile import Compiler
from segment_rules.errors import Problem
from segment_rules.explain import explain_contacts, render
from segment_rules.kinds import KINDS, ConditionKind, Needs, kind_for
from segment_rules.kinds import _table as registry_table
from segment_rules.kinds.base import is_missing
from segment_rules.parse import leaves, parse_rules
from segment_rules.schema import Group, PropertyCondition
from segment_rules.sources import adapt
from segment_rules.sql import Predicate, Sources
from segment_rules.tables import TableReader
from tests.segment_rules.helpers import NOW, days_ago, make_store, members, segments

ROLLUP = """
[[segment]]
key = "opened"
all = [{ activity = "email_open", at_least = 1, within_days = 30 }]
"""
EVERY_KIND = """
[[segment]]
key = "a"
all = [
  { field = "age", op = "gte", value = 18 },
  { activity = "call", at_least = 1 },
  { near = [52.52, 13.405], within_km = 10 },
]
[[segment]]
key = "b"
any = [{ in_segment = "a" }]
[[segment]]
key = "rfm"
kind = "rfm"
"""


def test_every_registered_kind_is_complete() -> None:
    for name, kind in KINDS.items():
        assert kind.name == name
        assert set(kind.markers) | set(kind.hints) <= set(kind.keys), name
    # Roll-up conditions are not written: a CRM's activity sources make them.
    rollups = adapt(segments(ROLLUP), {"email_open": "rollup"}, "a CRM").segments
    seen = {kind_for(leaf).name for s in [*segments(EVERY_KIND), *rollups]
            for leaf in leaves(s.rule)}
    assert seen == set(KINDS)


def test_kind_for_refuses_groups_and_strangers() -> None:
    with pytest.raises(TypeError, match="Group is not a registered condition kind"):
        kind_for(Group("all", ()))
    with pytest.raises(TypeError, match="str is not a registered condition kind"):
        kind_for("age > 3")


def test_an_incomplete_kind_fails_when_made_not_in_explain() -> None:
    class Half(ConditionKind[PropertyCondition]):
        name = "half"
        node = PropertyCondition

        def predicate(self, node: PropertyCondition, compiler: Compiler) -> Predicate:
            return Predicate("TRUE")

    with pytest.raises(TypeError, match="abstract"):
        Half()  # type: ignore[abstract]


def test_the_registry_refuses_a_kind_twice_or_one_without_a_parser() -> None:
    kind = KINDS["property"]
    with pytest.raises(ValueError, match="registered twice"):
        registry_table([kind, kind])

    class Unparsed(type(KINDS["rfm"])):  # type: ignore[misc]
        name = "unparsed"
        markers = ("unparsed",)
        keys = ("unparsed",)

    with pytest.raises(ValueError, match="claims tables but has no parse"):
        registry_table([Unparsed()])


# -- a kind written in this module ---------------------------------------------------------


@dataclass(frozen=True)
class EventTypes:
    """At least ``count`` different event types."""

    count: int
    path: str = dataclasses.field(default="", compare=False)


@dataclass
class TypeCounts:
    alias: str = "t"
    table: str = "segment_type_counts"

    def select(self, sources: Sources, now: dt.datetime) -> Predicate:
        return Predicate(f"SELECT _cid AS cid, count(DISTINCT type) AS n FROM {sources.events} "
                         "WHERE ts <= ? GROUP BY _cid", (now,))


class EventTypesKind(ConditionKind[EventTypes]):
    name = "event_types"
    node = EventTypes
    markers = ("event_types_at_least",)
    keys = ("event_types_at_least",)

    def parse(self, reader: TableReader, table: Mapping[str, Any], path: str) -> EventTypes | None:
        reader.check_keys(table, self.keys, path)
        count = reader.integer(table, "event_types_at_least", path, minimum=1, maximum=20)
        return None if count is None else EventTypes(count, path)

    def predicate(self, node: EventTypes, compiler: Compiler) -> Predicate:
        value = self.value(node, compiler)
        return Predicate(f"({value.sql} >= ?)", (*value.params, node.count))

    def value(self, node: EventTypes, compiler: Compiler) -> Predicate:
        return Predicate(f"coalesce({compiler.join(TypeCounts()).alias}.n, 0)")

    def describe(self, node: EventTypes) -> str:
        return f"at least {node.count} kinds of activity"

    def shown(self, node: EventTypes, raw: object) -> str:
        return "0" if is_missing(raw) else str(raw)

    def needs(self, node: EventTypes) -> Needs:
        return Needs(streams=frozenset({"purchases", "activities"}))


def test_a_new_kind_needs_nothing_but_its_module(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(KINDS, "event_types", EventTypesKind())
    problems: list[Problem] = []
    parse_rules([{"key": "s", "all": [{"event_types_at_least": 0}, {"event_typs_at_least": 2}]}],
                problems)
    assert [str(p) for p in problems] == [
        "segment[s].all[0].event_types_at_least: must be at least 1 (got 0)",
        "segment[s].all[1].event_typs_at_least: is not a known key "
        "(did you mean 'event_types_at_least'?)",
    ]

    rules = segments("""
        [[segment]]
        key = "varied"
        all = [{ event_types_at_least = 2 }, { field = "city", op = "eq", value = "Berlin" }]
    """)
    assert requirements(rules) == requirements(segments("""
        [[segment]]
        key = "x"
        all = [{ activity = "any", at_least = 1 }, { field = "city", op = "eq", value = "Berlin" }]
    """))
    people = {"1": {"city": "Berlin"}, "2": {"city": "Berlin"}, "3": {"city": "Paris"}}
    events = [("1", "call", days_ago(3), None), ("1", "purchase", days_ago(4), 20.0),
              ("2", "call", days_ago(3), None), ("3", "call", days_ago(1), None),
              ("3", "meeting", days_ago(2), None)]
    with make_store(people, events=events) as store:
        assert members(store, rules)["varied"] == {"1"}
        text = render("2", explain_contacts(store.conn, rules, ["2"], NOW)["2"])
    assert "✗ at least 2 kinds of activity  (actual: 1)" in text
    assert '✓ city is "Berlin"  (actual: "Berlin")' in text
