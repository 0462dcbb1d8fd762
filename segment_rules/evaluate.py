"""Evaluate every segment over the store in one DuckDB pass.

The store hands over a connection and the names of its tables; evaluation writes the
desired membership as a long temp table ``(sid SMALLINT, cid BIGINT)``, which the planner
diffs against what was last applied. Nothing here loops over contacts in Python: each
per-contact table the rules asked for (activity features: one ``GROUP BY`` over the
events; RFM scores: one window query per purchase window) is one statement, and all
segment flags one ``SELECT`` over the contacts. What the rules read is summed from each
leaf's ``needs`` (:mod:`segment_rules.kinds`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import duckdb

from segment_rules.compile import COMPANY_ALIAS, CONTACT_ALIAS, Compiler, quote_ident
from segment_rules.errors import Problem, RuleError
from segment_rules.kinds import Needs, kind_for
from segment_rules.kinds.property import column_sql
from segment_rules.parse import leaves
from segment_rules.schema import PerValueGenerator, PropertyCondition, Segment
from segment_rules.sql import Sources

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
    #: Attributes of events (e.g. a purchase's ``category``) rules or traits filter on.
    event_fields: frozenset[str] = frozenset()


def _needs(segments: Iterable[Segment]) -> Iterable[Needs]:
    """What each leaf of the rules reads, in rule order."""
    for segment in segments:
        for leaf in leaves(segment.rule):
            yield kind_for(leaf).needs(leaf)


def requirements(
    segments: Iterable[Segment], per_value: Iterable[PerValueGenerator] = ()
) -> Requirements:
    needs = [kind_for(g.field).needs(g.field) for g in per_value]
    needs.extend(_needs(segments))
    fields = [use for need in needs for use in need.fields]
    streams = {stream for need in needs for stream in need.streams}
    contact = frozenset(use.column for use in fields if use.stream == "contacts")
    company = frozenset(use.column for use in fields if use.stream == "companies")
    events = frozenset(use.column for use in fields if use.stream == "events")
    return Requirements(contact, company, bool(company) or "companies" in streams,
                        "purchases" in streams, "activities" in streams, events)


def _columns(conn: duckdb.DuckDBPyConnection, table: str) -> set[str]:
    rows = conn.execute(f"SELECT * FROM {quote_ident(table)} LIMIT 0").description or []
    return {row[0] for row in rows}


def _check_columns(
    conn: duckdb.DuckDBPyConnection, segments: Sequence[Segment], tables: Tables
) -> None:
    have = {"contacts": _columns(conn, tables.contacts),
            "companies": _columns(conn, tables.companies),
            "events": _columns(conn, tables.events)}
    problems = [
        Problem(use.path, f"field '{use.name}' is not in the pulled CRM data",
                "check the field name, or run a full pull after adding it")
        for need in _needs(segments) for use in need.fields
        if use.column not in have[use.stream]
    ]
    if problems:
        raise RuleError(problems)


def feature_joins(
    conn: duckdb.DuckDBPyConnection, compiler: Compiler, tables: Tables, only_cid: int | None = None
) -> str:
    """Build the per-contact temp tables the compiled rules use; return the FROM clause."""
    joins = [
        f"{quote_ident(tables.contacts)} AS {CONTACT_ALIAS}",
        f"LEFT JOIN {quote_ident(tables.companies)} AS {COMPANY_ALIAS} "
        f"ON {COMPANY_ALIAS}._crm_id = {CONTACT_ALIAS}._company_id",
    ]
    events = quote_ident(tables.events)
    own = events if only_cid is None else f"(SELECT * FROM {events} WHERE _cid = {int(only_cid)})"
    sources = Sources(events=own, all_events=events)
    for join in compiler.joins.values():
        select = join.select(sources, compiler.now)
        conn.execute(f"CREATE OR REPLACE TEMP TABLE {join.table} AS {select.sql}",
                     list(select.params))
        joins.append(f"LEFT JOIN {join.table} AS {join.alias} "
                     f"ON {join.alias}.cid = {CONTACT_ALIAS}._cid")
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
    column = column_sql(field)
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
