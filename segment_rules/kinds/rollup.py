"""Roll-up conditions: activity a CRM keeps only as a last date and a lifetime count.

HubSpot has no event records for marketing-email opens and clicks, page views or form
submissions: each contact carries roll-up properties instead (``hs_email_last_open_date``
and ``hs_email_open``, ...). Those answer some activity rules exactly -- "at least one in
the last N days" (the last date is inside the window), "none in N days", "never", an
all-time count, days since the last one -- and no others. These conditions are not
written in TOML: :mod:`segment_rules.sources` turns the activity conditions a CRM answers
from roll-ups into them, and refuses the rest.

The store keeps the roll-ups as contact fields named ``rollup:<type>:last`` and
``rollup:<type>:count`` (the connector maps them to its CRM's properties).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from segment_rules.kinds.activity import KIND as ACTIVITY
from segment_rules.kinds.activity import ActivityCondition, ActivityFeatures, compare
from segment_rules.kinds.base import ConditionKind, FieldUse, Needs, is_missing
from segment_rules.sql import CONTACT_ALIAS, Predicate, quote_ident

if TYPE_CHECKING:
    from segment_rules.compile import Compiler

__all__ = ["KIND", "RollupCondition", "RollupTest", "rollup_field"]

RollupTest = Literal["exists", "count", "days_since_last"]
_SYMBOLS = {"eq": "=", "ne": "≠", "gt": ">", "gte": "≥", "lt": "<", "lte": "≤"}


def rollup_field(activity_type: str, part: Literal["last", "count"]) -> str:
    """The stored contact field holding one roll-up of an activity type."""
    return f"rollup:{activity_type}:{part}"


@dataclass(frozen=True)
class RollupCondition:
    """Activity of ``types`` answered from roll-ups (and, for ``exists`` and
    ``days_since_last``, from the events of ``event_types`` too).

    * ``exists``: at least one within ``within_days`` (ever, without a window);
    * ``count``: the lifetime count of the one type in ``types``, ``op`` ``value``;
    * ``days_since_last``: days since the latest of them, ``op`` ``value`` (missing for
      someone who never had any, like the activity metric).
    """

    types: tuple[str, ...]
    test: RollupTest
    op: str = "gte"
    value: float | tuple[float, float] = 1
    within_days: int | None = None
    event_types: tuple[str, ...] = ()
    path: str = dataclasses.field(default="", compare=False)


def _last(activity_type: str) -> str:
    """The last date as naive UTC, whether stored as ISO 8601 (any offset) or epoch ms."""
    column = f"{CONTACT_ALIAS}.{quote_ident(rollup_field(activity_type, 'last'))}"
    return (f"(CASE WHEN regexp_full_match({column}, '\\d{{10,}}') "
            f"THEN epoch_ms(TRY_CAST({column} AS BIGINT)) "
            f"ELSE timezone('UTC', TRY_CAST({column} AS TIMESTAMPTZ)) END)")


def _count(activity_type: str) -> str:
    column = f"{CONTACT_ALIAS}.{quote_ident(rollup_field(activity_type, 'count'))}"
    return f"TRY_CAST(TRY_CAST({column} AS DOUBLE) AS BIGINT)"


class RollupKind(ConditionKind[RollupCondition]):
    name = "rollup"
    node = RollupCondition

    def predicate(self, node: RollupCondition, compiler: Compiler) -> Predicate:
        if node.test != "exists":
            return compare(self.value(node, compiler), node.op, node.value)
        parts: list[Predicate] = []
        for kind in node.types:
            if node.within_days is None:
                parts.append(Predicate(f"({_last(kind)} IS NOT NULL OR {_count(kind)} > 0)"))
            else:
                start = compiler.now - dt.timedelta(days=node.within_days)
                parts.append(Predicate(f"{_last(kind)} BETWEEN ? AND ?", (start, compiler.now)))
        if node.event_types:
            events = ActivityCondition(node.event_types, "count", "gte", 1, node.within_days)
            column = compiler.join(ActivityFeatures()).column(events)
            parts.append(Predicate(f"coalesce({column}, 0) >= 1"))
        sql = " OR ".join(f"coalesce({p.sql}, FALSE)" for p in parts)
        return Predicate(f"({sql})", tuple(x for p in parts for x in p.params))

    def value(self, node: RollupCondition, compiler: Compiler) -> Predicate:
        if node.test == "count":
            (kind,) = node.types
            return Predicate(f"coalesce({_count(kind)}, 0)")
        lasts = [_last(kind) for kind in node.types]
        if node.event_types:
            events = ActivityCondition(node.event_types, "days_since_last", "gte", 0)
            lasts.append(compiler.join(ActivityFeatures()).column(events))
        latest = f"list_max([{', '.join(lasts)}])"
        if node.test == "days_since_last":
            return Predicate(f"date_diff('day', ({latest})::DATE, ?::DATE)", (compiler.now,))
        return Predicate(latest)

    def describe(self, node: RollupCondition) -> str:
        kinds = " or ".join([*node.types, *node.event_types])
        source = f" (the CRM's last date{' and lifetime count' if node.test == 'count' else ''})"
        if node.test == "exists":
            window = (f" in the last {node.within_days} days" if node.within_days
                      else " ever")
            return f"at least one {kinds}{window}{source}"
        target = node.value
        shown = (f"{target[0]:g} and {target[1]:g}" if isinstance(target, tuple)
                 else f"{target:g}")
        relation = "is between" if isinstance(target, tuple) else _SYMBOLS[node.op]
        label = (f"number of {kinds} ever" if node.test == "count"
                 else f"days since the last {kinds}")
        return f"{label} {relation} {shown}{source}"

    def shown(self, node: RollupCondition, raw: object) -> str:
        if is_missing(raw):
            return "no value"
        if isinstance(raw, int | float):
            return f"{float(raw):g}"
        return str(raw)

    def needs(self, node: RollupCondition) -> Needs:
        fields = tuple(
            FieldUse("contacts", rollup_field(kind, part), f"{kind} ({part})", node.path)
            for kind in node.types for part in ("last", "count"))
        if not node.event_types:
            return Needs(fields=fields)
        events = ActivityCondition(node.event_types, "count", "gte", 1)
        return Needs(fields=fields, streams=ACTIVITY.needs(events).streams)


KIND = RollupKind()
