"""Every fault the CRMs throw, in every phase, against the real engine and connectors.

One cell = (CRM, fault, phase): a fresh emulator with a few dozen people, one fault rule
aimed at the pull, at list/campaign creation or at the membership writes, then
``run_sync`` with the real connector (fake clock and sleep: no real waiting except for
the timeout cells, whose answers come later than the client's timeout). A fault the
connector retries must not fail the run; a fault that stays wrong for the whole run
(a 200 with malformed JSON or an HTML page, per-record failures) may end the first run
with one clear error, and one rerun must finish the job. Every cell then checks:

* every list/campaign segsync owns holds exactly the computed members (no duplicates),
  and no membership is left in an unknown state;
* no id of a completed batch was sent again (counted at the emulator; an id whose answer
  was lost may go out once more);
* the client-side limiter kept within the server's limits (HubSpot: no limiter 429s and
  never more than the budget in a window; Salesforce: the token bucket's bound);
* nothing foreign was written and the emulator saw no internal error.

Cells run in the worker pool (``conftest.py``); each is its own test item.
"""

from __future__ import annotations

import datetime as dt
import random
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from tests.reliability.crm_worlds import (
    HS_BURST,
    HS_SEARCH,
    HS_TOKEN,
    SF_RATE,
    T0,
    Lab,
    Outcome,
    bucket_problems,
    hubspot_config_text,
    hubspot_lists,
    hubspot_rate_problems,
    hubspot_sends,
    parse,
    register,
    resend_problems,
    salesforce_campaigns,
    salesforce_config_text,
    salesforce_sends,
    seed_hubspot,
    seed_salesforce,
    state_problems,
)
from tests.storeview import sql

#: Timeout cells: the client gives up after TIMEOUT s; the answer comes after LATE s.
TIMEOUT, LATE = 0.5, 1.2

