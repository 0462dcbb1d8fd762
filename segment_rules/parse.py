"""TOML ``[[segment]]`` tables -> validated :mod:`segment_rules.schema` objects.

Every problem is collected with its key path (``segment[vip].all[2].value``) so one run of
``segsync check`` lists all of them. Conditions are recognised by their keys:

* ``{ field = "...", op = "...", value = ... }``: a property condition;
* ``{ all = [...] }``, ``{ any = [...] }``, ``{ not = {...} }``: groups, nested freely.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Mapping
from typing import Any

from segment_rules.errors import Problem
from segment_rules.operators import OPERATORS, Operator, kind_of
from segment_rules.schema import Condition, Group, PropertyCondition, Scalar, Segment, Value
from segment_rules.tables import TableReader, describe, key_path

__all__ = ["SEGMENT_KEYS", "parse_segments"]

KEY_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
FIELD_PATTERN = re.compile(r"^(company\.)?[A-Za-z][A-Za-z0-9_]{0,99}$")
MAX_NAME_LENGTH = 200
MAX_LIST_VALUES = 10_000
MAX_DEPTH = 32

GROUP_KEYS = ("all", "any", "not")
PROPERTY_KEYS = ("field", "op", "value")
SEGMENT_KEYS = ("key", "name", "description", "mode", "exclude_opted_out", *GROUP_KEYS)
CONDITION_KEYS = (*PROPERTY_KEYS, *GROUP_KEYS)


def parse_segments(tables: object, problems: list[Problem], base: str = "segment") -> list[Segment]:
    """Parse the ``segment`` array of tables; append problems instead of raising."""
    reader = TableReader(problems)
    if tables is None:
        return []
    if not isinstance(tables, list):
        reader.problem(base, f"must be an array of tables, [[segment]] (got {describe(tables)})")
        return []
    segments: list[Segment] = []
    for index, raw in enumerate(tables):
        segment = _parse_segment(reader, raw, index, base)
        if segment is not None:
            segments.append(segment)
    _check_unique(reader, segments, "key")
    _check_unique(reader, segments, "name")
    return segments


def _segment_path(base: str, index: int, raw: object) -> str:
    key = raw.get("key") if isinstance(raw, dict) else None
    if isinstance(key, str) and KEY_PATTERN.match(key):
        return f"{base}[{key}]"
    return f"{base}[{index}]"


def _parse_segment(reader: TableReader, raw: object, index: int, base: str) -> Segment | None:
    path = _segment_path(base, index, raw)
    table = reader.table(raw, path)
    if table is None:
        return None
    before = len(reader.problems)
    reader.check_keys(table, SEGMENT_KEYS, path)
    reader.required(table, "key", path)
    key = reader.string(
        table, "key", path, pattern=KEY_PATTERN,
        pattern_hint="use 1-64 lowercase letters, digits, '-' or '_', starting with a letter or digit",
    )
    name = reader.string(table, "name", path, default=key)
    if name is not None and not (0 < len(name.strip()) <= MAX_NAME_LENGTH):
        reader.problem(key_path(path, "name"), f"must be 1-{MAX_NAME_LENGTH} characters")
    description = reader.string(table, "description", path, default="") or ""
    mode = reader.string(table, "mode", path, default="mirror", choices=("mirror", "add_only"))
    exclude = reader.boolean(table, "exclude_opted_out", path, default=True)
    rule = _parse_group_keys(reader, table, path, depth=0)
    if rule is None and not any(k in table for k in GROUP_KEYS):
        reader.problem(path, "has no rule", "add all = [...], any = [...] or not = {...}")
    if len(reader.problems) > before or key is None or name is None or rule is None:
        return None
    return Segment(
        key=key,
        name=name.strip(),
        rule=rule,
        mode="add_only" if mode == "add_only" else "mirror",
        exclude_opted_out=exclude,
        description=description,
        path=path,
    )


def _parse_group_keys(
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
            _parse_condition(reader, child, where if single else key_path(where, i), depth + 1)
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


def _parse_condition(reader: TableReader, raw: object, path: str, depth: int) -> Condition | None:
    if depth > MAX_DEPTH:
        reader.problem(path, f"rules nest deeper than {MAX_DEPTH} levels")
        return None
    table = reader.table(raw, path)
    if table is None:
        return None
    if "field" in table or "op" in table:
        return _parse_property(reader, table, path)
    if any(k in table for k in GROUP_KEYS):
        reader.check_keys(table, GROUP_KEYS, path)
        return _parse_group_keys(reader, table, path, depth)
    reader.check_keys(table, CONDITION_KEYS, path)
    if table:
        return None
    reader.problem(path, "is an empty condition", "use { field = ..., op = ..., value = ... }")
    return None


def _parse_property(reader: TableReader, table: Mapping[str, Any], path: str) -> Condition | None:
    before = len(reader.problems)
    reader.check_keys(table, PROPERTY_KEYS, path)
    reader.required(table, "field", path)
    reader.required(table, "op", path)
    field = reader.string(
        table, "field", path, pattern=FIELD_PATTERN,
        pattern_hint="a CRM field name (letters, digits, '_'), or company.<field>",
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


def _check_unique(reader: TableReader, segments: list[Segment], attribute: str) -> None:
    seen: dict[str, str] = {}
    for segment in segments:
        value = getattr(segment, attribute)
        folded = value.casefold()
        if folded in seen:
            reader.problem(
                key_path(segment.path, attribute),
                f"{value!r} is already used by {seen[folded]}",
            )
        else:
            seen[folded] = segment.path
