"""API efficiency: the calls a sync makes against the theoretical minimum, both CRMs.

    PYTHONPATH=. .venv/bin/python benchmarks/api_efficiency.py [--sizes 10000 100000]
        [--crm hubspot salesforce] [--out benchmarks/results/api_efficiency.json]

For each CRM and size, a fresh emulator (tests/emulators) is seeded and segsync's real
engine (``sync.engine.run_sync``) runs four cases in a row on one store:

* ``full``       -- the first sync: everything is read, every segment's target is created
                    and filled;
* ``change 1%``  -- 1% of the contacts change city (the Berlin segment moves);
* ``no change``  -- nothing changed since the last sync;
* ``reconcile``  -- ``run_sync(..., reconcile_first=True)`` after a hand edit of one
                    target (20 members removed, 20 outsiders added): every target's
                    members are read back and the drift is corrected.

Calls are counted by the emulator (its request log), by endpoint. The theoretical minimum
is computed from the seeded data with the real batch sizes (formulas in ``FORMULAS`` and
docs/performance.md). The emulators keep their real limits and batch sizes; HubSpot's
rate limiter runs on a simulated clock shared with the connector (no real waiting) and
the Salesforce client throttle is off (``max_requests_per_second = 0``) -- neither changes
the number of calls. Never part of the test suite.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import math
import os
import platform
import random
import sys
import tempfile
import time
import tomllib
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from sync.config import Config, parse_config  # noqa: E402
from sync.engine import SyncOutcome, run_sync  # noqa: E402
from sync.store import Store  # noqa: E402

OUT = REPO / "benchmarks" / "results" / "api_efficiency.json"
TARGET_RATIO = 1.05
DRIFT = 20  # members removed by hand from one target, and outsiders added to it

# HubSpot batch sizes (connectors/hubspot): search pages, v4 association batch reads,
# list membership writes (membership_batch_size), list membership reads, archived pages.
HS_SEARCH, HS_ASSOC, HS_MEMBERS_WRITE, HS_MEMBERS_READ, HS_ARCHIVED = 200, 1000, 10_000, 250, 100
HS_ENGAGEMENTS = ("calls", "meetings", "emails", "notes", "tasks")
# Salesforce: REST query page, sObject Collections, Bulk 2.0 result page, bulk threshold.
SF_PAGE, SF_COLLECTION, SF_BULK_PAGE, SF_BULK_THRESHOLD = 2000, 200, 100_000, 20_000
SF_OBJECTS = ("Account", "Contact", "Lead", "OpportunityContactRole", "Opportunity", "Task",
              "Event", "EmailMessage", "EmailMessageRelation")

FORMULAS = {
    "hubspot": {
        "full": "S(contacts) + A(contacts) + S(companies) + S(won deals) + A(won deals) "
                "+ sum over 5 engagement types [S(n) + A(n)] + 1 pipelines read "
                "+ 1 create per list + sum over lists ceil(members / 10,000)",
        "change 1%": "S(changed contacts) + A(changed contacts) + 7 x S(0) (the other object "
                     "types) + 8 archived sweeps + sum over changed lists "
                     "ceil((adds + removes) / 10,000)",
        "no change": "8 x S(0) (one search per object type) + 8 archived sweeps",
        "reconcile": "no change (16) + sum over lists ceil(members / 250) + sum over "
                     "drifted lists ceil((adds + removes) / 10,000)",
        "legend": "S(n) = max(1, ceil(n / 200)) search pages, A(n) = ceil(n / 1,000) v4 "
                  "association batch reads; an archived sweep is one GET ?archived=true "
                  "page (100 records) per object type",
    },
    "salesforce": {
        "full": "sum over 9 objects R(rows) + 1 campaign-name check + 1 create per campaign "
                "+ sum over campaigns ceil(members / 200)",
        "change 1%": "9 queryAll (one per object) + sum over campaigns [ceil(adds / 200) "
                     "+ 2 x ceil(removes / 200)] (a removal needs the CampaignMember ids: "
                     "one lookup query per 200, then one collection delete)",
        "no change": "9 queryAll (one per object, EmailMessage and EmailMessageRelation "
                     "included)",
        "reconcile": "no change (9) + sum over campaigns R(members) + drift writes as in "
                     "change 1%",
        "legend": "R(n) = max(1, ceil(n / 2,000)) REST query pages; above bulk_threshold "
                  "(20,000) R(n) = min(ceil(n / 2,000), 1 + 2 + ceil(n / 100,000)): the first "
                  "REST page tells the size, then one Bulk 2.0 job (create, one poll, one "
                  "download per 100,000 rows)",
    },
}


def pages(n: int, size: int) -> int:
    return max(1, math.ceil(n / size))


def batches(n: int, size: int) -> int:
    return math.ceil(n / size)


class FakeTime:
    """A monotonic clock that moves only when something sleeps (no real waiting)."""

    def __init__(self) -> None:
        self.now = 1_000.0
        self.slept = 0.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept += seconds
        self.now += seconds


def _config(text: str, folder: Path) -> Config:
    return parse_config(tomllib.loads(text), folder / "segsync.toml")


def _case(crm: str, size: int, name: str, calls: Counter[str], minimum: dict[str, int],
          seconds: float, outcome: SyncOutcome, **extra: Any) -> dict[str, Any]:
    total, floor = sum(calls.values()), sum(minimum.values())
    applied = outcome.applied
    return {
        "crm": crm, "contacts": size, "case": name, "status": outcome.status,
        "calls": total, "minimum": floor, "ratio": round(total / floor, 4) if floor else None,
        "meets_target": total <= TARGET_RATIO * floor,
        "formula": FORMULAS[crm][name],
        "calls_by_endpoint": dict(sorted(calls.items())),
        "minimum_terms": minimum,
        "adds": applied.adds if applied else 0, "removes": applied.removes if applied else 0,
        "wall_s": round(seconds, 2), **extra,
    }


# --------------------------------------------------------------------------- HubSpot

HS_TOKEN = "pat-na1-bench000-1111-2222-3333-444444444444"
HS_T0 = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)
HS_SEGMENTS = """
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


