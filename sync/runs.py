"""The run bracket: every command that changes the store is a run, recorded however it ends.

A run row is written when the command starts (status ``running``) and completed when it
ends: with the status and counts the body set, or ``failed`` with a scrubbed one-line
message when it raised -- a ``KeyboardInterrupt`` or a killed process included (a row
left ``running`` is marked ``interrupted`` by the next run). The CRM calls made are
recorded either way, since a failed run spent them too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum

from connectors.redact import scrub
from sync.store import Store

__all__ = ["RunRecord", "RunStatus", "recording_run"]

Usage = Callable[[], Mapping[str, int]]


class RunStatus(StrEnum):
    """How a run ended, as ``segsync status`` and the report show it."""

    RUNNING = "running"
    OK = "ok"
    PARTIAL = "partial"  # some records were refused or not proven: retried next run
    BLOCKED = "blocked"  # the safety guard held a segment back
    DRY_RUN = "dry-run"
    FAILED = "failed"
    INTERRUPTED = "interrupted"


@dataclass
class RunRecord:
    """What the body of :func:`recording_run` reports back; ``run_id`` is set on entry.

    ``message`` is the run's summary; set while the body works, it also prefixes the
    reason of a failure ("deleted a, b, then: ...").
    """

    run_id: int
    status: RunStatus = RunStatus.OK
    counts: dict[str, int] = field(default_factory=dict)
    message: str = ""


@contextmanager
def recording_run(store: Store, command: str, usage: Usage | None = None) -> Iterator[RunRecord]:
    """Record one run of ``command``; the body sets the record's status, counts, message."""
    record = RunRecord(store.start_run(command))
    try:
        yield record
    except BaseException as exc:
        reason = scrub(str(exc)) or type(exc).__name__
        if record.message:  # what the run had done before it failed
            reason = scrub(f"{record.message}, then: {type(exc).__name__}: {exc}")
        store.finish_run(record.run_id, RunStatus.FAILED, record.counts, reason, _usage(usage))
        raise
    store.finish_run(record.run_id, record.status, record.counts, record.message, _usage(usage))


def _usage(usage: Usage | None) -> dict[str, int]:
    if usage is None:
        return {}
    try:
        return dict(usage())
    except Exception:  # usage is informational; never let it mask the run's outcome
        return {}
