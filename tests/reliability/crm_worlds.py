"""Small HubSpot and Salesforce worlds shared by the CRM reliability tests.

Each world is a seeded emulator (tests/emulators) with a few dozen people, two property
segments whose membership does not depend on the clock (so a subprocess on the real clock
computes the same answer), and foreign lists/campaigns/properties segsync must never write.
The checks here are the suite's promises in code: the owned targets hold exactly the
computed members, no completed batch went out twice, the limiter kept to the budget.

Scenarios run in a pool of spawned worker processes (see ``conftest.py``), so every
function a worker calls lives at module level and returns plain, picklable data.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import threading
import tomllib
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sync.config import Config, parse_config

PREFIX = "segsync: "
T0 = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)

HS_TOKEN = "pat-na1-reliab00-1111-2222-3333-444444444444"
HS_OAUTH = {"HUBSPOT_CLIENT_ID": "test-client-id",
            "HUBSPOT_CLIENT_SECRET": "test-client-secret",
            "HUBSPOT_REFRESH_TOKEN": "test-refresh-token"}
#: The emulator's limits in the fault matrix, and the client budget configured to match.
HS_BURST, HS_SEARCH = 10, 2
SF_RATE = 5

HS_SEGMENTS = """
[[segment]]
key = "berlin"
name = "Berlin"
all = [{ field = "city", op = "eq", value = "Berlin" }]

[[segment]]
key = "bigco"
name = "Big companies"
all = [{ field = "company.employees", op = "gte", value = 250 }]
"""

SF_SEGMENTS = """
[[segment]]
key = "berlin"
name = "Berlin"
all = [{ field = "city", op = "eq", value = "Berlin" }]

[[segment]]
key = "retail"
name = "Retail firms"
all = [{ field = "company.industry", op = "eq", value = "Retail" }]
"""


def worker_env() -> dict[str, str]:
    """The secrets every scenario reads, by the env var names the configs give."""
    from tests.emulators.salesforce import DEFAULT_CONSUMER_KEY, DEFAULT_CONSUMER_SECRET

    return {"HUBSPOT_TOKEN": HS_TOKEN, **HS_OAUTH, "SF_CLIENT_ID": DEFAULT_CONSUMER_KEY,
            "SF_CLIENT_SECRET": DEFAULT_CONSUMER_SECRET}


def init_worker(env: dict[str, str]) -> None:
    """A pool worker: the suite's hermetic guards (no SEGSYNC_*, loopback only) + secrets."""
    from tests.conftest import _guarded_connect

    for name in list(os.environ):
        if name.startswith("SEGSYNC_") or name.lower().endswith("_proxy"):
            del os.environ[name]
    os.environ.update(env)
    socket.socket.connect = _guarded_connect  # type: ignore[method-assign,assignment]


# --------------------------------------------------------------------------- HubSpot


def seed_hubspot(hs: Any, count: int = 36) -> dict[str, set[str]]:
    """``count`` contacts on a big and a small company; returns the desired lists."""
    big = hs.add_company(name="Big GmbH", numberofemployees=500)
    small = hs.add_company(name="Small Ltd", numberofemployees=20)
    berlin: set[str] = set()
    bigco: set[str] = set()
    ids = []
    for i in range(count):
        opted_out = i % 10 == 9
        city = "Berlin" if i % 2 == 0 else "Paris"
        crm_id = hs.add_contact(email=f"person{i}@example.com", city=city,
                                hs_email_optout="true" if opted_out else "false")
        hs.associate("contacts", crm_id, "companies", big if i % 3 == 0 else small, type_id=1)
        ids.append(crm_id)
        if not opted_out and city == "Berlin":
            berlin.add(crm_id)
        if not opted_out and i % 3 == 0:
            bigco.add(crm_id)
    # Foreign things segsync must never write: one list looks like segsync's own.
    hs.add_list("Newsletter", members=ids[:6], foreign=True)
    hs.add_list(PREFIX + "Archive", members=ids[6:9], foreign=True)
    hs.define_property("favourite_colour", type="enumeration", field_type="checkbox",
                       options=[{"label": "Red", "value": "red"}], foreign=True)
    return {PREFIX + "Berlin": berlin, PREFIX + "Big companies": bigco}


def hubspot_config_text(base_url: str, extra: str = "", sync: str = "max_removal_fraction = 1.0",
                        segments: str = HS_SEGMENTS) -> str:
    return (f'[crm]\ntype = "hubspot"\nbase_url = "{base_url}"\n{extra}\n\n'
            f'[store]\npath = "store.duckdb"\n\n[sync]\n{sync}\n{segments}')


def hubspot_lists(hs: Any) -> dict[str, set[str]]:
    """Members of every list segsync owns (not seeded as foreign)."""
    owned = [lst for lst in hs.lists() if not lst["foreign"]]
    names = [lst["name"] for lst in owned]
    assert len(names) == len(set(names)), f"a list was created twice: {names}"
    return {lst["name"]: set(hs.list_members(lst["listId"])) for lst in owned}


