"""Activity, geography, firmographic and composition conditions on hand-built data."""

from __future__ import annotations

import tomllib

import pytest

from segment_rules.errors import Problem
from segment_rules.parse import parse_rules
from tests.segment_rules.helpers import days_ago, make_store, members, one, segments


@pytest.fixture
def store():
    people = {
        "1": {"name": "a"}, "2": {"name": "b"}, "3": {"name": "c"}, "4": {"name": "d"},
    }
    events = [
        ("1", "email_click", days_ago(1), None),
        ("1", "email_click", days_ago(10), None),
        ("1", "email_click", days_ago(30), None),      # exactly on the 30-day boundary
        ("1", "email_click", days_ago(31), None),
        ("1", "email_open", days_ago(-2), None),       # in the future: never counts
        ("2", "email_open", days_ago(200), None),
        ("2", "purchase", days_ago(20), 120.0),
        ("2", "purchase", days_ago(300), 400.0),
        ("3", "purchase", days_ago(400), 1000.0),
        ("3", "call", days_ago(5), None),
    ]
    with make_store(people, events=events) as s:
        yield s


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ('{ activity = "email_click", at_least = 3, within_days = 30 }', {"1"}),
        ('{ activity = "email_click", at_least = 4, within_days = 30 }', set()),
        ('{ activity = "email_click", at_least = 4 }', {"1"}),
        ('{ activity = "email_click", at_most = 0, within_days = 30 }', {"2", "3", "4"}),
        ('{ activity = "email_open", at_least = 1 }', {"2"}),
        ('{ activity = "purchase", none_within_days = 60 }', {"1", "3", "4"}),
        ('{ activity = ["call", "email_open"], at_least = 1, within_days = 7 }', {"3"}),
        ('{ activity = "any", at_least = 2, within_days = 365 }', {"1", "2"}),
        ('{ activity = "purchase", metric = "sum_amount", op = "gte", value = 500, within_days = 365 }',
         {"2"}),
        ('{ activity = "purchase", metric = "sum_amount", op = "lt", value = 100 }', {"1", "4"}),
        ('{ activity = "purchase", metric = "count", op = "between", value = [1, 1] }', {"3"}),
        ('{ activity = "purchase", metric = "days_since_last", op = "gt", value = 100 }', {"3"}),
        ('{ activity = "purchase", metric = "days_since_last", op = "lte", value = 20 }', {"2"}),
        ('{ activity = "purchase", metric = "days_since_last", op = "ne", value = 20 }',
         {"1", "3", "4"}),
    ],
)
def test_activity_conditions(store, condition: str, expected: set[str]) -> None:
    assert one(store, condition) == expected


def test_geography_uses_the_company_location_when_the_contact_has_none() -> None:
    berlin, potsdam, munich = (52.5200, 13.4050), (52.3906, 13.0645), (48.1351, 11.5820)
    people = {
        "in-city": {"_lat": berlin[0], "_lon": berlin[1], "_company_id": "far"},
        "potsdam": {"_lat": potsdam[0], "_lon": potsdam[1]},
        "via-company": {"_company_id": "near"},
        "nowhere": {"_company_id": None},
        "munich": {"_lat": munich[0], "_lon": munich[1]},
    }
    companies = {"near": {"_lat": 52.51, "_lon": 13.40}, "far": {"_lat": munich[0], "_lon": munich[1]}}
    with make_store(people, companies) as store:
        assert one(store, "{ near = [52.52, 13.405], within_km = 10 }") == {"in-city", "via-company"}
        # Potsdam is about 27 km from Berlin's centre: 17 miles is 27.4 km.
        assert one(store, "{ near = [52.52, 13.405], within_miles = 17 }") == {
            "in-city", "potsdam", "via-company"}
        assert one(store, "{ near = [52.52, 13.405], within_km = 26 }") == {"in-city", "via-company"}
        two_shops = "{ near = [[52.52, 13.405], [48.1351, 11.582]], within_km = 5 }"
        assert one(store, two_shops) == {"in-city", "via-company", "munich"}


def test_firmographic_conditions() -> None:
    people = {"1": {"_company_id": "acme"}, "2": {"_company_id": "tiny"}, "3": {"_company_id": None}}
    companies = {"acme": {"industry": "software", "employees": 900, "revenue": 5e7},
                 "tiny": {"industry": "retail", "employees": 3, "revenue": 1e5}}
    with make_store(people, companies) as store:
        assert one(store, '{ field = "company.employees", op = "gte", value = 250 }') == {"1"}
        assert one(store, '{ field = "company.industry", op = "ne", value = "software" }') == {"2", "3"}
        assert one(store, '{ field = "company.revenue", op = "between", value = [1e4, 1e6] }') == {"2"}


def test_composition_in_dependency_order() -> None:
    people = {str(i): {"age": i * 10} for i in range(1, 7)}
    segs = segments("""
        [[segment]]
        key = "adults-not-seniors"
        all = [{ in_segment = "adults" }, { not_in_segment = "seniors" }]
        [[segment]]
        key = "adults"
        all = [{ field = "age", op = "gte", value = 18 }]
        [[segment]]
        key = "seniors"
        all = [{ field = "age", op = "gte", value = 50 }]
    """)
    with make_store(people) as store:
        got = members(store, segs)
    assert got["adults-not-seniors"] == {"2", "3", "4"}


def test_unknown_reference_and_cycles_are_config_errors() -> None:
    problems: list[Problem] = []
    parse_rules(tomllib.loads("""
        [[segment]]
        key = "a"
        all = [{ in_segment = "b" }]
        [[segment]]
        key = "b"
        all = [{ in_segment = "c" }]
        [[segment]]
        key = "c"
        all = [{ not_in_segment = "a" }]
        [[segment]]
        key = "d"
        all = [{ in_segment = "adults" }]
        [[segment]]
        key = "adult"
        all = []
    """)["segment"], problems)
    messages = [str(p) for p in problems]
    assert any("cycle: a -> b -> c -> a" in m for m in messages), messages
    assert any("refers to unknown segment 'adults' (did you mean 'adult'?)" in m for m in messages)


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ('{ activity = "emial_click", at_least = 1 }', "did you mean 'email_click'?"),
        ('{ activity = "call" }', "needs exactly one of at_least, at_most"),
        ('{ activity = "call", at_least = 1, at_most = 3 }', "(got at_least, at_most)"),
        ('{ activity = "call", at_least = 0 }', "must be at least 1"),
        ('{ activity = "call", metric = "sum_amount", op = "gt", value = 1 }', "needs activity"),
        ('{ activity = "call", none_within_days = 5, within_days = 3 }', "is implied by"),
        ('{ activity = "call", metric = "count", op = "gt" }', "is required"),
        ('{ near = [95, 10], within_km = 3 }', "must be at most 90"),
        ('{ near = [50, 10] }', "needs exactly one of within_km or within_miles"),
        ('{ near = "Berlin", within_km = 3 }', "must be [latitude, longitude]"),
        ('{ in_segment = "x", not_in_segment = "y" }', "not both"),
    ],
)
def test_condition_validation(condition: str, expected: str) -> None:
    problems: list[Problem] = []
    parse_rules(tomllib.loads(f'[[segment]]\nkey = "s"\nall = [{condition}]\n')["segment"], problems)
    assert any(expected in str(p) for p in problems), problems
