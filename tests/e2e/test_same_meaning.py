"""One config, three CRMs holding the same people and activity: the same members.

The same dozen people -- their city, their company's industry, their won deals, their
calls, meetings, sent and received emails and tasks -- are seeded into the CSV default,
the HubSpot emulator and the Salesforce emulator, each in its own CRM's shapes (engagement
objects and closed-won deals; Tasks, Events, EmailMessages and won Opportunities). One
config, every rule of which all three CRMs can answer, is synced against each; members
are compared by email address. A rule one of them cannot answer is refused by that CRM's
config with one sentence, never evaluated into something else.
"""

from __future__ import annotations

import datetime as dt
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import connectors
from sync.config import Config, parse_config
from sync.engine import run_sync
from sync.errors import ConfigError
from sync.store import Store
from tests.storeview import sql

SEGMENTS = """
[[segment]]
key = "berlin"
all = [{ field = "city", op = "eq", value = "Berlin" }]
[[segment]]
key = "retail"
all = [{ field = "company.industry", op = "eq", value = "Retail" }]
[[segment]]
key = "buyers90"
all = [{ activity = "purchase", at_least = 1, within_days = 90 }]
[[segment]]
key = "big-spenders"
all = [{ activity = "purchase", metric = "sum_amount", op = "gte", value = 100, within_days = 365 }]
[[segment]]
key = "callers"
all = [{ activity = "call", at_least = 2, within_days = 30 }]
[[segment]]
key = "inactive"
all = [{ activity = "any", none_within_days = 60 }]
[[segment]]
key = "wrote"
all = [{ activity = "email_received", at_least = 1, within_days = 30 }]
[[segment]]
key = "emailed"
all = [{ activity = "email_sent", at_least = 1, within_days = 30 }]
[[segment]]
key = "no-meeting"
all = [{ activity = "meeting", none_within_days = 14 }]
[[segment]]
key = "lapsed"
all = [{ activity = "purchase", metric = "days_since_last", op = "gt", value = 30 }]
[[segment]]
key = "tasked"
all = [{ activity = "task", at_least = 1 }]
"""


@dataclass
class Person:
    email: str
    city: str
    industry: str | None
    #: (days ago, amount)
    purchases: list[tuple[int, float]] = field(default_factory=list)
    #: (activity type, days ago)
    activity: list[tuple[str, int]] = field(default_factory=list)


PEOPLE = [
    Person("ana@x.com", "Berlin", "Retail", [(10, 80.0), (200, 50.0)], [("call", 3), ("call", 20)]),
    Person("ben@x.com", "Paris", "Banking", [(45, 300.0)], [("meeting", 5)]),
    Person("cai@x.com", "Berlin", None, [], [("email_received", 7)]),
    Person("dee@x.com", "Rome", "Retail", [(400, 20.0)], []),
    Person("eli@x.com", "Berlin", "Banking", [], [("email_sent", 2), ("call", 8)]),
    Person("fay@x.com", "Paris", None, [(5, 120.0)], [("task", 90), ("meeting", 30)]),
    Person("gus@x.com", "Rome", "Retail", [], [("call", 70)]),
    Person("hal@x.com", "Berlin", None, [(35, 60.0)], [("email_received", 45)]),
    Person("ivy@x.com", "Paris", "Banking", [], []),
    Person("jon@x.com", "Berlin", "Retail", [(80, 99.0), (85, 1.0)], [("task", 10)]),
]


def expected() -> dict[str, set[str]]:
    """The members, read off the people by hand (windows as the rules say)."""
    def has(p: Person, kind: str, within: int) -> bool:
        return any(k == kind and d <= within for k, d in p.activity)

    def spent(p: Person, within: int) -> float:
        return sum(a for d, a in p.purchases if d <= within)

    return {
        "berlin": {p.email for p in PEOPLE if p.city == "Berlin"},
        "retail": {p.email for p in PEOPLE if p.industry == "Retail"},
        "buyers90": {p.email for p in PEOPLE if any(d <= 90 for d, _ in p.purchases)},
        "big-spenders": {p.email for p in PEOPLE if spent(p, 365) >= 100},
        "callers": {p.email for p in PEOPLE if sum(1 for k, d in p.activity
                                                   if k == "call" and d <= 30) >= 2},
        "inactive": {p.email for p in PEOPLE if not any(d <= 60 for _, d in p.activity)
                     and not any(d <= 60 for d, _ in p.purchases)},
        "wrote": {p.email for p in PEOPLE if has(p, "email_received", 30)},
        "emailed": {p.email for p in PEOPLE if has(p, "email_sent", 30)},
        "no-meeting": {p.email for p in PEOPLE if not has(p, "meeting", 14)},
        "lapsed": {p.email for p in PEOPLE
                   if p.purchases and min(d for d, _ in p.purchases) > 30},
        "tasked": {p.email for p in PEOPLE if any(k == "task" for k, _ in p.activity)},
    }


