"""Every trait kind on hand-checked literals, ties and empty inputs included."""

from __future__ import annotations

import datetime as dt
import math
import tomllib

import pandas as pd
import pytest

from connectors.base import Page
from segment_rules.errors import Problem
from segment_rules.generators import RFM_TIER_NAMES
from segment_rules.traits import Trait, compute_traits, parse_traits
from sync.store import Store
from tests.segment_rules.helpers import NOW, canonical, days_ago, members, segments
from tests.storeview import connection, sql


def store_with(people: dict[str, dict[str, object]],
               events: list[tuple[str, str, dt.datetime, float | None, str | None]],
               companies: dict[str, dict[str, object]] | None = None) -> Store:
    """``events``: (contact, type, when, amount, category)."""
    store = Store.in_memory()
    fields = sorted({k for p in people.values() for k in p if not k.startswith("_")})
    store.keep_properties("contacts", fields)
    rows = [{"_crm_id": i, "_modified_at": NOW, "_kind": "contact", **p} for i, p in people.items()]
    store.write_page("contacts", Page(canonical("contacts", pd.DataFrame(rows))), fields)
    if companies:
        frame = pd.DataFrame([{"_crm_id": i, "_modified_at": NOW, **c}
                              for i, c in companies.items()])
        store.write_page("companies", Page(canonical("companies", frame)), [])
    store.keep_properties("events", ["category"])
    for stream, purchases in (("purchases", True), ("activities", False)):
        chosen = [e for e in events if (e[1] == "purchase") == purchases]
        if chosen:
            store.write_page(stream, Page(pd.DataFrame({
                "_crm_id": [f"{stream}{i}" for i, _ in enumerate(chosen)],
                "_contact_id": [e[0] for e in chosen], "type": [e[1] for e in chosen],
                "ts": [e[2] for e in chosen], "amount": [e[3] for e in chosen],
                "_modified_at": [NOW] * len(chosen), "category": [e[4] for e in chosen]})),
                ["category"])
    return store


def values(store: Store, *traits: Trait) -> dict[str, dict[str, str | None]]:
    compute_traits(connection(store), traits, NOW)
    rows = sql(store, "SELECT c._crm_id, t.* FROM trait_values t JOIN contacts c "
                      "ON c._cid = t.cid ORDER BY 1").fetchall()
    keys = [t.key for t in traits]
    return {str(r[0]): dict(zip(keys, r[2:], strict=True)) for r in rows}


def column(result: dict[str, dict[str, str | None]], key: str) -> dict[str, str | None]:
    return {person: found[key] for person, found in result.items()}


def test_dates_counts_and_sums() -> None:
    events = [("a", "purchase", days_ago(10), 12.5, None), ("a", "purchase", days_ago(40), 7.25, None),
              ("a", "purchase", days_ago(-2), 100.0, None),  # in the future: never counts
              ("a", "call", days_ago(1), None, None), ("b", "call", days_ago(100), None, None)]
    with store_with({"a": {}, "b": {}, "c": {}}, events) as store:
        found = values(
            store,
            Trait("last_purchase", "L", "last_date", activity=("purchase",)),
            Trait("last_any", "A", "last_date"),
            Trait("orders_30", "O", "count", activity=("purchase",), within_days=30),
            Trait("calls", "C", "count", activity=("call",)),
            Trait("spend", "S", "sum", activity=("purchase",), within_days=365),
        )
    assert found["a"] == {"last_purchase": "2026-05-22", "last_any": "2026-05-31",
                          "orders_30": "1", "calls": "1", "spend": "19.75"}
    assert found["b"] == {"last_purchase": None, "last_any": "2026-02-21", "orders_30": "0",
                          "calls": "1", "spend": "0.00"}
    assert found["c"] == {"last_purchase": None, "last_any": None, "orders_30": "0",
                          "calls": "0", "spend": "0.00"}


def test_nps_buckets() -> None:
    scores = {"p10": "10", "p9": "9", "m85": "8.5", "m7": "7", "d6": "6", "d0": "0",
              "none": None, "junk": "abc"}
    with store_with({k: {"nps_score": v} for k, v in scores.items()}, []) as store:
        found = column(values(store, Trait("nps", "N", "nps_bucket")), "nps")
    assert found == {"p10": "promoter", "p9": "promoter", "m85": "passive", "m7": "passive",
                     "d6": "detractor", "d0": "detractor", "none": None, "junk": None}


def haversine(a: tuple[float, float], b: tuple[float, float]) -> float:
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    h = (math.sin((lat2 - lat1) / 2) ** 2
         + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2)
    return 2 * 6371.0088 * math.asin(math.sqrt(h))


