"""Traits: per-contact values ("segment of one") computed from the store in SQL.

A segment says who is in a group; a trait says something about one person: the date of
their last purchase, their RFM tier, the shop nearest to them, the category they buy
most, the one they are most likely to want next. ``[[trait]]`` tables define them;
:func:`compute_traits` evaluates all of them for every contact in one statement per
kind (no Python loop over contacts) into one wide temp table, ``trait_values(cid,
<key>...)``, whose text values are exactly what is written to the CRM (empty = NULL).

Precise definitions (users and tests rely on them):

* windows are relative to the evaluation's "now"; events after it never count;
* ``last_date``: ``YYYY-MM-DD`` (UTC) of the latest event of the types, within what was
  pulled (``activity_lookback_days``); empty without one;
* ``count``: events in the window, ``"0"`` without any; ``sum``: purchase amounts in the
  window with two decimals, ``"0.00"`` without any;
* ``rfm_tier``: the RFM generator's tier key (same quintiles, same window, same tier
  order); empty for someone who bought nothing in the window;
* ``nps_bucket``: ``promoter`` (score >= 9), ``passive`` (7 to < 9), ``detractor``
  (< 7), empty without a numeric score;
* ``nearest``: the nearest place's name, or (``value = "km"``) the distance to it with
  one decimal, from the contact's coordinates or else its company's, great-circle on a
  sphere of radius 6371.0088 km; empty without coordinates;
* ``top_value``: the most frequent value of an event attribute in the window (events
  without a value ignored); ties go to the value whose latest event is latest, then
  alphabetically by code point;
* ``recommend``: item-to-item co-occurrence over every contact's purchases in the
  look-back: for each value c the contact never bought, score(c) = sum over values b
  they bought of the number of contacts who bought both b and c; the highest score
  wins, ties by more buyers of c, then alphabetically; empty when the contact bought
  nothing or every score is 0. Contacts with the same set of bought values get the same
  answer, so the scores are computed once per distinct set, not per contact.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import duckdb

from segment_rules.errors import Problem, did_you_mean
from segment_rules.generators import RFM_TIERS
from segment_rules.kinds.activity import ACTIVITY_TYPES
from segment_rules.kinds.near import EARTH_DIAMETER_KM
from segment_rules.kinds.rfm import RfmScores
from segment_rules.sql import COMPANY_ALIAS, CONTACT_ALIAS, Predicate, Sources, quote_ident
from segment_rules.tables import TableReader, describe, key_path

__all__ = [
    "TRAIT_KINDS",
    "TRAIT_TABLE",
    "Place",
    "Trait",
    "TraitKind",
    "compute_traits",
    "parse_traits",
    "trait_needs",
]

TraitKind = Literal["last_date", "count", "sum", "rfm_tier", "nps_bucket", "nearest",
                    "top_value", "recommend"]
TRAIT_KINDS: tuple[TraitKind, ...] = ("last_date", "count", "sum", "rfm_tier", "nps_bucket",
                                       "nearest", "top_value", "recommend")
#: The temp table :func:`compute_traits` writes and rules read (``trait.<key>``).
TRAIT_TABLE = "trait_values"
_KEY = re.compile(r"^[a-z0-9_]{1,64}$")
#: Keys every trait table may have, and those each kind adds.
_COMMON = ("key", "name", "kind", "sf_field", "sf_lead_field")
_KIND_KEYS: Mapping[str, tuple[str, ...]] = {
    "last_date": ("activity",),
    "count": ("activity", "within_days"),
    "sum": ("activity", "within_days"),
    "rfm_tier": ("window_days",),
    "nps_bucket": ("field",),
    "nearest": ("places", "value"),
    "top_value": ("activity", "of", "within_days"),
    "recommend": ("of",),
}


@dataclass(frozen=True)
class Place:
    name: str
    lat: float
    lon: float


@dataclass(frozen=True)
class Trait:
    """One ``[[trait]]``: its stable key, label, kind and the kind's settings."""

    key: str
    name: str
    kind: TraitKind
    #: Activity types (empty: any type), for last_date, count, sum and top_value.
    activity: tuple[str, ...] = ()
    within_days: int | None = None
    window_days: int = 730
    field: str = "nps_score"
    places: tuple[Place, ...] = ()
    value: Literal["name", "km"] = "name"
    #: The event attribute a top_value or recommend trait reads (e.g. ``category``).
    of: str = ""
    #: Salesforce: the existing Contact and Lead fields that hold the value.
    sf_field: str = ""
    sf_lead_field: str = ""
    path: str = dataclasses.field(default="", compare=False)

    @property
    def value_type(self) -> Literal["date", "number", "text"]:
        """What the CRM field/property must be: date, number or text."""
        if self.kind == "last_date":
            return "date"
        if self.kind in ("count", "sum") or (self.kind == "nearest" and self.value == "km"):
            return "number"
        return "text"


