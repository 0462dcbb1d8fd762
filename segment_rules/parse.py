"""TOML ``[[segment]]`` tables -> validated segments, with generators expanded.

Every problem is collected with its key path (``segment[vip].all[2].value``) so one run of
``segsync check`` lists all of them. Condition tables are parsed by
``segment_rules.conditions``; a segment's ``kind`` selects a generator
(``segment_rules.generators``). After expansion, references between segments are
resolved: unknown keys get a did-you-mean hint and a cycle is reported whole.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from segment_rules.conditions import GROUP_KEYS, parse_group_keys
from segment_rules.errors import Problem, did_you_mean
from segment_rules.generators import (
    RFM_TIER_NAMES,
    exclusive,
    nps_segments,
    rfm_segments,
    with_holdout,
)
from segment_rules.kinds import kind_for
from segment_rules.kinds.property import FIELD_HINT, FIELD_PATTERN
from segment_rules.schema import (
    Condition,
    Group,
    Holdout,
    PerValueGenerator,
    PropertyCondition,
    Segment,
)
from segment_rules.tables import TableReader, describe, key_path

__all__ = ["KINDS", "Rules", "leaves", "parse_rules", "parse_segments", "walk"]

KEY_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
KEY_HINT = "use 1-64 lowercase letters, digits, '-' or '_', starting with a letter or digit"
MAX_NAME_LENGTH = 200
COMMON_KEYS = ("key", "name", "description", "mode", "exclude_opted_out", "kind",
               "holdout_percent", "holdout_salt", "holdout_target")
KIND_KEYS: dict[str, tuple[str, ...]] = {
    "rule": GROUP_KEYS,
    "nps": ("field",),
    "rfm": ("window_days", "tiers"),
    "per_value": ("field", "top", "other"),
    "split": ("children",),
}
#: Segment block kinds (``kind = "rfm"``); condition kinds are ``segment_rules.kinds.KINDS``.
KINDS = tuple(KIND_KEYS)
CHILD_KEYS = ("key", "name", "description", "mode", "exclude_opted_out", "holdout_percent",
              "holdout_salt", "holdout_target", *GROUP_KEYS)


@dataclass(frozen=True)
class Rules:
    """Every configured segment, generators expanded; per-value blocks wait for the data."""

    segments: tuple[Segment, ...]
    per_value: tuple[PerValueGenerator, ...] = ()


def walk(condition: Condition) -> Iterable[Condition]:
    """Every node of a rule tree, depth first."""
    yield condition
    if isinstance(condition, Group):
        for child in condition.children:
            yield from walk(child)


def leaves(condition: Condition) -> Iterable[Condition]:
    """The leaves of a rule tree (every node but the groups), depth first."""
    return (node for node in walk(condition) if not isinstance(node, Group))


def parse_segments(tables: object, problems: list[Problem], base: str = "segment") -> list[Segment]:
    """The static segments of ``parse_rules`` (for callers that need no per-value blocks)."""
    return list(parse_rules(tables, problems, base).segments)


def parse_rules(tables: object, problems: list[Problem], base: str = "segment") -> Rules:
    """Parse the ``segment`` array of tables; append problems instead of raising."""
    reader = TableReader(problems)
    if tables is None:
        return Rules(())
    if not isinstance(tables, list):
        reader.problem(base, f"must be an array of tables, [[segment]] (got {describe(tables)})")
        return Rules(())
    segments: list[Segment] = []
    per_value: list[PerValueGenerator] = []
    for index, raw in enumerate(tables):
        parsed = _parse_block(reader, raw, _segment_path(base, index, raw))
        for item in parsed:
            if isinstance(item, PerValueGenerator):
                per_value.append(item)
            else:
                segments.append(item)
    _check_unique(reader, [(s.key, s.name, s.path) for s in segments]
                  + [(g.key, g.name, g.path) for g in per_value])
    _check_references(reader, segments)
    return Rules(tuple(segments), tuple(per_value))


def _segment_path(base: str, index: int, raw: object) -> str:
    key = raw.get("key") if isinstance(raw, dict) else None
    if isinstance(key, str) and KEY_PATTERN.match(key):
        return f"{base}[{key}]"
    return f"{base}[{index}]"


@dataclass(frozen=True)
class _Common:
    key: str
    name: str
    description: str
    mode: str
    exclude_opted_out: bool
    holdout: Holdout | None
    holdout_target: bool


def _common(reader: TableReader, table: Mapping[str, Any], path: str) -> _Common | None:
    before = len(reader.problems)
    reader.required(table, "key", path)
    key = reader.string(table, "key", path, pattern=KEY_PATTERN, pattern_hint=KEY_HINT)
    name = reader.string(table, "name", path, default=key)
    if name is not None and not (0 < len(name.strip()) <= MAX_NAME_LENGTH):
        reader.problem(key_path(path, "name"), f"must be 1-{MAX_NAME_LENGTH} characters")
    description = reader.string(table, "description", path, default="") or ""
    mode = reader.string(table, "mode", path, default="mirror", choices=("mirror", "add_only"))
    exclude = reader.boolean(table, "exclude_opted_out", path, default=True)
    percent = reader.number(table, "holdout_percent", path, minimum=0.01, maximum=99.99)
    salt = reader.string(table, "holdout_salt", path, default="") or ""
    target = reader.boolean(table, "holdout_target", path, default=False)
    if ("holdout_salt" in table or "holdout_target" in table) and "holdout_percent" not in table:
        reader.problem(key_path(path, "holdout_percent"), "is required with holdout_salt/holdout_target")
    if len(reader.problems) > before or key is None or name is None or mode is None:
        return None
    holdout = Holdout(percent, salt) if percent is not None else None
    return _Common(key, name.strip(), description, mode, exclude, holdout, target)


def _segment(common: _Common, rule: Condition, path: str) -> Segment:
    return Segment(
        key=common.key, name=common.name, rule=rule,
        mode="add_only" if common.mode == "add_only" else "mirror",
        exclude_opted_out=common.exclude_opted_out, description=common.description,
        holdout=common.holdout, path=path,
    )


def _parse_block(
    reader: TableReader, raw: object, path: str
) -> list[Segment | PerValueGenerator]:
    table = reader.table(raw, path)
    if table is None:
        return []
    kind = reader.string(table, "kind", path, default="rule", choices=KINDS)
    if kind is None:
        return []
    before = len(reader.problems)
    reader.check_keys(table, (*COMMON_KEYS, *KIND_KEYS[kind]), path)
    common = _common(reader, table, path)
    result: list[Segment | PerValueGenerator] = []
    if kind == "rule":
        rule = parse_group_keys(reader, table, path, depth=0)
        if rule is None and not any(k in table for k in GROUP_KEYS):
            reader.problem(path, "has no rule", "add all = [...], any = [...] or not = {...}")
        if common and rule is not None:
            result = [_segment(common, rule, path)]
    elif kind == "nps":
        field = _field(reader, table, path, default="nps_score")
        if common and field:
            result = list(nps_segments(_segment(common, Group("all", ()), path), field))
    elif kind == "rfm":
        result = _rfm(reader, table, path, common)
    elif kind == "split":
        result = _split(reader, table, path, common)
    elif kind == "per_value":
        return _per_value(reader, table, path, common, before)
    if len(reader.problems) > before or common is None:
        return []
    segments = [item for item in result if isinstance(item, Segment)]
    return [out for s in segments for out in with_holdout(s, common.holdout_target)]


def _field(reader: TableReader, table: Mapping[str, Any], path: str,
           default: str | None = None) -> str | None:
    if default is None:
        reader.required(table, "field", path)
    return reader.string(table, "field", path, default=default, pattern=FIELD_PATTERN,
                         pattern_hint=FIELD_HINT)


def _rfm(reader: TableReader, table: Mapping[str, Any], path: str,
         common: _Common | None) -> list[Segment | PerValueGenerator]:
    window = reader.integer(table, "window_days", path, default=730, minimum=1, maximum=36_500)
    tiers: list[str] = list(RFM_TIER_NAMES)
    if "tiers" in table:
        raw = table["tiers"]
        where = key_path(path, "tiers")
        if not isinstance(raw, list) or not raw:
            reader.problem(where, f"must be a non-empty array of tier names (got {describe(raw)})")
        else:
            for i, tier in enumerate(raw):
                if tier not in RFM_TIER_NAMES:
                    reader.problem(key_path(where, i), f"{tier!r} is not an RFM tier "
                                   f"({', '.join(RFM_TIER_NAMES)})", did_you_mean(str(tier), RFM_TIER_NAMES))
            tiers = [str(t) for t in raw]
    if common is None or window is None:
        return []
    return list(rfm_segments(_segment(common, Group("all", ()), path), window, tiers))


def _split(reader: TableReader, table: Mapping[str, Any], path: str,
           common: _Common | None) -> list[Segment | PerValueGenerator]:
    reader.required(table, "children", path)
    raw = table.get("children", [])
    where = key_path(path, "children")
    if not isinstance(raw, list) or not raw:
        reader.problem(where, f"must be a non-empty array of segment tables (got {describe(raw)})")
        return []
    children: list[tuple[_Common, Condition, str]] = []
    for index, child in enumerate(raw):
        child_table = reader.table(child, key_path(where, index))
        if child_table is None:
            continue
        label = child_table.get("key")
        child_path = f"{where}[{label}]" if isinstance(label, str) else key_path(where, index)
        reader.check_keys(child_table, CHILD_KEYS, child_path)
        inherited = {"exclude_opted_out": common.exclude_opted_out} if common else {}
        child_common = _common(reader, {**inherited, **child_table}, child_path)
        rule = parse_group_keys(reader, child_table, child_path, depth=0)
        if rule is None and not any(k in child_table for k in GROUP_KEYS):
            reader.problem(child_path, "has no rule", "add all = [...] (all = [] catches the rest)")
        if child_common and rule is not None:
            children.append((child_common, rule, child_path))
    if common is None or len(children) != len(raw):
        return []
    rules = exclusive([rule for _, rule, _ in children])
    out: list[Segment | PerValueGenerator] = []
    for (child, _, child_path), rule in zip(children, rules, strict=True):
        segment = _segment(child, rule, child_path)
        out.extend(with_holdout(replace(segment, generator=common.key, generator_kind="split"), child.holdout_target))
    return out


def _per_value(reader: TableReader, table: Mapping[str, Any], path: str, common: _Common | None,
               before: int) -> list[Segment | PerValueGenerator]:
    field = _field(reader, table, path)
    top = reader.integer(table, "top", path, default=10, minimum=1, maximum=200)
    other = reader.boolean(table, "other", path, default=True)
    if common is not None and common.holdout is not None:
        reader.problem(key_path(path, "holdout_percent"), "is not supported on per_value blocks")
    if len(reader.problems) > before or common is None or field is None or top is None:
        return []
    return [PerValueGenerator(
        key=common.key, name=common.name, field=PropertyCondition(field, "eq", "", path),
        top=top, other=other, mode="add_only" if common.mode == "add_only" else "mirror",
        exclude_opted_out=common.exclude_opted_out, path=path,
    )]


def _check_unique(reader: TableReader, items: list[tuple[str, str, str]]) -> None:
    """Keys and names must be unique (names case-insensitively: they become list names)."""
    for position, attribute in ((0, "key"), (1, "name")):
        seen: dict[str, str] = {}
        for item in items:
            value, path = item[position], item[2]
            folded = value.casefold()
            if folded in seen:
                reader.problem(key_path(path, attribute), f"{value!r} is already used by {seen[folded]}")
            else:
                seen[folded] = path


def _check_references(reader: TableReader, segments: list[Segment]) -> None:
    known = {s.key: s for s in segments}
    graph: dict[str, list[str]] = {}
    for segment in segments:
        refs = [(key, leaf.path) for leaf in leaves(segment.rule)
                for key in kind_for(leaf).references(leaf)]
        for key, path in refs:
            if key not in known:
                reader.problem(path, f"refers to unknown segment {key!r}",
                               did_you_mean(key, known))
        graph[segment.key] = sorted({key for key, _ in refs if key in known})
    for cycle in _cycles(graph):
        reader.problem(known[cycle[0]].path,
                       "segments refer to each other in a cycle: " + " -> ".join(cycle))


def _cycles(graph: Mapping[str, list[str]]) -> list[list[str]]:
    """Each distinct cycle once, as a closed path (a -> b -> a)."""
    found: list[list[str]] = []
    seen_sets: set[frozenset[str]] = set()
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in graph.get(node, []):
            if state.get(nxt) == 1:
                cycle = [*stack[stack.index(nxt):], nxt]
                if frozenset(cycle) not in seen_sets:
                    seen_sets.add(frozenset(cycle))
                    found.append(cycle)
            elif nxt not in state:
                visit(nxt, stack)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    return found
