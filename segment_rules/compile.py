"""Rule tree -> one SQL boolean expression per segment, with bound parameters.

Segments are evaluated by DuckDB over the store in a single pass, so a rule compiles to a
predicate over two aliases: ``c`` (the contact row) and ``co`` (its company row, NULL when
the contact has none). Every leaf is wrapped in ``coalesce`` by its operator, so the
compiled expression is never NULL and ``not`` means plain negation.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from segment_rules.operators import OPERATORS
from segment_rules.schema import Condition, Group, PropertyCondition

__all__ = ["COMPANY_ALIAS", "CONTACT_ALIAS", "Predicate", "compile_condition", "quote_ident"]

CONTACT_ALIAS = "c"
COMPANY_ALIAS = "co"


@dataclass(frozen=True)
class Predicate:
    """A SQL boolean expression and the values bound to its ``?`` placeholders, in order."""

    sql: str
    params: tuple[object, ...] = ()


def quote_ident(name: str) -> str:
    """Quote a column name for DuckDB; field names are validated, this is belt and braces."""
    return '"' + name.replace('"', '""') + '"'


def column_sql(condition: PropertyCondition) -> str:
    alias = COMPANY_ALIAS if condition.on_company else CONTACT_ALIAS
    return f"{alias}.{quote_ident(condition.column)}"


def compile_condition(condition: Condition, now: dt.datetime) -> Predicate:
    """Compile a validated condition; ``now`` (naive UTC) anchors relative date windows."""
    if isinstance(condition, PropertyCondition):
        op = OPERATORS[condition.op]
        sql, params = op.sql(column_sql(condition), condition.value, now)
        return Predicate(sql, tuple(params))
    return _compile_group(condition, now)


def _compile_group(group: Group, now: dt.datetime) -> Predicate:
    parts = [compile_condition(child, now) for child in group.children]
    params = tuple(p for part in parts for p in part.params)
    if group.kind == "not":
        (inner,) = parts
        return Predicate(f"(NOT {inner.sql})", inner.params)
    if not parts:
        return Predicate("TRUE" if group.kind == "all" else "FALSE")
    joiner = " AND " if group.kind == "all" else " OR "
    return Predicate("(" + joiner.join(part.sql for part in parts) + ")", params)
