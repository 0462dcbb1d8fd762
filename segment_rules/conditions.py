"""Condition tables -> rule-tree nodes, every problem collected with its key path.

A condition table is a boolean group (``all``/``any``/``not``, parsed here) or a leaf of a
registered kind (:data:`segment_rules.kinds.KINDS`), recognised by its keys:

1. the first kind, in registry order, that claims the table (``activity``, ``near``,
   ``in_segment``/``not_in_segment``, ``field``);
2. else a group, if the table has ``all``, ``any`` or ``not``;
3. else the first kind the table's keys hint at (``{ op = ... }`` is a property
   condition without its field);
4. else each key is checked against every kind's keys, for a did-you-mean.

Each kind checks its own keys, value shapes and ranges, so a typo anywhere gets a
did-you-mean hint.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from segment_rules.kinds import KINDS, ConditionKind
from segment_rules.kinds.property import parse_property
from segment_rules.schema import Condition, Group
from segment_rules.tables import TableReader, describe, key_path

__all__ = ["GROUP_KEYS", "condition_keys", "parse_condition", "parse_group_keys", "parse_property"]

MAX_DEPTH = 32
GROUP_KEYS = ("all", "any", "not")


def condition_keys() -> tuple[str, ...]:
    """Every key a condition table may hold, whatever its kind."""
    return (*GROUP_KEYS, *(key for kind in KINDS.values() for key in kind.keys))


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


def _leaf_kind(table: Mapping[str, Any]) -> ConditionKind[Any] | None:
    """The kind claiming the table; if none does and it is no group, the kind it hints at."""
    claimed = next((kind for kind in KINDS.values() if kind.claims(table)), None)
    if claimed is not None or any(key in table for key in GROUP_KEYS):
        return claimed
    return next((kind for kind in KINDS.values() if any(k in table for k in kind.hints)), None)


def parse_condition(reader: TableReader, raw: object, path: str, depth: int) -> Condition | None:
    if depth > MAX_DEPTH:
        reader.problem(path, f"rules nest deeper than {MAX_DEPTH} levels")
        return None
    table = reader.table(raw, path)
    if table is None:
        return None
    kind = _leaf_kind(table)
    if kind is not None:
        leaf: Condition | None = kind.parse(reader, table, path)
        return leaf
    if any(key in table for key in GROUP_KEYS):
        reader.check_keys(table, GROUP_KEYS, path)
        return parse_group_keys(reader, table, path, depth)
    reader.check_keys(table, condition_keys(), path)
    if not table:
        reader.problem(path, "is an empty condition",
                       "use { field = ..., op = ..., value = ... } or another condition")
    return None
