"""What settling unknown memberships costs, both CRMs, against the bound of issue 12.

    PYTHONPATH=. .venv/bin/python benchmarks/unknown_resolution.py [--contacts 10000]
        [--crm hubspot salesforce] [--out benchmarks/results/unknown_resolution.json]

For each CRM a fresh emulator (tests/emulators) is seeded like benchmarks/api_efficiency.py
and segsync's real engine runs these cases in a row on one store:

* ``no change``    -- a sync with nothing to do and nothing unknown: its calls are the
                      baseline every later case is compared with;
* ``lost answer``  -- ``lost`` contacts enter the Berlin segment and the one membership
                      write that adds them is committed by the CRM while every attempt's
                      answer is lost (a 502 after the commit); the run fails and those
                      pairs are unknown. The case measured is the *next* sync, with nothing
                      else changed: every call it makes beyond the baseline is the price of
                      settling the unknown pairs;
* ``merges``       -- ``merges`` contacts of the Berlin list are merged into contacts
                      outside it (HubSpot moving the list memberships; Salesforce
                      re-parenting the CampaignMember rows): each survivor is unknown in
                      every owned target. Measured: the read calls of the next sync and its
                      writes (the true difference: the survivors leave the list).

The bound: at most one read or write call per 100 unknown pairs on HubSpot, per 200 on
Salesforce (rounded up), and no extra call when nothing is unknown. Never part of the
test suite.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import math
import os
import random
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.api_efficiency import (  # noqa: E402
    HS_SEGMENTS,
    HS_T0,
    HS_TOKEN,
    SF_SEGMENTS,
    FakeTime,
    _config,
    hubspot_seed,
    machine,
    salesforce_seed,
)
from sync.engine import SyncOutcome, run_sync  # noqa: E402
from sync.store import Store  # noqa: E402

OUT = REPO / "benchmarks" / "results" / "unknown_resolution.json"
PAIRS_PER_CALL = {"hubspot": 100, "salesforce": 200}


def _case(crm: str, name: str, calls: int, baseline: int, pairs: int,
          outcome: SyncOutcome, settling: int | None = None, **extra: Any) -> dict[str, Any]:
    """``settling``: the calls settling cost; by default every call beyond the baseline."""
    extra_calls = calls - baseline if settling is None else settling
    bound = math.ceil(pairs / PAIRS_PER_CALL[crm])
    result = {
        "crm": crm, "case": name, "status": outcome.status, "calls": calls,
        "baseline": baseline, "unknown_pairs": pairs,
        "resolution": outcome.resolution.strategy, "read_calls": outcome.resolution.read_calls,
        "settling_calls": extra_calls, "bound": bound, "meets_bound": extra_calls <= bound,
        **extra,
    }
    print(f"  {crm:<10} {name:<12} calls {calls:>4} (baseline {baseline}), unknown pairs "
          f"{pairs:>5}, settled by {result['resolution']:<10} with {extra_calls} call(s); "
          f"bound {bound} {'met' if result['meets_bound'] else 'MISSED'}", flush=True)
    return result


def _unknown(config: Any) -> int:
    with Store.open(config.store.path) as store:
        return sum(store.unknown_counts().values())


def run_hubspot(contacts: int, lost: int, merges: int) -> list[dict[str, Any]]:
    from connectors.errors import ConnectorError
    from connectors.hubspot import HubSpotConnector
    from tests.emulators.hubspot import Clock, Fault, HubSpotEmulator

    os.environ["HUBSPOT_TOKEN"] = HS_TOKEN
    fake = FakeTime()
    results: list[dict[str, Any]] = []
    with HubSpotEmulator(token=HS_TOKEN, clock=Clock(HS_T0 - dt.timedelta(days=1)),
                         monotonic=fake.monotonic) as hs, \
            tempfile.TemporaryDirectory(prefix="segsync-bench-") as tmp:
        ids, _ = hubspot_seed(hs, contacts)
        hs.clock.set(HS_T0)
        config = _config(f'[crm]\ntype = "hubspot"\nbase_url = "{hs.base_url}"\n[store]\n'
                         f'path = "store.duckdb"\n[sync]\nmax_removal_fraction = 1.0\n'
                         f'{HS_SEGMENTS}', Path(tmp))

        def sync() -> tuple[SyncOutcome | None, int]:
            hs.reset_requests()
            connector = HubSpotConnector(config.crm,  # type: ignore[arg-type]
                                         now=hs.clock.now, sleep=fake.sleep,
                                         monotonic=fake.monotonic, rng=random.Random(0))
            try:
                with Store.open(config.store.path) as store:
                    outcome: SyncOutcome | None = run_sync(
                        config, connector, store,
                        clock=lambda: hs.clock.now().replace(tzinfo=None))
            except ConnectorError:
                outcome = None
            calls = len(hs.requests)
            fake.now += 600
            hs.clock.advance(minutes=10)
            return outcome, calls

        sync()
        outcome, baseline = sync()
        assert outcome is not None
        results.append(_case("hubspot", "no change", baseline, baseline, 0, outcome))

        entering = [i for i in ids if (hs.contact(i) or {})["properties"].get("city") == "Paris"]
        for crm_id in entering[:lost]:
            hs.update_contact(crm_id, city="Berlin")
        # Past the pull's overlap: the measured run must not re-read these changes.
        hs.clock.advance(minutes=10)
        fake.now += 600
        hs.inject(Fault(kind="status", status=502, reach=True, method="PUT",
                        path_prefix="/crm/v3/lists/", times=6))
        failed, _ = sync()
        assert failed is None, "the lost answer should fail the run"
        pairs = _unknown(config)
        hs.clear_faults()
        outcome, calls = sync()
        assert outcome is not None
        results.append(_case("hubspot", "lost answer", calls, baseline, pairs, outcome))

        berlin = [i for i in ids if (hs.contact(i) or {})["properties"].get("city") == "Berlin"]
        paris = [i for i in ids if (hs.contact(i) or {})["properties"].get("city") == "Paris"]
        for loser, survivor in zip(berlin[:merges], paris[:merges], strict=True):
            hs.merge_contacts(survivor, loser, memberships="move")
        outcome, calls = sync()
        assert outcome is not None
        # The survivors are pulled (they changed) and leave the Berlin list (the true
        # difference); settling their state in every list is the read alone.
        writes = sum(1 for r in hs.requests if r.method == "PUT")
        results.append(_case("hubspot", "merges", calls, baseline,
                             merges * len(outcome.plan.segments), outcome,
                             settling=outcome.resolution.read_calls,
                             true_difference_writes=writes, survivors=merges))
    return results


def run_salesforce(people: int, lost: int, merges: int) -> list[dict[str, Any]]:
    import connectors
    from connectors.errors import ConnectorError
    from tests.emulators.salesforce import (
        DEFAULT_CONSUMER_KEY,
        DEFAULT_CONSUMER_SECRET,
        Fault,
        SalesforceEmulator,
    )

    os.environ["SF_ID"], os.environ["SF_SECRET"] = DEFAULT_CONSUMER_KEY, DEFAULT_CONSUMER_SECRET
    results: list[dict[str, Any]] = []
    with SalesforceEmulator() as sf, tempfile.TemporaryDirectory(prefix="segsync-bench-") as tmp:
        ids, _ = salesforce_seed(sf, people)
        config = _config(f"""
