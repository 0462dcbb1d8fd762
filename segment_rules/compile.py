"""Rule tree -> SQL over the store, with bound parameters.

Segments are evaluated by DuckDB in a single pass over the contacts. A compiled rule is
a predicate over the contact row ``c``, its company row ``co`` (NULL when it has none) and
the per-contact tables the leaves asked for while compiling (:class:`Join`, e.g. activity
features ``a`` and RFM scores ``r<window>``), which evaluation builds afterwards.

The compiler does the generic part: boolean groups, consent, holdouts and segment
membership. Each leaf's SQL comes from its kind (:mod:`segment_rules.kinds`). Every leaf
is wrapped in ``coalesce``, so compiled expressions are never NULL and ``not`` means
plain negation.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from segment_rules.kinds import kind_for
from segment_rules.kinds.activity import ACTIVITY_ALIAS
from segment_rules.schema import Condition, Group, Segment
from segment_rules.sql import COMPANY_ALIAS, CONTACT_ALIAS, Join, Predicate, quote_ident

__all__ = [
    "ACTIVITY_ALIAS",
    "COMPANY_ALIAS",
    "CONTACT_ALIAS",
    "Compiler",
    "Join",
    "Predicate",
    "holdout_bucket",
    "quote_ident",
]

_MASK32 = 0xFFFFFFFF
_MIX = 0x45D9F3B
J = TypeVar("J", bound=Join)


def holdout_seed(segment_key: str, salt: str) -> int:
    """32 stable bits per (segment, salt): different segments get independent control groups."""
    digest = hashlib.blake2b(f"{segment_key}\x00{salt}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big")


def holdout_bucket(contact_key: int, segment_key: str, salt: str) -> int:
    """The contact's bucket 0-9999 for a segment: Python twin of the SQL in ``_control``."""
    x = (contact_key ^ holdout_seed(segment_key, salt)) & _MASK32
    x = ((x ^ (x >> 16)) * _MIX) & _MASK32
    x = ((x ^ (x >> 16)) * _MIX) & _MASK32
    x ^= x >> 16
    return x % 10_000


def _holdout_sql(seed: int) -> str:
    x = f"(xor({CONTACT_ALIAS}._cid, {seed}::BIGINT) & {_MASK32})"
    for _ in range(2):
        x = f"((xor({x}, ({x} >> 16)) * {_MIX}) & {_MASK32})"
    return f"(xor({x}, ({x} >> 16)) % 10000)"


@dataclass
class Compiler:
    """Compiles conditions for one evaluation; collects the per-contact tables they read."""

    segments: Mapping[str, Segment]
    now: dt.datetime
    #: Alias -> join, in the order the leaves first asked for them.
    joins: dict[str, Join] = field(default_factory=dict)

    # -- conditions ------------------------------------------------------------------------

    def predicate(self, condition: Condition) -> Predicate:
        if isinstance(condition, Group):
            return self._group(condition)
        return kind_for(condition).predicate(condition, self)

    def value(self, condition: Condition) -> Predicate:
        """The number or text a leaf tests, as ``segsync explain`` shows it."""
        if isinstance(condition, Group):
            raise TypeError("Group has no single value")
        return kind_for(condition).value(condition, self)

    def join(self, wanted: J) -> J:
        """The join registered under ``wanted.alias``; ``wanted`` itself on first use."""
        found = self.joins.setdefault(wanted.alias, wanted)
        if type(found) is not type(wanted):
            raise TypeError(f"join alias {wanted.alias!r} is taken by {type(found).__name__}")
        return found

    def _group(self, group: Group) -> Predicate:
        parts = [self.predicate(child) for child in group.children]
        params = tuple(p for part in parts for p in part.params)
        if group.kind == "not":
            (inner,) = parts
            return Predicate(f"(NOT {inner.sql})", inner.params)
        if not parts:
            return Predicate("TRUE" if group.kind == "all" else "FALSE")
        joiner = " AND " if group.kind == "all" else " OR "
        return Predicate("(" + joiner.join(part.sql for part in parts) + ")", params)

    # -- segments --------------------------------------------------------------------------

    def consent(self, segment: Segment) -> Predicate:
        if not segment.exclude_opted_out:
            return Predicate("TRUE")
        return Predicate(f"NOT coalesce({CONTACT_ALIAS}._opted_out, FALSE)")

    def matches(self, segment: Segment) -> Predicate:
        """The segment's rule and consent: what ``in_segment`` means."""
        return self.predicate(segment.rule) & self.consent(segment)

    def in_control(self, segment: Segment) -> Predicate:
        """True for contacts the segment's holdout puts in its control group."""
        owner = self.segments[segment.control_of] if segment.control_of else segment
        assert owner.holdout is not None
        seed = holdout_seed(owner.key, owner.holdout.salt)
        return Predicate(f"({_holdout_sql(seed)} < ?)", (round(owner.holdout.percent * 100),))

    def membership(self, segment: Segment) -> Predicate:
        """Rule, consent and holdout: exactly who is written to (or kept for) the segment."""
        base = self.matches(segment)
        if segment.control_of is not None:
            return base & self.in_control(segment)
        if segment.holdout is not None:
            control = self.in_control(segment)
            return base & Predicate(f"(NOT {control.sql})", control.params)
        return base
