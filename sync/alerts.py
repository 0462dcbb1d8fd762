"""Webhook alerts: run failures, safety guard trips, partial failures and size jumps.

The optional ``[alerts]`` table names the environment variable that holds a
Slack-compatible incoming-webhook URL (it is a secret: it never appears in the config,
logs or the store). After every ``sync`` run the outcome is turned into a set of active
*conditions*; only changes are sent:

* ``failure``: the run failed (``on_failure``);
* ``guard:<segment>``: the safety guard held a segment back (``on_guard``);
* ``partial``: the share of membership changes the CRM rejected exceeds
  ``partial_failure_threshold``.

A condition that becomes active sends one message; while it stays active nothing more is
sent; when it clears, one recovery message follows. The active conditions live in the
store's ``meta`` table, so a failing scheduled sync does not message every six hours.
A segment whose size changes by more than ``size_change_fraction`` in one run is an
event, not a state: each such run sends one message and there is no recovery.

Delivery is best effort: one retry at most, and a webhook that cannot be reached only
logs a warning (the run's exit code never depends on it). Undelivered changes are sent
again after the next run, because the stored state only moves once a message arrived.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import requests

from connectors.redact import read_secret, scrub
from segment_rules.tables import TableReader, key_path
from sync.settings import read_settings, setting

if TYPE_CHECKING:
    from sync.engine import SyncOutcome

__all__ = [
    "STATE_KEY",
    "AlertSettings",
    "Notice",
    "RunSummary",
    "StateStore",
    "conditions",
    "describe_settings",
    "notify",
    "parse_alerts",
    "post_webhook",
    "summarize",
    "transitions",
]

log = logging.getLogger("segsync.alerts")

STATE_KEY = "alerts_state"
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_TIMEOUT = 10.0
_RETRY_AFTER_MAX = 10.0


@dataclass(frozen=True)
class AlertSettings:
    """The ``[alerts]`` table."""

    #: Name of the environment variable holding the webhook URL.
    webhook_url_env: str = setting(pattern=_ENV_NAME, hint="the name of an environment "
                                   'variable, e.g. "SEGSYNC_WEBHOOK_URL"')
    on_failure: bool = True
    on_guard: bool = True
    #: Alert when more than this share (0-1) of a run's membership changes fail; None: off.
    partial_failure_threshold: float | None = setting(None, minimum=0.0, maximum=1.0)
    #: Alert when a segment's size changes by more than this share in one run; None: off.
    size_change_fraction: float | None = setting(None, minimum=0.0, maximum=100.0)


def parse_alerts(reader: TableReader, raw: object, path: str = "alerts") -> AlertSettings | None:
    """Read the ``[alerts]`` table, recording problems on ``reader``; None if it is invalid.

    Wiring in ``sync.config.parse_config``: add ``"alerts"`` to the top-level keys and
    ``alerts = parse_alerts(reader, data["alerts"]) if "alerts" in data else None``.
    """
    table = reader.table(raw, path)
    if table is None:
        return None
    if "webhook_url" in table:
        reader.problem(key_path(path, "webhook_url"),
                       "the webhook URL is a secret and must not be written in the config file",
                       "put it in an environment variable and name it with webhook_url_env")
        read_settings(reader, {k: v for k, v in table.items() if k != "webhook_url"},
                      AlertSettings, path)
        return None
    return read_settings(reader, table, AlertSettings, path)


@dataclass(frozen=True)
class RunSummary:
    """What alerts need to know about one sync run."""

    run_id: int | None
    #: ok | partial | blocked | failed
    status: str
    error: str = ""
    #: (segment key, reason) of segments the safety guard held back.
    blocked: tuple[tuple[str, str], ...] = ()
    #: Membership changes attempted and how many of them the CRM rejected.
    attempted: int = 0
    failed: int = 0
    #: (segment key, size before, size after) of every applied segment.
    sizes: tuple[tuple[str, int, int], ...] = ()


def summarize(outcome: SyncOutcome) -> RunSummary:
    """What alerts need of a sync run's outcome."""
    plan, applied = outcome.plan, outcome.applied
    blocked = tuple((s.key, str(s.blocked)) for s in plan.segments if s.blocked)
    sizes = tuple((s.key, int(s.before), int(s.after)) for s in plan.segments
                  if not s.blocked and not s.store_only)
    if applied is None:
        return RunSummary(outcome.run_id, outcome.status, blocked=blocked, sizes=sizes)
    attempted = int(applied.adds + applied.removes + applied.failed)
    return RunSummary(outcome.run_id, outcome.status, blocked=blocked, attempted=attempted,
                      failed=int(applied.failed), sizes=sizes)


@dataclass(frozen=True)
class Notice:
    """The messages one run causes, and the state to store once they were delivered."""

    raised: tuple[str, ...] = ()
    recovered: tuple[str, ...] = ()
    events: tuple[str, ...] = ()
    state: Mapping[str, str] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not (self.raised or self.recovered or self.events)

    def text(self, label: str) -> str:
        lines = []
        if self.raised:
            lines.append(f":rotating_light: segsync ({label}): " + self.raised[0])
            lines.extend(f"• {m}" for m in self.raised[1:])
        if self.events:
            lines.append(f":warning: segsync ({label}): segment sizes jumped")
            lines.extend(f"• {m}" for m in self.events)
        if self.recovered:
            lines.append(f":white_check_mark: segsync ({label}): recovered")
            lines.extend(f"• {m}" for m in self.recovered)
        return "\n".join(lines)


