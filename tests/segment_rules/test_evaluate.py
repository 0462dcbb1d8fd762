"""Vectorised SQL evaluation: known answers per operator, and equality with the oracle."""

from __future__ import annotations

import datetime as dt
import tomllib
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.base import Page
from segment_rules import evaluate, parse_segments
from segment_rules.errors import Problem, RuleError
from segment_rules.schema import (
    ActivityCondition,
    Group,
    NearCondition,
    PropertyCondition,
    Segment,
    SegmentRef,
)
from sync.store import Store, contact_key
from tests.segment_rules import helpers
from tests.segment_rules.reference import Events, World, members

NOW = dt.datetime(2026, 6, 1, 12, 0)

PEOPLE: dict[str, dict[str, str | None]] = {
    "1": {"city": "Berlin", "age": "34", "tags": "golf;travel", "seen": "2026-05-30T08:00:00Z",
          "vip": "true", "code": "10115"},
    "2": {"city": "Paris", "age": "17", "tags": "wine", "seen": "2025-01-01T00:00:00Z",
          "vip": "false", "code": "75001"},
    "3": {"city": None, "age": "unknown", "tags": None, "seen": "not a date", "vip": None,
          "code": ""},
    "4": {"city": "Berlin", "age": "40.5", "tags": "golf ; wine", "seen": "2026-06-02T00:00:00Z",
          "vip": "yes", "code": "10999"},
}
COMPANIES = {"c1": {"industry": "software", "employees": "250"},
             "c2": {"industry": "retail", "employees": "12"}}
COMPANY_OF: dict[str, str | None] = {"1": "c1", "2": "c2", "3": None, "4": "c9"}


def load(store: Store, people: dict[str, dict[str, str | None]],
         companies: dict[str, dict[str, str | None]], company_of: dict[str, str | None],
         opted_out: set[str]) -> None:
    fields = sorted({k for row in people.values() for k in row})
    store.keep_properties("contacts", fields)
    frame = pd.DataFrame([
        {"_crm_id": i, "_modified_at": NOW, "_company_id": company_of.get(i),
         "_opted_out": i in opted_out, "_kind": "contact", **row}
        for i, row in people.items()
    ])
    store.write_page("contacts", Page(helpers.canonical("contacts", frame), None), fields)
    company_fields = sorted({k for row in companies.values() for k in row})
    store.keep_properties("companies", company_fields)
    if companies:
        cframe = pd.DataFrame([{"_crm_id": i, "_modified_at": NOW, **row}
                               for i, row in companies.items()])
        store.write_page("companies", Page(helpers.canonical("companies", cframe), None),
                         company_fields)


@pytest.fixture
def store(tmp_path: Path):
    with Store.open(tmp_path / "s.duckdb") as s:
        load(s, PEOPLE, COMPANIES, COMPANY_OF, opted_out={"2"})
        yield s


def segment(condition: str, exclude_opted_out: bool = False) -> Segment:
    problems: list[Problem] = []
    text = (f'[[segment]]\nkey = "s"\nexclude_opted_out = {str(exclude_opted_out).lower()}\n'
            f"all = [{condition}]\n")
    (seg,) = parse_segments(tomllib.loads(text)["segment"], problems)
    assert problems == []
    return seg


