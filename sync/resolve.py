"""Settle memberships whose state in the CRM is unknown, at the lowest call cost.

A (target, record) pair becomes unknown when a write's answer was lost or proved too
little (a reset, a timeout, a 5xx after the CRM committed, a truncated body, a 207 whose
error names no record), when a run was killed between sending a batch and recording it,
and when the CRM moved memberships itself (a merge, a Salesforce lead conversion). Such
a pair is never assumed present or absent. There are two ways to settle it:

* **write** its desired state again: add it if the segment wants it, remove it (mirror
  mode) if not. Both CRMs take these idempotently (HubSpot ignores an add of a member and
  a remove of a non-member; Salesforce answers DUPLICATE_VALUE, and a remove first looks
  the member rows up), and the answer proves the new state. The pairs ride in the plan's
  own batches, so a target that changes anyway pays nothing extra.
* **read** it live (:class:`connectors.base.MembershipReader`): one call covers
  ``max_read_batch`` records in every owned target at once (HubSpot's record-memberships
  batch read, 100 records; one SOQL query per 200 people on Salesforce).

Which is cheaper depends on the shape of the unknowns. A lost batch is many records in
one target: one HubSpot add-and-remove call carries up to 10,000 of them, where reading
them costs a call per 100. A merge makes one survivor unknown in every owned target:
one read covers it in all of them, where writing costs a call per target. So each run
prices both (:func:`choose`) and takes the cheaper; a tie goes to writing, because a
write also makes the change the plan needs. Pairs that cannot be written -- not wanted
by an ``add_only`` segment, which never removes -- are always read.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from connectors.base import Connector, TargetRef, budget_aware, membership_reader
from sync.fieldmode import writes_lists
from sync.plan import Plan, SegmentChange
from sync.store import Store

__all__ = ["Resolution", "WriteCost", "choose", "resolve_unknowns", "write_cost"]

log = logging.getLogger("segsync.resolve")

#: Write calls a target's changes cost: (adds, removes) -> calls.
WriteCost = Callable[[int, int], int]


@dataclass(frozen=True)
class Resolution:
    """What the resolution step did before the plan was (re)computed."""

    #: Unknown pairs of written targets when the run started resolving.
    unknown: int = 0
    #: Pairs settled by reading, and the read calls that took.
    read: int = 0
    read_calls: int = 0
    #: Pairs left to the plan's writes.
    written: int = 0

    @property
    def strategy(self) -> str:
        if not self.unknown:
            return "none"
        if self.read and self.written:
            return "read+write"
        return "read" if self.read else "write"


def write_cost(connector: Connector) -> WriteCost:
    """The connector's own estimate when it has one, else one call per ``max_batch`` ids."""
    budget = budget_aware(connector)
    if budget is not None:
        return lambda adds, removes: budget.estimate_write_calls(adds, removes)
    size = max(1, connector.capabilities().max_batch)
    return lambda adds, removes: math.ceil((adds + removes) / size)


def choose(
    changes: Sequence[SegmentChange], cost: WriteCost, *, records: int,
    forced_records: int, read_batch: int,
) -> bool:
    """True when reading every unknown record costs fewer calls than writing them.

    ``records`` distinct records are unknown in all; ``forced_records`` of them have a
    pair that must be read whichever way is chosen. Writing costs, per target, the calls
    its batches need with the unknown pairs minus the calls without them.
    """
    extra = sum(
        cost(c.adds, c.removes) - cost(c.adds - c.unknown_adds, c.removes - c.unknown_removes)
        for c in changes if c.unknown_adds or c.unknown_removes
    )
    writing = extra + math.ceil(forced_records / read_batch)
    reading = math.ceil(records / read_batch)
    return reading < writing


def resolve_unknowns(store: Store, connector: Connector, plan: Plan) -> Resolution:
    """Read the unknown pairs live when that is cheaper than writing them (see above).

    When pairs were read, the caller diffs again so the plan holds only what is left.
    """
    if not writes_lists(connector):
        return Resolution()
    targets = store.targets()
    sids = store.segment_ids(c.key for c in plan.segments)
    written = {
        sids[c.key]: c for c in plan.segments
        if not c.store_only and (row := targets.get(c.key)) is not None and row.ref is not None
    }
    if plan.tables is None:
        return Resolution()
    pairs = [(p, wanted) for p, wanted in store.unknown_in_plan(plan.tables)
             if p.sid in written]
    if not pairs:
        return Resolution()
    forced = [p for p, wanted in pairs if not wanted and written[p.sid].mode == "add_only"]
    reader = membership_reader(connector)
    if reader is None:
        if forced:
            log.warning("%d membership(s) of add-only segments are unknown and %s cannot read "
                        "them; `segsync sync --reconcile` settles them", len(forced),
                        type(connector).__name__)
        return Resolution(unknown=len(pairs), written=len(pairs) - len(forced))
    batch = max(1, connector.capabilities().max_read_batch)
    changes = [c for sid, c in written.items() if c.unknown_adds or c.unknown_removes]
    read_all = choose(changes, write_cost(connector),
                      records=len({p.crm_id for p, _ in pairs}),
                      forced_records=len({p.crm_id for p in forced}), read_batch=batch)
    chosen = [p for p, _ in pairs] if read_all else forced
    if not chosen:
        return Resolution(unknown=len(pairs), written=len(pairs))
    refs: dict[str, TargetRef] = {}
    for sid in sorted({p.sid for p in chosen}):
        row = targets[written[sid].key]
        assert row.ref is not None
        refs[row.ref.target_id] = row.ref
    by_target = {ref.target_id: sid for sid in written
                 if (ref := targets[written[sid].key].ref) is not None}
    read = reader.read_memberships(list(refs.values()),
                                      sorted({p.crm_id for p in chosen}))
    settled = store.record_read(by_target, chosen, read)
    log.info("read %d unknown membership(s) of %d record(s) live (%d call(s)); %d settled",
             len(chosen), len({p.crm_id for p in chosen}), read.api_calls, settled)
    return Resolution(unknown=len(pairs), read=settled, read_calls=read.api_calls,
                      written=len(pairs) - len(chosen))
