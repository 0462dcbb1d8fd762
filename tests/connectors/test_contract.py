"""The connector contract, checked the same way for every connector.

A *world* is a connector plus a CRM holding the same small population: three contacts,
a company, a purchase and an activity. Every test below runs against every world -- the
CSV default, the in-memory fake, HubSpot and Salesforce on their emulators -- so a new
CRM connector proves it honours :mod:`connectors.base` by adding one world fixture here.
"""

from __future__ import annotations

import datetime as dt
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import connectors
from connectors.base import (
    STREAMS,
    BudgetAware,
    Connector,
    FieldWriter,
    MembershipReader,
    PullRequest,
    TargetDeleter,
    TargetSpec,
)
from connectors.frames import check_page, columns
from sync.config import parse_config
from tests.fakes import ReadingFakeConnector

NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)
SINCE = dt.datetime(2024, 1, 1)  # before every world's purchase


@dataclass
class World:
    """A connector and the ids of the population its CRM holds."""

    name: str
    connector: Connector
    contacts: tuple[str, str, str]
    #: Members of a target as the CRM itself holds them (not through the connector).
    live: Callable[[str], set[str]]


def _config(tmp_path: Path, crm: str) -> Any:
    text = f"{crm}\n[store]\npath = \"store.duckdb\"\n[[segment]]\nkey = \"a\"\nall = []\n"
    return parse_config(tomllib.loads(text), tmp_path / "segsync.toml").crm


def csv_world(tmp_path: Path) -> Iterator[World]:
    data = tmp_path / "exports"
    data.mkdir()
    stamp = "2026-05-01T00:00:00"
    pd.DataFrame({"id": ["c1", "c2", "c3"], "modified_at": [stamp] * 3,
                  "company_id": ["co1", "", ""], "email": ["a@x.com", "b@x.com", "c@x.com"],
                  "city": ["Berlin", "Paris", "Berlin"]}).to_csv(data / "contacts.csv",
                                                                  index=False)
    pd.DataFrame({"id": ["co1"], "modified_at": [stamp], "industry": ["Retail"]}).to_csv(
        data / "companies.csv", index=False)
    pd.DataFrame({"id": ["p1"], "modified_at": [stamp], "contact_id": ["c1"], "amount": [50],
                  "purchased_at": ["2026-04-01T00:00:00"]}).to_csv(data / "purchases.csv",
                                                                   index=False)
    pd.DataFrame({"id": ["a1"], "modified_at": [stamp], "contact_id": ["c2"], "type": ["call"],
                  "occurred_at": ["2026-04-02T00:00:00"]}).to_csv(data / "activities.csv",
                                                                  index=False)
    connector = connectors.create(_config(tmp_path, '[crm]\ntype = "csv"\npath = "exports"'))

    def live(target_id: str) -> set[str]:
        file = tmp_path / "exports" / "segsync-out" / "lists" / f"{target_id}.csv"
        return set(pd.read_csv(file, dtype=str)["contact_id"]) if file.exists() else set()

    yield World("csv", connector, ("c1", "c2", "c3"), live)


def fake_world(tmp_path: Path) -> Iterator[World]:
    fake = ReadingFakeConnector(max_batch=10, writes_field=True, max_field_batch=10)
    for crm_id, city in (("1", "Berlin"), ("2", "Paris"), ("3", "Berlin")):
        fake.put_contact(crm_id, city=city, email=f"{crm_id}@x.com")
    fake.events.append({"stream": "purchases", "_crm_id": "p1", "_contact_id": "1",
                        "type": "purchase", "ts": dt.datetime(2026, 4, 1), "amount": 50.0,
                        "_modified_at": dt.datetime(2026, 4, 1)})
    yield World("fake", fake, ("1", "2", "3"), lambda target: set(fake.lists.get(target, ())))


def hubspot_world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    from tests.emulators.hubspot import Clock, HubSpotEmulator

    token = "pat-na1-contract-1111-2222-3333-444444444444"
    monkeypatch.setenv("HUBSPOT_TOKEN", token)
    with HubSpotEmulator(token=token, clock=Clock(NOW - dt.timedelta(days=1))) as hs:
        company = hs.add_company(name="Shop", industry="Retail")
        ids = [hs.add_contact(email=f"p{i}@x.com", city=city)
               for i, city in enumerate(("Berlin", "Paris", "Berlin"))]
        hs.associate("contacts", ids[0], "companies", company, type_id=1)
        deal = hs.add_deal(dealstage="closedwon", amount=50,
                           closedate=NOW - dt.timedelta(days=30))
        hs.associate("deals", deal, "contacts", ids[0])
        call = hs.add_engagement("calls", hs_timestamp=NOW - dt.timedelta(days=2))
        hs.associate("calls", call, "contacts", ids[1])
        hs.clock.set(NOW)
        settings = _config(tmp_path, f'[crm]\ntype = "hubspot"\nbase_url = "{hs.base_url}"\n'
                                     'write_mode = "both"')
        yield World("hubspot", connectors.create(settings), (ids[0], ids[1], ids[2]),
                    lambda target: set(hs.list_members(target)))


