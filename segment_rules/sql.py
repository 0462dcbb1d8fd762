"""SQL pieces shared by the compiler and the condition kinds.

A compiled rule is a :class:`Predicate` over the contact row ``c``, its company row ``co``
(NULL when it has none) and the per-contact tables the kinds ask the compiler for while
compiling (:class:`Join`: activity features, RFM scores). Evaluation creates each join's
table once all rules are compiled, so a table holds exactly the columns the rules use.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Protocol

__all__ = ["COMPANY_ALIAS", "CONTACT_ALIAS", "Join", "Predicate", "Sources", "quote_ident"]

CONTACT_ALIAS = "c"
COMPANY_ALIAS = "co"


@dataclass(frozen=True)
class Predicate:
    """A SQL expression and the values bound to its ``?`` placeholders, in order."""

    sql: str
    params: tuple[object, ...] = ()

    def __and__(self, other: Predicate) -> Predicate:
        return Predicate(f"({self.sql} AND {other.sql})", self.params + other.params)


def quote_ident(name: str) -> str:
    """Quote a column name for DuckDB; field names are validated, this is belt and braces."""
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True)
class Sources:
    """The event rows a join reads, as quoted table names or subqueries."""

    #: The events of the contacts being evaluated: everyone's, or one contact's when
    #: explaining a single contact.
    events: str
    #: Every contact's events, for values ranked against everyone (RFM quintiles).
    all_events: str


class Join(Protocol):
    """A per-contact table that compiled predicates read through its alias.

    Evaluation runs ``CREATE TEMP TABLE <table> AS <select>`` and joins it with
    ``LEFT JOIN <table> AS <alias> ON <alias>.cid = c._cid``, so ``select`` must yield one
    row per contact with a ``cid`` column; contacts without a row read NULLs.
    """

    @property
    def alias(self) -> str: ...

    @property
    def table(self) -> str: ...

    def select(self, sources: Sources, now: dt.datetime) -> Predicate: ...
