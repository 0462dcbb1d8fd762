"""The application layer: open a portal's store and run a sync, for every caller alike.

``segsync sync``, ``segsync schedule`` and the Dagster fleet all run a sync the same way:
take the store's lock, open the store, run the pipeline, tell the alert webhook, close.
The CLI only parses arguments and renders what comes back.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from connectors import create
from connectors.base import Connector
from connectors.redact import scrub
from sync.alerts import RunSummary, notify, summarize
from sync.config import Config
from sync.engine import SyncOutcome, run_sync
from sync.lock import store_lock
from sync.store import Store

__all__ = ["alert_unstarted", "open_store", "sync_once"]

log = logging.getLogger("segsync.app")


@contextmanager
def open_store(config: Config, wait: float | None = None) -> Iterator[Store]:
    """Hold the store's lock (waiting up to ``wait`` or ``[sync].lock_wait_seconds``),
    then the open store; both are released however the block ends."""
    seconds = config.sync.lock_wait_seconds if wait is None else wait
    with store_lock(config.store.path, seconds), Store.open(
            config.store.path, config.store.memory_limit) as store:
        yield store


def sync_once(
    config: Config, *, connector: Connector | None = None, wait: float | None = None,
    alerts: bool = True, **options: Any,
) -> SyncOutcome:
    """One sync of one portal: lock, open, run, alert (failures included), close.

    ``options`` go to :func:`sync.engine.run_sync` (``dry_run``, ``full``, ``force``,
    ``progress``, ``on_plan``, ``reconcile_first``, ``clock``). A dry run sends no alert.
    """
    crm = connector if connector is not None else create(config.crm)
    settings = config.alerts if alerts and not options.get("dry_run") else None
    with open_store(config, wait) as store:
        try:
            outcome = run_sync(config, crm, store, **options)
        except Exception as exc:
            if settings is not None:
                runs = store.recent_runs(1)
                run_id = runs[0].run_id if runs and runs[0].command == "sync" else None
                notify(store, settings, RunSummary(run_id, "failed",
                                                   scrub(str(exc)) or type(exc).__name__),
                       config.source.name)
            raise
        if settings is not None and outcome.applied is not None:
            notify(store, settings, summarize(outcome), config.source.name)
    return outcome


def alert_unstarted(config: Config, exc: Exception, wait: float | None = None) -> None:
    """A scheduled run that failed before it could start (its config or connector could
    not be built) still tells the webhook, using the last config that was good."""
    if config.alerts is None:
        return
    try:
        with open_store(config, wait) as store:
            notify(store, config.alerts,
                   RunSummary(None, "failed", scrub(str(exc)) or type(exc).__name__),
                   config.source.name)
    except Exception:  # the store is busy or unreadable: nothing more to tell
        log.debug("could not record the alert for a run that did not start", exc_info=True)
