"""segsync never takes over what it did not create, even while the CRM misbehaves.

Besides the foreign lists, campaigns and the property every world seeds (checked after
every fault cell and kill scenario: zero foreign writes), these scenarios seed a list or
campaign with exactly the name segsync wants for a segment. Every run, with or without a
fault while the name is checked or the list created (a retried create meets the name
again, a lost answer looks like success), must stop with one clear TargetConflict, leave
the foreign target and its members untouched and adopt nothing, also on the next run.
Renaming a segment onto a foreign name is refused the same way.
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
    HS_SEGMENTS,
    HS_TOKEN,
    PREFIX,
    SF_SEGMENTS,
    T0,
    Lab,
    Outcome,
    hubspot_config_text,
    hubspot_lists,
    parse,
    register,
    salesforce_campaigns,
    salesforce_config_text,
    seed_hubspot,
    seed_salesforce,
)

TIMEOUT, LATE = 0.5, 1.2
HS_FAULTS: dict[str, dict[str, Any] | None] = {
    "no fault": None,
    "503 on create": {"kind": "status", "status": 503, "times": 2, "method": "POST",
                      "path_prefix": "/crm/v3/lists"},
    "timeout on create": {"kind": "delay", "delay": LATE, "times": 1, "method": "POST",
                          "path_prefix": "/crm/v3/lists"},
    "connection cut on create": {"kind": "disconnect", "times": 1, "method": "POST",
                                 "path_prefix": "/crm/v3/lists"},
    "rename onto a foreign name": None,
}
SF_FAULTS: dict[str, dict[str, Any] | None] = {
    "no fault": None,
    "503 on the name check": {"kind": "http_503", "times": 2, "path_prefix": "query",
                              "query_contains": "FROM Campaign"},
    "timeout on the name check": {"kind": "delay", "seconds": LATE, "times": 1,
                                  "path_prefix": "query", "query_contains": "FROM Campaign"},
    "rename onto a foreign name": None,
}
SCENARIOS = [("hubspot", f) for f in HS_FAULTS] + [("salesforce", f) for f in SF_FAULTS]


def _conflicts(runs: list[str], outcome: Outcome, name: str) -> None:
    for run in runs:
        if not run.startswith("TargetConflict") or name not in run or "did not create" not in run:
            outcome.problems.append(f"expected a clear conflict naming {name!r}: {run}")


def run_hubspot(fault_name: str) -> Outcome:
    from connectors.errors import ConnectorError
    from connectors.hubspot import HubSpotConnector
    from sync.engine import run_sync
    from sync.store import Store
    from tests.connectors.hubspot_helpers import FakeTime
    from tests.emulators.hubspot import Clock, Fault, HubSpotEmulator

    started = time.perf_counter()
    outcome = Outcome(f"hubspot {fault_name}")
    fake = FakeTime()
    rename = fault_name.startswith("rename")
    with tempfile.TemporaryDirectory() as tmp, HubSpotEmulator(
            token=HS_TOKEN,
            clock=Clock(T0 - dt.timedelta(days=1)), monotonic=fake.monotonic) as hs:
        expected = seed_hubspot(hs)
        taken = PREFIX + ("Archive" if rename else "Berlin")
        if not rename:
            hs.add_list(taken, members=sorted(expected[PREFIX + "Berlin"])[:2], foreign=True)
        foreign = {lst["listId"]: set(hs.list_members(lst["listId"]))
                   for lst in hs.lists() if lst["foreign"]}
        hs.clock.set(T0)
        segments = [HS_SEGMENTS]
        if rename:
            segments.append(HS_SEGMENTS.replace('name = "Berlin"', 'name = "Archive"'))
        for attempt, text in enumerate(segments * (1 if rename else 2)):
            config = parse(hubspot_config_text(hs.base_url, segments=text), Path(tmp))
            spec = HS_FAULTS[fault_name]
            if spec is not None:
                hs.inject(Fault(**spec))
            crm: Any = config.crm
            connector = HubSpotConnector(replace(crm, timeout=TIMEOUT), now=hs.clock.now,
                                         sleep=fake.sleep, monotonic=fake.monotonic,
                                         rng=random.Random(attempt))
            with Store.open(config.store.path) as store:
                try:
                    outcome.runs.append(run_sync(config, connector, store).status)
                except ConnectorError as exc:
                    outcome.runs.append(f"{type(exc).__name__}: {exc}")
                owned = {k: r.ref for k, r in store.targets().items()}
            hs.clock.advance(minutes=10)
        if rename:  # the first run made the lists; renaming Berlin onto "Archive" is refused
            if outcome.runs[0] != "ok":
                outcome.problems.append(f"the first run failed: {outcome.runs[0]}")
            _conflicts(outcome.runs[1:], outcome, taken)
            if PREFIX + "Berlin" not in hubspot_lists(hs):
                outcome.problems.append("segsync's own list lost its name")
        else:
            _conflicts(outcome.runs, outcome, taken)
            if owned.get("berlin") is not None:
                outcome.problems.append(f"the foreign list was adopted: {owned['berlin']}")
        now = {lst["listId"]: set(hs.list_members(lst["listId"]))
               for lst in hs.lists() if lst["foreign"]}
        if now != foreign:
            outcome.problems.append("a foreign list's members changed")
        outcome.problems += [f"foreign write: {w}" for w in hs.foreign_writes()]
        outcome.problems += [f"emulator error: {e[-300:]}" for e in hs.internal_errors]
        outcome.requests = len(hs.requests)
    outcome.seconds = time.perf_counter() - started
    return outcome


def run_salesforce(fault_name: str) -> Outcome:
    from connectors.errors import ConnectorError
    from connectors.salesforce.connector import SalesforceConnector
    from sync.engine import run_sync
    from sync.store import Store
    from tests.connectors.hubspot_helpers import FakeTime
    from tests.emulators.salesforce import Fault, SalesforceEmulator

    started = time.perf_counter()
    outcome = Outcome(f"salesforce {fault_name}")
    fake = FakeTime()
    rename = fault_name.startswith("rename")
    with tempfile.TemporaryDirectory() as tmp, SalesforceEmulator() as sf:
        expected = seed_salesforce(sf)
        taken = PREFIX + ("Archive" if rename else "Berlin")
        if not rename:
            sf.seed_foreign_campaign(taken, member_ids=sorted(expected[PREFIX + "Berlin"])[:2])
        foreign = {c["Id"]: {m["Id"] for m in sf.members(c["Id"])} for c in sf.campaigns()}
        segments = [SF_SEGMENTS]
        if rename:
            segments.append(SF_SEGMENTS.replace('name = "Berlin"', 'name = "Archive"'))
        for attempt, text in enumerate(segments * (1 if rename else 2)):
            config = parse(salesforce_config_text(sf, segments=text), Path(tmp))
            spec = SF_FAULTS[fault_name]
            if spec is not None:
                sf.inject(Fault(**spec))
            crm: Any = config.crm
            connector = SalesforceConnector(replace(crm, timeout=TIMEOUT),
                                            sleep=fake.sleep, monotonic=fake.monotonic,
                                            rng=random.Random(attempt))
            try:
                with Store.open(config.store.path) as store:
                    try:
                        outcome.runs.append(run_sync(config, connector, store).status)
                    except ConnectorError as exc:
                        outcome.runs.append(f"{type(exc).__name__}: {exc}")
                    owned = {k: r.ref for k, r in store.targets().items()}
            finally:
                connector.close()
            sf.clock.advance(minutes=10)
        if rename:
            if outcome.runs[0] != "ok":
                outcome.problems.append(f"the first run failed: {outcome.runs[0]}")
            _conflicts(outcome.runs[1:], outcome, taken)
            if PREFIX + "Berlin" not in salesforce_campaigns(sf):
                outcome.problems.append("segsync's own campaign lost its name")
        else:
            _conflicts(outcome.runs, outcome, taken)
            if owned.get("berlin") is not None:
                outcome.problems.append(f"the foreign campaign was adopted: {owned['berlin']}")
        now = {c["Id"]: {m["Id"] for m in sf.members(c["Id"])} for c in sf.campaigns()
               if c["Id"] in foreign}
        if now != foreign:
            outcome.problems.append("a foreign campaign or its members changed")
        outcome.problems += [f"foreign write: {w}" for w in sf.foreign_writes]
        outcome.problems += [f"emulator error: {e[-300:]}" for e in sf.internal_errors]
        outcome.requests = len(sf.requests)
    outcome.seconds = time.perf_counter() - started
    return outcome


def run_scenario(crm: str, fault: str) -> Outcome:
    try:
        return run_hubspot(fault) if crm == "hubspot" else run_salesforce(fault)
    except Exception:
        import traceback

        return Outcome(f"{crm} {fault}", problems=[traceback.format_exc()[-2000:]])


@register
def submit_the_ownership_scenarios(lab: Lab) -> None:
    for crm, fault in SCENARIOS:
        lab.submit(f"ownership {crm} {fault}", run_scenario, crm, fault)


@pytest.mark.parametrize(("crm", "fault"), SCENARIOS,
                         ids=[f"{c}-{f}".replace(" ", "_") for c, f in SCENARIOS])
def test_a_foreign_target_with_our_name_is_never_adopted(lab: Lab, crm: str, fault: str
                                                        ) -> None:
    outcome: Outcome = lab.result(f"ownership {crm} {fault}")
    if outcome.problems:
        pytest.fail(f"runs {outcome.runs}\n" + "\n".join(outcome.problems), pytrace=False)
