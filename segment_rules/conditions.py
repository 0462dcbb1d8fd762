"""Condition tables -> rule-tree nodes, every problem collected with its key path.

Conditions are recognised by their keys (see the table in ``CONDITION_KINDS``); each kind
checks its own keys, value shapes and ranges, so a typo anywhere gets a did-you-mean hint.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Mapping
from typing import Any

from segment_rules.errors import did_you_mean
from segment_rules.operators import OPERATORS, Operator, kind_of
from segment_rules.schema import (
    ACTIVITY_METRICS,
    ACTIVITY_TYPES,
    ActivityCondition,
    Condition,
    Group,
    NearCondition,
    PropertyCondition,
    Scalar,
    SegmentRef,
    Value,
)
from segment_rules.tables import TableReader, describe, key_path

__all__ = ["GROUP_KEYS", "parse_condition", "parse_group_keys", "parse_property"]

FIELD_PATTERN = re.compile(r"^(company\.)?[A-Za-z][A-Za-z0-9_]{0,99}$")
FIELD_HINT = "a CRM field name (letters, digits, '_'), or company.<field>"
MAX_LIST_VALUES = 10_000
MAX_DEPTH = 32
MAX_DAYS = 36_500
KM_PER_MILE = 1.609344

GROUP_KEYS = ("all", "any", "not")
PROPERTY_KEYS = ("field", "op", "value")
ACTIVITY_KEYS = ("activity", "at_least", "at_most", "none_within_days", "within_days", "metric",
                 "op", "value")
NEAR_KEYS = ("near", "within_km", "within_miles")
REF_KEYS = ("in_segment", "not_in_segment")
ALL_CONDITION_KEYS = (*PROPERTY_KEYS, *GROUP_KEYS, *ACTIVITY_KEYS, *NEAR_KEYS, *REF_KEYS)
NUMERIC_OPS = ("eq", "ne", "gt", "gte", "lt", "lte", "between")


def parse_group_keys(
    reader: TableReader, table: Mapping[str, Any], path: str, depth: int
) -> Condition | None:
    """The all/any/not keys of one table, ANDed together; None if none is present."""
    parts: list[Condition] = []
    for kind in GROUP_KEYS:
        if kind not in table:
            continue
        where = key_path(path, kind)
        value = table[kind]
        children = [value] if kind == "not" and isinstance(value, dict) else value
        if not isinstance(children, list):
            expected = "a condition table" if kind == "not" else "an array of conditions"
            reader.problem(where, f"must be {expected} (got {describe(value)})")
            continue
        if not children and kind != "all":
            reader.problem(where, "must not be empty")
            continue
        single = kind == "not" and isinstance(value, dict)
        parsed = [
            parse_condition(reader, child, where if single else key_path(where, i), depth + 1)
            for i, child in enumerate(children)
        ]
        good = tuple(c for c in parsed if c is not None)
        if len(good) != len(parsed):
            continue
        if kind == "not":
            inner: Condition = good[0] if len(good) == 1 else Group("all", good, where)
            parts.append(Group("not", (inner,), where))
        else:
            parts.append(Group("all" if kind == "all" else "any", good, where))
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else Group("all", tuple(parts), path)


def parse_condition(reader: TableReader, raw: object, path: str, depth: int) -> Condition | None:
    if depth > MAX_DEPTH:
        reader.problem(path, f"rules nest deeper than {MAX_DEPTH} levels")
        return None
    table = reader.table(raw, path)
    if table is None:
        return None
    for marker, parser in _KINDS:
        if any(key in table for key in marker):
            return parser(reader, table, path, depth)
    reader.check_keys(table, ALL_CONDITION_KEYS, path)
    if not table:
        reader.problem(path, "is an empty condition",
                       "use { field = ..., op = ..., value = ... } or another condition")
    return None


def _group(reader: TableReader, table: Mapping[str, Any], path: str, depth: int) -> Condition | None:
    reader.check_keys(table, GROUP_KEYS, path)
    return parse_group_keys(reader, table, path, depth)


def _property(reader: TableReader, table: Mapping[str, Any], path: str, depth: int) -> Condition | None:
    return parse_property(reader, table, path)


def _activity_types(reader: TableReader, value: object, where: str) -> tuple[str, ...] | None:
    items = value if isinstance(value, list) else [value]
    if not items or not all(isinstance(i, str) for i in items):
        reader.problem(where, f"must be an activity type or an array of them (got {describe(value)})")
        return None
    if items == ["any"]:
        return ()
    bad = [i for i in items if i not in ACTIVITY_TYPES]
    for item in bad:
        options = ", ".join(ACTIVITY_TYPES)
        reader.problem(where, f"{item!r} is not an activity type (use one of {options}, or 'any')",
                       did_you_mean(str(item), ACTIVITY_TYPES))
    return None if bad else tuple(sorted({str(i) for i in items}))


def _activity(reader: TableReader, table: Mapping[str, Any], path: str, depth: int) -> Condition | None:
    """``activity`` with exactly one of at_least / at_most / none_within_days / metric+op+value."""
    before = len(reader.problems)
    reader.check_keys(table, ACTIVITY_KEYS, path)
    reader.required(table, "activity", path)
    types = _activity_types(reader, table.get("activity"), key_path(path, "activity"))
    within = reader.integer(table, "within_days", path, minimum=1, maximum=MAX_DAYS)
    forms = [k for k in ("at_least", "at_most", "none_within_days", "metric") if k in table]
    if len(forms) != 1:
        reader.problem(path, "needs exactly one of at_least, at_most, none_within_days or metric"
                       + (f" (got {', '.join(forms)})" if forms else ""))
        return None
    form = forms[0]
    metric = "count"
    op = "gte"
    value: float | tuple[float, float] | None
    if form == "at_least":
        value = reader.integer(table, "at_least", path, minimum=1, maximum=1_000_000)
    elif form == "at_most":
        op = "lte"
        value = reader.integer(table, "at_most", path, minimum=0, maximum=1_000_000)
    elif form == "none_within_days":
        op, value = "eq", 0
        if "within_days" in table:
            reader.problem(key_path(path, "within_days"),
                           "is implied by none_within_days; remove one of them")
        within = reader.integer(table, "none_within_days", path, minimum=1, maximum=MAX_DAYS)
    else:
        metric = reader.string(table, "metric", path, choices=ACTIVITY_METRICS) or "count"
        op = reader.string(table, "op", path, choices=NUMERIC_OPS) or "gte"
        reader.required(table, "op", path)
        value = _metric_value(reader, table, op, key_path(path, "value"))
    if metric == "sum_amount" and types not in (None, ("purchase",)):
        reader.problem(key_path(path, "activity"), "sum_amount needs activity = \"purchase\"")
    if metric == "days_since_last" and "within_days" in table:
        reader.problem(key_path(path, "within_days"), "does not apply to days_since_last")
    if len(reader.problems) > before or types is None or value is None:
        return None
    return ActivityCondition(types, metric, op, value, within, path)  # type: ignore[arg-type]


def _metric_value(
    reader: TableReader, table: Mapping[str, Any], op: str, where: str
) -> float | tuple[float, float] | None:
    if "value" not in table:
        reader.problem(where, "is required")
        return None
    raw = table["value"]
    if op == "between":
        if not isinstance(raw, list) or len(raw) != 2:
            reader.problem(where, f"'between' needs [low, high] (got {describe(raw)})")
            return None
        low = reader.check_number(raw[0], key_path(where, 0))
        high = reader.check_number(raw[1], key_path(where, 1))
        if low is None or high is None:
            return None
        if low > high:
            reader.problem(where, f"low end {raw[0]!r} is above high end {raw[1]!r}")
            return None
        return (low, high)
    return reader.check_number(raw, where)


def _point(reader: TableReader, value: object, where: str) -> tuple[float, float] | None:
    if not isinstance(value, list) or len(value) != 2:
        reader.problem(where, f"must be [latitude, longitude] (got {describe(value)})")
        return None
    lat = reader.check_number(value[0], key_path(where, 0), -90.0, 90.0)
    lon = reader.check_number(value[1], key_path(where, 1), -180.0, 180.0)
    return None if lat is None or lon is None else (lat, lon)


def _near(reader: TableReader, table: Mapping[str, Any], path: str, depth: int) -> Condition | None:
    before = len(reader.problems)
    reader.check_keys(table, NEAR_KEYS, path)
    raw = table["near"]
    where = key_path(path, "near")
    many = isinstance(raw, list) and bool(raw) and all(isinstance(p, list) for p in raw)
    points = [_point(reader, p, key_path(where, i)) for i, p in enumerate(raw)] if many else [
        _point(reader, raw, where)]
    units = [k for k in ("within_km", "within_miles") if k in table]
    if len(units) != 1:
        reader.problem(path, "needs exactly one of within_km or within_miles")
        return None
    distance = reader.number(table, units[0], path, minimum=0.0, maximum=20_100.0)
    if len(reader.problems) > before or distance is None or None in points:
        return None
    km = distance * KM_PER_MILE if units[0] == "within_miles" else distance
    return NearCondition(tuple(p for p in points if p is not None), km, path)


def _reference(reader: TableReader, table: Mapping[str, Any], path: str, depth: int) -> Condition | None:
    reader.check_keys(table, REF_KEYS, path)
    present = [k for k in REF_KEYS if k in table]
    if len(present) != 1:
        reader.problem(path, "use either in_segment or not_in_segment, not both")
        return None
    key = reader.string(table, present[0], path)
    if key is None:
        return None
    return SegmentRef(key, negate=present[0] == "not_in_segment", path=key_path(path, present[0]))


_Parser = Callable[[TableReader, Mapping[str, Any], str, int], Condition | None]
_KINDS: tuple[tuple[tuple[str, ...], _Parser], ...] = (
    (("activity",), _activity),
    (("near",), _near),
    (REF_KEYS, _reference),
    (("field",), _property),
    (GROUP_KEYS, _group),
    (("op",), _property),
)


def parse_property(reader: TableReader, table: Mapping[str, Any], path: str) -> Condition | None:
    before = len(reader.problems)
    reader.check_keys(table, PROPERTY_KEYS, path)
    reader.required(table, "field", path)
    reader.required(table, "op", path)
    field = reader.string(
        table, "field", path, pattern=FIELD_PATTERN,
        pattern_hint=FIELD_HINT,
    )
    op_name = reader.string(table, "op", path, choices=OPERATORS)
    value: Value = None
    if op_name is not None:
        value = _parse_value(reader, OPERATORS[op_name], table, path)
    if len(reader.problems) > before or field is None or op_name is None:
        return None
    return PropertyCondition(field, op_name, value, path)


_SCALAR_TYPES = (str, int, float, bool, dt.date, dt.datetime)


def _scalar(reader: TableReader, op: Operator, value: object, where: str) -> Scalar | None:
    if not isinstance(value, _SCALAR_TYPES) or isinstance(value, dt.time):
        reader.problem(where, f"must be a single value for '{op.name}' (got {describe(value)})")
        return None
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    if is_number and reader.check_number(value, where) is None:
        return None
    kind = kind_of(value)
    if kind not in op.kinds:
        allowed = " or ".join(sorted(op.kinds))
        reader.problem(where, f"'{op.name}' compares {allowed} values (got {describe(value)})")
        return None
    return value


def _scalar_list(
    reader: TableReader, op: Operator, value: object, where: str, *, exact: int | None = None
) -> tuple[Scalar, ...] | None:
    if not isinstance(value, list) or not value:
        reader.problem(where, f"'{op.name}' needs a non-empty array (got {describe(value)})")
        return None
    if len(value) > MAX_LIST_VALUES:
        reader.problem(where, f"has {len(value)} values; at most {MAX_LIST_VALUES} are allowed")
        return None
    if exact is not None and len(value) != exact:
        reader.problem(where, f"'{op.name}' needs exactly {exact} values (got {len(value)})")
        return None
    items = [_scalar(reader, op, item, key_path(where, i)) for i, item in enumerate(value)]
    scalars = tuple(item for item in items if item is not None)
    if len(scalars) != len(items):
        return None
    if len({kind_of(item) for item in scalars}) > 1:
        reader.problem(where, "mixes values of different types")
        return None
    return scalars


def _days(reader: TableReader, op: Operator, value: object, where: str) -> Value:
    return reader.check_integer(value, where, minimum=0, maximum=36_500)


def _text_or_list(reader: TableReader, op: Operator, value: object, where: str) -> Value:
    if isinstance(value, list):
        return _scalar_list(reader, op, value, where)
    return _scalar(reader, op, value, where)


def _pair(reader: TableReader, op: Operator, value: object, where: str) -> Value:
    pair = _scalar_list(reader, op, value, where, exact=2)
    if pair is None:
        return None
    low, high = pair
    if low > high:  # type: ignore[operator]  # same kind checked above
        reader.problem(where, f"low end {low!r} is above high end {high!r}")
        return None
    return pair


_VALUE_PARSERS: dict[str, Callable[[TableReader, Operator, object, str], Value]] = {
    "scalar": _scalar,
    "list": _scalar_list,
    "pair": _pair,
    "days": _days,
    "text_or_list": _text_or_list,
    "text_list": _text_or_list,
}


def _parse_value(
    reader: TableReader, op: Operator, table: Mapping[str, Any], path: str
) -> Value:
    where = key_path(path, "value")
    if op.shape == "none":
        if "value" in table:
            reader.problem(where, f"'{op.name}' takes no value")
        return None
    if "value" not in table:
        reader.problem(where, f"is required for '{op.name}'")
        return None
    return _VALUE_PARSERS[op.shape](reader, op, table["value"], where)
