"""Property conditions: ``{ field = "age", op = "between", value = [25, 40] }``.

One contact field, or a company field as ``company.<field>``, compared with a literal by
one of the operators in :mod:`segment_rules.operators`, which decide the value's shape,
the accepted literal kinds, the SQL and the result for a missing value.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from segment_rules.kinds.base import ConditionKind, FieldUse, Needs, is_missing
from segment_rules.operators import OPERATORS, Operator, kind_of
from segment_rules.sql import COMPANY_ALIAS, CONTACT_ALIAS, Predicate, quote_ident
from segment_rules.tables import TableReader, describe, key_path
from segment_rules.values import Scalar, Value

if TYPE_CHECKING:
    from segment_rules.compile import Compiler

__all__ = [
    "COMPANY_PREFIX",
    "FIELD_HINT",
    "FIELD_PATTERN",
    "KIND",
    "PropertyCondition",
    "column_sql",
    "parse_property",
]

#: Rules address company (account) fields as ``company.<field>``.
COMPANY_PREFIX = "company."
FIELD_PATTERN = re.compile(r"^(company\.)?[A-Za-z][A-Za-z0-9_]{0,99}$")
FIELD_HINT = "a CRM field name (letters, digits, '_'), or company.<field>"
PROPERTY_KEYS = ("field", "op", "value")
MAX_LIST_VALUES = 10_000


@dataclass(frozen=True)
class PropertyCondition:
    """Compare one contact or company field with a literal, e.g. ``age between [25, 40]``."""

    field: str
    op: str
    value: Value
    path: str = dataclasses.field(default="", compare=False)

    @property
    def on_company(self) -> bool:
        return self.field.startswith(COMPANY_PREFIX)

    @property
    def column(self) -> str:
        """The stored column name, without the ``company.`` namespace."""
        return self.field.removeprefix(COMPANY_PREFIX)


def column_sql(condition: PropertyCondition) -> str:
    """The field's column on the contact row or its company row."""
    alias = COMPANY_ALIAS if condition.on_company else CONTACT_ALIAS
    return f"{alias}.{quote_ident(condition.column)}"


# -- parsing -------------------------------------------------------------------------------


def parse_property(
    reader: TableReader, table: Mapping[str, Any], path: str
) -> PropertyCondition | None:
    before = len(reader.problems)
    reader.check_keys(table, PROPERTY_KEYS, path)
    reader.required(table, "field", path)
    reader.required(table, "op", path)
    field = reader.string(
        table, "field", path, pattern=FIELD_PATTERN,
        pattern_hint=FIELD_HINT,
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


# -- words ---------------------------------------------------------------------------------

_OP_WORDS = {
    "eq": "is", "ne": "is not", "in": "is one of", "not_in": "is none of",
    "gt": "is more than", "gte": "is at least", "lt": "is less than", "lte": "is at most",
    "between": "is between", "before": "is before", "after": "is after",
    "within_last_days": "is within the last", "contains": "contains",
    "contains_any": "contains any of", "starts_with": "starts with", "ends_with": "ends with",
    "is_set": "has a value", "is_not_set": "has no value",
}
assert set(_OP_WORDS) == set(OPERATORS)


def _literal(value: Scalar) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return str(value)


class PropertyKind(ConditionKind[PropertyCondition]):
    name = "property"
    node = PropertyCondition
    markers = ("field",)
    hints = ("op",)
    keys = PROPERTY_KEYS

    def parse(
        self, reader: TableReader, table: Mapping[str, Any], path: str
    ) -> PropertyCondition | None:
        return parse_property(reader, table, path)

    def predicate(self, node: PropertyCondition, compiler: Compiler) -> Predicate:
        sql, params = OPERATORS[node.op].sql(column_sql(node), node.value, compiler.now)
        return Predicate(sql, tuple(params))

    def value(self, node: PropertyCondition, compiler: Compiler) -> Predicate:
        return Predicate(column_sql(node))

    def describe(self, node: PropertyCondition) -> str:
        words = _OP_WORDS[node.op]
        value = node.value
        if value is None:
            return f"{node.field} {words}"
        if node.op == "within_last_days":
            return f"{node.field} {words} {value} days"
        if isinstance(value, tuple):
            joiner = " and " if node.op == "between" else ", "
            return f"{node.field} {words} {joiner.join(_literal(v) for v in value)}"
        return f"{node.field} {words} {_literal(value)}"

    def shown(self, node: PropertyCondition, raw: object) -> str:
        return "no value" if is_missing(raw) else f'"{raw}"'

    def needs(self, node: PropertyCondition) -> Needs:
        stream: Literal["contacts", "companies"] = "companies" if node.on_company else "contacts"
        return Needs(fields=(FieldUse(stream, node.column, node.field, node.path),))


KIND = PropertyKind()