def evaluated(store: Store, seg: Segment) -> set[str]:
    evaluate(store.conn, [seg], {seg.key: 1}, NOW)
    keys = {contact_key(i): i for i in PEOPLE}
    return {keys[cid] for (cid,) in store.conn.execute("SELECT cid FROM desired").fetchall()}


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ('{ field = "city", op = "eq", value = "Berlin" }', {"1", "4"}),
        ('{ field = "city", op = "ne", value = "Berlin" }', {"2", "3"}),
        ('{ field = "city", op = "in", value = ["Paris", "Rome"] }', {"2"}),
        ('{ field = "city", op = "not_in", value = ["Paris"] }', {"1", "3", "4"}),
        ('{ field = "age", op = "gt", value = 34 }', {"4"}),
        ('{ field = "age", op = "gte", value = 34 }', {"1", "4"}),
        ('{ field = "age", op = "lt", value = 18 }', {"2"}),
        ('{ field = "age", op = "lte", value = 40.5 }', {"1", "2", "4"}),
        ('{ field = "age", op = "between", value = [17, 34] }', {"1", "2"}),
        ('{ field = "age", op = "eq", value = "34" }', {"1"}),
        ('{ field = "seen", op = "within_last_days", value = 7 }', {"1"}),
        ('{ field = "seen", op = "before", value = 2026-01-01 }', {"2"}),
        ('{ field = "seen", op = "after", value = 2026-05-30T07:59:59Z }', {"1", "4"}),
        ('{ field = "seen", op = "between", value = [2024-01-01, 2026-05-31] }', {"1", "2"}),
        ('{ field = "tags", op = "contains", value = "golf" }', {"1", "4"}),
        ('{ field = "tags", op = "contains", value = ["golf", "wine"] }', {"4"}),
        ('{ field = "tags", op = "contains_any", value = ["wine", "travel"] }', {"1", "2", "4"}),
        ('{ field = "code", op = "starts_with", value = ["101", "750"] }', {"1", "2"}),
        ('{ field = "code", op = "ends_with", value = "99" }', {"4"}),
        ('{ field = "vip", op = "eq", value = true }', {"1", "4"}),
        ('{ field = "vip", op = "eq", value = false }', {"2"}),
        ('{ field = "code", op = "is_set" }', {"1", "2", "4"}),
        ('{ field = "city", op = "is_not_set" }', {"3"}),
        ('{ field = "company.industry", op = "eq", value = "software" }', {"1"}),
        ('{ field = "company.employees", op = "lt", value = 100 }', {"2"}),
        ('{ field = "company.industry", op = "is_not_set" }', {"3", "4"}),
        ('{ not = { field = "age", op = "gte", value = 18 } }', {"2", "3"}),
        ('{ any = [{ field = "city", op = "eq", value = "Paris" }, '
         '{ field = "age", op = "gt", value = 40 }] }', {"2", "4"}),
    ],
)
def test_operator_known_answers(store: Store, condition: str, expected: set[str]) -> None:
    assert evaluated(store, segment(condition)) == expected


def test_opted_out_contacts_are_excluded_by_default(store: Store) -> None:
    everyone = '{ field = "age", op = "is_set" }'
    assert evaluated(store, segment(everyone, exclude_opted_out=True)) == {"1", "3", "4"}
    assert evaluated(store, segment(everyone)) == {"1", "2", "3", "4"}


def test_field_missing_from_the_store_is_a_clear_rule_error(store: Store) -> None:
    with pytest.raises(RuleError, match="field 'shoe_size' is not in the pulled CRM data"):
        evaluated(store, segment('{ field = "shoe_size", op = "gt", value = 40 }'))


# -- property-based: SQL == oracle ---------------------------------------------------------

TEXT_VALUES = [None, "", "Berlin", "10", "25.5", "-3", "2025-01-01", "2026-05-31T12:00:00Z",
               "golf;travel", "true", "no", "abc"]
FIELDS = ["a", "b", "c"]
ORDERED = [10, 25.5, -3, dt.date(2025, 1, 1), dt.date(2026, 5, 31)]
SCALARS = ["Berlin", "10", "abc", 10, 25.5, -3, True, False, dt.date(2025, 1, 1),
           dt.datetime(2026, 5, 31, 12, tzinfo=dt.UTC)]
WORDS = ["golf", "travel", "Ber", "10", "c", "1"]
OPS = ["eq", "ne", "in", "not_in", "gt", "gte", "lt", "lte", "between", "before", "after",
       "within_last_days", "contains", "contains_any", "starts_with", "ends_with", "is_set",
       "is_not_set"]


@st.composite
def leaves(draw: st.DrawFn) -> PropertyCondition:
    field = draw(st.sampled_from([*FIELDS, "company.a"]))
    op = draw(st.sampled_from(OPS))
    if op in ("is_set", "is_not_set"):
        return PropertyCondition(field, op, None)
    if op == "within_last_days":
        return PropertyCondition(field, op, draw(st.sampled_from([0, 1, 30, 600])))
    if op in ("contains", "contains_any", "starts_with", "ends_with"):
        words = draw(st.lists(st.sampled_from(WORDS), min_size=1, max_size=2))
        single = len(words) == 1 and op != "contains_any"
        return PropertyCondition(field, op, words[0] if single else tuple(words))
    if op in ("before", "after"):
        return PropertyCondition(field, op, draw(st.sampled_from(ORDERED[3:])))
    if op == "between":
        numbers = draw(st.booleans())
        pool = ORDERED[:3] if numbers else ORDERED[3:]
        low, high = sorted(draw(st.lists(st.sampled_from(pool), min_size=2, max_size=2)))
        return PropertyCondition(field, op, (low, high))
    if op in ("gt", "gte", "lt", "lte"):
        return PropertyCondition(field, op, draw(st.sampled_from(ORDERED)))
    if op in ("in", "not_in"):
        pool = ["Berlin", "10", "abc"] if draw(st.booleans()) else [10, -3, 25.5]
        return PropertyCondition(field, op, tuple(draw(st.lists(st.sampled_from(pool),
                                                                min_size=1, max_size=2))))
    return PropertyCondition(field, op, draw(st.sampled_from(SCALARS)))