def test_nearest_place_by_the_contacts_or_the_companys_location() -> None:
    text = """
[[trait]]
key = "shop"
kind = "nearest"
places = [ { name = "Berlin Mitte", at = [52.5200, 13.4050] }, { name = "Hamburg", at = [53.5511, 9.9937] },
           { name = "Hamburg too", at = [53.5511, 9.9937] } ]
[[trait]]
key = "shop_km"
kind = "nearest"
value = "km"
places = [ { name = "Berlin Mitte", at = [52.5200, 13.4050] }, { name = "Hamburg", at = [53.5511, 9.9937] } ]
"""
    problems: list[Problem] = []
    traits = parse_traits(tomllib.loads(text)["trait"], problems)
    assert problems == []
    people = {"potsdam": {"_lat": 52.39, "_lon": 13.06},
              "at-hamburg-co": {"_company_id": "co1"}, "nowhere": {}}
    with store_with(people, [], {"co1": {"_lat": 53.55, "_lon": 10.0}}) as store:
        found = values(store, *traits)
    assert found["potsdam"]["shop"] == "Berlin Mitte"
    assert found["potsdam"]["shop_km"] == f"{haversine((52.39, 13.06), (52.52, 13.405)):.1f}"
    assert found["at-hamburg-co"]["shop"] == "Hamburg"  # the first of two equal places
    assert found["nowhere"] == {"shop": None, "shop_km": None}


def test_top_value_ties_go_to_the_latest_then_alphabetical() -> None:
    events = [("a", "purchase", days_ago(30), 1, "pizza"), ("a", "purchase", days_ago(20), 1, "pizza"),
              ("a", "purchase", days_ago(25), 1, "pasta"), ("a", "purchase", days_ago(5), 1, "pasta"),
              ("a", "purchase", days_ago(1), 1, None),  # no value: ignored
              ("b", "purchase", days_ago(3), 1, "soup"), ("b", "purchase", days_ago(3), 1, "salad"),
              ("c", "purchase", days_ago(800), 1, "old")]  # outside the window
    with store_with({"a": {}, "b": {}, "c": {}, "d": {}}, events) as store:
        found = column(values(store, Trait("top", "T", "top_value", activity=("purchase",),
                                           of="category", within_days=730)), "top")
    assert found == {"a": "pasta", "b": "salad", "c": None, "d": None}


def test_recommendation_by_co_occurrence_with_its_tie_breaks() -> None:
    bought = {"x": ["a", "b"], "y": ["a", "c"], "z": ["b", "c"], "w": ["a"], "v": ["d"],
              "w2": ["a"]}
    events = [(person, "purchase", days_ago(10 + i), 1.0, item)
              for person, items in bought.items() for i, item in enumerate(items)]
    with store_with({**{p: {} for p in bought}, "u": {}}, events) as store:
        found = column(values(store, Trait("next", "N", "recommend", of="category")), "next")
    # co(a,b) = co(a,c) = co(b,c) = 1; buyers a 4, b 2, c 2.
    assert found == {
        "x": "c", "y": "b", "z": "a",  # score 2 each
        "w": "b", "w2": "b",           # b and c score 1, same buyers: alphabetical
        "v": None,                     # d was bought with nothing: every score 0
        "u": None,                     # bought nothing
    }


def test_rfm_tier_is_the_rfm_generators_tier() -> None:
    events = []
    for index in range(25):  # spread recency, frequency and value over 25 buyers
        for n in range(1 + index % 5):
            events.append((f"p{index}", "purchase", days_ago(5 + index * 13 + n), 10.0 * (index % 7 + 1),
                           None))
    people = {f"p{i}": {} for i in range(25)} | {"none": {}}
    with store_with(people, events) as store:
        found = column(values(store, Trait("tier", "T", "rfm_tier", window_days=730)), "tier")
        generated = segments('[[segment]]\nkey = "r"\nkind = "rfm"\nexclude_opted_out = false\n')
        tiers = members(store, generated)
    expected = {person: key.removeprefix("r-") for key, people in tiers.items() for person in people}
    assert found == {p: expected.get(p) for p in people}
    assert set(found.values()) - {None} <= set(RFM_TIER_NAMES)
    assert found["none"] is None


@pytest.mark.parametrize(("text", "message"), [
    ('[[trait]]\nkey = "Bad Key"\nkind = "count"\nactivity = "call"', "is not valid"),
    ('[[trait]]\nkey = "x"\nkind = "cuont"\nactivity = "call"', "must be one of"),
    ('[[trait]]\nkey = "x"\nkind = "sum"\nactivity = "call"', 'use activity = "purchase"'),
    ('[[trait]]\nkey = "x"\nkind = "top_value"\nactivity = "purchase"', "is required"),
    ('[[trait]]\nkey = "x"\nkind = "count"\nactivity = "call"\nwindow_days = 3',
     "is not a known key"),
    ('[[trait]]\nkey = "x"\nkind = "nearest"\nplaces = [{ name = "A", at = [91, 0] }]',
     "must be at most 90"),
    ('[[trait]]\nkey = "x"\nkind = "count"\nactivity = "call"\n'
     '[[trait]]\nkey = "x"\nkind = "count"\nactivity = "call"', "is used by another trait"),
])
def test_bad_traits_are_reported_with_their_key_path(text: str, message: str) -> None:
    problems: list[Problem] = []
    parse_traits(tomllib.loads(text)["trait"], problems)
    assert any(message in p.message for p in problems), problems
    assert all(p.path.startswith("trait[") for p in problems)