# -- parsing --------------------------------------------------------------------------------


def parse_traits(raw: object, problems: list[Problem], base: str = "trait") -> tuple[Trait, ...]:
    """Read the ``[[trait]]`` array; every problem goes to ``problems`` with its key path."""
    reader = TableReader(problems)
    if raw is None:
        return ()
    if not isinstance(raw, list):
        reader.problem(base, f"must be an array of tables ([[trait]]) (got {describe(raw)})")
        return ()
    traits: list[Trait] = []
    seen: set[str] = set()
    for index, item in enumerate(raw):
        key = item.get("key") if isinstance(item, dict) else None
        path = f"{base}[{key}]" if isinstance(key, str) and key else f"{base}[{index}]"
        table = reader.table(item, path)
        if table is None:
            continue
        trait = _trait(reader, table, path)
        if trait is None:
            continue
        if trait.key in seen:
            reader.problem(key_path(path, "key"), f"{trait.key!r} is used by another trait")
            continue
        seen.add(trait.key)
        traits.append(trait)
    return tuple(traits)


def _trait(reader: TableReader, table: Mapping[str, Any], path: str) -> Trait | None:
    before = len(reader.problems)
    reader.required(table, "key", path)
    key = reader.string(table, "key", path, pattern=_KEY,
                        pattern_hint="1-64 of a-z, 0-9 and _ (it names the CRM property)")
    reader.required(table, "kind", path)
    kind = reader.string(table, "kind", path, choices=TRAIT_KINDS)
    if kind is None or key is None:
        return None
    reader.check_keys(table, (*_COMMON, *_KIND_KEYS[kind]), path)
    name = reader.string(table, "name", path, default=key) or key
    sf_field = reader.string(table, "sf_field", path, default="") or ""
    sf_lead = reader.string(table, "sf_lead_field", path, default="") or ""
    settings: dict[str, Any] = {}
    if kind in ("last_date", "count", "sum", "top_value"):
        reader.required(table, "activity", path)
        types = _types(reader, table.get("activity"), key_path(path, "activity"))
        if kind == "sum" and types not in (None, ("purchase",)):
            reader.problem(key_path(path, "activity"), 'a sum adds purchase amounts: use '
                                                       'activity = "purchase"')
        settings["activity"] = types or ()
    if kind in ("count", "sum", "top_value"):
        settings["within_days"] = reader.integer(table, "within_days", path, minimum=1,
                                                 maximum=36_500)
    if kind == "rfm_tier":
        settings["window_days"] = reader.integer(table, "window_days", path, default=730,
                                                 minimum=1, maximum=36_500)
    if kind == "nps_bucket":
        settings["field"] = reader.string(table, "field", path, default="nps_score")
    if kind == "nearest":
        reader.required(table, "places", path)
        settings["places"] = _places(reader, table.get("places"), key_path(path, "places"))
        settings["value"] = reader.string(table, "value", path, default="name",
                                          choices=("name", "km"))
    if kind in ("top_value", "recommend"):
        reader.required(table, "of", path)
        settings["of"] = reader.string(table, "of", path, pattern=re.compile(r"^[A-Za-z0-9_]+$"),
                                       pattern_hint="an event attribute name, e.g. category")
    if len(reader.problems) > before:
        return None
    return Trait(key, name, kind, sf_field=sf_field,  # type: ignore[arg-type]
                 sf_lead_field=sf_lead, path=path, **settings)


def _types(reader: TableReader, value: object, where: str) -> tuple[str, ...] | None:
    items = value if isinstance(value, list) else [value]
    if not items or not all(isinstance(i, str) for i in items):
        reader.problem(where, f"must be an activity type or an array of them (got {describe(value)})")
        return None
    if items == ["any"]:
        return ()
    bad = [i for i in items if i not in ACTIVITY_TYPES]
    for item in bad:
        reader.problem(where, f"{item!r} is not an activity type",
                       did_you_mean(str(item), ACTIVITY_TYPES))
    return None if bad else tuple(sorted({str(i) for i in items}))


def _places(reader: TableReader, value: object, where: str) -> tuple[Place, ...]:
    if not isinstance(value, list) or not value:
        reader.problem(where, "must be an array of { name = ..., at = [lat, lon] }")
        return ()
    places = []
    for index, item in enumerate(value):
        at = key_path(where, index)
        table = reader.table(item, at)
        if table is None:
            continue
        reader.check_keys(table, ("name", "at"), at)
        reader.required(table, "name", at)
        reader.required(table, "at", at)
        name = reader.string(table, "name", at)
        point = table.get("at")
        if not isinstance(point, list) or len(point) != 2:
            reader.problem(key_path(at, "at"), "must be [latitude, longitude]")
            continue
        lat = reader.check_number(point[0], key_path(at, "at"), -90.0, 90.0)
        lon = reader.check_number(point[1], key_path(at, "at"), -180.0, 180.0)
        if name and lat is not None and lon is not None:
            places.append(Place(name, lat, lon))
    return tuple(places)


