"""The pipeline as the CLI and the scheduler call it: pull -> compute -> plan -> apply -> record.

Each function takes its collaborators (store, connector, clock) as arguments, so tests
drive the whole loop with a fake connector and a fixed clock.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass

from connectors.base import Connector
from connectors.redact import scrub
from segment_rules import requirements
from sync.apply import ApplyResult, apply_plan
from sync.compute import compute_plan
from sync.config import Config
from sync.log import Progress
from sync.plan import Plan
from sync.pull import PullResult, pull_all
from sync.store import Store

__all__ = ["Clock", "SyncOutcome", "run_plan", "run_pull", "run_sync", "utc_now"]

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
    run_id = store.start_run("pull")
    try:
        result = _pull(config, connector, store, clock, full, force, progress)
    except BaseException as exc:
        store.finish_run(run_id, "failed", {}, scrub(str(exc)) or type(exc).__name__)
        raise
    store.finish_run(run_id, "ok", {"pulled": result.total}, "")
    return result


def run_plan(config: Config, store: Store, *, force: bool = False, clock: Clock = utc_now) -> Plan:
    return compute_plan(store, config.segments, clock(), config.sync, force=force,
                        per_value=config.per_value)


def run_sync(
    config: Config, connector: Connector, store: Store, *, dry_run: bool = False,
    full: bool = False, force: bool = False, clock: Clock = utc_now,
    progress: Progress | None = None, on_plan: Callable[[Plan], None] | None = None,
) -> SyncOutcome:
    """One complete sync run; the run row records how it ended, even when it raises."""
    run_id = store.start_run("sync --dry-run" if dry_run else "sync")
    pulled: PullResult | None = None
    try:
        pulled = _pull(config, connector, store, clock, full, force, progress)
        plan = run_plan(config, store, force=force, clock=clock)
        if on_plan:
            on_plan(plan)
        if dry_run:
            store.finish_run(run_id, "dry-run", {"pulled": pulled.total}, "")
            return SyncOutcome(plan, pulled, None, run_id, "dry-run")
        applied = apply_plan(store, connector, plan, run_id, config.name_prefix,
                             progress.applied if progress else None)
        if progress:
            progress.done()
    except BaseException as exc:
        counts = {"pulled": pulled.total} if pulled else {}
        store.finish_run(run_id, "failed", counts, scrub(str(exc)) or type(exc).__name__)
        raise
    status = "partial" if applied.failed else "blocked" if plan.blocked else "ok"
    message = "; ".join(f"{s.key}: {s.blocked}" for s in plan.blocked)
    store.finish_run(
        run_id, status,
        {"pulled": pulled.total, "adds": applied.adds, "removes": applied.removes,
         "failed": applied.failed, "api_calls": applied.api_calls},
        message,
    )
    return SyncOutcome(plan, pulled, applied, run_id, status)
