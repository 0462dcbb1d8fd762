"""A deliberately naive, row-by-row evaluator: the oracle the SQL compiler is checked against.

It mirrors the documented semantics (``segment_rules.operators``) in plain Python, for the
small value pool the property tests draw from.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

from segment_rules.operators import OPERATORS, kind_of
from segment_rules.schema import (
    ActivityCondition,
    Condition,
    Group,
    NearCondition,
    PropertyCondition,
    Segment,
    SegmentRef,
)

Row = dict[str, str | None]
#: (type, timestamp, amount) per contact
Events = dict[str, list[tuple[str, dt.datetime, float | None]]]
Points = dict[str, tuple[float, float] | None]

TRUE_WORDS = {"true", "1", "yes", "y", "t"}
FALSE_WORDS = {"false", "0", "no", "n", "f"}


def as_kind(text: str | None, kind: str) -> object:
    if text is None:
        return None
    if kind == "text":
        return text
    stripped = text.strip()
    if kind == "number":
        try:
            return float(stripped)
        except ValueError:
            return None
    if kind == "boolean":
        word = stripped.lower()
        return True if word in TRUE_WORDS else False if word in FALSE_WORDS else None
    try:
        moment = dt.datetime.fromisoformat(stripped.replace("Z", "+00:00"))
    except ValueError:
        return None
    moment = moment.replace(tzinfo=None)
    return moment.date() if kind == "date" else moment


def literal(value: object) -> object:
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return value.astimezone(dt.UTC).replace(tzinfo=None)
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def leaf(cond: PropertyCondition, row: Row, company: Row | None, now: dt.datetime) -> bool:
    source = company if cond.on_company else row
    text = None if source is None else source.get(cond.column)
    op = OPERATORS[cond.op]
    value = cond.value
    if cond.op in ("is_set", "is_not_set"):
        present = text is not None and text.strip() != ""
        return present if cond.op == "is_set" else not present
    if cond.op == "within_last_days":
        moment = as_kind(text, "datetime")
        if moment is None:
            return False
        assert isinstance(value, int)
        return now - dt.timedelta(days=value) <= moment <= now  # type: ignore[operator]
    if cond.op in ("contains", "contains_any", "starts_with", "ends_with"):
        if text is None:
            return False
        wanted = [str(v) for v in (value if isinstance(value, tuple) else (value,))]
        if cond.op.startswith("contains"):
            items = [part.strip() for part in text.strip().split(";")]
            hits = [w in items for w in wanted]
            return all(hits) if cond.op == "contains" else any(hits)
        check = text.startswith if cond.op == "starts_with" else text.endswith
        return any(check(w) for w in wanted)
    scalars = value if isinstance(value, tuple) else (value,)
    kind = kind_of(scalars[0])  # type: ignore[arg-type]
    actual = as_kind(text, kind)
    if actual is None:
        return op.when_missing
    wanted_values = [literal(v) for v in scalars]
    result = {
        "eq": lambda: actual == wanted_values[0],
        "ne": lambda: actual != wanted_values[0],
        "in": lambda: actual in wanted_values,
        "not_in": lambda: actual not in wanted_values,
        "gt": lambda: actual > wanted_values[0],
        "gte": lambda: actual >= wanted_values[0],
        "lt": lambda: actual < wanted_values[0],
        "lte": lambda: actual <= wanted_values[0],
        "before": lambda: actual < wanted_values[0],
        "after": lambda: actual > wanted_values[0],
        "between": lambda: wanted_values[0] <= actual <= wanted_values[1],
    }[cond.op]()
    return bool(result)


@dataclass
class World:
    segments: dict[str, Segment]
    events: Events
    points: Points
    company_points: dict[str, tuple[float, float] | None]
    opted_out: set[str]


def activity(cond: ActivityCondition, crm_id: str, world: World, now: dt.datetime) -> bool:
    chosen = [
        (ts, amount) for kind, ts, amount in world.events.get(crm_id, [])
        if (not cond.types or kind in cond.types) and ts <= now
        and (cond.within_days is None or ts >= now - dt.timedelta(days=cond.within_days))
    ]
    if cond.metric == "count":
        value: float | None = float(len(chosen))
    elif cond.metric == "sum_amount":
        value = float(sum(a for _, a in chosen if a is not None))
    else:
        value = float((now.date() - max(ts for ts, _ in chosen).date()).days) if chosen else None
    if value is None:
        return cond.op == "ne"
    target = cond.value
    if isinstance(target, tuple):
        return target[0] <= value <= target[1]
    return {"eq": value == target, "ne": value != target, "gt": value > target,
            "gte": value >= target, "lt": value < target, "lte": value <= target}[cond.op]


def km(a: tuple[float, float], b: tuple[float, float]) -> float:
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin(
        (lon2 - lon1) / 2) ** 2
    return 12742.0176 * math.asin(math.sqrt(h))


def holds(cond: Condition, row: Row, company: Row | None, now: dt.datetime,
          crm_id: str = "", world: World | None = None, company_id: str | None = None) -> bool:
    if isinstance(cond, PropertyCondition):
        return leaf(cond, row, company, now)
    if isinstance(cond, ActivityCondition):
        assert world is not None
        return activity(cond, crm_id, world, now)
    if isinstance(cond, NearCondition):
        assert world is not None
        where = world.points.get(crm_id) or (world.company_points.get(company_id or "")
                                             if company_id else None)
        return where is not None and min(km(where, p) for p in cond.points) <= cond.km
    if isinstance(cond, SegmentRef):
        assert world is not None
        target = world.segments[cond.key]
        inside = holds(target.rule, row, company, now, crm_id, world, company_id) and not (
            target.exclude_opted_out and crm_id in world.opted_out)
        return not inside if cond.negate else inside
    assert isinstance(cond, Group)
    results = [holds(c, row, company, now, crm_id, world, company_id) for c in cond.children]
    if cond.kind == "not":
        return not results[0]
    return all(results) if cond.kind == "all" else any(results)


def members(
    segment: Segment, rows: dict[str, Row], companies: dict[str, Row], opted_out: set[str],
    company_of: dict[str, str | None], now: dt.datetime, world: World | None = None,
) -> set[str]:
    out = set()
    for crm_id, row in rows.items():
        if segment.exclude_opted_out and crm_id in opted_out:
            continue
        company_id = company_of.get(crm_id)
        company = companies.get(company_id) if company_id else None
        if holds(segment.rule, row, company, now, crm_id, world, company_id):
            out.add(crm_id)
    return out