def trait_needs(traits: Sequence[Trait]) -> tuple[frozenset[str], frozenset[str], bool, bool,
                                                   bool]:
    """What computing ``traits`` reads: (contact fields, event attributes, companies,
    purchases, activities)."""
    contact = {t.field for t in traits if t.kind == "nps_bucket"}
    attributes = {t.of for t in traits if t.of}
    companies = any(t.kind == "nearest" for t in traits)
    purchases = any(t.kind in ("rfm_tier", "recommend")
                    or (t.activity == () or "purchase" in t.activity)
                    for t in traits if t.kind in ("last_date", "count", "sum", "top_value",
                                                  "rfm_tier", "recommend"))
    activities = any(t.activity == () or any(a != "purchase" for a in t.activity)
                     for t in traits if t.kind in ("last_date", "count", "top_value"))
    return frozenset(contact), frozenset(attributes), companies, purchases, activities


# -- SQL ------------------------------------------------------------------------------------


def compute_traits(conn: duckdb.DuckDBPyConnection, traits: Sequence[Trait], now: dt.datetime,
                   *, contacts: str = "contacts", companies: str = "companies",
                   events: str = "events", table: str = TRAIT_TABLE) -> None:
    """Write ``table(cid, <key>...)`` with every trait of every contact (NULL = empty)."""
    people = (f"{quote_ident(contacts)} AS {CONTACT_ALIAS} LEFT JOIN {quote_ident(companies)} "
              f"AS {COMPANY_ALIAS} ON {COMPANY_ALIAS}._crm_id = {CONTACT_ALIAS}._company_id")
    joins = []
    columns = [f"{CONTACT_ALIAS}._cid AS cid"]
    params: list[object] = []
    for index, trait in enumerate(traits):
        if trait.kind == "nps_bucket":  # read off the contact row
            columns.append(f"{_nps(trait)} AS {quote_ident(trait.key)}")
            continue
        part = _select(trait, now, quote_ident(events), people)
        alias = f"t{index}"
        joins.append(f"LEFT JOIN ({part.sql}) AS {alias} ON {alias}.cid = {CONTACT_ALIAS}._cid")
        params.extend(part.params)
        default = {"count": "'0'", "sum": "'0.00'"}.get(trait.kind)
        value = f"{alias}.v" if default is None else f"coalesce({alias}.v, {default})"
        columns.append(f"{value} AS {quote_ident(trait.key)}")
    conn.execute(f"CREATE OR REPLACE TEMP TABLE {quote_ident(table)} AS SELECT "
                 f"{', '.join(columns)} FROM {people} " + " ".join(joins), params)


def _window(trait: Trait, now: dt.datetime) -> tuple[str, list[object]]:
    filters: list[str] = ["ts <= ?"]
    params: list[object] = [now]
    if trait.activity:
        filters.append("type IN (" + ", ".join("?" for _ in trait.activity) + ")")
        params.extend(trait.activity)
    if trait.within_days is not None:
        filters.append("ts >= ?")
        params.append(now - dt.timedelta(days=trait.within_days))
    return " AND ".join(filters), params


def _select(trait: Trait, now: dt.datetime, source: str, people: str) -> Predicate:
    """A ``(cid, v)`` subquery computing the trait for every contact that has a value."""
    if trait.kind in ("last_date", "count", "sum"):
        where, params = _window(trait, now)
        value = {"last_date": "strftime(max(ts), '%Y-%m-%d')",
                 "count": "CAST(count(*) AS VARCHAR)",
                 "sum": "printf('%.2f', round(sum(coalesce(amount, 0)), 2))"}[trait.kind]
        return Predicate(f"SELECT _cid AS cid, {value} AS v FROM {source} WHERE {where} "
                         "GROUP BY _cid", tuple(params))
    if trait.kind == "rfm_tier":
        scores = RfmScores(trait.window_days).select(Sources(source, source), now)
        cases = " ".join(
            f"WHEN r BETWEEN {r[0]} AND {r[1]} AND f BETWEEN {f[0]} AND {f[1]} "
            f"AND m BETWEEN {m[0]} AND {m[1]} THEN '{key}'"
            for key, _, r, f, m in RFM_TIERS)
        return Predicate(f"SELECT cid, CASE {cases} END AS v FROM ({scores.sql})",
                         scores.params)
    if trait.kind == "top_value":
        where, params = _window(trait, now)
        attribute = quote_ident(trait.of)
        return Predicate(
            f"SELECT cid, v FROM (SELECT _cid AS cid, {attribute} AS v, row_number() OVER ("
            f"PARTITION BY _cid ORDER BY count(*) DESC, max(ts) DESC, {attribute}) AS rank "
            f"FROM {source} WHERE {where} AND {attribute} IS NOT NULL AND {attribute} <> '' "
            "GROUP BY _cid, v) WHERE rank = 1", tuple(params))
    if trait.kind == "recommend":
        return _recommend(trait, now, source)
    assert trait.kind == "nearest"
    return _nearest(trait, people)