def conditions(settings: AlertSettings, run: RunSummary,
               previous: Mapping[str, str]) -> dict[str, str]:
    """The active conditions after ``run`` (condition -> message)."""
    active: dict[str, str] = {}
    if run.status == "failed":
        if settings.on_failure:
            active["failure"] = f"run {run.run_id} failed: {run.error or 'unknown error'}"
        # What a failed run did not evaluate keeps its previous state (no false recovery).
        active.update({k: v for k, v in previous.items() if k != "failure"})
        return active
    if settings.on_guard:
        for key, reason in run.blocked:
            active[f"guard:{key}"] = f"safety guard held back {key}: {reason}"
    threshold = settings.partial_failure_threshold
    if threshold is not None and run.failed and run.attempted:
        share = run.failed / run.attempted
        if share > threshold:
            active["partial"] = (f"run {run.run_id}: {run.failed} of {run.attempted} membership "
                                 f"changes failed ({share:.0%}, threshold {threshold:.0%}); "
                                 "they are retried on the next run")
    return active


def _size_events(settings: AlertSettings, run: RunSummary) -> tuple[str, ...]:
    limit = settings.size_change_fraction
    if limit is None or run.status == "failed":
        return ()
    out = []
    for key, before, after in run.sizes:
        if before <= 0:
            continue
        change = (after - before) / before
        if abs(change) > limit:
            out.append(f"{key}: {before} -> {after} members ({change:+.0%}, "
                       f"limit ±{limit:.0%})")
    return tuple(out)


def transitions(settings: AlertSettings, run: RunSummary,
                previous: Mapping[str, str]) -> Notice:
    """Compare the conditions after ``run`` with ``previous``: what to send and to store."""
    active = conditions(settings, run, previous)
    raised = tuple(message for key, message in active.items() if key not in previous)
    recovered = []
    for key in previous:
        if key in active:
            continue
        if key == "failure":
            recovered.append(f"run {run.run_id} succeeded ({run.status}) after a failed run")
        elif key.startswith("guard:"):
            recovered.append(f"{key[6:]} is no longer held back by the safety guard")
        elif key == "partial":
            recovered.append(f"run {run.run_id}: failed membership changes are back below the "
                             "threshold")
        else:
            recovered.append(f"{key} cleared")
    return Notice(raised, tuple(recovered), _size_events(settings, run), active)


Post = Callable[..., requests.Response]


def post_webhook(url: str, text: str, *, post: Post = requests.post,
                 sleep: Callable[[float], None] = time.sleep) -> bool:
    """POST ``{"text": text}``; retry once on a timeout, connection error, 429 or 5xx."""
    problem = ""
    for attempt in (1, 2):
        wait = 2.0
        try:
            response = post(url, json={"text": text}, timeout=_TIMEOUT)
        except requests.RequestException as exc:
            problem = type(exc).__name__
        else:
            if response.status_code < 300:
                return True
            problem = f"HTTP {response.status_code}"
            if response.status_code != 429 and response.status_code < 500:
                break
            with contextlib.suppress(ValueError):
                wait = min(float(response.headers.get("Retry-After", wait)), _RETRY_AFTER_MAX)
        if attempt == 1:
            sleep(wait)
    log.warning("alert webhook not reached (%s); it is sent again after the next run",
                scrub(problem))
    return False


def _load_state(raw: str | None) -> dict[str, str]:
    try:
        state = json.loads(raw or "{}")
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in state.items()} if isinstance(state, dict) else {}


class StateStore(Protocol):
    """The two meta-table methods of ``sync.store.Store`` that alerts use."""

    def meta(self, key: str) -> str | None: ...

    def set_meta(self, key: str, value: str) -> None: ...


def notify(store: StateStore, settings: AlertSettings | None, run: RunSummary,
           label: str, *, post: Post = requests.post,
           sleep: Callable[[float], None] = time.sleep) -> Notice:
    """Send what changed since the last run and remember the new state; never raises."""
    if settings is None:
        return Notice()
    try:
        previous = _load_state(store.meta(STATE_KEY))
        notice = transitions(settings, run, previous)
        if notice.empty:
            if dict(notice.state) != previous:
                store.set_meta(STATE_KEY, json.dumps(dict(notice.state), sort_keys=True))
            return notice
        url = read_secret(settings.webhook_url_env, "[alerts].webhook_url_env")
        if post_webhook(url, scrub(notice.text(label)), post=post, sleep=sleep):
            store.set_meta(STATE_KEY, json.dumps(dict(notice.state), sort_keys=True))
        return notice
    except Exception as exc:  # alerts must never change a run's outcome
        log.warning("alert not sent: %s", scrub(str(exc)) or type(exc).__name__)
        return Notice()


def describe_settings(settings: AlertSettings) -> Sequence[str]:
    """What the settings alert on, for ``segsync check``."""
    parts = []
    if settings.on_failure:
        parts.append("run failures")
    if settings.on_guard:
        parts.append("safety guard trips")
    if settings.partial_failure_threshold is not None:
        parts.append(f"partial failures above {settings.partial_failure_threshold:.0%}")
    if settings.size_change_fraction is not None:
        parts.append(f"size changes above {settings.size_change_fraction:.0%}")
    return parts