# Expected first run: "ok" (retried within the run), "error" (one clear error, then one
# rerun converges), "partial" (per-record failures or writes whose outcome the answer did
# not prove, settled by the rerun) or "lost" (a write HubSpot/Salesforce committed whose
# answer never arrived, through every retry: the run fails, the rerun settles it).
HS_FAULTS: dict[str, tuple[dict[str, Any], str]] = {
    "429 with Retry-After": ({"kind": "rate_limit", "retry_after": "2", "times": 3}, "ok"),
    "429 without Retry-After": ({"kind": "rate_limit", "times": 3}, "ok"),
    "500": ({"kind": "status", "status": 500, "times": 2}, "ok"),
    "502": ({"kind": "status", "status": 502, "times": 2}, "ok"),
    "503": ({"kind": "status", "status": 503, "times": 2}, "ok"),
    "504": ({"kind": "status", "status": 504, "times": 2}, "ok"),
    "423 locked": ({"kind": "status", "status": 423, "times": 2}, "ok"),
    "timeout": ({"kind": "delay", "delay": LATE, "times": 1}, "ok"),
    "connection cut mid-response": ({"kind": "disconnect", "times": 2}, "ok"),
    "502 HTML page": ({"kind": "html", "status": 502, "times": 2}, "ok"),
    "200 HTML page": ({"kind": "html", "status": 200, "times": 1}, "error"),
    "200 malformed JSON": ({"kind": "malformed_json", "times": 1}, "error"),
    "token expiry (OAuth)": ({"kind": "expired_token", "times": 1}, "ok"),
    "per-record failure": ({"kind": "partial", "times": 1}, "partial"),
    "502 after commit, every retry": ({"kind": "status", "status": 502, "reach": True,
                                       "times": 6}, "lost"),
    "reset after commit, every retry": ({"kind": "disconnect", "abort": True, "times": 6},
                                        "lost"),
    "truncated body after commit": ({"kind": "malformed_json", "reach": True, "times": 1},
                                    "partial"),
    "207 naming no record": ({"kind": "unattributed", "times": 1}, "partial"),
}
HS_PHASES: dict[str, dict[str, Any]] = {
    "pull": {"method": "POST", "path_prefix": "/crm/v3/objects/contacts/search"},
    "create": {"method": "POST", "path_prefix": "/crm/v3/lists"},
    "apply": {"method": "PUT", "path_prefix": "/crm/v3/lists/", "after": 1},
}
SF_FAULTS: dict[str, tuple[dict[str, Any], str]] = {
    "429 with Retry-After": ({"kind": "http_429", "retry_after": "2", "times": 3}, "ok"),
    "429 without Retry-After": ({"kind": "http_429", "times": 3}, "ok"),
    "500": ({"kind": "http_500", "times": 2}, "ok"),
    "502": ({"kind": "http_502", "times": 2}, "ok"),
    "503": ({"kind": "http_503", "times": 2}, "ok"),
    "504": ({"kind": "http_504", "times": 2}, "ok"),
    "503 SERVER_UNAVAILABLE": ({"kind": "server_unavailable", "times": 2}, "ok"),
    "concurrent-request limit": ({"kind": "request_limit_exceeded", "times": 2,
                                  "message": "ConcurrentPerOrgLongTxn Limit exceeded"}, "ok"),
    "timeout": ({"kind": "delay", "seconds": LATE, "times": 1}, "ok"),
    "connection cut mid-response": ({"kind": "disconnect", "times": 2}, "ok"),
    "200 HTML page": ({"kind": "html_error", "times": 1}, "error"),
    "200 malformed JSON": ({"kind": "malformed_json", "times": 1}, "error"),
    "session expiry": ({"kind": "session_expired", "times": 1}, "ok"),
    "UNABLE_TO_LOCK_ROW": ({"kind": "unable_to_lock_row", "record_indexes": (0, 1),
                            "times": 2}, "ok"),
    "502 after commit, every retry": ({"kind": "http_502", "reach_org": True, "times": 5},
                                      "lost"),
}
SF_PHASES: dict[str, dict[str, Any]] = {
    "pull": {"path_prefix": "query"},  # the first query of a run is the Account pull
    "create": {"method": "POST", "path_prefix": "sobjects/Campaign"},
    "apply": {"method": "POST", "path_prefix": "composite/sobjects", "after": 1},
}
#: Faults that only exist for some phases (record-level errors need records to write; a
#: lost answer matters where the request changes something).
ONLY_IN = {("hubspot", "per-record failure"): ("apply",),
           ("hubspot", "502 after commit, every retry"): ("apply",),
           ("hubspot", "reset after commit, every retry"): ("apply",),
           ("hubspot", "truncated body after commit"): ("apply",),
           ("hubspot", "207 naming no record"): ("apply",),
           ("salesforce", "UNABLE_TO_LOCK_ROW"): ("create", "apply"),
           ("salesforce", "502 after commit, every retry"): ("apply",)}
#: Where a cell's first run differs from its fault's: an unreadable answer to a membership
#: write proves nothing, so its ids are unknown (a partial run), not an error.
EXPECT = {(crm, fault, "apply"): "partial" for crm in ("hubspot", "salesforce")
          for fault in ("200 HTML page", "200 malformed JSON")}

CELLS = [
    (crm, fault, phase)
    for crm, faults, phases in (("hubspot", HS_FAULTS, HS_PHASES),
                                ("salesforce", SF_FAULTS, SF_PHASES))
    for fault in faults
    for phase in phases
    if phase in ONLY_IN.get((crm, fault), tuple(phases))
]


def _name(crm: str, fault: str, phase: str) -> str:
    return f"{crm}-{fault}-{phase}".replace(" ", "_")


def _judge(outcome: Outcome, expect: str) -> None:
    runs = outcome.runs
    if expect == "ok" and runs != ["ok"]:
        outcome.problems.append(f"a retried fault should not fail the run: {runs}")
    elif expect == "partial" and runs != ["partial", "ok"]:
        outcome.problems.append(f"expected a partial run, then ok: {runs}")
    elif expect == "lost" and (len(runs) != 2 or runs[1] != "ok"
                               or not runs[0].startswith("RetriesExhausted")):
        outcome.problems.append(f"expected a run ending with the lost answer, then ok: {runs}")
    elif expect == "error":
        if len(runs) != 2 or runs[1] != "ok" or not runs[0].startswith("CrmDataError"):
            outcome.problems.append(f"expected one clear CrmDataError, then ok: {runs}")
        elif "JSON" not in runs[0]:
            outcome.problems.append(f"the error does not say what was wrong: {runs[0]}")


