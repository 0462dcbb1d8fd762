"""Evaluate every segment over the store in one DuckDB pass.

The store hands over a connection and the names of its tables; evaluation writes the
desired membership as a long temp table ``(sid SMALLINT, cid BIGINT)``, which the planner
diffs against what was last applied. Nothing here loops over contacts in Python.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import duckdb

from segment_rules.compile import (
    COMPANY_ALIAS,
    CONTACT_ALIAS,
    Predicate,
    compile_condition,
    quote_ident,
)
from segment_rules.errors import Problem, RuleError
from segment_rules.schema import Condition, PropertyCondition, Segment

__all__ = ["Tables", "evaluate", "referenced_fields", "segment_predicate"]


@dataclass(frozen=True)
class Tables:
    """Where the store keeps the rows evaluation reads, and its fixed column names."""

    contacts: str = "contacts"
    companies: str = "companies"
    contact_key: str = "_cid"
    contact_company: str = "_company_id"
    company_key: str = "_crm_id"
    opted_out: str = "_opted_out"


def _walk(condition: Condition) -> Iterable[PropertyCondition]:
    if isinstance(condition, PropertyCondition):
        yield condition
    else:
        for child in condition.children:
            yield from _walk(child)


def referenced_fields(segments: Iterable[Segment]) -> tuple[frozenset[str], frozenset[str]]:
    """The (contact, company) fields the rules read: the only properties a pull fetches."""
    contact: set[str] = set()
    company: set[str] = set()
    for segment in segments:
        for leaf in _walk(segment.rule):
            (company if leaf.on_company else contact).add(leaf.column)
    return frozenset(contact), frozenset(company)


def segment_predicate(segment: Segment, now: dt.datetime, tables: Tables = Tables()) -> Predicate:
    """The full membership test of one segment, consent included."""
    rule = compile_condition(segment.rule, now)
    if not segment.exclude_opted_out:
        return rule
    consent = f"NOT coalesce({CONTACT_ALIAS}.{quote_ident(tables.opted_out)}, FALSE)"
    return Predicate(f"({rule.sql} AND {consent})", rule.params)


def _columns(conn: duckdb.DuckDBPyConnection, table: str) -> set[str]:
    rows = conn.execute(f"SELECT * FROM {quote_ident(table)} LIMIT 0").description or []
    return {row[0] for row in rows}


def _check_columns(
    conn: duckdb.DuckDBPyConnection, segments: Sequence[Segment], tables: Tables
) -> None:
    have_contact = _columns(conn, tables.contacts)
    have_company = _columns(conn, tables.companies)
    problems = []
    for segment in segments:
        for leaf in _walk(segment.rule):
            have = have_company if leaf.on_company else have_contact
            if leaf.column not in have:
                problems.append(
                    Problem(leaf.path, f"field '{leaf.field}' is not in the pulled CRM data",
                            "check the field name, or run a full pull after adding it")
                )
    if problems:
        raise RuleError(problems)


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
    contacts = f"{quote_ident(tables.contacts)} AS {CONTACT_ALIAS}"
    companies = f"{quote_ident(tables.companies)} AS {COMPANY_ALIAS}"
    join = (
        f"{COMPANY_ALIAS}.{quote_ident(tables.company_key)} = "
        f"{CONTACT_ALIAS}.{quote_ident(tables.contact_company)}"
    )
    conn.execute(f"CREATE OR REPLACE TEMP TABLE {target} (sid SMALLINT, cid BIGINT)")
    if not segments:
        return {}
    flags: list[str] = []
    params: list[object] = []
    for index, segment in enumerate(segments):
        predicate = segment_predicate(segment, now, tables)
        flags.append(f"{predicate.sql} AS f{index}")
        params.extend(predicate.params)
    conn.execute(
        "CREATE OR REPLACE TEMP TABLE segment_flags AS SELECT "
        f"{CONTACT_ALIAS}.{quote_ident(tables.contact_key)} AS cid, " + ", ".join(flags)
        + f" FROM {contacts} LEFT JOIN {companies} ON {join}",
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


