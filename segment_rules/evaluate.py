"""Evaluate every segment over the store in one DuckDB pass.

The store hands over a connection and the names of its tables; evaluation writes the
desired membership as a long temp table ``(sid SMALLINT, cid BIGINT)``, which the planner
diffs against what was last applied. Nothing here loops over contacts in Python: activity
features are one ``GROUP BY`` over the events, RFM scores one window query per purchase
window, and all segment flags one ``SELECT`` over the contacts.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import duckdb

from segment_rules.compile import (
    ACTIVITY_ALIAS,
    COMPANY_ALIAS,
    CONTACT_ALIAS,
    Compiler,
    quote_ident,
)
from segment_rules.errors import Problem, RuleError
from segment_rules.parse import walk
from segment_rules.schema import (
    ActivityCondition,
    NearCondition,
    PerValueGenerator,
    PropertyCondition,
    RfmCondition,
    Segment,
)

__all__ = [
    "DEFAULT_TABLES",
    "Requirements",
    "Tables",
    "evaluate",
    "feature_joins",
    "requirements",
    "top_values",
]


@dataclass(frozen=True)
class Tables:
    """Where the store keeps the rows evaluation reads, and its fixed column names."""

    contacts: str = "contacts"
    companies: str = "companies"
    events: str = "events"


DEFAULT_TABLES = Tables()


@dataclass(frozen=True)
class Requirements:
    """What the rules read: the only data a pull fetches and the store keeps."""

    contact_fields: frozenset[str]
    company_fields: frozenset[str]
    companies: bool
    purchases: bool
    activities: bool


def _leaves(segments: Iterable[Segment]) -> Iterable[object]:
    for segment in segments:
        yield from walk(segment.rule)


def requirements(
    segments: Iterable[Segment], per_value: Iterable[PerValueGenerator] = ()
) -> Requirements:
    contact: set[str] = set()
    company: set[str] = set()
    near = purchases = activities = False
    fields = [g.field for g in per_value]
    for node in _leaves(segments):
        if isinstance(node, PropertyCondition):
            fields.append(node)
        elif isinstance(node, NearCondition):
            near = True
        elif isinstance(node, RfmCondition):
            purchases = True
        elif isinstance(node, ActivityCondition):
            purchases |= not node.types or "purchase" in node.types
            activities |= not node.types or any(t != "purchase" for t in node.types)
    for leaf in fields:
        (company if leaf.on_company else contact).add(leaf.column)
    return Requirements(frozenset(contact), frozenset(company), bool(company) or near,
                        purchases, activities)


def _columns(conn: duckdb.DuckDBPyConnection, table: str) -> set[str]:
    rows = conn.execute(f"SELECT * FROM {quote_ident(table)} LIMIT 0").description or []
    return {row[0] for row in rows}


def _check_columns(
    conn: duckdb.DuckDBPyConnection, segments: Sequence[Segment], tables: Tables
) -> None:
    have_contact = _columns(conn, tables.contacts)
    have_company = _columns(conn, tables.companies)
    problems = []
    for node in _leaves(segments):
        if not isinstance(node, PropertyCondition):
            continue
        have = have_company if node.on_company else have_contact
        if node.column not in have:
            problems.append(
                Problem(node.path, f"field '{node.field}' is not in the pulled CRM data",
                        "check the field name, or run a full pull after adding it")
            )
    if problems:
        raise RuleError(problems)


def feature_joins(
    conn: duckdb.DuckDBPyConnection, compiler: Compiler, tables: Tables, only_cid: int | None = None
) -> str:
    """Build the activity/RFM temp tables the compiled rules use; return the FROM clause."""
    joins = [
        f"{quote_ident(tables.contacts)} AS {CONTACT_ALIAS}",
        f"LEFT JOIN {quote_ident(tables.companies)} AS {COMPANY_ALIAS} "
        f"ON {COMPANY_ALIAS}._crm_id = {CONTACT_ALIAS}._company_id",
    ]
    events = quote_ident(tables.events)
    if only_cid is not None:
        events = f"(SELECT * FROM {events} WHERE _cid = {int(only_cid)})"
    activity = compiler.activity_table(events)
    if activity is not None:
        conn.execute(f"CREATE OR REPLACE TEMP TABLE segment_activity AS {activity.sql}",
                     list(activity.params))
        joins.append(f"LEFT JOIN segment_activity AS {ACTIVITY_ALIAS} "
                     f"ON {ACTIVITY_ALIAS}.cid = {CONTACT_ALIAS}._cid")
    for window, alias in compiler.rfm_windows.items():
        table = compiler.rfm_table(window, quote_ident(tables.events))
        conn.execute(f"CREATE OR REPLACE TEMP TABLE segment_{alias} AS {table.sql}",
                     list(table.params))
        joins.append(f"LEFT JOIN segment_{alias} AS {alias} ON {alias}.cid = {CONTACT_ALIAS}._cid")
    return " ".join(joins)


def evaluate(
    conn: duckdb.DuckDBPyConnection,
    segments: Sequence[Segment],
    sids: Mapping[str, int],
    now: dt.datetime,
    tables: Tables = Tables(),
    target: str = "desired",
) -> dict[str, int]:
    """Write ``target(sid, cid)`` with every segment's members; return sizes by key."""
    _check_columns(conn, segments, tables)
    conn.execute(f"CREATE OR REPLACE TEMP TABLE {target} (sid SMALLINT, cid BIGINT)")
    if not segments:
        return {}
    compiler = Compiler({s.key: s for s in segments}, now)
    flags: list[str] = []
    params: list[object] = []
    for index, segment in enumerate(segments):
        predicate = compiler.membership(segment)
        flags.append(f"{predicate.sql} AS f{index}")
        params.extend(predicate.params)
    source = feature_joins(conn, compiler, tables)
    conn.execute(
        f"CREATE OR REPLACE TEMP TABLE segment_flags AS SELECT {CONTACT_ALIAS}._cid AS cid, "
        + ", ".join(flags) + f" FROM {source}",
        params,
    )
    union = " UNION ALL ".join(
        f"SELECT {int(sids[segment.key])}::SMALLINT AS sid, cid FROM segment_flags WHERE f{index}"
        for index, segment in enumerate(segments)
    )
    conn.execute(f"INSERT INTO {target} {union}")
    conn.execute("DROP TABLE segment_flags")
    counts = dict(conn.execute(f"SELECT sid, count(*) FROM {target} GROUP BY sid").fetchall())
    return {segment.key: int(counts.get(sids[segment.key], 0)) for segment in segments}


def top_values(
    conn: duckdb.DuckDBPyConnection, field: PropertyCondition, limit: int, tables: Tables = Tables()
) -> list[str]:
    """The ``limit`` most common non-empty values of a field (ties by value), for per_value."""
    column = f"{COMPANY_ALIAS if field.on_company else CONTACT_ALIAS}.{quote_ident(field.column)}"
    if field.column not in _columns(conn, tables.companies if field.on_company else tables.contacts):
        return []
    rows = conn.execute(
        f"SELECT {column} AS v, count(*) AS n FROM {quote_ident(tables.contacts)} AS {CONTACT_ALIAS} "
        f"LEFT JOIN {quote_ident(tables.companies)} AS {COMPANY_ALIAS} "
        f"ON {COMPANY_ALIAS}._crm_id = {CONTACT_ALIAS}._company_id "
        f"WHERE {column} IS NOT NULL AND trim({column}) <> '' GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT ?",
        [limit],
    ).fetchall()
    return [str(value) for value, _ in rows]