def _recommend(trait: Trait, now: dt.datetime, source: str) -> Predicate:
    attribute = quote_ident(trait.of)
    sql = (
        f"WITH bought AS (SELECT DISTINCT _cid AS cid, {attribute} AS v FROM {source} "
        f"WHERE type = 'purchase' AND ts <= ? AND {attribute} IS NOT NULL "
        f"AND {attribute} <> ''), "
        "sets AS (SELECT cid, list(v ORDER BY v) AS vs FROM bought GROUP BY cid), "
        "sigs AS (SELECT vs, count(*) AS n FROM sets GROUP BY vs), "
        # co(b, c): contacts who bought both, from each distinct set weighted by its size
        "co AS (SELECT b.b, c.c, sum(s.n) AS n FROM sigs s, unnest(s.vs) AS b(b), "
        "unnest(s.vs) AS c(c) WHERE b.b <> c.c GROUP BY ALL), "
        "buyers AS (SELECT v, count(*) AS n FROM bought GROUP BY v), "
        "scores AS (SELECT s.vs, co.c AS v, sum(co.n) AS score FROM sigs s, "
        "unnest(s.vs) AS b(b) JOIN co ON co.b = b.b WHERE NOT list_contains(s.vs, co.c) "
        "GROUP BY ALL), "
        "best AS (SELECT vs, v FROM (SELECT sc.vs, sc.v, row_number() OVER (PARTITION BY sc.vs "
        "ORDER BY sc.score DESC, bu.n DESC, sc.v) AS rank FROM scores sc JOIN buyers bu "
        "USING (v) WHERE sc.score > 0) WHERE rank = 1) "
        "SELECT sets.cid, best.v FROM sets JOIN best USING (vs)"
    )
    return Predicate(sql, (now,))


def _nps(trait: Trait) -> str:
    score = f"TRY_CAST({CONTACT_ALIAS}.{quote_ident(trait.field)} AS DOUBLE)"
    return (f"(CASE WHEN {score} >= 9 THEN 'promoter' WHEN {score} >= 7 THEN 'passive' "
            f"WHEN {score} IS NOT NULL THEN 'detractor' END)")


def _nearest(trait: Trait, people: str) -> Predicate:
    """The nearest place (its name, or km to it) by the contact's or its company's location.

    Every place's distance goes into one list of (distance, position) pairs, sorted: the
    first is the nearest, the earlier-listed place on a tie.
    """
    has_own = f"({CONTACT_ALIAS}._lat IS NOT NULL AND {CONTACT_ALIAS}._lon IS NOT NULL)"
    lat = f"(CASE WHEN {has_own} THEN {CONTACT_ALIAS}._lat ELSE {COMPANY_ALIAS}._lat END)"
    lon = f"(CASE WHEN {has_own} THEN {CONTACT_ALIAS}._lon ELSE {COMPANY_ALIAS}._lon END)"
    pairs = []
    params: list[object] = []
    for position, place in enumerate(trait.places):
        distance = (f"{EARTH_DIAMETER_KM} * asin(sqrt(pow(sin(radians({lat} - ?) / 2), 2) + "
                    f"cos(radians(?)) * cos(radians({lat})) * "
                    f"pow(sin(radians({lon} - ?) / 2), 2)))")
        pairs.append(f"{{'d': {distance}, 'i': {position + 1}}}")
        params.extend([place.lat, place.lat, place.lon])
    names = "[" + ", ".join("'" + p.name.replace("'", "''") + "'" for p in trait.places) + "]"
    shown = ("printf('%.1f', round(best.d, 1))" if trait.value == "km"
             else f"{names}[best.i]")
    return Predicate(
        f"SELECT cid, CASE WHEN best.d IS NULL THEN NULL ELSE {shown} END AS v FROM ("
        f"SELECT {CONTACT_ALIAS}._cid AS cid, list_sort([{', '.join(pairs)}])[1] AS best "
        f"FROM {people})", tuple(params))
