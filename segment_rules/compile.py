"""Rule tree -> SQL over the store, with bound parameters.

Segments are evaluated by DuckDB in a single pass over the contacts. A compiled rule is
a predicate over these aliases:

* ``c``: the contact row; ``co``: its company row (NULL when it has none);
* ``a``: one row of activity features per contact, built by one ``GROUP BY`` over all
  events with a ``FILTER`` per distinct (types, window, metric) the rules use;
* ``r<window>``: RFM scores per buyer for each purchase window the rules use.

Every leaf is wrapped in ``coalesce``, so compiled expressions are never NULL and
``not`` means plain negation. Only this module knows the SQL shape of a rule.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field

from segment_rules.operators import OPERATORS
from segment_rules.schema import (
    ActivityCondition,
    Condition,
    Group,
    NearCondition,
    PropertyCondition,
    RfmCondition,
    Segment,
    SegmentRef,
)

__all__ = [
    "ACTIVITY_ALIAS",
    "COMPANY_ALIAS",
    "CONTACT_ALIAS",
    "Compiler",
    "Predicate",
    "holdout_bucket",
    "quote_ident",
]

CONTACT_ALIAS = "c"
COMPANY_ALIAS = "co"
ACTIVITY_ALIAS = "a"
EARTH_DIAMETER_KM = 12742.0176
_MASK32 = 0xFFFFFFFF
_MIX = 0x45D9F3B


@dataclass(frozen=True)
class Predicate:
    """A SQL expression and the values bound to its ``?`` placeholders, in order."""

    sql: str
    params: tuple[object, ...] = ()

    def __and__(self, other: Predicate) -> Predicate:
        return Predicate(f"({self.sql} AND {other.sql})", self.params + other.params)


def quote_ident(name: str) -> str:
    """Quote a column name for DuckDB; field names are validated, this is belt and braces."""
    return '"' + name.replace('"', '""') + '"'


def holdout_seed(segment_key: str, salt: str) -> int:
    """32 stable bits per (segment, salt): different segments get independent control groups."""
    digest = hashlib.blake2b(f"{segment_key}\x00{salt}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big")


def holdout_bucket(contact_key: int, segment_key: str, salt: str) -> int:
    """The contact's bucket 0-9999 for a segment: Python twin of the SQL in ``_control``."""
    x = (contact_key ^ holdout_seed(segment_key, salt)) & _MASK32
    x = ((x ^ (x >> 16)) * _MIX) & _MASK32
    x = ((x ^ (x >> 16)) * _MIX) & _MASK32
    x ^= x >> 16
    return x % 10_000


def _holdout_sql(seed: int) -> str:
    x = f"(xor({CONTACT_ALIAS}._cid, {seed}::BIGINT) & {_MASK32})"
    for _ in range(2):
        x = f"((xor({x}, ({x} >> 16)) * {_MIX}) & {_MASK32})"
    return f"(xor({x}, ({x} >> 16)) % 10000)"


