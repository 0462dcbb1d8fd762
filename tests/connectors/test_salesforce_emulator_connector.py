"""The Salesforce connector against the stateful emulator (HTTPS on 127.0.0.1).

What ``responses`` cannot show: answers lost *after* the org committed (the emulator
processes the request, then cuts, delays or replaces the answer), merges and lead
conversions moving memberships inside the org, Enhanced Email, and what the connector's
frames hold for JSON nulls. Retry backoff and lock waits are recorded, never slept.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import random
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from connectors.base import Batch, Page, PullRequest, TargetRef, TargetSpec
from connectors.salesforce import SalesforceConnector, SalesforceSettings
from tests.emulators.salesforce import (
    DEFAULT_CONSUMER_KEY,
    DEFAULT_CONSUMER_SECRET,
    Fault,
    FieldDef,
    SalesforceEmulator,
)

UTC = dt.UTC
SEGMENTS = "Segsync_Segments__c"


@pytest.fixture
def sf() -> Iterator[SalesforceEmulator]:
    with SalesforceEmulator() as emulator:
        yield emulator
        assert emulator.internal_errors == []


@pytest.fixture(autouse=True)
def _secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SF_ID", DEFAULT_CONSUMER_KEY)
    monkeypatch.setenv("SF_SECRET", DEFAULT_CONSUMER_SECRET)


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def connect(sf: SalesforceEmulator, sleeps: list[float]) -> Iterator[Any]:
    built: list[SalesforceConnector] = []

    def make(**overrides: Any) -> SalesforceConnector:
        settings = SalesforceSettings(
            auth="client_credentials", client_id_env="SF_ID", client_secret_env="SF_SECRET",
            instance_url=sf.instance_url, ca_file=Path(sf.ca_file), max_requests_per_second=0,
            **overrides)
        connector = SalesforceConnector(settings, sleep=sleeps.append, now=sf.clock.now,
                                        rng=random.Random(3))
        built.append(connector)
        return connector

    yield make
    for connector in built:
        connector.close()


@pytest.fixture
def connector(connect: Any) -> SalesforceConnector:
    made: SalesforceConnector = connect()
    return made


def contacts(sf: SalesforceEmulator, count: int) -> list[str]:
    return sf.add_many("Contact", [{"LastName": f"P{i}"} for i in range(count)])


def collection_calls(sf: SalesforceEmulator, method: str) -> list[Any]:
    return [r for r in sf.requests if r.method == method and r.relative == "composite/sobjects"]


def members(sf: SalesforceEmulator, campaign: TargetRef) -> list[str]:
    return sorted(m["ContactId"] or m["LeadId"] for m in sf.members(campaign.target_id))


# --- answers lost after the write was committed ---------------------------------------------------


def test_an_insert_answered_with_a_truncated_body_is_unknown_until_proven(
    sf: SalesforceEmulator, connector: SalesforceConnector, sleeps: list[float]
) -> None:
    ref = connector.ensure_target(TargetSpec("seg", "segsync: Seg"), None, False)
    a, b, c = contacts(sf, 3)
    sf.inject(Fault("malformed_json", path_prefix="composite/sobjects", method="POST"))
    result = connector.apply(ref, Batch(adds=(a, b)))
    assert set(result.unknown) == {a, b}
    assert "not valid JSON" in result.unknown[a]
    assert (result.failed, result.gone) == ({}, frozenset())
    assert members(sf, ref) == sorted([a, b])  # the org did commit
    read = connector.read_memberships([ref], [a, b, c])
    assert read.present == frozenset({(ref.target_id, a), (ref.target_id, b)})
    assert read.known == frozenset({a, b, c})
    # writing the identical payload again is answered DUPLICATE_VALUE: proven, done
    again = connector.apply(ref, Batch(adds=(a, b)))
    assert (again.failed, again.unknown, again.gone) == ({}, {}, frozenset())
    first, second = collection_calls(sf, "POST")
    assert (first.fault, second.fault, second.status) == ("malformed_json", None, 200)
    assert first.body == second.body
    assert members(sf, ref) == sorted([a, b])  # no second membership: DUPLICATE_VALUE
    assert sleeps == []


def test_a_5xx_after_the_commit_is_retried_and_the_duplicate_proves_the_insert(
    sf: SalesforceEmulator, connector: SalesforceConnector, sleeps: list[float]
) -> None:
    ref = connector.ensure_target(TargetSpec("seg", "segsync: Seg"), None, False)
    a, b = contacts(sf, 2)
    sf.inject(Fault("http_503", path_prefix="composite/sobjects", method="POST",
                    reach_org=True))
    result = connector.apply(ref, Batch(adds=(a, b)))
    assert (result.failed, result.unknown, result.gone) == ({}, {}, frozenset())
    posts = collection_calls(sf, "POST")
    assert [(p.fault, p.status) for p in posts] == [("http_503", 503), (None, 200)]
    assert posts[0].body == posts[1].body  # the identical payload
    assert members(sf, ref) == sorted([a, b])
    assert len(sleeps) == 1


def test_a_delete_whose_answer_is_cut_is_retried_and_proven_by_entity_is_deleted(
    sf: SalesforceEmulator, connector: SalesforceConnector
) -> None:
    ref = connector.ensure_target(TargetSpec("seg", "segsync: Seg"), None, False)
    a, b = contacts(sf, 2)
    connector.apply(ref, Batch(adds=(a, b)))
    sf.inject(Fault("disconnect", path_prefix="composite/sobjects", method="DELETE"))
    result = connector.apply(ref, Batch(removes=(a,)))
    assert (result.failed, result.unknown, result.gone) == ({}, {}, frozenset())
    assert [d.fault for d in collection_calls(sf, "DELETE")] == ["disconnect", None]
    assert members(sf, ref) == [b]


def test_a_delete_answered_unreadably_is_unknown_and_read_back_as_absent(
    sf: SalesforceEmulator, connector: SalesforceConnector
) -> None:
    ref = connector.ensure_target(TargetSpec("seg", "segsync: Seg"), None, False)
    a, b, c = contacts(sf, 3)
    connector.apply(ref, Batch(adds=(a, b)))
    sf.inject(Fault("malformed_json", path_prefix="composite/sobjects", method="DELETE"))
    result = connector.apply(ref, Batch(adds=(c,), removes=(a, b)))
    assert set(result.unknown) == {a, b}
    assert "may or may not be deleted" in result.unknown[a]
    assert (result.failed, result.gone) == ({}, frozenset())  # c's insert is proven
    read = connector.read_memberships([ref], [a, b, c])
    assert read.present == frozenset({(ref.target_id, c)})
    assert read.known == frozenset({a, b, c})
    assert members(sf, ref) == [c]


# --- people who are gone --------------------------------------------------------------------------


def test_deleted_merged_purged_and_converted_people_are_gone(
    sf: SalesforceEmulator, connect: Any
) -> None:
    sf.define_multipicklist(SEGMENTS, ["seg"])
    connector: SalesforceConnector = connect(write_mode="both")
    ref = connector.ensure_target(TargetSpec("seg", "segsync: Seg"), None, False)
    live, deleted, master, loser, purged = contacts(sf, 5)
    lead = sf.add("Lead", LastName="L", Company="Co")
    sf.delete(deleted)
    sf.merge(master, loser)
    sf.delete(purged)
    sf.purge_delete_log()
    conversion = sf.convert_lead(lead)
    result = connector.apply(ref, Batch(adds=(live, deleted, loser, purged, lead)))
    assert result.gone == frozenset({deleted, loser, purged, lead})
    assert (result.failed, result.unknown) == ({}, {})
    assert members(sf, ref) == [live]
    fields = connector.write_field({live: ("seg",), deleted: ("seg",), lead: ()})
    assert fields.gone == frozenset({deleted, lead})
    assert (fields.failed, fields.unknown) == ({}, {})
    assert sf.get(live)[SEGMENTS] == "seg"
    # the converted lead's contact can be added: it is the same person, alive
    assert connector.apply(ref, Batch(adds=(conversion.contact_id,))).gone == frozenset()


# --- reading memberships back -------------------------------------------------------------------


def test_read_memberships_sees_merges_and_conversions_in_several_campaigns(
    sf: SalesforceEmulator, connector: SalesforceConnector
) -> None:
    spring = connector.ensure_target(TargetSpec("spring", "segsync: Spring"), None, False)
    autumn = connector.ensure_target(TargetSpec("autumn", "segsync: Autumn"), None, False)
    people = contacts(sf, 430)
    lead = sf.add("Lead", LastName="L", Company="Co")
    connector.apply(spring, Batch(adds=(*people[:150], lead)))
    connector.apply(spring, Batch(adds=tuple(people[150:300])))
    connector.apply(autumn, Batch(adds=(people[0], people[420])))
    master, loser = people[425], people[1]  # the loser's spring membership moves
    sf.merge(master, loser)
    conversion = sf.convert_lead(lead)
    sf.clear_requests()
    asked = [*people, lead, conversion.contact_id]
    read = connector.read_memberships([spring, autumn], asked)
    expected = {(spring.target_id, p) for p in people[:300] if p != loser}
    expected |= {(spring.target_id, master), (spring.target_id, lead),
                 (spring.target_id, conversion.contact_id),  # the lead's row carries both
                 (autumn.target_id, people[0]), (autumn.target_id, people[420])}
    assert read.present == frozenset(expected)
    assert read.known == frozenset(asked)
    assert read.gone == frozenset()
    queries = [r for r in sf.requests if (r.relative or "").startswith("query")]
    assert len(queries) == 3  # 432 people: 200 + 200 + 32
    assert read.api_calls == 3


# --- email activity -------------------------------------------------------------------------------


def apply_pages(store: dict[str, set[tuple[str, str]]], pages: Iterable[Page]) -> list[Page]:
    """What the store does with activity pages: a record's rows are replaced as a whole,
    then deleted ids go, then (full pulls) everything not present goes."""
    seen = []
    for page in pages:
        seen.append(page)
        frame = page.records
        for crm_id, rows in frame.groupby("_crm_id"):
            store[str(crm_id)] = set(zip(rows["_contact_id"], rows["type"], strict=True))
        for crm_id in page.deleted:
            store.pop(crm_id, None)
        if page.present_ids is not None:
            for crm_id in set(store) - page.present_ids:
                del store[crm_id]
    return seen


def per_person(store: dict[str, set[tuple[str, str]]], person: str) -> list[tuple[str, str]]:
    return sorted((crm_id, kind) for crm_id, rows in store.items()
                  for who, kind in rows if who == person)


def test_incoming_email_counts_once_as_email_received(
    sf: SalesforceEmulator, connector: SalesforceConnector
) -> None:
    ada = sf.add("Contact", LastName="Ada")
    bob = sf.add("Contact", LastName="Bob")
    lee = sf.add("Lead", LastName="Lee", Company="Co")
    user = sf.records("User")[0]["Id"]
    received = sf.log_email(ada, [user], cc_ids=[bob])  # with its logged Task
    no_task = sf.log_email(lee, [user], with_task=False)
    sent = sf.log_email(user, [bob], incoming=False)  # Task (WhoId bob) + outgoing message
    call = sf.add("Task", WhoId=bob, Subject="Call", Type="Call", TaskSubtype="Call",
                  ActivityDate=dt.date(2025, 6, 1))
    sf.clock.advance(minutes=10)
    since = dt.datetime(2025, 1, 1)
    store: dict[str, set[tuple[str, str]]] = {}
    first = apply_pages(store, connector.pull(PullRequest("activities", None,
                                                          events_since=since)))
    assert per_person(store, ada) == [(received.message_id, "email_received")]
    assert per_person(store, lee) == [(no_task.message_id, "email_received")]
    assert per_person(store, bob) == sorted([(call, "call"), (sent.task_id, "email_sent")])
    assert received.task_id not in store
    assert sent.message_id not in store
    # next run: a new incoming email, a sender relation changed, a message deleted
    sf.clock.advance(minutes=10)
    later = sf.log_email(bob, [user])
    sf.update(no_task.relation_ids[0], RelationId=ada)  # the From person was re-matched
    sf.delete(received.message_id)
    sf.clock.advance(minutes=10)
    apply_pages(store, connector.pull(PullRequest("activities", first[-1].watermark,
                                                  events_since=since)))
    assert per_person(store, ada) == [(no_task.message_id, "email_received")]
    assert per_person(store, lee) == []
    assert per_person(store, bob) == sorted([(call, "call"), (sent.task_id, "email_sent"),
                                             (later.message_id, "email_received")])
    assert later.task_id not in store
    # a Task edited later is still recognised as the logged copy of its email
    sf.update(str(later.task_id), Subject="Email: edited")
    sf.clock.advance(minutes=10)
    apply_pages(store, connector.pull(PullRequest("activities", first[-1].watermark,
                                                  events_since=since)))
    assert later.task_id not in store


def test_without_enhanced_email_the_pull_goes_on_and_check_says_what_is_missing(
    sf: SalesforceEmulator, connector: SalesforceConnector, caplog: pytest.LogCaptureFixture
) -> None:
    ada = sf.add("Contact", LastName="Ada")
    logged = sf.log_email(ada)
    lines = connector.check()
    assert any("email_received from incoming EmailMessages" in line for line in lines)
    sf.enhanced_email = False
    with caplog.at_level(logging.WARNING):
        store: dict[str, set[tuple[str, str]]] = {}
        pages = apply_pages(store, connector.pull(PullRequest("activities", None)))
    assert store == {str(logged.task_id): {(ada, "email_sent")}}
    assert caplog.text.count("Enhanced Email is off") == 1
    assert pages[-1].present_ids == frozenset({logged.task_id})
    lines = connector.check()
    (email,) = [line for line in lines if line.startswith("email activity")]
    assert "email_received is unavailable" in email
    assert "EmailMessage is not queryable" in email


# --- JSON null stays None -------------------------------------------------------------------------


def _no_nan(frame: pd.DataFrame) -> None:
    for column in frame.columns:
        for value in frame[column]:
            assert not (isinstance(value, float) and math.isnan(value)), (column, frame)
            assert value is not pd.NaT, (column, frame)


def test_json_null_is_none_in_every_frame(
    sf: SalesforceEmulator, connect: Any
) -> None:
    for sobject in ("Contact", "Lead"):
        sf.define_field(sobject, FieldDef("Score__c", "double"))
    shop = sf.add("Account", Name="Shop", BillingLatitude=52.5, AnnualRevenue=1e6)
    sf.add_many("Account", [{"Name": f"A{i}"} for i in range(5)])  # every number null
    ada = sf.add("Contact", LastName="Ada", AccountId=shop, MailingLatitude=52.5, Score__c=7.0)
    bob = sf.add("Contact", LastName="Bob")
    sf.add("Lead", LastName="Lee", Company="Co")
    won = sf.add("Opportunity", Name="D", StageName="Closed Won", CloseDate="2025-05-01",
                 ContactId=bob)
    sf.add("Opportunity", Name="E", StageName="Closed Won", CloseDate="2025-05-02",
           ContactId=ada, Amount=12.5)
    sf.add("Task", WhoId=bob, Subject="Call", Type="Call", ActivityDate=dt.date(2025, 6, 1))
    sf.log_email(ada)
    sf.page_size = 1  # companies: 6 rows, 1 per page -> the Bulk API 2.0 (CSV) path
    connector: SalesforceConnector = connect(bulk_threshold=2)
    since = dt.datetime(2025, 1, 1)
    fields = {"contacts": frozenset({"email", "city", "Score__c", "title"}),
              "companies": frozenset({"annual_revenue", "industry"})}
    frames: dict[str, list[pd.DataFrame]] = {}
    for stream in ("contacts", "companies", "purchases", "activities"):
        request = PullRequest(stream, None, fields.get(stream, frozenset()),  # type: ignore[arg-type]
                              events_since=since)
        frames[stream] = [p.records for p in connector.pull(request) if not p.records.empty]
    assert connector.reader.bulk_jobs == 1
    for stream, found in frames.items():
        assert found, stream
        for frame in found:
            _no_nan(frame)
    people = pd.concat(frames["contacts"]).set_index("_crm_id")
    assert people.at[ada, "_lat"] == 52.5
    assert people.at[ada, "Score__c"] == "7"
    for column in ("_lon", "email", "city", "title", "Score__c", "_lat", "_company_id"):
        assert people.at[bob, column] is None, column
    # the Bulk job re-reads the first REST page's row: keep the last copy, as the store does
    companies = pd.concat(frames["companies"]).drop_duplicates("_crm_id", keep="last")
    companies = companies.set_index("_crm_id")
    assert len(companies) == 6
    assert companies.at[shop, "annual_revenue"] == "1000000"
    nulls = companies.drop(index=shop)
    assert set(nulls["_lat"]) == set(nulls["_lon"]) == set(nulls["annual_revenue"]) == {None}
    purchases = pd.concat(frames["purchases"])
    amounts = dict(zip(purchases["_crm_id"], purchases["amount"], strict=True))
    assert amounts[won] is None
    assert 12.5 in amounts.values()
    activities = pd.concat(frames["activities"])
    assert set(activities["amount"]) == {None}
    assert set(activities["type"]) == {"call", "email_received"}
