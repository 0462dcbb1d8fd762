"""API calls the HubSpot connector makes, counted by the local emulator.

    PYTHONPATH=. .venv/bin/python benchmarks/hubspot_api_calls.py [--contacts 10000]

Seeds a portal (contacts with companies, closed-won deals and calls), then runs the real
engine three times: a full sync, a sync after 1% of the contacts changed, and a sync with
no change. For each it prints the calls the emulator served, by endpoint, next to the
theoretical minimum for HubSpot's batch sizes (search 200 a call, associations 1,000
inputs a call, list memberships up to ``membership_batch_size`` ids a call). Time is
simulated: the emulator's limiter and the connector's limiters share a fake clock, and
the "simulated seconds" column is the waiting the client-side limiters imposed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import math
import os
import random
import sys
import tempfile
import tomllib
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from connectors.hubspot import HubSpotConnector
from sync.config import parse_config
from sync.engine import run_sync
from sync.store import Store
from tests.emulators.hubspot import Clock, HubSpotEmulator

TOKEN = "pat-na1-bench000-1111-2222-3333-444444444444"
T0 = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)
SEGMENTS = """
[[segment]]
key = "berlin"
name = "Berlin"
all = [{ field = "city", op = "eq", value = "Berlin" }]
[[segment]]
key = "bigco"
name = "Big companies"
all = [{ field = "company.employees", op = "gte", value = 250 }]
[[segment]]
key = "buyers"
name = "Recent buyers"
all = [{ activity = "purchase", at_least = 1, within_days = 90 }]
[[segment]]
key = "called"
name = "Called this month"
all = [{ activity = "call", at_least = 1, within_days = 30 }]
"""


class FakeTime:
    def __init__(self) -> None:
        self.now = 1_000.0
        self.slept = 0.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept += seconds
        self.now += seconds


def seed(hs: HubSpotEmulator, contacts: int) -> tuple[list[str], dict[str, int]]:
    companies = [hs.add_company(name=f"Co {i}", numberofemployees=(i % 10) * 100)
                 for i in range(max(1, contacts // 10))]
    ids: list[str] = []
    sizes = Counter[str]()
    for i in range(contacts):
        cid = hs.add_contact(email=f"p{i}@example.com", city="Berlin" if i % 2 else "Paris")
        ids.append(cid)
        hs.associate("contacts", cid, "companies", companies[i % len(companies)], type_id=1)
        if i % 5 == 0:
            deal = hs.add_deal(dealstage="closedwon", amount=100,
                               closedate=T0 - dt.timedelta(days=10))
            hs.associate("deals", deal, "contacts", cid)
            sizes["deals"] += 1
        if i % 3 == 0:
            call = hs.add_engagement("calls", hs_timestamp=T0 - dt.timedelta(days=2))
            hs.associate("calls", call, "contacts", cid)
            sizes["calls"] += 1
    sizes["companies"] = len(companies)
    return ids, dict(sizes)


def minimum_full(contacts: int, sizes: dict[str, int], members: dict[str, int],
                 chunk: int) -> dict[str, int]:
    def pages(n: int, size: int) -> int:
        return max(1, math.ceil(n / size))

    return {
        "search contacts": pages(contacts, 200),
        "associations contacts->companies": pages(contacts, 1000),
        "search companies": pages(sizes["companies"], 200),
        "search deals": pages(sizes["deals"], 200),
        "associations deals->contacts": pages(sizes["deals"], 1000),
        "search calls": pages(sizes["calls"], 200),
        "associations calls->contacts": pages(sizes["calls"], 1000),
        "search meetings/emails/notes/tasks (empty)": 4,
        "create list": len(members),
        "list memberships add-and-remove": sum(pages(n, chunk) for n in members.values()),
    }


def run(contacts: int) -> None:
    os.environ["HUBSPOT_TOKEN"] = TOKEN
    fake = FakeTime()
    with HubSpotEmulator(token=TOKEN, clock=Clock(T0 - dt.timedelta(days=1)),
                         monotonic=fake.monotonic) as hs:
        ids, sizes = seed(hs, contacts)
        hs.clock.set(T0)
        folder = Path(tempfile.mkdtemp(prefix="segsync-bench-"))
        text = (f'[crm]\ntype = "hubspot"\nbase_url = "{hs.base_url}"\n[store]\n'
                f'path = "store.duckdb"\n[sync]\nmax_removal_fraction = 1.0\n{SEGMENTS}')
        config = parse_config(tomllib.loads(text), folder / "segsync.toml")
        chunk = config.crm.membership_batch_size  # type: ignore[attr-defined]

        def sync(label: str) -> dict[str, int]:
            hs.reset_requests()
            before = fake.slept
            connector = HubSpotConnector(config.crm, clock=hs.clock.now,  # type: ignore[arg-type]
                                         sleep=fake.sleep, monotonic=fake.monotonic,
                                         rng=random.Random(0))
            with Store.open(config.store.path) as store:
                outcome = run_sync(config, connector, store,
                                   clock=lambda: hs.clock.now().replace(tzinfo=None))
            counted = Counter[str]()
            for request in hs.requests:
                counted[_label(request.method, request.path)] += 1
            writes = len(hs.write_requests())
            print(f"\n== {label}: {len(hs.requests)} calls counted by the emulator "
                  f"({writes} writes), status {outcome.status}, "
                  f"{fake.slept - before:.1f} simulated seconds of limiter waiting")
            for name, n in sorted(counted.items()):
                print(f"   {n:6d}  {name}")
            fake.now += 600  # ten minutes pass between runs
            hs.clock.advance(minutes=10)
            return dict(counted)

        sync(f"full sync, {contacts:,} contacts")
        members = {lst["name"]: len(hs.list_members(lst["listId"])) for lst in hs.lists()}
        minimum = minimum_full(contacts, sizes, members, chunk)
        print(f"   theoretical minimum for these batch sizes: {sum(minimum.values())}")
        for name, n in minimum.items():
            print(f"   {n:6d}  {name}")
        changed = random.Random(1).sample(ids, max(1, contacts // 100))
        for cid in changed:
            city = (hs.contact(cid) or {}).get("properties", {}).get("city")
            hs.update_contact(cid, city="Paris" if city == "Berlin" else "Berlin")
        hs.clock.advance(minutes=10)
        sync(f"1% change ({len(changed)} contacts change city)")
        print("   theoretical minimum: 1 contacts search + 1 association read + "
              "1 add-and-remove (Berlin list) = 3; plus one search per other stream (7) and "
              "one archived sweep per object type (8) to learn that nothing else changed")
        sync("no change")
        print(f"\nemulator rate stats: {hs.rate_stats}")


def _label(method: str, path: str) -> str:
    from connectors.hubspot.api import endpoint_label

    return endpoint_label(method, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--contacts", type=int, default=10_000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    run(args.contacts)


if __name__ == "__main__":
    main()
