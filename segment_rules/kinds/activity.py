"""Activity conditions: ``{ activity = "email_click", at_least = 3, within_days = 30 }``.

A number computed from a contact's events (how many, the purchase total, days since the
last one), compared with a literal. Every (types, metric, window) the rules use becomes
one column of a single per-contact table (:class:`ActivityFeatures`), built by one
``GROUP BY`` over the events with a ``FILTER`` per column.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from segment_rules.errors import did_you_mean
from segment_rules.kinds.base import ConditionKind, FieldUse, Needs, Stream, is_missing
from segment_rules.operators import OPERATORS
from segment_rules.sql import Predicate, Sources, quote_ident
from segment_rules.tables import TableReader, describe, key_path

if TYPE_CHECKING:
    from segment_rules.compile import Compiler

__all__ = [
    "ACTIVITY_ALIAS",
    "ACTIVITY_METRICS",
    "ACTIVITY_TYPES",
    "KIND",
    "ActivityCondition",
    "ActivityFeatures",
    "ActivityMetric",
    "compare",
]

#: Canonical activity types; every connector maps its CRM's engagement kinds into these.
ACTIVITY_TYPES = (
    "email_open",
    "email_click",
    "email_sent",
    "email_received",
    "call",
    "meeting",
    "form_submission",
    "note",
    "task",
    "page_view",
    "purchase",
)
ActivityMetric = Literal["count", "sum_amount", "days_since_last"]
ACTIVITY_METRICS: tuple[ActivityMetric, ...] = ("count", "sum_amount", "days_since_last")
ACTIVITY_KEYS = ("activity", "at_least", "at_most", "none_within_days", "within_days", "metric",
                 "op", "value", "where")
#: A purchase attribute filter: (attribute, accepted values), sorted by attribute.
Where = tuple[tuple[str, tuple[str, ...]], ...]
NUMERIC_OPS = ("eq", "ne", "gt", "gte", "lt", "lte", "between")
MAX_DAYS = 36_500
ACTIVITY_ALIAS = "a"


@dataclass(frozen=True)
class ActivityCondition:
    """A number computed from a contact's activity, compared with a literal.

    ``types`` empty means any type; ``within_days`` None means all pulled history.
    Counts and sums of contacts without activity are 0; ``days_since_last`` of a contact
    who never had such activity is missing (so ``gt`` is false; use ``count`` = 0 for
    "never").
    """

    types: tuple[str, ...]
    metric: ActivityMetric
    op: str
    value: float | tuple[float, float]
    within_days: int | None = None
    path: str = dataclasses.field(default="", compare=False)
    #: Only purchases whose attributes have one of these values (``where``).
    where: Where = ()


# -- parsing -------------------------------------------------------------------------------


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


def _where(reader: TableReader, value: object, where: str) -> Where | None:
    """``where = { category = "pizza" }`` or a list of accepted values per attribute."""
    if not isinstance(value, Mapping) or not value:
        reader.problem(where, "must be a table of attribute = value(s), e.g. "
                              f'{{ category = "pizza" }} (got {describe(value)})')
        return None
    out: list[tuple[str, tuple[str, ...]]] = []
    for name, accepted in sorted(value.items()):
        items = accepted if isinstance(accepted, list) else [accepted]
        if (not isinstance(name, str) or not name or name.startswith("_")
                or not items or not all(isinstance(i, str) and i for i in items)):
            reader.problem(key_path(where, str(name)),
                           f"must be a value or a list of values (got {describe(accepted)})")
            return None
        out.append((name, tuple(str(i) for i in items)))
    return tuple(out)


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


# -- SQL -----------------------------------------------------------------------------------

_SQL_SYMBOLS = {"eq": "=", "ne": "<>", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
_AGGREGATES = {"count": "count(*)", "sum_amount": "sum(amount)", "days_since_last": "max(ts)"}


@dataclass
class ActivityFeatures:
    """The activity table: one column per distinct (types, metric, window) the rules use."""

    alias: str = ACTIVITY_ALIAS
    table: str = "segment_activity"
    columns: dict[tuple[tuple[str, ...], str, int | None, Where], str] = dataclasses.field(
        default_factory=dict)

    def column(self, condition: ActivityCondition) -> str:
        key = (condition.types, condition.metric, condition.within_days, condition.where)
        if key not in self.columns:
            self.columns[key] = f"f{len(self.columns)}"
        return f"{self.alias}.{self.columns[key]}"

    def select(self, sources: Sources, now: dt.datetime) -> Predicate:
        """One pass over the events computing every column."""
        columns = ["_cid AS cid"]
        params: list[object] = []
        for (types, metric, within, where), name in self.columns.items():
            filters = []
            if types:
                filters.append("type IN (" + ", ".join("?" for _ in types) + ")")
                params.extend(types)
            for attribute, accepted in where:
                filters.append(f"{quote_ident(attribute)} IN ("
                               + ", ".join("?" for _ in accepted) + ")")
                params.extend(accepted)
            if within is not None:
                filters.append("ts BETWEEN ? AND ?")
                params.extend([now - dt.timedelta(days=within), now])
            else:
                filters.append("ts <= ?")
                params.append(now)
            columns.append(
                f"{_AGGREGATES[metric]} FILTER (WHERE {' AND '.join(filters)}) AS {name}")
        windows = [within for (_, _, within, _) in self.columns]
        scope = ""
        if None not in windows:  # every feature is windowed: older events need not be read
            scope = " WHERE ts >= ?"
            params.append(now - dt.timedelta(days=max(w for w in windows if w is not None)))
        return Predicate(
            f"SELECT {', '.join(columns)} FROM {sources.events}{scope} GROUP BY _cid",
            tuple(params),
        )


def compare(value: Predicate, op_name: str, literal: float | tuple[float, float]) -> Predicate:
    """``value <op> literal`` for a numeric operator, never NULL (``when_missing`` decides)."""
    op = OPERATORS[op_name]
    if isinstance(literal, tuple):
        sql, params = f"{value.sql} BETWEEN ? AND ?", (*value.params, *literal)
    else:
        sql, params = f"{value.sql} {_SQL_SYMBOLS[op_name]} ?", (*value.params, literal)
    return Predicate(f"coalesce({sql}, {str(op.when_missing).upper()})", params)


# -- the kind ------------------------------------------------------------------------------

_SYMBOLS = {"eq": "=", "ne": "≠", "gt": ">", "gte": "≥", "lt": "<", "lte": "≤"}


class ActivityKind(ConditionKind[ActivityCondition]):
    name = "activity"
    node = ActivityCondition
    markers = ("activity",)
    keys = ACTIVITY_KEYS

    def parse(
        self, reader: TableReader, table: Mapping[str, Any], path: str
    ) -> ActivityCondition | None:
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
        where: Where | None = ()
        if "where" in table:
            where = _where(reader, table["where"], key_path(path, "where"))
            if types not in (None, ("purchase",)):
                reader.problem(key_path(path, "where"),
                               'filters purchase attributes: use activity = "purchase"')
        if len(reader.problems) > before or types is None or value is None or where is None:
            return None
        return ActivityCondition(types, metric, op, value, within,  # type: ignore[arg-type]
                                 path, where)

    def predicate(self, node: ActivityCondition, compiler: Compiler) -> Predicate:
        return compare(self.value(node, compiler), node.op, node.value)

    def value(self, node: ActivityCondition, compiler: Compiler) -> Predicate:
        column = compiler.join(ActivityFeatures()).column(node)
        if node.metric == "days_since_last":
            return Predicate(f"date_diff('day', {column}::DATE, ?::DATE)", (compiler.now,))
        return Predicate(f"coalesce({column}, 0)")

    def describe(self, node: ActivityCondition) -> str:
        kinds = " or ".join(node.types) if node.types else "activity of any type"
        if node.where:
            kinds += " with " + " and ".join(
                f"{name} {' or '.join(values)}" for name, values in node.where)
        window = f" in the last {node.within_days} days" if node.within_days else ""
        target = node.value
        shown = (f"{target[0]:g} and {target[1]:g}" if isinstance(target, tuple)
                 else f"{target:g}")
        if node.metric == "count":
            if node.op == "eq" and target == 0:
                return f"no {kinds}{window}"
            if node.op in ("gte", "lte") and not isinstance(target, tuple):
                bound = "at least" if node.op == "gte" else "at most"
                return f"{bound} {shown} {kinds}{window}"
            label = f"number of {kinds}{window}"
        elif node.metric == "sum_amount":
            label = f"total purchase amount{window}"
        else:
            label = f"days since the last {kinds}"
        relation = "is between" if isinstance(target, tuple) else _SYMBOLS[node.op]
        return f"{label} {relation} {shown}"

    def shown(self, node: ActivityCondition, raw: object) -> str:
        return "no value" if is_missing(raw) else f"{float(raw):g}"  # type: ignore[arg-type]

    def needs(self, node: ActivityCondition) -> Needs:
        streams: set[Stream] = set()
        if not node.types or "purchase" in node.types:
            streams.add("purchases")
        if not node.types or any(t != "purchase" for t in node.types):
            streams.add("activities")
        fields = tuple(FieldUse("events", name, f"purchase {name}", node.path)
                       for name, _ in node.where)
        return Needs(fields=fields, streams=frozenset(streams))


KIND = ActivityKind()
