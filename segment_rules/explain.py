"""Why is a contact in a segment, or not? Each condition with its actual value and result.

The explanation evaluates every leaf of the rule trees with the *same* compiled SQL the
segment evaluation uses (restricted to the contacts asked about), then combines the
results along the tree in Python. So explain and membership cannot disagree about a
condition, and the admin sees the values that decided it.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import duckdb

from segment_rules.compile import CONTACT_ALIAS, Compiler, Predicate
from segment_rules.evaluate import DEFAULT_TABLES, Tables, feature_joins
from segment_rules.operators import OPERATORS
from segment_rules.parse import walk
from segment_rules.schema import (
    ActivityCondition,
    Condition,
    Group,
    NearCondition,
    PropertyCondition,
    RfmCondition,
    Scalar,
    Segment,
    SegmentRef,
)

__all__ = ["Check", "Explanation", "describe", "explain_contacts", "render"]

_OP_WORDS = {
    "eq": "is", "ne": "is not", "in": "is one of", "not_in": "is none of",
    "gt": "is more than", "gte": "is at least", "lt": "is less than", "lte": "is at most",
    "between": "is between", "before": "is before", "after": "is after",
    "within_last_days": "is within the last", "contains": "contains",
    "contains_any": "contains any of", "starts_with": "starts with", "ends_with": "ends with",
    "is_set": "has a value", "is_not_set": "has no value",
}
_SYMBOLS = {"eq": "=", "ne": "≠", "gt": ">", "gte": "≥", "lt": "<", "lte": "≤"}


@dataclass(frozen=True)
class Check:
    """One node of an explained rule: what it tests, whether it passed, the value it saw."""

    text: str
    passed: bool
    actual: str | None = None
    children: tuple[Check, ...] = ()


@dataclass(frozen=True)
class Explanation:
    segment: Segment
    #: The contact ends up in the segment's members (written list, or control group).
    member: bool
    matched: bool
    excluded_by_consent: bool
    #: For a segment with a holdout: whether this contact is in the control group.
    control: bool | None
    tree: Check


def _literal(value: Scalar) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return str(value)


def describe(condition: Condition) -> str:
    """A condition in plain words."""
    if isinstance(condition, PropertyCondition):
        words = _OP_WORDS[condition.op]
        value = condition.value
        if value is None:
            return f"{condition.field} {words}"
        if condition.op == "within_last_days":
            return f"{condition.field} {words} {value} days"
        if isinstance(value, tuple):
            joiner = " and " if condition.op == "between" else ", "
            return f"{condition.field} {words} {joiner.join(_literal(v) for v in value)}"
        return f"{condition.field} {words} {_literal(value)}"
    if isinstance(condition, ActivityCondition):
        kinds = " or ".join(condition.types) if condition.types else "activity of any type"
        window = f" in the last {condition.within_days} days" if condition.within_days else ""
        target = condition.value
        shown = (f"{target[0]:g} and {target[1]:g}" if isinstance(target, tuple)
                 else f"{target:g}")
        if condition.metric == "count":
            if condition.op == "eq" and target == 0:
                return f"no {kinds}{window}"
            if condition.op in ("gte", "lte") and not isinstance(target, tuple):
                bound = "at least" if condition.op == "gte" else "at most"
                return f"{bound} {shown} {kinds}{window}"
            label = f"number of {kinds}{window}"
        elif condition.metric == "sum_amount":
            label = f"total purchase amount{window}"
        else:
            label = f"days since the last {kinds}"
        relation = "is between" if isinstance(target, tuple) else _SYMBOLS[condition.op]
        return f"{label} {relation} {shown}"
    if isinstance(condition, NearCondition):
        places = " or ".join(f"({lat:g}, {lon:g})" for lat, lon in condition.points)
        return f"within {condition.km:g} km of {places}"
    if isinstance(condition, SegmentRef):
        return f"{'not ' if condition.negate else ''}in segment '{condition.key}'"
    if isinstance(condition, RfmCondition):
        r, f, m = condition.recency, condition.frequency, condition.monetary
        return (f"RFM scores over the last {condition.window_days} days: "
                f"R {r[0]}-{r[1]}, F {f[0]}-{f[1]}, M {m[0]}-{m[1]}")
    return {"all": "all of:", "any": "any of:", "not": "not:"}[condition.kind]


def _shown(condition: Condition, raw: object) -> str | None:
    if isinstance(condition, Group):
        return None
    if isinstance(condition, SegmentRef):
        return "member" if raw else "not a member"
    if raw is None or (isinstance(raw, float) and math.isnan(raw)):
        if isinstance(condition, NearCondition):
            return "no location"
        if isinstance(condition, RfmCondition):
            return "no purchases in the window"
        return "no value"
    if isinstance(condition, NearCondition):
        return f"{float(raw):.1f} km"  # type: ignore[arg-type]
    if isinstance(condition, RfmCondition):
        r, f, m = str(raw).split("-")
        return f"R{r} F{f} M{m}"
    if isinstance(condition, ActivityCondition):
        return f"{float(raw):g}"  # type: ignore[arg-type]
    return f'"{raw}"'


def _leaves(segments: Sequence[Segment]) -> list[Condition]:
    nodes: dict[int, Condition] = {}
    for segment in segments:
        for node in walk(segment.rule):
            if not isinstance(node, Group):
                nodes.setdefault(id(node), node)
    return list(nodes.values())


def explain_contacts(
    conn: duckdb.DuckDBPyConnection,
    segments: Sequence[Segment],
    crm_ids: Sequence[str] | None,
    now: dt.datetime,
    tables: Tables = DEFAULT_TABLES,
) -> dict[str, list[Explanation]]:
    """Explanations for every segment, for the given contacts (None: every contact)."""
    by_key = {s.key: s for s in segments}
    compiler = Compiler(by_key, now)
    leaves = _leaves(segments)
    columns: list[str] = []
    params: list[object] = []

    def add(predicate: Predicate) -> None:
        columns.append(predicate.sql)
        params.extend(predicate.params)

    for leaf in leaves:
        add(compiler.predicate(leaf))
        if isinstance(leaf, SegmentRef):  # show the referenced membership itself
            add(compiler.predicate(SegmentRef(leaf.key)))
        else:
            add(compiler.value(leaf))
    for segment in segments:
        add(compiler.consent(segment))
        add(compiler.in_control(segment) if segment.holdout or segment.control_of
            else Predicate("NULL"))
    only = None
    if crm_ids is not None and len(crm_ids) == 1:
        row = conn.execute(f"SELECT _cid FROM {tables.contacts} WHERE _crm_id = ?",
                           [crm_ids[0]]).fetchone()
        only = int(row[0]) if row else None
    source = feature_joins(conn, compiler, tables, only_cid=only)
    where = ""
    if crm_ids is not None:
        marks = ", ".join("?" for _ in crm_ids)
        where = f" WHERE {CONTACT_ALIAS}._crm_id IN ({marks})"
        params.extend(crm_ids)
    rows = conn.execute(
        f"SELECT {CONTACT_ALIAS}._crm_id, " + ", ".join(columns) + f" FROM {source}{where}",
        params,
    ).fetchall()
    texts = {id(node): describe(node) for s in segments for node in walk(s.rule)}
    result: dict[str, list[Explanation]] = {}
    for row in rows:
        crm_id, values = str(row[0]), row[1:]
        leaf_results = {
            id(leaf): (bool(values[2 * i]), values[2 * i + 1]) for i, leaf in enumerate(leaves)
        }
        offset = 2 * len(leaves)
        explanations = []
        for index, segment in enumerate(segments):
            consent = bool(values[offset + 2 * index])
            control_raw = values[offset + 2 * index + 1]
            tree = _tree(segment.rule, leaf_results, texts)
            control = None if control_raw is None else bool(control_raw)
            matched = tree.passed and consent
            if segment.control_of is not None:
                member = matched and bool(control)
            else:
                member = matched and not control
            explanations.append(Explanation(segment, member, tree.passed, tree.passed and not consent,
                                            control, tree))
        result[crm_id] = explanations
    return result


def _tree(
    condition: Condition, results: Mapping[int, tuple[bool, object]], texts: Mapping[int, str]
) -> Check:
    if isinstance(condition, Group):
        children = tuple(_tree(child, results, texts) for child in condition.children)
        if condition.kind == "not":
            passed = not children[0].passed
        elif condition.kind == "all":
            passed = all(c.passed for c in children)
        else:
            passed = any(c.passed for c in children)
        return Check(texts[id(condition)], passed, None, children)
    passed, raw = results[id(condition)]
    return Check(texts[id(condition)], passed, _shown(condition, raw))


def render(crm_id: str, explanations: Sequence[Explanation]) -> str:
    """Plain text for the terminal: one block per segment, the rule tree indented."""
    lines = [f"Contact {crm_id}"]
    for item in explanations:
        segment = item.segment
        verdict = "IN" if item.member else "not in"
        lines.append("")
        lines.append(f"{verdict} {segment.name} [{segment.key}]")
        if item.excluded_by_consent:
            lines.append("  matches the rule, but is left out: opted out of email "
                         "(exclude_opted_out = true)")
        if item.control is not None:
            owner = segment.control_of or segment.key
            group = "control group" if item.control else "treated group"
            lines.append(f"  holdout of {owner}: this contact is in the {group}")
        lines.extend(_render_check(item.tree, 1))
    return "\n".join(lines)


def _render_check(check: Check, depth: int) -> list[str]:
    mark = "✓" if check.passed else "✗"
    actual = f"  (actual: {check.actual})" if check.actual is not None else ""
    out = [f"{'  ' * depth}{mark} {check.text}{actual}"]
    for child in check.children:
        out.extend(_render_check(child, depth + 1))
    return out


assert set(_OP_WORDS) == set(OPERATORS)
