"""Plan: per-segment adds and removes, the safety guard, and batching. Pure logic only.

The set arithmetic itself runs in SQL (``sync.compute``); this module decides what to do
with the counts, so its rules can be tested with literals.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from connectors.base import Batch
from segment_rules.schema import Segment, SyncMode
from sync.store import PlanTables

__all__ = ["Plan", "SegmentChange", "guard_reason", "make_batches"]


@dataclass(frozen=True)
class SegmentChange:
    """What one segment needs: ``before`` is the applied size, ``after`` the computed one."""

    key: str
    name: str
    mode: SyncMode
    before: int
    after: int
    adds: int
    removes: int
    blocked: str | None = None
    #: Kept in the store only (a holdout's control group), never written to the CRM.
    store_only: bool = False
    #: Of ``adds``/``removes``: pairs whose CRM state was unknown, written to settle it.
    unknown_adds: int = 0
    unknown_removes: int = 0

    @property
    def changed(self) -> bool:
        return bool(self.adds or self.removes)


@dataclass(frozen=True)
class Plan:
    segments: tuple[SegmentChange, ...]
    #: Owned targets whose segment is no longer in the config (left in place, reported).
    orphans: tuple[str, ...] = ()
    #: Contacts whose multi-value segment field must be rewritten (field write mode).
    field_updates: int = 0
    #: From ``--reconcile``: key -> (live members segsync had not applied, applied ones missing).
    drift: tuple[tuple[str, int, int], ...] = ()
    #: Every segment evaluated, per-value blocks expanded (what field mode writes).
    expanded: tuple[Segment, ...] = ()
    #: The store tables this plan's adds, removes and field values are read from.
    tables: PlanTables | None = None

    @property
    def adds(self) -> int:
        return sum(s.adds for s in self.segments if not s.blocked)

    @property
    def removes(self) -> int:
        return sum(s.removes for s in self.segments if not s.blocked)

    @property
    def blocked(self) -> tuple[SegmentChange, ...]:
        return tuple(s for s in self.segments if s.blocked)


def guard_reason(
    before: int, removes: int, max_fraction: float, min_removals: int, force: bool
) -> str | None:
    """Why a segment must not be applied, or None. ``force`` overrides the guard."""
    if force or before == 0 or removes < max(min_removals, 1):
        return None
    share = removes / before
    if share <= max_fraction:
        return None
    return (
        f"would remove {removes} of {before} members ({share:.0%}, limit "
        f"{max_fraction:.0%}); rerun with --force if this is intended"
    )


def make_batches(removes: Sequence[str], adds: Sequence[str], size: int) -> Iterator[Batch]:
    """Chunk changes into batches of at most ``size`` ids, removes first.

    A batch may carry both, so a CRM with a combined add-and-remove call needs no extra
    request for the seam between the two.
    """
    if size < 1:
        raise ValueError("batch size must be at least 1")
    ops = [("remove", i) for i in removes] + [("add", i) for i in adds]
    for start in range(0, len(ops), size):
        chunk = ops[start : start + size]
        yield Batch(
            adds=tuple(i for op, i in chunk if op == "add"),
            removes=tuple(i for op, i in chunk if op == "remove"),
        )
