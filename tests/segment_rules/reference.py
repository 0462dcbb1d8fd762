"""A deliberately naive, row-by-row evaluator: the oracle the SQL compiler is checked against.

It mirrors the documented semantics (``segment_rules.operators``) in plain Python, for the
small value pool the property tests draw from.
"""

from __future__ import annotations

import datetime as dt

from segment_rules.operators import OPERATORS, kind_of
from segment_rules.schema import Condition, Group, PropertyCondition, Segment

Row = dict[str, str | None]

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


def holds(cond: Condition, row: Row, company: Row | None, now: dt.datetime) -> bool:
    if isinstance(cond, PropertyCondition):
        return leaf(cond, row, company, now)
    assert isinstance(cond, Group)
    results = [holds(c, row, company, now) for c in cond.children]
    if cond.kind == "not":
        return not results[0]
    return all(results) if cond.kind == "all" else any(results)


def members(
    segment: Segment, rows: dict[str, Row], companies: dict[str, Row], opted_out: set[str],
    company_of: dict[str, str | None], now: dt.datetime,
) -> set[str]:
    out = set()
    for crm_id, row in rows.items():
        if segment.exclude_opted_out and crm_id in opted_out:
            continue
        company_id = company_of.get(crm_id)
        company = companies.get(company_id) if company_id else None
        if holds(segment.rule, row, company, now):
            out.add(crm_id)
    return out