def hubspot_sends(requests: Iterable[Any]) -> list[tuple[tuple[str, str, str], bool, bool]]:
    """((list, op, id), answered cleanly, processed) for every id in a membership write.

    ``processed``: HubSpot applied the request (whatever became of its answer: delayed past
    the client's timeout, cut, lost behind a 502, truncated, partial); ``clean``: the
    client also got an answer that proves it.
    """
    sends = []
    for r in requests:
        if r.method != "PUT" or not r.path.endswith("/memberships/add-and-remove"):
            continue
        if not isinstance(r.body, dict):
            continue
        if not r.processed:
            continue
        for op, key in (("add", "recordIdsToAdd"), ("remove", "recordIdsToRemove")):
            for crm_id in r.body.get(key) or []:
                sends.append(((r.path, op, str(crm_id)), r.fault is None, True))
    return sends


def hubspot_rate_problems(hs: Any) -> list[str]:
    stats = hs.rate_stats
    problems = []
    if stats.limiter_429s:
        problems.append(f"the emulator's limiter answered {stats.limiter_429s} x 429")
    if stats.max_requests_in_window > hs.limiter.config.burst_limit:
        problems.append(f"{stats.max_requests_in_window} requests in one 10 s window "
                        f"(limit {hs.limiter.config.burst_limit})")
    if stats.max_search_requests_in_window > hs.limiter.config.search_limit:
        problems.append(f"{stats.max_search_requests_in_window} searches in one second "
                        f"(limit {hs.limiter.config.search_limit})")
    return problems


# --------------------------------------------------------------------------- Salesforce


def seed_salesforce(sf: Any, contacts: int = 24, leads: int = 6) -> dict[str, set[str]]:
    """Contacts on a retail and a bank account plus a few leads; returns the desired
    campaigns. Foreign campaigns (one with segsync's prefix) must stay untouched."""
    retail = sf.add("Account", Name="Shop GmbH", Industry="Retail")
    bank = sf.add("Account", Name="Bank AG", Industry="Banking")
    berlin: set[str] = set()
    retail_people: set[str] = set()
    people = []
    for i in range(contacts):
        opted_out = i % 10 == 9
        city = "Berlin" if i % 2 == 0 else "Paris"
        account = retail if i % 3 == 0 else bank
        person = sf.add("Contact", LastName=f"C{i}", Email=f"c{i}@example.com",
                        MailingCity=city, AccountId=account, HasOptedOutOfEmail=opted_out)
        people.append(person)
        if not opted_out and city == "Berlin":
            berlin.add(person)
        if not opted_out and account == retail:
            retail_people.add(person)
    for i in range(leads):
        city = "Berlin" if i % 2 == 0 else "Rome"
        lead = sf.add("Lead", LastName=f"L{i}", Company="Startup", City=city)
        if city == "Berlin":
            berlin.add(lead)
    sf.seed_foreign_campaign("Newsletter", member_ids=people[:4])
    sf.seed_foreign_campaign(PREFIX + "Archive", member_ids=people[4:6])
    sf.clock.advance(hours=1)  # the org existed before segsync's first run
    return {PREFIX + "Berlin": berlin, PREFIX + "Retail firms": retail_people}


def salesforce_config_text(sf: Any, extra: str = "", sync: str = "max_removal_fraction = 1.0",
                           segments: str = SF_SEGMENTS) -> str:
    return f"""[crm]
type = "salesforce"
auth = "client_credentials"
client_id_env = "SF_CLIENT_ID"
client_secret_env = "SF_CLIENT_SECRET"
instance_url = "{sf.instance_url}"
ca_file = "{sf.ca_file}"
{extra}

[store]
path = "store.duckdb"

[sync]
{sync}
{segments}"""


def salesforce_campaigns(sf: Any) -> dict[str, set[str]]:
    """Members of every campaign segsync created (over the API)."""
    owned = [c for c in sf.campaigns() if sf.created_by_segsync(c["Id"])]
    names = [c["Name"] for c in owned]
    assert len(names) == len(set(names)), f"a campaign was created twice: {names}"
    found = {}
    for c in owned:
        people = [m["ContactId"] or m["LeadId"] for m in sf.members(c["Id"])]
        assert len(people) == len(set(people)), f"{c['Name']} holds someone twice"
        found[c["Name"]] = set(people)
    return found


#: Faults after which Salesforce has processed the request (the answer is lost or bad).
SF_REACHING = (None, "delay", "disconnect", "malformed_json")


