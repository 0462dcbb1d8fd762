"""Why is a contact in a segment, or not? Each condition with its actual value and result.

The explanation evaluates every leaf of the rule trees with the *same* compiled SQL the
segment evaluation uses (restricted to the contacts asked about), then combines the
results along the tree in Python. So explain and membership cannot disagree about a
condition, and the admin sees the values that decided it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import duckdb

from segment_rules.compile import CONTACT_ALIAS, Compiler, Predicate
from segment_rules.evaluate import DEFAULT_TABLES, Tables, feature_joins
from segment_rules.kinds import kind_for
from segment_rules.parse import leaves, walk
from segment_rules.schema import Condition, Group, Segment

__all__ = ["Check", "Explanation", "describe", "explain_contacts", "render"]

_GROUP_WORDS = {"all": "all of:", "any": "any of:", "not": "not:"}


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


def describe(condition: Condition) -> str:
    """A condition in plain words."""
    if isinstance(condition, Group):
        return _GROUP_WORDS[condition.kind]
    return kind_for(condition).describe(condition)


def _leaves(segments: Sequence[Segment]) -> list[Condition]:
    nodes: dict[int, Condition] = {}
    for segment in segments:
        for node in leaves(segment.rule):
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
    tested = _leaves(segments)
    columns: list[str] = []
    params: list[object] = []

    def add(predicate: Predicate) -> None:
        columns.append(predicate.sql)
        params.extend(predicate.params)

    for leaf in tested:
        add(compiler.predicate(leaf))
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
    kinds = {id(leaf): kind_for(leaf) for leaf in tested}
    result: dict[str, list[Explanation]] = {}
    for row in rows:
        crm_id, values = str(row[0]), row[1:]
        leaf_results = {
            id(leaf): (bool(values[2 * i]), kinds[id(leaf)].shown(leaf, values[2 * i + 1]))
            for i, leaf in enumerate(tested)
        }
        offset = 2 * len(tested)
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
    condition: Condition, results: Mapping[int, tuple[bool, str]], texts: Mapping[int, str]
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
    passed, shown = results[id(condition)]
    return Check(texts[id(condition)], passed, shown)


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

