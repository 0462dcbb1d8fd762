"""The pipeline as the CLI and the scheduler call it: pull -> compute -> plan -> apply -> record.

Each function takes its collaborators (store, connector, clock) as arguments, so tests
drive the whole loop with a fake connector and a fixed clock.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from connectors.base import Connector, budget_aware, field_writer
from segment_rules import requirements
from sync.apply import ApplyResult, apply_plan
from sync.compute import compute_plan, diff_plan, plan_field
from sync.config import Config
from sync.failpoints import checkpoint
from sync.fieldmode import apply_field, writes_lists
from sync.log import Progress
from sync.plan import Plan
from sync.pull import PullResult, pull_all
from sync.resolve import Resolution, resolve_unknowns
from sync.runs import RunStatus, recording_run
from sync.store import Store

__all__ = ["Clock", "SyncOutcome", "reconcile", "run_plan", "run_pull", "run_sync",
           "unknown_left", "utc_now"]

log = logging.getLogger("segsync.engine")

Clock = Callable[[], dt.datetime]


def utc_now() -> dt.datetime:
    """Naive UTC, the store's convention for timestamps."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


@dataclass
class SyncOutcome:
    plan: Plan
    pulled: PullResult | None
    applied: ApplyResult | None
    run_id: int | None
    status: str
    resolution: Resolution = field(default_factory=Resolution)
    #: Memberships and field values still unknown when the run ended (exit code 5).
    unknown_left: int = 0


def _pull(
    config: Config, connector: Connector, store: Store, clock: Clock, full: bool, force: bool,
    progress: Progress | None,
) -> PullResult:
    result = pull_all(
        store, connector, requirements(config.segments, config.per_value), now=clock(),
        lookback_days=config.sync.activity_lookback_days, full=full, force=force,
        progress=progress.pulled if progress else None,
    )
    if progress:
        progress.done()
    return result


def run_pull(
    config: Config, connector: Connector, store: Store, *, full: bool = False,
    force: bool = False, clock: Clock = utc_now, progress: Progress | None = None,
) -> PullResult:
    with recording_run(store, "pull", connector.api_usage) as run:
        result = _pull(config, connector, store, clock, full, force, progress)
        run.counts["pulled"] = result.total
    return result


def reconcile(
    config: Config, connector: Connector, store: Store
) -> tuple[tuple[str, int, int], ...]:
    """Replace what segsync believes is applied with the CRM's live membership.

    Manual edits in the CRM (people added to or removed from an owned list) then show up
    in the plan as removes/adds, and the apply corrects them.
    """
    if not writes_lists(connector):
        return ()
    targets = store.targets()
    sids = store.segment_ids(s.key for s in config.segments)
    drift = []
    for segment in config.segments:
        row = targets.get(segment.key)
        ref = row.ref if row else None
        if ref is None or segment.store_only:
            continue
        extra, missing = store.replace_applied(sids[segment.key], list(connector.members(ref)))
        if extra or missing:
            log.warning("%s: the CRM list differs from what segsync applied: %d added and %d "
                        "removed by hand", segment.key, extra, missing)
            drift.append((segment.key, extra, missing))
    return tuple(drift)


def run_plan(
    config: Config, store: Store, *, force: bool = False, clock: Clock = utc_now,
    connector: Connector | None = None,
) -> Plan:
    plan = compute_plan(store, config.segments, clock(), config.sync, force=force,
                        per_value=config.per_value)
    if connector is not None and field_writer(connector) is not None:
        plan = plan_field(store, plan)
    return plan


def run_sync(
    config: Config, connector: Connector, store: Store, *, dry_run: bool = False,
    full: bool = False, force: bool = False, clock: Clock = utc_now,
    progress: Progress | None = None, on_plan: Callable[[Plan], None] | None = None,
    reconcile_first: bool = False,
) -> SyncOutcome:
    """One complete sync run; the run row records how it ended, even when it raises."""
    with recording_run(store, "sync --dry-run" if dry_run else "sync",
                       connector.api_usage) as run:
        pulled = _pull(config, connector, store, clock, full, force, progress)
        run.counts["pulled"] = pulled.total
        drift = reconcile(config, connector, store) if reconcile_first else ()
        checkpoint("compute.start")
        plan = replace(run_plan(config, store, force=force, clock=clock, connector=connector),
                       drift=drift)
        resolution = resolve_unknowns(store, connector, plan)
        if resolution.read and plan.tables:  # what the read settled: no longer written
            sizes = {change.key: change.after for change in plan.segments}
            plan = replace(diff_plan(store, plan.tables, plan.expanded, sizes, config.sync,
                                     force=force),
                           drift=drift, field_updates=plan.field_updates)
        checkpoint("compute.done")
        if on_plan:
            on_plan(plan)
        if dry_run:
            run.status = RunStatus.DRY_RUN
            return SyncOutcome(plan, pulled, None, run.run_id, run.status, resolution)
        _check_budget(connector, plan, store)
        applied = apply_plan(store, connector, plan, run.run_id, config.name_prefix,
                             progress.applied if progress else None,
                             lists=writes_lists(connector))
        writer = field_writer(connector)
        if writer is not None and plan.blocked:
            log.warning("field not written: a segment is held back by the safety guard")
        elif writer is not None and plan.field_updates:
            _, field_failed, field_unknown = apply_field(
                store, writer, plan, run.run_id, connector.capabilities().max_field_batch)
            applied.failed += field_failed
            applied.unknown += field_unknown
        if progress:
            progress.done()
        left = unknown_left(store, plan, connector)
        run.status = (RunStatus.PARTIAL if applied.failed or left
                      else RunStatus.BLOCKED if plan.blocked else RunStatus.OK)
        notes = [f"{s.key}: {s.blocked}" for s in plan.blocked]
        if left:
            notes.append(f"{left} membership(s)/field value(s) whose outcome the CRM did not "
                         "prove; the next run settles them")
        run.message = "; ".join(notes)
        run.counts.update(adds=applied.adds, removes=applied.removes, failed=applied.failed,
                          api_calls=applied.api_calls)
        return SyncOutcome(plan, pulled, applied, run.run_id, run.status, resolution, left)


def unknown_left(store: Store, plan: Plan, connector: Connector) -> int:
    """Unknown pairs of the segments this run writes (held-back ones excepted), plus
    unknown field values when the field is written."""
    counts = store.unknown_counts()
    written = {c.key for c in plan.segments if not c.blocked and not c.store_only}
    left = sum(n for key, n in counts.items() if key in written) if writes_lists(connector) else 0
    if field_writer(connector) is not None and not plan.blocked:
        left += counts.get("(field)", 0)
    return left


def _check_budget(connector: Connector, plan: Plan, store: Store) -> None:
    """Stop before the first write when the planned writes would pass the CRM's budget share."""
    budget = budget_aware(connector)
    if budget is None:
        return
    owned = store.targets()
    caps = connector.capabilities()
    planned = -(-plan.field_updates // max(1, caps.max_field_batch)) if caps.field else 0
    if not caps.lists:
        budget.check_budget(planned)
        return
    planned += sum(
        budget.estimate_write_calls(
            change.adds, change.removes,
            0 if (row := owned.get(change.key)) is not None and row.ref is not None else 1,
        )
        for change in plan.segments
        if not change.blocked and not change.store_only and (change.changed or change.key not in owned)
    )
    budget.check_budget(planned)
