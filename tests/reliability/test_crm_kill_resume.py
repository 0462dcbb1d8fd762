"""SIGKILL the real ``segsync sync`` process talking to a CRM emulator, then rerun.

For HubSpot and Salesforce alike: a first uninterrupted subprocess run traces every
failpoint it passes (``SEGSYNC_TRACE_POINTS``); ten points per CRM are then chosen,
seeded, from pull, compute and apply (always including "list/campaign created but not yet
recorded" and "batch sent but not yet recorded"). Each scenario gets a fresh emulator in a
pool worker, runs ``python -m sync sync`` with ``SEGSYNC_KILL_AT`` (the process kills
itself with SIGKILL there), reruns the sync, and checks:

* the CRM holds exactly the desired memberships, in exactly one list/campaign per segment
  (a list created just before the kill is adopted, not duplicated);
* the change log tells one consistent story and the killed run is marked interrupted;
* no id that the killed run recorded as done was sent again; the only ids sent by both
  runs belong to the one batch that was in flight when the process died;
* nothing foreign was written.

The emulator runs in the worker process on the real clock, and the rules read properties
only, so "now" in the subprocess cannot change any segment.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO
from tests.reliability.crm_worlds import (
    Lab,
    Outcome,
    hubspot_config_text,
    hubspot_lists,
    hubspot_sends,
    parse,
    register,
    salesforce_campaigns,
    salesforce_config_text,
    salesforce_sends,
    seed_hubspot,
    seed_salesforce,
    state_problems,
)
from tests.storeview import sql

KILLS_PER_CRM = 10
CRMS = ("hubspot", "salesforce")


def _start(crm: str) -> tuple[Any, dict[str, set[str]], str]:
    """A started emulator on the real clock, the desired state, the config text."""
    if crm == "hubspot":
        from tests.emulators.hubspot import HubSpotEmulator, RateLimitConfig

        # No server-side limit: the in-process rerun must never sleep on a 429 for real.
        hs = HubSpotEmulator(token=os.environ["HUBSPOT_TOKEN"],
                             rate_limits=RateLimitConfig(enabled=False)).start()
        return hs, seed_hubspot(hs), hubspot_config_text(hs.base_url, "membership_batch_size = 5")
    from tests.emulators.salesforce import SalesforceEmulator

    sf = SalesforceEmulator().start()
    return sf, seed_salesforce(sf), salesforce_config_text(sf)


def _live(crm: str, emulator: Any) -> dict[str, set[str]]:
    return hubspot_lists(emulator) if crm == "hubspot" else salesforce_campaigns(emulator)


def _sends(crm: str, requests: list[Any]) -> list[tuple[tuple[str, str, str], bool, bool]]:
    return hubspot_sends(requests) if crm == "hubspot" else salesforce_sends(requests)


def _foreign(crm: str, emulator: Any) -> list[Any]:
    found: list[Any] = (emulator.foreign_writes() if crm == "hubspot"
                        else emulator.foreign_writes)
    return found


def _segsync(config: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sync", "sync", "--config", str(config)],
        capture_output=True, text=True, timeout=120, check=False, cwd=REPO,
        env={**os.environ, **env},
    )


def _rerun(config_path: Path) -> str:
    """The rerun, in the worker process: the same engine and connector the CLI builds."""
    import connectors
    from sync.config import load_config
    from sync.engine import run_sync
    from sync.store import Store

    config = load_config(config_path)
    connector = connectors.create(config.crm)
    try:
        with Store.open(config.store.path) as store:
            return run_sync(config, connector, store).status
    finally:
        close = getattr(connector, "close", None)
        if close is not None:
            close()


def _target_of(crm: str, key: tuple[str, str, str], targets: dict[str, str]) -> str | None:
    """The segment a send belongs to (HubSpot: by list path; Salesforce: by campaign)."""
    where = key[0]
    for segment, target_id in targets.items():
        if (crm == "hubspot" and where.startswith(f"/crm/v3/lists/{target_id}/")) or (
                crm == "salesforce" and where == target_id):
            return segment
    return None


def run_kill(crm: str, point: str | None) -> Outcome:
    """One scenario; with ``point`` None, the uninterrupted trace run."""
    from sync.store import Store
    from tests.reliability.test_kill_resume import change_log_is_consistent

    started = time.perf_counter()
    outcome = Outcome(f"{crm}-{point or 'trace'}")
    emulator, expected, text = _start(crm)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            config = parse(text, Path(tmp))
            trace = Path(tmp) / "trace.txt"
            env = {"SEGSYNC_KILL_AT": point} if point else {"SEGSYNC_TRACE_POINTS": str(trace)}
            killed = _segsync(config.source, **env)
            if point is None:
                outcome.runs.append(f"exit {killed.returncode}")
                outcome.detail["points"] = trace.read_text().split() if trace.exists() else []
                if killed.returncode != 0:
                    outcome.problems.append(f"trace run failed: {killed.stderr[-1500:]}")
            else:
                outcome.runs.append(f"exit {killed.returncode}")
                if killed.returncode != -signal.SIGKILL:
                    outcome.problems.append(f"not killed at {point}: {killed.stderr[-1500:]}")
                first = list(emulator.requests)
                outcome.runs.append(_rerun(config.source))
                later = list(emulator.requests)[len(first):]
                outcome.problems += _resend_problems(crm, config.store.path, first, later)
                change_log_is_consistent(config.store.path)
                with Store.open(config.store.path) as store:
                    statuses = [r.status for r in store.recent_runs()]
                if statuses != ["ok", "interrupted"]:
                    outcome.problems.append(f"run statuses {statuses}")
            outcome.problems += state_problems(_live(crm, emulator), expected)
            outcome.problems += [f"foreign write: {w}" for w in _foreign(crm, emulator)]
            outcome.problems += [f"emulator error: {e[-300:]}" for e in emulator.internal_errors]
    except Exception:
        import traceback

        outcome.problems.append(f"scenario crashed: {traceback.format_exc()[-2000:]}")
    finally:
        emulator.stop()
    outcome.seconds = time.perf_counter() - started
    return outcome


def _resend_problems(crm: str, store_path: Path, first: list[Any], later: list[Any]
                     ) -> list[str]:
    """Ids the killed run recorded as done are never sent again; ids sent by both runs
    all come from one request of the killed run: the batch in flight at the kill."""
    from sync.store import Store

    with Store.open(store_path) as store:
        done = {(str(s), str(c), str(o)) for s, c, o in sql(store,
            "SELECT segment_key, crm_id, op FROM changes WHERE run_id = 1 AND result = 'ok'"
        ).fetchall()}
        targets = {key: row.ref.target_id for key, row in store.targets().items()
                   if row.ref is not None}
    problems = []
    before: dict[tuple[str, str, str], int] = {}
    for index, request in enumerate(first):
        for key, _, _ in _sends(crm, [request]):
            before.setdefault(key, index)
    again = [key for key, _, _ in _sends(crm, later) if key in before]
    for key in again:
        segment = _target_of(crm, key, targets)
        if (str(segment), key[2], key[1]) in done:
            problems.append(f"{key} was recorded as done by the killed run, then sent again")
    if len({before[key] for key in again}) > 1:
        problems.append(f"ids of several completed batches were sent again: {again}")
    return problems


def choose_points(points: list[str], seed: int) -> list[str]:
    """KILLS_PER_CRM points over pull, compute and apply; always one kill between creating
    a target and recording it, and one between sending a batch and recording it."""
    rng = random.Random(seed)
    phases = {p: [x for x in points if x.startswith(p)] for p in ("pull", "compute", "apply")}
    assert all(phases.values()), phases
    must = ["apply.target-created:1", "apply.sent:1"]
    assert all(m in points for m in must), points
    picked = [*must, *phases["compute"]]
    picked += rng.sample(phases["pull"], min(3, len(phases["pull"])))
    rest = [p for p in phases["apply"] if p not in picked]
    picked += rng.sample(rest, KILLS_PER_CRM - len(picked))
    return picked


@register
def submit_the_kills(lab: Lab) -> None:
    """Trace both CRMs, then queue KILLS_PER_CRM kills per CRM at points from the trace."""
    traces = {crm: lab.submit(f"trace {crm}", run_kill, crm, None) for crm in CRMS}
    for seed, crm in enumerate(CRMS, start=20261122):
        points = traces[crm].result(timeout=300).detail.get("points", [])
        chosen = choose_points(points, seed) if points else []
        for point in chosen:
            lab.submit(f"kill {crm} {point}", run_kill, crm, point)
        lab.submit(f"chosen {crm}", list, chosen)


@pytest.mark.parametrize("crm", CRMS)
def test_an_uninterrupted_run_reaches_the_desired_state(lab: Lab, crm: str) -> None:
    trace: Outcome = lab.result(f"trace {crm}")
    if trace.problems:
        pytest.fail("\n".join(trace.problems), pytrace=False)
    chosen = lab.result(f"chosen {crm}")
    assert len(set(chosen)) == KILLS_PER_CRM
    assert {p.split(".")[0] for p in chosen} == {"pull", "compute", "apply"}


@pytest.mark.parametrize("crm", CRMS)
def test_every_killed_run_converges_on_rerun(lab: Lab, crm: str) -> None:
    outcomes: list[Outcome] = [lab.result(f"kill {crm} {p}") for p in lab.result(f"chosen {crm}")]
    assert len(outcomes) == KILLS_PER_CRM
    failures = [f"{o.name}: runs {o.runs}\n  " + "\n  ".join(o.problems)
                for o in outcomes if o.problems]
    if failures:
        pytest.fail("\n".join(failures), pytrace=False)
