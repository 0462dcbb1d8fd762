"""``segsync schedule``: run a job on a cron expression, in the foreground, until stopped.

The expression is read by croniter (five fields, in UTC). Runs never overlap: the loop is
sequential, and every run takes the store lock like any other command, so a `sync`
started by hand meanwhile makes the scheduled run wait or skip instead of interleaving.
A run that overruns its next slot is not followed by a burst of catch-up runs: the next
run is the first slot after the previous one finished. A failed run is logged and the
schedule goes on.

SIGTERM and SIGINT set a stop flag: a wait is abandoned at once, a run in progress is
finished first, then :func:`run_schedule` returns 0. A second signal aborts the run
(``KeyboardInterrupt``; runs resume where they stopped).

Clock and sleep are arguments, so tests drive the loop without waiting.
"""

from __future__ import annotations

import datetime as dt
import logging
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from types import FrameType

from croniter import croniter

from connectors.redact import scrub

__all__ = ["next_run", "run_schedule", "stop_on_signals", "upcoming"]

log = logging.getLogger("segsync.schedule")

#: Longest single sleep; the loop re-reads the clock after each (suspend, clock changes).
MAX_SLEEP = 60.0


def next_run(expression: str, after: dt.datetime) -> dt.datetime:
    """The first time strictly after ``after`` that matches the cron ``expression``."""
    result: dt.datetime = croniter(expression, after).get_next(dt.datetime)
    return result


def upcoming(expression: str, after: dt.datetime, count: int) -> list[dt.datetime]:
    """The next ``count`` times the expression fires after ``after``."""
    it = croniter(expression, after)
    return [it.get_next(dt.datetime) for _ in range(count)]


def run_schedule(
    expression: str,
    job: Callable[[], object],
    *,
    clock: Callable[[], dt.datetime],
    sleep: Callable[[float], object],
    stop: threading.Event,
    max_runs: int | None = None,
) -> int:
    """Run ``job`` at every slot of ``expression`` until ``stop`` is set; return 0.

    ``clock`` returns naive UTC; ``sleep(seconds)`` may return early (the default in the
    CLI is ``stop.wait``, which wakes up as soon as a signal sets the flag). ``max_runs``
    ends the loop after that many runs (tests).
    """
    runs = 0
    while not stop.is_set() and (max_runs is None or runs < max_runs):
        due = next_run(expression, clock())
        log.info("next run at %s UTC", due.strftime("%Y-%m-%d %H:%M:%S"))
        while not stop.is_set():
            remaining = (due - clock()).total_seconds()
            if remaining <= 0:
                break
            sleep(min(remaining, MAX_SLEEP))
        if stop.is_set():
            break
        runs += 1
        try:
            job()
        except Exception as exc:  # a failed run must not end the schedule
            log.error("scheduled run failed: %s; the schedule continues",
                      scrub(str(exc)) or type(exc).__name__)
    log.info("schedule stopped")
    return 0


@contextmanager
def stop_on_signals(
    stop: threading.Event, signals: Sequence[signal.Signals] = (signal.SIGTERM, signal.SIGINT)
) -> Iterator[threading.Event]:
    """Set ``stop`` on the first of ``signals``; a second one raises KeyboardInterrupt."""

    def handler(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        log.info("received %s: stopping after the current step (again to abort)",
                 signal.Signals(signum).name)

    previous = {s: signal.signal(s, handler) for s in signals}
    try:
        yield stop
    finally:
        for s, old in previous.items():
            signal.signal(s, old)
