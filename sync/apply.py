"""Apply: write a plan to the CRM in batches, recording each outcome as it lands.

Each batch is recorded as intended (its pairs unknown) before it is sent, and its
outcome -- what the CRM's answer proves, id by id -- is recorded when the answer comes.
Resuming after a kill needs no saved plan: the store's ``applied`` table moves batch by
batch, so a rerun computes the same desired state, diffs it against ``applied`` and
finds exactly the work that was not done yet, plus the pairs whose answer never came.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from connectors.base import BatchResult, Connector, TargetRef, TargetSpec
from connectors.errors import TargetConflict
from sync.failpoints import checkpoint
from sync.plan import Plan, make_batches
from sync.store import Store

__all__ = ["ApplyResult", "apply_plan"]

log = logging.getLogger("segsync.apply")

Progress = Callable[[str, int, int], None]


@dataclass
class ApplyResult:
    adds: int = 0
    removes: int = 0
    failed: int = 0
    api_calls: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    #: Pairs (or field values) the answers did not prove; settled by the next run.
    unknown: int = 0


def _target(store: Store, connector: Connector, key: str, name: str) -> TargetRef:
    """The segment's owned target, created or renamed if needed; recorded before use."""
    row = store.targets().get(key)
    ref = row.ref if row else None
    if ref is not None and ref.name == name:
        return ref
    if ref is None:
        adopt = row is not None and row.state == "pending"
        store.mark_target_pending(key, name)
    else:
        adopt = False
    checkpoint("apply.before-target")
    try:
        new = connector.ensure_target(TargetSpec(key, name), ref, adopt)
    except TargetConflict:
        if ref is None:  # nothing was created: a later run must not adopt the foreign target
            store.forget_pending_target(key)
        raise
    checkpoint("apply.target-created")
    store.record_target(key, new)
    log.info("%s target for %s: %s", "renamed" if ref else "created", key, new.name)
    return new


def apply_plan(
    store: Store,
    connector: Connector,
    plan: Plan,
    run_id: int,
    name_prefix: str,
    progress: Progress | None = None,
    lists: bool = True,
) -> ApplyResult:
    """Apply every unblocked segment; with ``lists`` false, memberships are only recorded."""
    result = ApplyResult()
    sids = store.segment_ids(change.key for change in plan.segments)
    total = plan.adds + plan.removes
    done = 0
    for change in plan.segments:
        sid = sids[change.key]
        if change.blocked:
            log.warning("skipped %s: %s", change.key, change.blocked)
            store.record_segment_run(run_id, change.key, change.before, 0, 0, 0, "blocked")
            continue
        failed = 0
        assert plan.tables is not None
        adds = store.planned_ids(plan.tables, "adds", sid)
        removes = store.planned_ids(plan.tables, "removes", sid)
        if change.store_only or not lists:
            store.record_batch(run_id, change.key, sid, adds, removes, BatchResult())
            result.adds += len(adds)
            result.removes += len(removes)
            store.record_segment_run(run_id, change.key, change.after, change.adds,
                                     change.removes, 0, "stored")
            continue
        target = _target(store, connector, change.key, name_prefix + change.name)
        for batch in make_batches(removes, adds, connector.capabilities().max_batch):
            checkpoint("apply.before-batch")
            fresh = store.intend_batch(run_id, sid, batch.adds, batch.removes)
            outcome = connector.apply(target, batch)
            checkpoint("apply.sent")
            store.record_batch(run_id, change.key, sid, batch.adds, batch.removes, outcome,
                               fresh)
            checkpoint("apply.recorded")
            failed += len(outcome.failed)
            result.unknown += len(outcome.unknown)
            result.api_calls += outcome.api_calls
            result.adds += sum(1 for i in batch.adds if _done(i, outcome))
            result.removes += sum(1 for i in batch.removes if _done(i, outcome))
            done += len(batch.adds) + len(batch.removes)
            if progress:
                progress("apply", done, total)
        result.failed += failed
        if failed:
            result.failures[change.key] = failed
        store.record_segment_run(run_id, change.key, change.after, change.adds, change.removes,
                                 failed, "partial" if failed else "ok")
    checkpoint("apply.before-finish")
    connector.finish()
    return result


def _done(crm_id: str, outcome: BatchResult) -> bool:
    """Counted as a change made: proven done (a gone record changed nothing)."""
    return not (crm_id in outcome.failed or crm_id in outcome.unknown or crm_id in outcome.gone)