@st.composite
def activity_leaves(draw: st.DrawFn) -> ActivityCondition:
    types = tuple(sorted(set(draw(st.lists(st.sampled_from(EVENT_TYPES), max_size=2)))))
    metric = draw(st.sampled_from(["count", "count", "sum_amount", "days_since_last"]))
    if metric == "sum_amount":
        types = ("purchase",)
    within = None if metric == "days_since_last" else draw(st.sampled_from([None, 1, 30, 365]))
    op = draw(st.sampled_from(["eq", "ne", "gt", "gte", "lt", "lte", "between"]))
    value: float | tuple[float, float] = (
        (0.0, 2.0) if op == "between" else float(draw(st.sampled_from([0, 1, 2, 30, 100]))))
    return ActivityCondition(types, metric, op, value, within)  # type: ignore[arg-type]


near_leaves = st.builds(
    lambda points, km: NearCondition(tuple(points), km),
    st.lists(st.sampled_from([(52.52, 13.405), (48.14, 11.58)]), min_size=1, max_size=2),
    st.sampled_from([1.0, 10.0, 600.0]),
)

trees = st.recursive(
    st.one_of(leaves(), leaves(), activity_leaves(), near_leaves),
    lambda children: st.one_of(
        st.builds(lambda c: Group("all", tuple(c)), st.lists(children, min_size=0, max_size=3)),
        st.builds(lambda c: Group("any", tuple(c)), st.lists(children, min_size=1, max_size=3)),
        st.builds(lambda c: Group("not", (c,)), children),
    ),
    max_leaves=8,
)

rows = st.fixed_dictionaries({f: st.sampled_from(TEXT_VALUES) for f in FIELDS})
EVENT_TYPES = ["email_open", "purchase", "call"]
events_of = st.lists(
    st.tuples(st.sampled_from(EVENT_TYPES), st.sampled_from([-1, 0, 1, 29, 30, 31, 400]),
              st.sampled_from([None, 5.0, 120.0])),
    max_size=4,
)
places = st.sampled_from([None, (52.50, 13.40), (52.0, 13.0), (48.15, 11.6)])


@settings(max_examples=150, deadline=None)
@given(
    rules=st.lists(trees, min_size=1, max_size=4),
    links=st.lists(st.tuples(st.booleans(), st.booleans()), min_size=4, max_size=4),
    people=st.lists(st.tuples(rows, events_of, places), min_size=4, max_size=24),
    company=st.sampled_from(TEXT_VALUES),
    company_place=places,
    opted=st.sets(st.integers(0, 23)),
)
def test_sql_matches_the_reference_evaluator(
    rules: list, links: list, people: list, company: str | None,
    company_place: tuple[float, float] | None, opted: set[int],
) -> None:
    data = {str(i): {f: row.get(f) for f in FIELDS} for i, (row, _, _) in enumerate(people)}
    events: Events = {
        str(i): [(kind, helpers.days_ago(days), amount if kind == "purchase" else None)
                 for kind, days, amount in evs]
        for i, (_, evs, _) in enumerate(people)
    }
    points = {str(i): place for i, (_, _, place) in enumerate(people)}
    company_of: dict[str, str | None] = {i: ("k" if int(i) % 2 else None) for i in data}
    opted_out = {str(i) for i in opted if str(i) in data}
    segments: list[Segment] = []
    for i, rule in enumerate(rules):
        use_link, negate = links[i]
        if i and use_link:
            rule = Group("all", (rule, SegmentRef(f"s{i - 1}", negate)))
        segments.append(Segment(f"s{i}", f"S{i}", rule, exclude_opted_out=i % 2 == 0))
    store_people = {
        i: {**row, "_company_id": company_of[i], "_opted_out": i in opted_out,
            "_lat": points[i][0] if points[i] else None, "_lon": points[i][1] if points[i] else None}
        for i, row in data.items()
    }
    company_row: dict[str, object] = {"a": company}
    if company_place:
        company_row.update({"_lat": company_place[0], "_lon": company_place[1]})
    flat = [(cid, kind, ts, amount) for cid, evs in events.items() for kind, ts, amount in evs]
    with helpers.make_store(store_people, {"k": company_row}, flat) as store:
        got = helpers.members(store, segments, now=helpers.NOW)
    world = World({s.key: s for s in segments}, events, points, {"k": company_place}, opted_out)
    for seg in segments:
        expected = members(seg, data, {"k": {"a": company}}, opted_out, company_of, helpers.NOW,
                           world)
        assert got[seg.key] == expected, seg.rule
