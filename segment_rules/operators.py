"""Property operators: one table that validation, compilation and docs all read.

Each operator knows the shape of value it takes and how to turn ``field <op> value`` into
a SQL predicate over the stored text column. Stored property values are text (CRMs
disagree on types), so the *literal's* TOML type decides the comparison: ``value = 40``
compares numerically, ``value = 2025-01-01`` as a date, ``value = "40"`` as text.

Missing values are decided here, once, so every engine and the explainer agree:
positive operators (``eq``, ``gt``, ``contains``, ...) are false for a contact without
the value; negative ones (``ne``, ``not_in``, ``is_not_set``) are true.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from segment_rules.values import Scalar, Value

__all__ = ["OPERATORS", "Operator", "ValueKind", "kind_of", "typed_column"]

ValueKind = Literal["text", "number", "boolean", "date", "datetime"]
Shape = Literal["none", "scalar", "list", "pair", "days", "text_or_list", "text_list"]
SqlBuilder = Callable[[str, Value, dt.datetime], tuple[str, list[object]]]

_TRUE_WORDS = "('true', '1', 'yes', 'y', 't')"
_FALSE_WORDS = "('false', '0', 'no', 'n', 'f')"


def kind_of(value: Scalar) -> ValueKind:
    """The comparison kind a TOML literal asks for."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, dt.datetime):
        return "datetime"
    if isinstance(value, dt.date):
        return "date"
    return "text"


def typed_column(column: str, kind: ValueKind) -> str:
    """SQL reading a text column as ``kind``; unparseable text becomes NULL, never an error."""
    if kind == "number":
        return f"TRY_CAST({column} AS DOUBLE)"
    if kind == "date":
        return f"TRY_CAST({column} AS DATE)"
    if kind == "datetime":
        return f"TRY_CAST({column} AS TIMESTAMP)"
    if kind == "boolean":
        lowered = f"lower(trim({column}))"
        return (
            f"(CASE WHEN {lowered} IN {_TRUE_WORDS} THEN TRUE "
            f"WHEN {lowered} IN {_FALSE_WORDS} THEN FALSE END)"
        )
    return column


def _param(value: Scalar) -> object:
    """Bind datetimes as naive UTC, which is how the store keeps timestamps."""
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return value.astimezone(dt.UTC).replace(tzinfo=None)
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def _scalars(value: Value) -> tuple[Scalar, ...]:
    if isinstance(value, tuple):
        return value
    assert value is not None
    return (value,)


def _compare(symbol: str) -> SqlBuilder:
    def build(column: str, value: Value, now: dt.datetime) -> tuple[str, list[object]]:
        (scalar,) = _scalars(value)
        return f"{typed_column(column, kind_of(scalar))} {symbol} ?", [_param(scalar)]

    return build


def _in_list(column: str, value: Value, now: dt.datetime) -> tuple[str, list[object]]:
    items = _scalars(value)
    marks = ", ".join("?" for _ in items)
    return f"{typed_column(column, kind_of(items[0]))} IN ({marks})", [_param(v) for v in items]


def _between(column: str, value: Value, now: dt.datetime) -> tuple[str, list[object]]:
    low, high = _scalars(value)
    return (
        f"{typed_column(column, kind_of(low))} BETWEEN ? AND ?",
        [_param(low), _param(high)],
    )


def _within_last_days(column: str, value: Value, now: dt.datetime) -> tuple[str, list[object]]:
    (days,) = _scalars(value)
    assert isinstance(days, int)
    start = now - dt.timedelta(days=days)
    return f"{typed_column(column, 'datetime')} BETWEEN ? AND ?", [start, now]


def _split(column: str) -> str:
    return f"string_split(regexp_replace(trim({column}), '\\s*;\\s*', ';', 'g'), ';')"


def _list_test(function: str) -> SqlBuilder:
    """``list_has_all``/``list_has_any`` over the ';'-separated values of a field.

    CRMs store multi-value fields without spaces around the separator, so the plain split
    serves almost every row; only values holding a space pay for trimming each item.
    """

    def build(column: str, value: Value, now: dt.datetime) -> tuple[str, list[object]]:
        items = [str(v) for v in _scalars(value)]
        sql = (f"(CASE WHEN contains({column}, ' ') THEN {function}({_split(column)}, ?) "
               f"ELSE {function}(string_split({column}, ';'), ?) END)")
        return sql, [items, items]

    return build