@dataclass
class Compiler:
    """Compiles conditions for one evaluation; collects the activity and RFM features used."""

    segments: Mapping[str, Segment]
    now: dt.datetime
    features: dict[tuple[tuple[str, ...], str, int | None], str] = field(default_factory=dict)
    rfm_windows: dict[int, str] = field(default_factory=dict)

    # -- leaves ----------------------------------------------------------------------------

    def predicate(self, condition: Condition) -> Predicate:
        if isinstance(condition, PropertyCondition):
            op = OPERATORS[condition.op]
            sql, params = op.sql(self.column(condition), condition.value, self.now)
            return Predicate(sql, tuple(params))
        if isinstance(condition, ActivityCondition):
            return self._compare(self.value(condition), condition.op, condition.value)
        if isinstance(condition, NearCondition):
            distance = self.value(condition)
            return Predicate(f"coalesce({distance.sql} <= ?, FALSE)", (*distance.params, condition.km))
        if isinstance(condition, RfmCondition):
            alias = self._rfm_alias(condition.window_days)
            checks = " AND ".join(f"{alias}.{score} BETWEEN ? AND ?" for score in ("r", "f", "m"))
            scores = (*condition.recency, *condition.frequency, *condition.monetary)
            return Predicate(f"coalesce({checks}, FALSE)", scores)
        if isinstance(condition, SegmentRef):
            inner = self.matches(self.segments[condition.key])
            return Predicate(f"(NOT {inner.sql})", inner.params) if condition.negate else inner
        return self._group(condition)

    def value(self, condition: Condition) -> Predicate:
        """The number or text a leaf tests, as ``segsync explain`` shows it."""
        if isinstance(condition, PropertyCondition):
            return Predicate(self.column(condition))
        if isinstance(condition, ActivityCondition):
            column = f"{ACTIVITY_ALIAS}.{self._feature(condition)}"
            if condition.metric == "days_since_last":
                return Predicate(f"date_diff('day', {column}::DATE, ?::DATE)", (self.now,))
            return Predicate(f"coalesce({column}, 0)")
        if isinstance(condition, NearCondition):
            return self._distance(condition)
        if isinstance(condition, RfmCondition):
            alias = self._rfm_alias(condition.window_days)
            return Predicate(f"({alias}.r || '-' || {alias}.f || '-' || {alias}.m)")
        raise TypeError(f"{type(condition).__name__} has no single value")

    def column(self, condition: PropertyCondition) -> str:
        alias = COMPANY_ALIAS if condition.on_company else CONTACT_ALIAS
        return f"{alias}.{quote_ident(condition.column)}"

    def _compare(self, value: Predicate, op_name: str, literal: float | tuple[float, float]
                 ) -> Predicate:
        op = OPERATORS[op_name]
        if isinstance(literal, tuple):
            sql, params = f"{value.sql} BETWEEN ? AND ?", (*value.params, *literal)
        else:
            symbol = {"eq": "=", "ne": "<>", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}[op_name]
            sql, params = f"{value.sql} {symbol} ?", (*value.params, literal)
        return Predicate(f"coalesce({sql}, {str(op.when_missing).upper()})", params)

    def _feature(self, condition: ActivityCondition) -> str:
        key = (condition.types, condition.metric, condition.within_days)
        if key not in self.features:
            self.features[key] = f"f{len(self.features)}"
        return self.features[key]

    def _rfm_alias(self, window_days: int) -> str:
        return self.rfm_windows.setdefault(window_days, f"r{window_days}")

    def _distance(self, condition: NearCondition) -> Predicate:
        has_own = f"({CONTACT_ALIAS}._lat IS NOT NULL AND {CONTACT_ALIAS}._lon IS NOT NULL)"
        lat = f"(CASE WHEN {has_own} THEN {CONTACT_ALIAS}._lat ELSE {COMPANY_ALIAS}._lat END)"
        lon = f"(CASE WHEN {has_own} THEN {CONTACT_ALIAS}._lon ELSE {COMPANY_ALIAS}._lon END)"
        parts = []
        params: list[object] = []
        for p_lat, p_lon in condition.points:
            parts.append(
                f"{EARTH_DIAMETER_KM} * asin(sqrt(pow(sin(radians({lat} - ?) / 2), 2) + "
                f"cos(radians(?)) * cos(radians({lat})) * pow(sin(radians({lon} - ?) / 2), 2)))"
            )
            params.extend([p_lat, p_lat, p_lon])
        sql = parts[0] if len(parts) == 1 else "least(" + ", ".join(parts) + ")"
        return Predicate(sql, tuple(params))

    def _group(self, group: Group) -> Predicate:
        parts = [self.predicate(child) for child in group.children]
        params = tuple(p for part in parts for p in part.params)
        if group.kind == "not":
            (inner,) = parts
            return Predicate(f"(NOT {inner.sql})", inner.params)
        if not parts:
            return Predicate("TRUE" if group.kind == "all" else "FALSE")
        joiner = " AND " if group.kind == "all" else " OR "
        return Predicate("(" + joiner.join(part.sql for part in parts) + ")", params)

    # -- segments --------------------------------------------------------------------------

    def consent(self, segment: Segment) -> Predicate:
        if not segment.exclude_opted_out:
            return Predicate("TRUE")
        return Predicate(f"NOT coalesce({CONTACT_ALIAS}._opted_out, FALSE)")

    def matches(self, segment: Segment) -> Predicate:
        """The segment's rule and consent: what ``in_segment`` means."""
        return self.predicate(segment.rule) & self.consent(segment)

    def in_control(self, segment: Segment) -> Predicate:
        """True for contacts the segment's holdout puts in its control group."""
        owner = self.segments[segment.control_of] if segment.control_of else segment
        assert owner.holdout is not None
        seed = holdout_seed(owner.key, owner.holdout.salt)
        return Predicate(f"({_holdout_sql(seed)} < ?)", (round(owner.holdout.percent * 100),))

    def membership(self, segment: Segment) -> Predicate:
        """Rule, consent and holdout: exactly who is written to (or kept for) the segment."""
        base = self.matches(segment)
        if segment.control_of is not None:
            return base & self.in_control(segment)
        if segment.holdout is not None:
            control = self.in_control(segment)
            return base & Predicate(f"(NOT {control.sql})", control.params)
        return base

    # -- feature tables --------------------------------------------------------------------

    def activity_table(self, events: str, key: str = "_cid") -> Predicate | None:
        """One pass over all events computing every activity feature the rules used."""
        if not self.features:
            return None
        columns = [f"{key} AS cid"]
        params: list[object] = []
        for (types, metric, within), name in self.features.items():
            filters = []
            if types:
                filters.append("type IN (" + ", ".join("?" for _ in types) + ")")
                params.extend(types)
            if within is not None:
                filters.append("ts BETWEEN ? AND ?")
                params.extend([self.now - dt.timedelta(days=within), self.now])
            else:
                filters.append("ts <= ?")
                params.append(self.now)
            aggregate = {"count": "count(*)", "sum_amount": "sum(amount)",
                         "days_since_last": "max(ts)"}[metric]
            columns.append(f"{aggregate} FILTER (WHERE {' AND '.join(filters)}) AS {name}")
        windows = [within for (_, _, within) in self.features]
        scope = ""
        if None not in windows:  # every feature is windowed: older events need not be read
            scope = " WHERE ts >= ?"
            params.append(self.now - dt.timedelta(days=max(w for w in windows if w is not None)))
        return Predicate(
            f"SELECT {', '.join(columns)} FROM {events}{scope} GROUP BY {key}", tuple(params)
        )

    def rfm_table(self, window_days: int, events: str, key: str = "_cid") -> Predicate:
        """Scores 1-5 per buyer; ties share the lower score (``rank``), so one-time buyers are F=1."""
        start = self.now - dt.timedelta(days=window_days)

        def score(column: str) -> str:
            return (f"least(5, 1 + floor(5 * (rank() OVER (ORDER BY {column}) - 1) / buyers))"
                    "::INTEGER")

        sql = (
            f"WITH p AS (SELECT {key} AS cid, max(ts) AS last_purchase, count(*) AS purchases, "
            f"sum(coalesce(amount, 0)) AS revenue FROM {events} "
            "WHERE type = 'purchase' AND ts BETWEEN ? AND ? GROUP BY ALL), "
            "n AS (SELECT count(*) AS buyers FROM p) "
            f"SELECT cid, last_purchase, purchases, revenue, {score('last_purchase')} AS r, "
            f"{score('purchases')} AS f, {score('revenue')} AS m FROM p, n"
        )
        return Predicate(sql, (start, self.now))