def config(crm: str, tmp: Path, segments: str = SEGMENTS) -> Config:
    text = f"{crm}\n[store]\npath = \"store.duckdb\"\n[sync]\nmax_removal_fraction = 1.0\n"
    return parse_config(tomllib.loads(text + segments), tmp / "segsync.toml")


def members(cfg: Config, connector: Any, now: dt.datetime) -> dict[str, set[str]]:
    with Store.open(cfg.store.path) as store:
        outcome = run_sync(cfg, connector, store, clock=lambda: now)
        assert outcome.status == "ok"
        email = dict(sql(store, "SELECT _crm_id, email FROM contacts").fetchall())
        applied = store.applied_members()
    return {key: {email[i] for i in applied.get(key, set())} for key in expected()}


def midnight(now: dt.datetime, days: int) -> dt.datetime:
    day = (now - dt.timedelta(days=days)).date()
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)


# --------------------------------------------------------------------------- the CRMs


def csv_members(tmp: Path) -> dict[str, set[str]]:
    now = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)
    data = tmp / "exports"
    data.mkdir()
    stamp = "2026-05-01T00:00:00Z"
    contacts, companies, purchases, activity = [], [], [], []
    for i, p in enumerate(PEOPLE):
        company = f"co{i}" if p.industry else ""
        contacts.append({"id": f"c{i}", "email": p.email, "city": p.city,
                         "company_id": company, "modified_at": stamp})
        if p.industry:
            companies.append({"id": company, "industry": p.industry, "modified_at": stamp})
        for j, (days, amount) in enumerate(p.purchases):
            purchases.append({"id": f"p{i}-{j}", "contact_id": f"c{i}", "amount": amount,
                              "purchased_at": midnight(now, days).isoformat(),
                              "modified_at": stamp})
        for j, (kind, days) in enumerate(p.activity):
            activity.append({"id": f"a{i}-{j}", "contact_id": f"c{i}", "type": kind,
                             "occurred_at": midnight(now, days).isoformat(),
                             "modified_at": stamp})
    for name, rows in (("contacts", contacts), ("companies", companies),
                       ("purchases", purchases), ("activities", activity)):
        pd.DataFrame(rows).to_csv(data / f"{name}.csv", index=False)
    cfg = config('[crm]\ntype = "csv"\npath = "exports"', tmp)
    return members(cfg, connectors.create(cfg.crm), now.replace(tzinfo=None))


def hubspot_members(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, set[str]]:
    from tests.emulators.hubspot import Clock, HubSpotEmulator

    token = "pat-na1-meaning0-1111-2222-3333-444444444444"
    monkeypatch.setenv("HUBSPOT_TOKEN", token)
    now = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)
    engagement = {"call": "calls", "meeting": "meetings", "email_sent": "emails",
                  "email_received": "emails", "task": "tasks"}
    with HubSpotEmulator(token=token, clock=Clock(now - dt.timedelta(days=500))) as hs:
        for p in PEOPLE:
            contact = hs.add_contact(email=p.email, city=p.city)
            if p.industry:
                company = hs.add_company(name=p.email, industry=p.industry)
                hs.associate("contacts", contact, "companies", company, type_id=1)
            for days, amount in p.purchases:
                deal = hs.add_deal(dealstage="closedwon", amount=amount,
                                   closedate=midnight(now, days))
                hs.associate("deals", deal, "contacts", contact)
            for kind, days in p.activity:
                props: dict[str, Any] = {"hs_timestamp": midnight(now, days)}
                if kind.startswith("email"):
                    props.update(hs_email_status="SENT", hs_email_direction=(
                        "INCOMING_EMAIL" if kind == "email_received" else "EMAIL"))
                made = hs.add_engagement(engagement[kind], props)
                hs.associate(engagement[kind], made, "contacts", contact)
        hs.clock.set(now)
        cfg = config(f'[crm]\ntype = "hubspot"\nbase_url = "{hs.base_url}"', tmp)
        return members(cfg, connectors.create(cfg.crm), now.replace(tzinfo=None))