def hubspot_seed(hs: Any, contacts: int) -> tuple[list[str], dict[str, int]]:
    """Contacts (half in Berlin) with a company each; a won deal for every 5th contact,
    a call for every 3rd. Returns the contact ids and the object counts."""
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
                               closedate=HS_T0 - dt.timedelta(days=10))
            hs.associate("deals", deal, "contacts", cid)
            sizes["deals"] += 1
        if i % 3 == 0:
            call = hs.add_engagement("calls", hs_timestamp=HS_T0 - dt.timedelta(days=2))
            hs.associate("calls", call, "contacts", cid)
            sizes["calls"] += 1
    sizes["contacts"] = contacts
    sizes["companies"] = len(companies)
    return ids, dict(sizes)


def hubspot_label(method: str, path: str) -> str:
    from connectors.hubspot.api import endpoint_label

    label = endpoint_label(method, path)
    return label.replace("list ", "archived sweep ") if label.startswith("list ") and \
        label.split(" ", 1)[1] in {"contacts", "companies", "deals", *HS_ENGAGEMENTS} else label


def run_hubspot(contacts: int) -> list[dict[str, Any]]:
    from connectors.hubspot import HubSpotConnector
    from tests.emulators.hubspot import Clock, HubSpotEmulator

    os.environ["HUBSPOT_TOKEN"] = HS_TOKEN
    fake = FakeTime()
    results: list[dict[str, Any]] = []
    with HubSpotEmulator(token=HS_TOKEN, clock=Clock(HS_T0 - dt.timedelta(days=1)),
                         monotonic=fake.monotonic) as hs, \
            tempfile.TemporaryDirectory(prefix="segsync-bench-") as tmp:
        started = time.perf_counter()
        ids, sizes = hubspot_seed(hs, contacts)
        print(f"[hubspot {contacts:,}] seeded in {time.perf_counter() - started:.1f} s: "
              + ", ".join(f"{k} {v:,}" for k, v in sizes.items()), flush=True)
        hs.clock.set(HS_T0)
        config = _config(f'[crm]\ntype = "hubspot"\nbase_url = "{hs.base_url}"\n[store]\n'
                         f'path = "store.duckdb"\n[sync]\nmax_removal_fraction = 1.0\n'
                         f'{HS_SEGMENTS}', Path(tmp))
        assert config.crm.membership_batch_size == HS_MEMBERS_WRITE  # type: ignore[attr-defined]

        def sync(name: str, minimum: Callable[[SyncOutcome], dict[str, int]],
                 reconcile_first: bool = False) -> dict[str, Any]:
            hs.reset_requests()
            connector = HubSpotConnector(config.crm,  # type: ignore[arg-type]
                                         now=hs.clock.now, sleep=fake.sleep,
                                         monotonic=fake.monotonic, rng=random.Random(0))
            began = time.perf_counter()
            with Store.open(config.store.path) as store:
                outcome = run_sync(config, connector, store, reconcile_first=reconcile_first,
                                   clock=lambda: hs.clock.now().replace(tzinfo=None))
            seconds = time.perf_counter() - began
            log = hs.requests
            calls = Counter(hubspot_label(r.method, r.path) for r in log)
            searches = Counter(r.path.split("/")[4] for r in log if r.path.endswith("/search"))
            result = _case(
                "hubspot", contacts, name, calls, minimum(outcome), seconds, outcome,
                writes=len([r for r in log if r.is_write]),
                searches_per_object_type=dict(sorted(searches.items())),
                http_429=sum(1 for r in log if r.status == 429),
            )
            print(_line(result), flush=True)
            fake.now += 600
            hs.clock.advance(minutes=10)
            return result

        def list_sizes() -> dict[str, int]:
            return {lst["name"]: len(hs.list_members(lst["listId"])) for lst in hs.lists()}

        def changes(outcome: SyncOutcome) -> list[int]:
            return [c.adds + c.removes for c in outcome.plan.segments if c.adds + c.removes]

        def engagements(n: dict[str, int]) -> dict[str, int]:
            terms = {}
            for kind in HS_ENGAGEMENTS:
                terms[f"search {kind}"] = pages(n.get(kind, 0), HS_SEARCH)
                if n.get(kind, 0):
                    terms[f"associations {kind}->contacts"] = batches(n[kind], HS_ASSOC)
            return terms

        def full_min(outcome: SyncOutcome) -> dict[str, int]:
            lists = len(outcome.plan.segments)
            return {
                "search contacts": pages(sizes["contacts"], HS_SEARCH),
                "associations contacts->companies": batches(sizes["contacts"], HS_ASSOC),
                "search companies": pages(sizes["companies"], HS_SEARCH),
                "search deals": pages(sizes["deals"], HS_SEARCH),
                "associations deals->contacts": batches(sizes["deals"], HS_ASSOC),
                **engagements(sizes),
                "pipelines deals": 1,
                "create list": lists,
                "list memberships add-and-remove": sum(batches(n, HS_MEMBERS_WRITE)
                                                       for n in changes(outcome)),
            }

        def quiet_pull(changed: int) -> dict[str, int]:
            terms = {"search contacts": pages(changed, HS_SEARCH)}
            if changed:
                terms["associations contacts->companies"] = batches(changed, HS_ASSOC)
            for kind in ("companies", "deals", *HS_ENGAGEMENTS):
                terms[f"search {kind}"] = 1
            terms["archived sweeps (8 object types)"] = 8
            return terms

        def writes(outcome: SyncOutcome) -> dict[str, int]:
            n = sum(batches(k, HS_MEMBERS_WRITE) for k in changes(outcome))
            return {"list memberships add-and-remove": n} if n else {}

        results.append(sync("full", full_min))
        changed = random.Random(1).sample(ids, max(1, contacts // 100))
        for cid in changed:
            city = (hs.contact(cid) or {}).get("properties", {}).get("city")
            hs.update_contact(cid, city="Paris" if city == "Berlin" else "Berlin")
        hs.clock.advance(minutes=10)
        results.append(sync("change 1%", lambda o: {**quiet_pull(len(changed)), **writes(o)}))
        results.append(sync("no change", lambda o: quiet_pull(0)))

        berlin = next(lst for lst in hs.lists() if lst["name"].endswith("Berlin"))
        members = hs.state.lists[str(berlin["listId"])].members
        insiders = list(members)[:DRIFT]
        outsiders = [i for i in ids if i not in members][:DRIFT]
        for cid in insiders:  # a user's manual edits in HubSpot
            del members[cid]
        for cid in outsiders:
            members[cid] = HS_T0
        sizes_before = list_sizes()

        def reconcile_min(outcome: SyncOutcome) -> dict[str, int]:
            return {**quiet_pull(0),
                    "list memberships read": sum(pages(n, HS_MEMBERS_READ)
                                                 for n in sizes_before.values()),
                    **writes(outcome)}

        results.append(sync("reconcile", reconcile_min, reconcile_first=True))
        assert set(insiders) <= set(members), "reconcile did not restore the Berlin list"
        assert not set(outsiders) & set(members), "reconcile left outsiders in the list"
    return results


# --------------------------------------------------------------------------- Salesforce

SF_SEGMENTS = """
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


def salesforce_seed(sf: Any, people: int) -> tuple[list[str], dict[str, int]]:
    """80% Contacts (with an Account each), 20% Leads; an Opportunity for every 5th
    contact (every other one won, all closed within the lookback); a Task for every
    other person-slot. Returns the person ids and the rows each full read returns."""
    today = sf.clock.now().date()
    cities = ("Berlin", "Paris", "Rome")
    accounts = [sf.add("Account", Name=f"A{i}", Industry=("Retail", "Banking")[i % 2])
                for i in range(max(1, people // 10))]
    contacts = [sf.add("Contact", LastName=f"C{i}", AccountId=accounts[i % len(accounts)],
                       MailingCity=cities[i % 3]) for i in range(people * 8 // 10)]
    leads = [sf.add("Lead", LastName=f"L{i}", Company="X", City=cities[i % 3])
             for i in range(people - len(contacts))]
    opportunities = people // 5
    for i in range(opportunities):
        sf.add("Opportunity", Name=f"O{i}", StageName=("Closed Won", "Closed Lost")[i % 2],
               Amount=100.0, CloseDate=today - dt.timedelta(days=i % 300),
               ContactId=contacts[i % len(contacts)])
    tasks = people // 2
    for i in range(tasks):
        sf.add("Task", WhoId=contacts[(i * 7) % len(contacts)], Type=("Call", "Email")[i % 2],
               Status="Completed", ActivityDate=today - dt.timedelta(days=i % 200))
    sf.clock.advance(hours=1)
    rows = {"Account": len(accounts), "Contact": len(contacts), "Lead": len(leads),
            "OpportunityContactRole": 0, "Opportunity": (opportunities + 1) // 2,
            "Task": tasks, "Event": 0, "EmailMessage": 0, "EmailMessageRelation": 0}
    return contacts + leads, rows


def sf_reads(n: int) -> int:
    """Calls to read a result of n rows: REST pages, or first page + Bulk 2.0 above the
    threshold when that is cheaper (what the connector does, and the least it can do
    without knowing the size in advance)."""
    rest = pages(n, SF_PAGE)
    if n <= SF_BULK_THRESHOLD:
        return rest
    return min(rest, 1 + 2 + pages(n, SF_BULK_PAGE))


def salesforce_label(request: Any) -> str:
    from connectors.salesforce.client import endpoint_label

    label = endpoint_label(request.method, request.path)
    if label in ("GET query", "GET queryAll"):
        soql = (request.query.get("q") or [""])[0]
        words = soql.split()
        upper = [w.upper() for w in words]
        if "FROM" in upper:
            label += " " + words[upper.index("FROM") + 1]
    elif label.startswith("GET query") and "next page" in label:
        label = label.replace("GET query (next page)", "GET query next page")
    return label


def run_salesforce(people: int) -> list[dict[str, Any]]:
    import connectors
    from tests.emulators.salesforce import (
        DEFAULT_CONSUMER_KEY,
        DEFAULT_CONSUMER_SECRET,
        SalesforceEmulator,
    )

    os.environ["SF_ID"], os.environ["SF_SECRET"] = DEFAULT_CONSUMER_KEY, DEFAULT_CONSUMER_SECRET
    results: list[dict[str, Any]] = []
    with SalesforceEmulator() as sf, tempfile.TemporaryDirectory(prefix="segsync-bench-") as tmp:
        started = time.perf_counter()
        ids, rows = salesforce_seed(sf, people)
        print(f"[salesforce {people:,}] seeded in {time.perf_counter() - started:.1f} s: "
              + ", ".join(f"{k} {v:,}" for k, v in rows.items()), flush=True)
        config = _config(f"""
[crm]
type = "salesforce"
auth = "client_credentials"
client_id_env = "SF_ID"
client_secret_env = "SF_SECRET"
instance_url = "{sf.instance_url}"
ca_file = "{sf.ca_file}"
max_requests_per_second = 0
bulk_threshold = {SF_BULK_THRESHOLD}
[store]
path = "store.duckdb"
[sync]
max_removal_fraction = 1.0
{SF_SEGMENTS}""", Path(tmp))
        clock = lambda: sf.clock.now().replace(tzinfo=None)  # noqa: E731

        def sync(name: str, minimum: Callable[[SyncOutcome], dict[str, int]],
                 reconcile_first: bool = False) -> dict[str, Any]:
            sf.clear_requests()
            connector = connectors.create(config.crm)
            began = time.perf_counter()
            with Store.open(config.store.path) as store:
                outcome = run_sync(config, connector, store, reconcile_first=reconcile_first,
                                   clock=clock)
            seconds = time.perf_counter() - began
            log = [r for r in sf.requests if "oauth2/token" not in r.path]  # logins are free
            calls = Counter(salesforce_label(r) for r in log)
            result = _case("salesforce", people, name, calls, minimum(outcome), seconds,
                           outcome, writes=len([r for r in log if r.is_write]))
            print(_line(result), flush=True)
            sf.clock.advance(hours=6)
            return result

        def writes(outcome: SyncOutcome) -> dict[str, int]:
            adds = sum(batches(c.adds, SF_COLLECTION) for c in outcome.plan.segments)
            removes = sum(batches(c.removes, SF_COLLECTION) for c in outcome.plan.segments)
            terms = {}
            if adds:
                terms["POST composite/sobjects (insert members)"] = adds
            if removes:
                terms["GET query CampaignMember (ids to remove)"] = removes
                terms["DELETE composite/sobjects"] = removes
            return terms

        def full_min(outcome: SyncOutcome) -> dict[str, int]:
            return {**{f"read {o}": sf_reads(n) for o, n in rows.items()},
                    "GET query Campaign (name check)": 1,
                    "POST sobjects/Campaign": len(outcome.plan.segments),
                    **writes(outcome)}

        quiet = {f"GET queryAll {o}": 1 for o in SF_OBJECTS}
        results.append(sync("full", full_min))
        for person in random.Random(1).sample(ids, max(1, len(ids) // 100)):
            field = "MailingCity" if person.startswith("003") else "City"
            current = sf.get(person) or {}
            sf.update(person, **{field: "Paris" if current.get(field) == "Berlin" else "Berlin"})
        sf.clock.advance(minutes=10)
        results.append(sync("change 1%", lambda o: {**quiet, **writes(o)}))
        results.append(sync("no change", lambda o: dict(quiet)))

        berlin = next(c for c in sf.campaigns() if c["Name"].endswith("Berlin"))
        members = sf.members(berlin["Id"])
        inside = {m.get("ContactId") or m.get("LeadId") for m in members}
        for member in members[:DRIFT]:  # a user's manual edits in Salesforce
            sf.delete(member["Id"])
        for person in [i for i in ids if i not in inside][:DRIFT]:
            sf.add_member(berlin["Id"], person)
        sizes = {c["Name"]: c["NumberOfContacts"] + c["NumberOfLeads"] for c in sf.campaigns()}

        def reconcile_min(outcome: SyncOutcome) -> dict[str, int]:
            return {**quiet, "read CampaignMember": sum(sf_reads(n) for n in sizes.values()),
                    **writes(outcome)}

        results.append(sync("reconcile", reconcile_min, reconcile_first=True))
        after = {m.get("ContactId") or m.get("LeadId") for m in sf.members(berlin["Id"])}
        assert after == inside, "reconcile did not restore the Berlin campaign"
    return results


# --------------------------------------------------------------------------- output

def _line(r: dict[str, Any]) -> str:
    mark = "ok" if r["meets_target"] else "MISSED"
    return (f"  {r['crm']:<10} {r['contacts']:>7,} {r['case']:<10} calls {r['calls']:>6,}  "
            f"min {r['minimum']:>6,}  ratio {r['ratio']:.3f} {mark:<6} "
            f"+{r['adds']:,} -{r['removes']:,}  {r['wall_s']:.1f} s")


def table(results: list[dict[str, Any]]) -> str:
    head = (f"{'CRM':<10} {'contacts':>8} {'case':<10} {'calls':>6} {'minimum':>7} "
            f"{'ratio':>6} {'target':>7} {'writes':>6}  calls by endpoint")
    lines = [head, "-" * len(head)]
    for r in results:
        endpoints = ", ".join(f"{k} {v}" for k, v in r["calls_by_endpoint"].items())
        lines.append(
            f"{r['crm']:<10} {r['contacts']:>8,} {r['case']:<10} {r['calls']:>6,} "
            f"{r['minimum']:>7,} {r['ratio']:>6.3f} {'met' if r['meets_target'] else 'MISSED':>7} "
            f"{r['writes']:>6}  {endpoints}")
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    return {"cpus": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform()}


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--crm", nargs="+", choices=["hubspot", "salesforce"],
                        default=["hubspot", "salesforce"])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    results: list[dict[str, Any]] = []
    runners = {"hubspot": run_hubspot, "salesforce": run_salesforce}
    for crm in args.crm:
        for size in args.sizes:
            results += runners[crm](size)
    print("\nAPI efficiency (calls counted by the emulators; target <= "
          f"{TARGET_RATIO} x minimum)\n" + table(results))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": machine(), "formulas": FORMULAS,
                                    "target_ratio": TARGET_RATIO, "results": results},
                                   indent=2))
    print(f"\nwritten to {args.out}")
    return results


if __name__ == "__main__":
    main()