def run_hubspot_cell(fault_name: str, phase: str) -> Outcome:
    from connectors.errors import ConnectorError
    from connectors.hubspot import HubSpotConnector
    from sync.engine import run_sync
    from sync.store import Store
    from tests.connectors.hubspot_helpers import FakeTime
    from tests.emulators.hubspot import Clock, Fault, HubSpotEmulator, RateLimitConfig

    started = time.perf_counter()
    spec, expect = HS_FAULTS[fault_name]
    expect = EXPECT.get(("hubspot", fault_name, phase), expect)
    outcome = Outcome(_name("hubspot", fault_name, phase))
    fake = FakeTime()
    limits = RateLimitConfig(burst_limit=HS_BURST, search_limit=HS_SEARCH)
    with tempfile.TemporaryDirectory() as tmp, HubSpotEmulator(
        token=HS_TOKEN,
        clock=Clock(T0 - dt.timedelta(days=1)), monotonic=fake.monotonic, rate_limits=limits,
    ) as hs:
        expected = seed_hubspot(hs)
        hs.clock.set(T0)
        policy: dict[str, Any] = (
            {"policy_name": "SECONDLY"} if phase == "pull" and "429" in fault_name else {})
        fault = hs.inject(Fault(**spec, **HS_PHASES[phase], **policy))
        auth = 'auth = "oauth"' if spec["kind"] == "expired_token" else ""
        config = parse(hubspot_config_text(
            hs.base_url, f"membership_batch_size = 5\nrequests_per_10s = {HS_BURST}\n"
                         f"search_per_second = {HS_SEARCH}\n{auth}"), Path(tmp))
        crm: Any = config.crm
        settings = replace(crm, timeout=TIMEOUT) if spec["kind"] == "delay" else crm
        with Store.open(config.store.path) as store:
            for attempt in range(2):
                connector = HubSpotConnector(settings, now=hs.clock.now,
                                             sleep=fake.sleep, monotonic=fake.monotonic,
                                             rng=random.Random(attempt))
                try:
                    result = run_sync(config, connector, store,
                                      clock=lambda: hs.clock.now().replace(tzinfo=None))
                    outcome.runs.append(result.status)
                except ConnectorError as exc:
                    outcome.runs.append(f"{type(exc).__name__}: {exc}")
                if outcome.runs[-1] == "ok":
                    break
                hs.clock.advance(minutes=10)
                fake.now += 600
            applied = _applied(store)
            if store.unknown_counts():
                outcome.problems.append(f"still unknown: {store.unknown_counts()}")
        outcome.fired = fault.fired
        outcome.requests = len(hs.requests)
        live = hubspot_lists(hs)
        outcome.problems += state_problems(live, expected)
        outcome.problems += _store_problems(applied, live, {"berlin": "segsync: Berlin",
                                                            "bigco": "segsync: Big companies"})
        outcome.problems += resend_problems(hubspot_sends(hs.requests))
        outcome.problems += hubspot_rate_problems(hs)
        outcome.problems += [f"foreign write: {w}" for w in hs.foreign_writes()]
        outcome.problems += [f"emulator error: {e[-300:]}" for e in hs.internal_errors]
    if not fault.fired:
        outcome.problems.append("the fault never fired")
    _judge(outcome, expect)
    outcome.seconds = time.perf_counter() - started
    return outcome