def salesforce_sends(requests: Iterable[Any]) -> list[tuple[tuple[str, str, str], bool, bool]]:
    """((campaign or member, op, person or member id), clean, processed) per write."""
    sends = []
    for r in requests:
        if r.relative != "composite/sobjects" or r.status != 200 or r.fault not in SF_REACHING:
            continue
        clean = r.fault is None
        if r.method == "POST":
            for record in (r.json or {}).get("records", []):
                if record.get("attributes", {}).get("type") == "CampaignMember":
                    person = record.get("ContactId") or record.get("LeadId")
                    sends.append(((record["CampaignId"], "add", str(person)), clean, True))
        elif r.method == "DELETE":
            for member in (r.query.get("ids") or [""])[0].split(","):
                if member:
                    sends.append(((member, "remove", member), clean, True))
    return sends


def bucket_problems(times: list[float], rate: float, burst: float) -> list[str]:
    """A token bucket of ``rate``/s holding ``burst`` never lets more than
    ``burst + rate * (t_j - t_i)`` requests through between send times t_i and t_j."""
    problems = []
    ordered = sorted(times)
    for i in range(len(ordered)):
        for j in range(i, len(ordered)):
            allowed = burst + rate * (ordered[j] - ordered[i]) + 1e-6
            if j - i + 1 > allowed:
                problems.append(f"{j - i + 1} requests within {ordered[j] - ordered[i]:.2f} s "
                                f"(bucket {rate}/s, burst {burst})")
                return problems
    return problems


# --------------------------------------------------------------------------- common checks


def resend_problems(sends: list[tuple[tuple[str, str, str], bool, bool]]) -> list[str]:
    """No id of a completed batch was sent again.

    ``sends`` is in request order. Once a send of an id was answered cleanly the id is
    done: any later send is a duplicate. Before that, every send whose answer was lost
    (or bad) allows one more.
    """
    done: set[tuple[str, str, str]] = set()
    count: Counter[tuple[str, str, str]] = Counter()
    unclean: Counter[tuple[str, str, str]] = Counter()
    problems = []
    for key, clean, _ in sends:
        if key in done:
            problems.append(f"{key} was sent again after its batch completed")
        count[key] += 1
        if count[key] > 1 + unclean[key]:
            problems.append(f"{key} sent {count[key]} times after {unclean[key]} lost answer(s)")
        if clean:
            done.add(key)
        else:
            unclean[key] += 1
    return problems


def state_problems(live: dict[str, set[str]], expected: dict[str, set[str]]) -> list[str]:
    problems = []
    for name in sorted(set(live) | set(expected)):
        have, want = live.get(name), expected.get(name)
        if have is None or want is None:
            problems.append(f"{name}: {'missing' if have is None else 'unexpected'} target")
        elif have != want:
            problems.append(f"{name}: {len(have - want)} extra, {len(want - have)} missing")
    return problems


def parse(text: str, folder: Path) -> Config:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "segsync.toml"
    path.write_text(text, encoding="utf-8")
    return parse_config(tomllib.loads(text), path)


@dataclass
class Outcome:
    """What one scenario saw; ``problems`` empty means every promise held."""

    name: str
    runs: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    fired: int = 0
    requests: int = 0
    seconds: float = 0.0
    detail: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- the scenario pool


class Lab:
    """The worker pool and every scenario submitted to it, by key.

    Test modules register a job at import (:func:`register`); the ``lab`` fixture runs
    every registered job once, each in its own thread, as soon as the first test asks
    for it, so all scenarios are queued early and the pool works while in-process tests
    run. A job submits scenarios with :meth:`submit` (and may wait for some before
    submitting more); tests collect outcomes with :meth:`result`.
    """

    def __init__(self, pool: Executor) -> None:
        self.pool = pool
        self._futures: dict[str, Future[Any]] = {}
        self._changed = threading.Condition()
        self.errors: list[BaseException] = []

    def submit(self, key: str, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        future = self.pool.submit(fn, *args)
        with self._changed:
            self._futures[key] = future
            self._changed.notify_all()
        return future

    def result(self, key: str, timeout: float = 300.0) -> Any:
        with self._changed:
            if not self._changed.wait_for(lambda: key in self._futures or bool(self.errors),
                                          timeout):
                raise TimeoutError(f"scenario {key} was never submitted")
            if key not in self._futures:
                raise RuntimeError(f"a scenario job failed: {self.errors!r}")
            future = self._futures[key]
        return future.result(timeout=timeout)

    def start(self, jobs: Iterable[Callable[[Lab], None]]) -> None:
        for job in jobs:
            threading.Thread(target=self._run, args=(job,), daemon=True,
                             name=f"lab-{job.__name__}").start()

    def _run(self, job: Callable[[Lab], None]) -> None:
        try:
            job(self)
        except BaseException as exc:  # surfaced by result()
            with self._changed:
                self.errors.append(exc)
                self._changed.notify_all()


JOBS: list[Callable[[Lab], None]] = []


def register(job: Callable[[Lab], None]) -> Callable[[Lab], None]:
    """Register a job that submits a test module's scenarios to the lab."""
    if job.__qualname__ not in {j.__qualname__ for j in JOBS}:
        JOBS.append(job)
    return job
