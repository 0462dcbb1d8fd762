"""API calls of a Salesforce sync: 10,000 people in full, then a 1% change.

Runs segsync's real engine against the local Salesforce emulator (tests/emulators) and
prints the calls per endpoint next to the theoretical minimum. Not part of the test run.

    PYTHONPATH=. .venv/bin/python benchmarks/salesforce_api_calls.py [--people 10000]
        [--bulk-threshold 20000]

Theoretical minimum, as counted here (logins are not counted by Salesforce):
  reads  = per object, ceil(rows / 2000) query pages (the REST maximum page), at least 1;
  writes = per campaign, 1 create + ceil(members / 200) inserts (the collections maximum);
  a 1% change = 1 query per object (7), ceil(adds / 200) + ceil(removes / 200) per campaign
  (a remove also needs the CampaignMember ids: one lookup query per batch, not counted).
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import os
import random
import sys
import tempfile
import time
import tomllib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import connectors
from sync.config import parse_config
from sync.engine import run_sync
from sync.store import Store
from tests.emulators.salesforce import (
    DEFAULT_CONSUMER_KEY,
    DEFAULT_CONSUMER_SECRET,
    SalesforceEmulator,
)

SEGMENTS = """
[[segment]]
key = "berlin"
name = "Berlin"
all = [{ field = "city", op = "eq", value = "Berlin" }]

[[segment]]
key = "retail"
name = "Retail firms"
all = [{ field = "company.industry", op = "eq", value = "Retail" }]

[[segment]]
key = "buyers"
name = "Buyers"
all = [{ activity = "purchase", at_least = 1, within_days = 365 }]

[[segment]]
key = "called"
name = "Called"
all = [{ activity = "call", at_least = 1, within_days = 90 }]
"""


def seed(sf: SalesforceEmulator, people: int, rng: random.Random) -> dict[str, int | list[str]]:
    today = sf.clock.now().date()
    accounts = [sf.add("Account", Name=f"A{i}", Industry=rng.choice(["Retail", "Banking"]))
                for i in range(people // 10)]
    cities = ["Berlin", "Paris", "Rome"]
    contacts = [sf.add("Contact", LastName=f"C{i}", AccountId=accounts[i % len(accounts)],
                       MailingCity=rng.choice(cities)) for i in range(people * 8 // 10)]
    leads = [sf.add("Lead", LastName=f"L{i}", Company="X", City=rng.choice(cities))
             for i in range(people * 2 // 10)]
    opps = people // 5
    for i in range(opps):
        sf.add("Opportunity", Name=f"O{i}", StageName=rng.choice(["Closed Won", "Closed Lost"]),
               Amount=100.0, CloseDate=today - dt.timedelta(days=rng.randrange(400)),
               ContactId=contacts[i])
    tasks = people // 2
    for _ in range(tasks):
        sf.add("Task", WhoId=rng.choice(contacts), Type=rng.choice(["Call", "Email"]),
               Status="Completed", ActivityDate=today - dt.timedelta(days=rng.randrange(200)))
    sf.clock.advance(hours=1)
    return {"Account": len(accounts), "Contact": len(contacts), "Lead": len(leads),
            "Opportunity": opps, "Task": tasks, "people": contacts + leads}


def minimum_reads(rows: dict[str, int]) -> int:
    # OpportunityContactRole and Event are read too (empty here): one call each.
    objects = ["Account", "Contact", "Lead", "Opportunity", "Task"]
    return sum(max(1, math.ceil(rows[o] / 2000)) for o in objects) + 2


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=10_000)
    parser.add_argument("--bulk-threshold", type=int, default=20_000,
                        help="[crm].bulk_threshold (0: never use Bulk API 2.0)")
    args = parser.parse_args()
    os.environ["SF_ID"], os.environ["SF_SECRET"] = DEFAULT_CONSUMER_KEY, DEFAULT_CONSUMER_SECRET
    rng = random.Random(2026)
    with SalesforceEmulator() as sf, tempfile.TemporaryDirectory() as tmp:
        rows = seed(sf, args.people, rng)
        people = rows.pop("people")
        assert isinstance(people, list)
        text = f"""
[crm]
type = "salesforce"
auth = "client_credentials"
client_id_env = "SF_ID"
client_secret_env = "SF_SECRET"
instance_url = "{sf.instance_url}"
ca_file = "{sf.ca_file}"
max_requests_per_second = 0
bulk_threshold = {args.bulk_threshold}
[store]
path = "store.duckdb"
[sync]
max_removal_fraction = 1.0
{SEGMENTS}"""
        config = parse_config(tomllib.loads(text), Path(tmp) / "segsync.toml")
        clock = lambda: sf.clock.now().replace(tzinfo=None)  # noqa: E731

        def run(label: str) -> dict[str, int]:
            connector = connectors.create(config.crm)
            started = time.perf_counter()
            with Store.open(config.store.path) as store:
                outcome = run_sync(config, connector, store, clock=clock)
            usage = connector.api_usage()
            assert outcome.applied is not None
            print(f"\n{label}: {outcome.status}, +{outcome.applied.adds} "
                  f"-{outcome.applied.removes} memberships in "
                  f"{time.perf_counter() - started:.1f} s")
            for endpoint, calls in usage.items():
                print(f"  {endpoint:<34} {calls:>5}")
            data = sum(n for k, n in usage.items() if "login" not in k)
            print(f"  {'total (without the login)':<34} {data:>5}")
            per_segment = [(c.adds, c.removes) for c in outcome.plan.segments]
            return {"calls": data, "adds": outcome.applied.adds,
                    "removes": outcome.applied.removes,
                    "writes": sum(math.ceil(a / 200) + math.ceil(r / 200)
                                  for a, r in per_segment)}

        print(f"{args.people} people: " + ", ".join(f"{k} {v}" for k, v in rows.items()
                                                      if isinstance(v, int)))
        full = run("full sync")
        sizes = {c["Name"]: c["NumberOfContacts"] + c["NumberOfLeads"] for c in sf.campaigns()}
        floor = minimum_reads({k: int(v) for k, v in rows.items() if isinstance(v, int)})
        floor += sum(1 + math.ceil(n / 200) for n in sizes.values())
        print(f"  theoretical minimum                {floor:>5}  (reads by 2,000 rows, one "
              "create per campaign, inserts by 200)")

        sf.clock.advance(hours=6)
        for person in rng.sample(people, len(people) // 100):
            field = "MailingCity" if person.startswith("003") else "City"
            current = sf.get(person)
            assert current is not None
            sf.update(person, **{field: "Berlin" if current[field] != "Berlin" else "Paris"})
        sf.clock.advance(minutes=10)
        change = run("1% of the people change city")
        floor = 7 + change["writes"]
        print(f"  theoretical minimum                {floor:>5}  (one query per object, "
              "then adds and removes by 200)")
        sf.clock.advance(hours=6)
        again = run("no change")
        print("  theoretical minimum                    7  (one query per object)")
        assert again["adds"] == again["removes"] == 0
        del full
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