[crm]
type = "salesforce"
auth = "client_credentials"
client_id_env = "SF_ID"
client_secret_env = "SF_SECRET"
instance_url = "{sf.instance_url}"
ca_file = "{sf.ca_file}"
max_requests_per_second = 0
[store]
path = "store.duckdb"
[sync]
max_removal_fraction = 1.0
{SF_SEGMENTS}""", Path(tmp))

        def sync() -> tuple[SyncOutcome | None, int]:
            sf.clear_requests()
            connector = connectors.create(config.crm)
            try:
                with Store.open(config.store.path) as store:
                    outcome: SyncOutcome | None = run_sync(
                        config, connector, store,
                        clock=lambda: sf.clock.now().replace(tzinfo=None))
            except ConnectorError:
                outcome = None
            calls = len([r for r in sf.requests if "oauth2/token" not in r.path])
            sf.clock.advance(hours=6)
            return outcome, calls

        city: Callable[[str], str | None] = lambda p: (sf.get(p) or {}).get(  # noqa: E731
            "MailingCity" if p.startswith("003") else "City")
        sync()
        outcome, baseline = sync()
        assert outcome is not None
        results.append(_case("salesforce", "no change", baseline, baseline, 0, outcome))

        contacts = [p for p in ids if p.startswith("003")]
        entering = [p for p in contacts if city(p) == "Paris"][:lost]
        for person in entering:
            sf.update(person, MailingCity="Berlin")
        sf.clock.advance(hours=1)  # past the pull's overlap: the measured run reads nothing
        sf.inject(Fault(kind="http_502", reach_org=True, method="POST",
                        path_prefix="composite/sobjects", times=5))
        failed, _ = sync()
        assert failed is None, "the lost answer should fail the run"
        pairs = _unknown(config)
        sf.clear_faults()
        outcome, calls = sync()
        assert outcome is not None
        results.append(_case("salesforce", "lost answer", calls, baseline, pairs, outcome))

        berlin = [p for p in contacts if city(p) == "Berlin"]
        paris = [p for p in contacts if city(p) == "Paris"]
        for loser, master in zip(berlin[:merges], paris[:merges], strict=True):
            sf.merge(master, loser)
        outcome, calls = sync()
        assert outcome is not None
        writes = sum(1 for r in sf.requests if (r.relative or "").startswith("composite"))
        results.append(_case("salesforce", "merges", calls, baseline,
                             merges * len(outcome.plan.segments), outcome,
                             settling=outcome.resolution.read_calls,
                             true_difference_writes=writes, survivors=merges))
    return results


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=10_000)
    parser.add_argument("--lost", type=int, default=200,
                        help="contacts whose membership write's answer is lost")
    parser.add_argument("--merges", type=int, default=150)
    parser.add_argument("--crm", nargs="+", choices=["hubspot", "salesforce"],
                        default=["hubspot", "salesforce"])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    results: list[dict[str, Any]] = []
    for crm in args.crm:
        runner = run_hubspot if crm == "hubspot" else run_salesforce
        results += runner(args.contacts, args.lost, args.merges)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": machine(), "pairs_per_call": PAIRS_PER_CALL,
                                    "results": results}, indent=2))
    print(f"\nwritten to {args.out}")
    return results


if __name__ == "__main__":
    main()