def run_salesforce_cell(fault_name: str, phase: str) -> Outcome:
    from connectors.errors import ConnectorError
    from connectors.salesforce.connector import SalesforceConnector
    from sync.engine import run_sync
    from sync.store import Store
    from tests.connectors.hubspot_helpers import FakeTime
    from tests.emulators.salesforce import Fault, SalesforceEmulator

    started = time.perf_counter()
    spec, expect = SF_FAULTS[fault_name]
    expect = EXPECT.get(("salesforce", fault_name, phase), expect)
    outcome = Outcome(_name("salesforce", fault_name, phase))
    fake = FakeTime()
    sent: list[float] = []
    with tempfile.TemporaryDirectory() as tmp, SalesforceEmulator() as sf:
        expected = seed_salesforce(sf)
        fault = sf.inject(Fault(**spec, **SF_PHASES[phase]))
        config = parse(salesforce_config_text(sf, f"max_requests_per_second = {SF_RATE}"),
                       Path(tmp))
        crm: Any = config.crm
        settings = replace(crm, timeout=TIMEOUT) if spec["kind"] == "delay" else crm
        with Store.open(config.store.path) as store:
            for attempt in range(2):
                connector = SalesforceConnector(settings,
                                                sleep=fake.sleep, monotonic=fake.monotonic,
                                                rng=random.Random(attempt))
                for session in (connector.session, connector._once):
                    hooked: Any = session
                    hooked.on_request = _timed(hooked.on_request, fake, sent)
                try:
                    result = run_sync(config, connector, store,
                                      clock=lambda: sf.clock.now().replace(tzinfo=None))
                    outcome.runs.append(result.status)
                except ConnectorError as exc:
                    outcome.runs.append(f"{type(exc).__name__}: {exc}")
                finally:
                    connector.close()
                if outcome.runs[-1] == "ok":
                    break
                sf.clock.advance(minutes=10)
                fake.now += 600
            applied = _applied(store)
            if store.unknown_counts():
                outcome.problems.append(f"still unknown: {store.unknown_counts()}")
        outcome.fired = fault.fired
        outcome.requests = len(sf.requests)
        live = salesforce_campaigns(sf)
        outcome.problems += state_problems(live, expected)
        outcome.problems += _store_problems(applied, live, {"berlin": "segsync: Berlin",
                                                            "retail": "segsync: Retail firms"})
        outcome.problems += resend_problems(salesforce_sends(sf.requests))
        outcome.problems += bucket_problems(sent, SF_RATE, SF_RATE)
        if sf.api_used > sf.api_limit * settings.max_daily_api_share:
            outcome.problems.append(f"{sf.api_used} API calls: over the daily share")
        outcome.problems += [f"foreign write: {w}" for w in sf.foreign_writes]
        outcome.problems += [f"emulator error: {e[-300:]}" for e in sf.internal_errors]
    if not fault.fired:
        outcome.problems.append("the fault never fired")
    _judge(outcome, expect)
    outcome.seconds = time.perf_counter() - started
    return outcome


def _timed(inner: Any, fake: Any, sent: list[float]) -> Any:
    """Wrap a session's on_request hook to note when (fake time) each attempt went out."""

    def hook(request: Any, response: Any) -> None:
        sent.append(fake.now)
        if inner is not None:
            inner(request, response)

    return hook


def _applied(store: Any) -> dict[str, set[str]]:
    rows = sql(store,
        "SELECT s.key, a.crm_id FROM applied a JOIN segments s USING (sid)").fetchall()
    found: dict[str, set[str]] = {}
    for key, crm_id in rows:
        found.setdefault(str(key), set()).add(str(crm_id))
    return found


def _store_problems(applied: dict[str, set[str]], live: dict[str, set[str]],
                    names: dict[str, str]) -> list[str]:
    """What the store believes is applied must be what the CRM holds (else the next run
    would write again, or never fix a gap)."""
    return [f"store and CRM disagree on {key}" for key, name in names.items()
            if applied.get(key, set()) != live.get(name, set())]


def run_cell(crm: str, fault: str, phase: str) -> Outcome:
    runner = run_hubspot_cell if crm == "hubspot" else run_salesforce_cell
    try:
        return runner(fault, phase)
    except Exception as exc:  # report, do not lose the other cells
        import traceback

        return Outcome(_name(crm, fault, phase),
                       problems=[f"scenario crashed: {traceback.format_exc()[-2000:]}",
                                 repr(exc)])


@register
def submit_the_matrix(lab: Lab) -> None:
    for cell in CELLS:
        lab.submit(_name(*cell), run_cell, *cell)


def test_the_matrix_covers_every_fault_in_every_phase() -> None:
    assert len(CELLS) == 18 * 3 - 2 - 4 * 2 + 15 * 3 - 1 - 2
    for crm in ("hubspot", "salesforce"):
        assert {phase for c, _, phase in CELLS if c == crm} == {"pull", "create", "apply"}


@pytest.mark.parametrize("cell", CELLS, ids=[_name(*c) for c in CELLS])
def test_fault_cell_converges(lab: Lab, cell: tuple[str, str, str]) -> None:
    outcome: Outcome = lab.result(_name(*cell))
    if outcome.problems:
        pytest.fail(f"runs {outcome.runs}\n" + "\n".join(outcome.problems), pytrace=False)