def salesforce_members(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, set[str]]:
    from tests.emulators.salesforce import (
        DEFAULT_CONSUMER_KEY,
        DEFAULT_CONSUMER_SECRET,
        SalesforceEmulator,
    )

    monkeypatch.setenv("SF_CLIENT_ID", DEFAULT_CONSUMER_KEY)
    monkeypatch.setenv("SF_CLIENT_SECRET", DEFAULT_CONSUMER_SECRET)
    with SalesforceEmulator() as sf:
        now = sf.clock.now()
        for p in PEOPLE:
            account = sf.add("Account", Name=p.email, Industry=p.industry) if p.industry else None
            person = sf.add("Contact", LastName=p.email, Email=p.email, MailingCity=p.city,
                            AccountId=account)
            for days, amount in p.purchases:
                sf.add("Opportunity", Name="Won", StageName="Closed Won", Amount=amount,
                       CloseDate=midnight(now, days).date(), ContactId=person)
            for kind, days in p.activity:
                when = midnight(now, days)
                if kind == "email_received":
                    sf.log_email(person, incoming=True, message_date=when)
                elif kind == "meeting":
                    sf.add("Event", WhoId=person, Subject="Meeting", Type="Meeting",
                           ActivityDateTime=when, DurationInMinutes=30)
                else:
                    subtype = {"call": "Call", "email_sent": "Email", "task": "Task"}[kind]
                    sf.add("Task", WhoId=person, Subject=kind, Type=subtype, Status="Completed",
                           TaskSubtype=subtype, ActivityDate=when.date())
        sf.clock.advance(minutes=5)
        cfg = config(f"""[crm]
type = "salesforce"
auth = "client_credentials"
client_id_env = "SF_CLIENT_ID"
client_secret_env = "SF_CLIENT_SECRET"
instance_url = "{sf.instance_url}"
ca_file = "{sf.ca_file}"
max_requests_per_second = 0""", tmp)
        connector = connectors.create(cfg.crm)
        try:
            return members(cfg, connector, now.replace(tzinfo=None))
        finally:
            connector.close()  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, dict[str, set[str]]]]:
    monkeypatch = pytest.MonkeyPatch()
    try:
        yield {
            "csv": csv_members(tmp_path_factory.mktemp("csv")),
            "hubspot": hubspot_members(tmp_path_factory.mktemp("hubspot"), monkeypatch),
            "salesforce": salesforce_members(tmp_path_factory.mktemp("sf"), monkeypatch),
        }
    finally:
        monkeypatch.undo()


@pytest.mark.parametrize("crm", ["csv", "hubspot", "salesforce"])
def test_every_crm_gives_the_members_the_rules_say(
    results: dict[str, dict[str, set[str]]], crm: str
) -> None:
    assert results[crm] == expected()


def test_the_three_crms_agree(results: dict[str, dict[str, set[str]]]) -> None:
    assert results["csv"] == results["hubspot"] == results["salesforce"]
    assert all(results["csv"].values())  # no rule is vacuous here


@pytest.mark.parametrize(("rule", "refused_by"), [
    ('{ activity = "email_open", at_least = 3, within_days = 90 }',
     {"hubspot": "only as a last date and a lifetime count", "salesforce": "does not record"}),
    ('{ activity = "email_open", at_least = 1, within_days = 30 }',
     {"salesforce": "does not record email_open"}),
    ('{ activity = "note", at_least = 1 }', {"salesforce": "does not record note"}),
])
def test_a_rule_some_crm_cannot_answer_is_refused_there_with_a_sentence(
    tmp_path: Path, rule: str, refused_by: dict[str, str]
) -> None:
    segment = f'[[segment]]\nkey = "x"\nall = [{rule}]\n'
    crms = {"csv": '[crm]\ntype = "csv"\npath = "exports"',
            "hubspot": '[crm]\ntype = "hubspot"',
            "salesforce": '[crm]\ntype = "salesforce"\nauth = "client_credentials"\n'
                          'client_id_env = "A"\nclient_secret_env = "B"\ndomain = "acme.my"'}
    for crm, text in crms.items():
        if crm in refused_by:
            with pytest.raises(ConfigError, match=refused_by[crm]) as caught:
                config(text, tmp_path, segment)
            assert "segment[x].all[0]" in str(caught.value)
        else:
            assert config(text, tmp_path, segment).segments