_contains = _list_test("list_has_all")
_contains_any = _list_test("list_has_any")


def _affix(function: str) -> SqlBuilder:
    def build(column: str, value: Value, now: dt.datetime) -> tuple[str, list[object]]:
        items = _scalars(value)
        sql = " OR ".join(f"{function}({column}, ?)" for _ in items)
        return f"({sql})", [str(v) for v in items]

    return build


def _is_set(column: str, value: Value, now: dt.datetime) -> tuple[str, list[object]]:
    return f"({column} IS NOT NULL AND trim({column}) <> '')", []


@dataclass(frozen=True)
class Operator:
    """An operator's contract: value shape, accepted literal kinds and its SQL."""

    name: str
    shape: Shape
    kinds: frozenset[ValueKind]
    build: SqlBuilder
    #: Result for a contact whose value is missing or unreadable as the literal's kind.
    when_missing: bool
    summary: str

    def sql(self, column: str, value: Value, now: dt.datetime) -> tuple[str, list[object]]:
        """A never-NULL boolean SQL predicate for ``column <op> value``."""
        sql, params = self.build(column, value, now)
        return f"coalesce({sql}, {str(self.when_missing).upper()})", params


_ANY: frozenset[ValueKind] = frozenset({"text", "number", "boolean", "date", "datetime"})
_ORDERED: frozenset[ValueKind] = frozenset({"number", "date", "datetime"})
_TEMPORAL: frozenset[ValueKind] = frozenset({"date", "datetime"})
_TEXT: frozenset[ValueKind] = frozenset({"text"})


def _negate(op: Operator, name: str, summary: str) -> Operator:
    def build(column: str, value: Value, now: dt.datetime) -> tuple[str, list[object]]:
        sql, params = op.build(column, value, now)
        return f"NOT ({sql})", params

    return Operator(name, op.shape, op.kinds, build, not op.when_missing, summary)


def _table(ops: Sequence[Operator]) -> dict[str, Operator]:
    return {op.name: op for op in ops}


_EQ = Operator("eq", "scalar", _ANY, _compare("="), False, "equals the value")
_IN = Operator("in", "list", _ANY, _in_list, False, "equals one of the values")
_SET = Operator("is_set", "none", _ANY, _is_set, False, "has any non-empty value")

OPERATORS: dict[str, Operator] = _table(
    [
        _EQ,
        _negate(_EQ, "ne", "does not equal the value (true when missing)"),
        _IN,
        _negate(_IN, "not_in", "equals none of the values (true when missing)"),
        Operator("gt", "scalar", _ORDERED, _compare(">"), False, "greater than"),
        Operator("gte", "scalar", _ORDERED, _compare(">="), False, "greater than or equal"),
        Operator("lt", "scalar", _ORDERED, _compare("<"), False, "less than"),
        Operator("lte", "scalar", _ORDERED, _compare("<="), False, "less than or equal"),
        Operator("between", "pair", _ORDERED, _between, False, "within [low, high], inclusive"),
        Operator("before", "scalar", _TEMPORAL, _compare("<"), False, "earlier than the date"),
        Operator("after", "scalar", _TEMPORAL, _compare(">"), False, "later than the date"),
        Operator(
            "within_last_days", "days", _ANY, _within_last_days, False,
            "a date within the last N days (not in the future)",
        ),
        Operator(
            "contains", "text_or_list", _TEXT, _contains, False,
            "multi-value field (a;b;c) holds the value, or all of the values",
        ),
        Operator(
            "contains_any", "text_list", _TEXT, _contains_any, False,
            "multi-value field holds at least one of the values",
        ),
        Operator(
            "starts_with", "text_or_list", _TEXT, _affix("starts_with"), False,
            "text starts with the value (or any of the values)",
        ),
        Operator(
            "ends_with", "text_or_list", _TEXT, _affix("ends_with"), False,
            "text ends with the value (or any of the values)",
        ),
        _SET,
        _negate(_SET, "is_not_set", "has no value"),
    ]
)