def salesforce_world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    from tests.emulators.salesforce import (
        DEFAULT_CONSUMER_KEY,
        DEFAULT_CONSUMER_SECRET,
        SalesforceEmulator,
    )

    monkeypatch.setenv("SF_CLIENT_ID", DEFAULT_CONSUMER_KEY)
    monkeypatch.setenv("SF_CLIENT_SECRET", DEFAULT_CONSUMER_SECRET)
    with SalesforceEmulator() as sf:
        account = sf.add("Account", Name="Shop", Industry="Retail")
        ids = [sf.add("Contact", LastName=f"C{i}", Email=f"c{i}@x.com", MailingCity=city,
                      AccountId=account if i == 0 else None)
               for i, city in enumerate(("Berlin", "Paris", "Berlin"))]
        sf.add("Opportunity", Name="Won", StageName="Closed Won", Amount=50.0,
               CloseDate=sf.clock.now().date() - dt.timedelta(days=30), ContactId=ids[0])
        sf.add("Task", WhoId=ids[1], Subject="Call", Type="Call", Status="Completed",
               ActivityDate=sf.clock.now().date() - dt.timedelta(days=2))
        sf.define_multipicklist("Segsync_Segments__c", ["A", "B"])
        sf.clock.advance(hours=1)
        settings = _config(tmp_path, f"""[crm]
type = "salesforce"
auth = "client_credentials"
client_id_env = "SF_CLIENT_ID"
client_secret_env = "SF_CLIENT_SECRET"
instance_url = "{sf.instance_url}"
ca_file = "{sf.ca_file}"
max_requests_per_second = 0
write_mode = "both"
""")
        connector = connectors.create(settings)

        def live(target_id: str) -> set[str]:
            return {m["ContactId"] or m["LeadId"] for m in sf.members(target_id)}

        try:
            yield World("salesforce", connector, (ids[0], ids[1], ids[2]), live)
        finally:
            connector.close()  # type: ignore[attr-defined]


WORLDS = {"csv": csv_world, "fake": fake_world, "hubspot": hubspot_world,
          "salesforce": salesforce_world}


@pytest.fixture(params=list(WORLDS))
def world(request: pytest.FixtureRequest, tmp_path: Path,
          monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    build = WORLDS[request.param]
    args: list[Any] = [tmp_path, monkeypatch] if request.param in ("hubspot", "salesforce") \
        else [tmp_path]
    yield from build(*args)


def test_declared_capabilities_match_the_methods(world: World) -> None:
    caps = world.connector.capabilities()
    assert caps.max_batch >= 1
    assert isinstance(world.connector, FieldWriter) or not caps.field
    assert isinstance(world.connector, MembershipReader) or not caps.read_memberships
    assert isinstance(world.connector, TargetDeleter) or not caps.delete_targets
    assert isinstance(world.connector, BudgetAware) or not caps.budget
    if caps.field:
        assert caps.max_field_batch >= 1
    if caps.read_memberships:
        assert caps.max_read_batch >= 1


def test_every_stream_yields_canonical_pages(world: World) -> None:
    seen: dict[str, set[str]] = {}
    for stream in STREAMS:
        fields = frozenset({"email", "city"} if stream == "contacts" else
                           {"industry"} if stream == "companies" else set())
        request = PullRequest(stream, None, fields, events_since=SINCE)
        pages = list(world.connector.pull(request))
        assert pages, stream
        for page in pages:
            check_page(stream, page.records)
            assert set(columns(stream)) <= set(page.records.columns)
        seen[stream] = {str(i) for p in pages for i in p.records["_crm_id"]}
    assert seen["contacts"] == set(world.contacts)
    assert len(seen["purchases"]) == 1


def test_memberships_are_written_idempotently_and_read_back(world: World) -> None:
    connector = world.connector
    if not connector.capabilities().lists:
        pytest.skip(f"{world.name} writes no lists")  # every world here does
    first, second, third = world.contacts
    target = connector.ensure_target(TargetSpec("contract", "segsync: Contract"), None, False)
    from connectors.base import Batch

    done = connector.apply(target, Batch(adds=(first, second)))
    assert (dict(done.failed), dict(done.unknown), done.gone) == ({}, {}, frozenset())
    assert world.live(target.target_id) == {first, second}
    assert set(connector.members(target)) == {first, second}
    again = connector.apply(target, Batch(adds=(first,), removes=(third,)))  # nothing to do
    assert (dict(again.failed), dict(again.unknown)) == ({}, {})
    assert world.live(target.target_id) == {first, second}
    connector.apply(target, Batch(removes=(second,)))
    assert world.live(target.target_id) == {first}
    if connector.capabilities().read_memberships:
        assert isinstance(connector, MembershipReader)
        read = connector.read_memberships([target], [first, second])
        assert {first, second} <= read.known | read.gone
        assert {p for p in read.present if p[0] == target.target_id} == {
            (target.target_id, first)}
    renamed = connector.ensure_target(TargetSpec("contract", "segsync: Renamed"), target, False)
    assert renamed.target_id == target.target_id
    connector.finish()
    usage = connector.api_usage()
    assert all(isinstance(k, str) and isinstance(v, int) for k, v in usage.items())


def test_field_values_are_written_when_declared(world: World) -> None:
    connector = world.connector
    if not connector.capabilities().field:
        pytest.skip(f"{world.name} is not configured for a field here")
    assert isinstance(connector, FieldWriter)
    first, second, _ = world.contacts
    connector.ensure_field(["A", "B"])
    result = connector.write_field({first: ("A", "B"), second: ()})
    assert (dict(result.failed), dict(result.unknown), result.gone) == ({}, {}, frozenset())


def test_a_target_can_be_deleted_when_declared(world: World) -> None:
    connector = world.connector
    if not connector.capabilities().delete_targets:
        pytest.skip(f"{world.name} cannot delete targets")
    assert isinstance(connector, TargetDeleter)
    target = connector.ensure_target(TargetSpec("gone", "segsync: Gone"), None, False)
    connector.delete_target(target)
    connector.delete_target(target)  # already gone counts as deleted
