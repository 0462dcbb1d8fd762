"""The Salesforce connector at the HTTP level: every call shape, with ``responses``.

Requests go through segsync's own retrying session (``responses`` patches the transport
adapter), with an injected ``sleep`` so retries and lock backoffs never wait.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest
import requests
import responses
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from responses import matchers
from responses.registries import OrderedRegistry

from connectors.base import Batch, MembershipReader, PullRequest, TargetRef, TargetSpec
from connectors.errors import (
    AuthError,
    ConnectorError,
    CrmDataError,
    QuotaExhausted,
    RetriableAPIError,
    TargetConflict,
)
from connectors.salesforce import SalesforceConnector, SalesforceSettings
from connectors.salesforce.streams import Marks

INSTANCE = "https://acme.my.salesforce.com"
DATA = f"{INSTANCE}/services/data/v64.0"
TOKEN_URL = f"{INSTANCE}/services/oauth2/token"
CLIENT_ID, CLIENT_SECRET = "3MVG9-consumer-key", "consumer-secret-1234"
TOKEN = "00DEM0000000001!AQ-first-token"
CAMPAIGN = "701EM0000000001YAA"
C1, C2, C3, C4 = (f"003EM000000000{i}AAA" for i in range(1, 5))
L1 = "00QEM0000000001AAA"
STAMP = "2025-06-02T09:00:00.000+0000"
NOW = dt.datetime(2025, 6, 2, 10, tzinfo=dt.UTC)


@pytest.fixture(autouse=True)
def _secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SF_ID", CLIENT_ID)
    monkeypatch.setenv("SF_SECRET", CLIENT_SECRET)


@pytest.fixture
def mocked() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        yield mock


@pytest.fixture
def ordered() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=True,
                                registry=OrderedRegistry) as mock:
        yield mock


@pytest.fixture
def sleeps() -> list[float]:
    return []


def make_settings(**overrides: Any) -> SalesforceSettings:
    options: dict[str, Any] = {
        "auth": "client_credentials", "client_id_env": "SF_ID", "client_secret_env": "SF_SECRET",
        "domain": "acme.my", "max_requests_per_second": 0,
    }
    options.update(overrides)
    return SalesforceSettings(**options)


def make(sleeps: list[float], **overrides: Any) -> SalesforceConnector:
    return SalesforceConnector(make_settings(**overrides), sleep=sleeps.append,
                               rng=random.Random(7), now=lambda: NOW)


def login(mock: responses.RequestsMock, token: str = TOKEN) -> None:
    mock.post(TOKEN_URL, json={"access_token": token, "instance_url": INSTANCE,
                               "id": "https://login.salesforce.com/id/00D/005EM0000000001AAA",
                               "token_type": "Bearer"})


def page(records: list[dict[str, Any]], total: int | None = None,
         next_url: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"totalSize": len(records) if total is None else total,
                            "done": next_url is None, "records": records}
    if next_url:
        body["nextRecordsUrl"] = next_url
    return body


def record(sobject: str, **fields: Any) -> dict[str, Any]:
    return {"attributes": {"type": sobject, "url": f"/services/data/v64.0/sobjects/{sobject}/x"},
            **fields}


def soql_of(call: Any) -> str:
    return parse_qs(urlsplit(call.request.url).query)["q"][0]


def member_body(*people: str) -> dict[str, Any]:
    return {"allOrNone": False, "records": [
        {"attributes": {"type": "CampaignMember"}, "CampaignId": CAMPAIGN,
         ("LeadId" if p.startswith("00Q") else "ContactId"): p} for p in people]}


def ok(record_id: str = "00vEM0000000001AAA") -> dict[str, Any]:
    return {"id": record_id, "success": True, "errors": []}


def failure(code: str, message: str = "", fields: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"success": False, "errors": [{"statusCode": code, "message": message,
                                          "fields": list(fields)}]}


# --- logins ------------------------------------------------------------------------------------


def test_client_credentials_login_then_bearer_calls(
    mocked: responses.RequestsMock, sleeps: list[float]
) -> None:
    basic = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
    mocked.post(TOKEN_URL, match=[
        matchers.header_matcher({"Authorization": f"Basic {basic}"}),
        matchers.urlencoded_params_matcher({"grant_type": "client_credentials"}),
    ], json={"access_token": TOKEN, "instance_url": INSTANCE})
    mocked.get(f"{DATA}/query/", match=[matchers.header_matcher(
        {"Authorization": f"Bearer {TOKEN}"})], json=page([]))
    pages = list(make(sleeps).pull(PullRequest("companies", None)))
    assert pages[-1].present_ids == frozenset()
    assert soql_of(mocked.calls[1]) == "SELECT Id, SystemModstamp, BillingLatitude, " \
        "BillingLongitude FROM Account ORDER BY SystemModstamp ASC, Id ASC"


def test_jwt_bearer_login_signs_an_rs256_assertion(
    mocked: responses.RequestsMock, sleeps: list[float], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    (tmp_path / "segsync.key").write_bytes(pem)
    monkeypatch.setenv("SF_KEY", CLIENT_ID)
    claims: dict[str, Any] = {}

    def token(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        form = parse_qs(str(request.body))
        assert form["grant_type"] == ["urn:ietf:params:oauth:grant-type:jwt-bearer"]
        claims.update(jwt.decode(form["assertion"][0], key.public_key(), algorithms=["RS256"],
                                 audience="https://test.salesforce.com"))
        return 200, {}, json.dumps({"access_token": TOKEN, "instance_url": INSTANCE})

    sandbox = "https://acme--uat.sandbox.my.salesforce.com"
    mocked.add_callback("POST", f"{sandbox}/services/oauth2/token", callback=token)
    mocked.get(f"{DATA}/query/", json=page([]))
    connector = make(sleeps, auth="jwt", username="integration@acme.com.uat",
                     consumer_key_env="SF_KEY", private_key_file=tmp_path / "segsync.key",
                     domain="acme--uat.sandbox.my")
    list(connector.pull(PullRequest("companies", None)))
    assert (claims["iss"], claims["sub"]) == (CLIENT_ID, "integration@acme.com.uat")


def test_password_login_uses_soap_and_the_returned_server(
    mocked: responses.RequestsMock, sleeps: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SF_PASSWORD", "pa<ss&word")
    monkeypatch.setenv("SF_TOKEN", "SECURITYTOKEN42")
    soap = ("<soapenv:Envelope xmlns:soapenv='http://schemas.xmlsoap.org/soap/envelope/' "
            "xmlns='urn:partner.soap.sforce.com'><soapenv:Body><loginResponse><result>"
            "<serverUrl>https://na1.salesforce.com/services/Soap/u/64.0/00D</serverUrl>"
            f"<sessionId>{TOKEN}</sessionId><userId>005EM0000000001AAA</userId>"
            "</result></loginResponse></soapenv:Body></soapenv:Envelope>")
    mocked.post("https://login.salesforce.com/services/Soap/u/64.0", body=soap, match=[
        matchers.header_matcher({"SOAPAction": "login"})])
    mocked.get("https://na1.salesforce.com/services/data/v64.0/query/", json=page([]))
    connector = make(sleeps, auth="password", username="u@acme.com", password_env="SF_PASSWORD",
                     security_token_env="SF_TOKEN", domain="login")
    list(connector.pull(PullRequest("companies", None)))
    sent = mocked.calls[0].request.body
    assert b"<n1:password>pa&lt;ss&amp;wordSECURITYTOKEN42</n1:password>" in sent
    assert connector.client.token.user_id == "005EM0000000001AAA"


def test_login_failure_is_an_auth_error_that_names_no_secret(
    mocked: responses.RequestsMock, sleeps: list[float]
) -> None:
    mocked.post(TOKEN_URL, status=400, json={"error": "invalid_client",
                                             "error_description": "invalid client credentials"})
    with pytest.raises(AuthError) as caught:
        list(make(sleeps).pull(PullRequest("companies", None)))
    assert "invalid_client" in str(caught.value)
    assert "consumer key / secret" in str(caught.value)
    assert CLIENT_SECRET not in str(caught.value)


def test_missing_secret_names_the_variable(
    sleeps: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SF_SECRET")
    with pytest.raises(AuthError, match=r"SF_SECRET \(named by \[crm\].client_secret_env\)"):
        list(make(sleeps).pull(PullRequest("companies", None)))


def test_expired_session_logs_in_again_once(
    ordered: responses.RequestsMock, sleeps: list[float]
) -> None:
    expired = [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]
    login(ordered)
    ordered.get(f"{DATA}/query/", status=401, json=expired)
    login(ordered, token="00DEM0000000001!AQ-second")
    ordered.get(f"{DATA}/query/", json=page([]), match=[
        matchers.header_matcher({"Authorization": "Bearer 00DEM0000000001!AQ-second"})])
    connector = make(sleeps)
    list(connector.pull(PullRequest("companies", None)))
    assert connector.client.logins == 2
    assert connector.api_usage() == {"GET query": 2, "POST oauth2/token (login)": 2}


def test_a_session_refused_right_after_logging_in_is_an_auth_error(
    ordered: responses.RequestsMock, sleeps: list[float]
) -> None:
    expired = [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]
    login(ordered)
    ordered.get(f"{DATA}/query/", status=401, json=expired)
    login(ordered)
    ordered.get(f"{DATA}/query/", status=401, json=expired)
    with pytest.raises(AuthError, match="INVALID_SESSION_ID"):
        list(make(sleeps).pull(PullRequest("companies", None)))


# --- queries -----------------------------------------------------------------------------------


def contact(i: int, stamp: str = STAMP, **fields: Any) -> dict[str, Any]:
    base = {"Id": f"003EM{i:010d}AAA", "SystemModstamp": stamp, "AccountId": None,
            "HasOptedOutOfEmail": False, "DoNotCall": False, "MailingLatitude": None,
            "MailingLongitude": None, "Email": f"p{i}@example.com"}
    return record("Contact", **{**base, **fields})


def test_pages_follow_next_records_url_lazily(
    mocked: responses.RequestsMock, sleeps: list[float]
) -> None:
    """A generated result served in pages; each page is its own Page with its watermark."""
    people = [contact(i, f"2025-06-02T09:00:{i:02d}.000+0000") for i in range(5)]
    chunks = [people[0:2], people[2:4], people[4:5]]
    served: list[str] = []

    def serve(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        path = urlsplit(request.url).path
        index = 0 if path.endswith("/query/") else int(path.rsplit("-", 1)[1])
        served.append(path)
        nxt = f"/services/data/v64.0/query/0r8EM0000000001-{index + 1}" \
            if index + 1 < len(chunks) else None
        return 200, {"Sforce-Limit-Info": f"api-usage={10 + index}/15000"}, json.dumps(
            page(chunks[index], total=5, next_url=nxt))

    login(mocked)
    mocked.add_callback("GET", f"{DATA}/query/", callback=serve)
    mocked.add_callback("GET", f"{DATA}/query/0r8EM0000000001-1", callback=serve)
    mocked.add_callback("GET", f"{DATA}/query/0r8EM0000000001-2", callback=serve)
    mocked.get(f"{DATA}/query/", json=page([]))  # the Lead query
    connector = make(sleeps)
    pulled = connector.pull(PullRequest("contacts", None, frozenset({"email"})))
    first = next(pulled)
    assert len(served) == 1, "the second page is fetched only when it is needed"
    assert first.records["_crm_id"].tolist() == [people[0]["Id"], people[1]["Id"]]
    mark = Marks.decode(first.watermark).get("Contact")
    assert mark.since == dt.datetime(2025, 6, 2, 8, 55, 1, tzinfo=dt.UTC)  # newest - overlap
    rest = list(pulled)
    assert [len(p.records) for p in rest] == [2, 1, 0, 0, 0, 0]
    assert rest[-1].present_ids == frozenset(p["Id"] for p in people)
    assert connector.daily_limits() is not None
    assert connector.remaining_daily_calls() == 15000 - 12
    assert connector.api_usage()["GET query (next page)"] == 2


def test_incremental_pull_reads_deletes_merges_and_conversions_from_query_all(
    mocked: responses.RequestsMock, sleeps: list[float]
) -> None:
    t0 = dt.datetime(2025, 6, 2, 9, tzinfo=dt.UTC)
    since = Marks().advanced("Contact", t0, t0).advanced("Lead", t0, t0).encode()
    login(mocked)
    mocked.get(f"{DATA}/queryAll/", json=page([
        contact(1, City="x"),
        contact(2, IsDeleted=True, MasterRecordId=None),
        contact(3, IsDeleted=True, MasterRecordId=C1),
    ]), headers={"Date": "Mon, 02 Jun 2025 09:30:00 GMT"})
    mocked.get(f"{DATA}/queryAll/", json=page([
        record("Lead", Id=L1, SystemModstamp=STAMP, HasOptedOutOfEmail=False, DoNotCall=False,
               Latitude=None, Longitude=None, Email="l@x.com", IsConverted=True,
               ConvertedContactId=C4, IsDeleted=False, MasterRecordId=None),
    ]))
    pages = list(make(sleeps).pull(PullRequest("contacts", since, frozenset({"email"}))))
    contact_page, contact_done, lead_page, lead_done = pages
    assert contact_page.records["_crm_id"].tolist() == [C1]
    assert contact_page.deleted == (C2,)
    assert contact_page.merged == {C3: C1}
    assert lead_page.records.empty
    assert lead_page.merged == {L1: C4}
    assert all(p.present_ids is None for p in pages)
    contact_query, lead_query = soql_of(mocked.calls[1]), soql_of(mocked.calls[2])
    assert "IsDeleted, MasterRecordId FROM Contact WHERE SystemModstamp >= " \
           "2025-06-02T09:00:00+00:00" in contact_query
    assert "IsConverted = false" not in lead_query  # conversions must be seen
    final = Marks.decode(lead_done.watermark)
    # Contact: server time at the start of the read (Date header) minus the overlap.
    assert final.get("Contact").since == dt.datetime(2025, 6, 2, 9, 25, tzinfo=dt.UTC)
    assert final.get("Contact").checked == dt.datetime(2025, 6, 2, 9, 30, tzinfo=dt.UTC)
    assert Marks.decode(contact_done.watermark).get("Lead") == Marks.decode(since).get("Lead")


def test_a_stale_watermark_reads_in_full_and_reconciles_ids(
    mocked: responses.RequestsMock, sleeps: list[float]
) -> None:
    old = dt.datetime(2025, 5, 1, tzinfo=dt.UTC)  # > 14 days before NOW
    since = Marks().advanced("Account", old, old).encode()
    login(mocked)
    account = record("Account", Id="001EM0000000001AAA", SystemModstamp=STAMP,
                     BillingLatitude=None, BillingLongitude=None)
    mocked.get(f"{DATA}/query/", json=page([account]))
    pages = list(make(sleeps).pull(PullRequest("companies", since)))
    assert pages[-1].present_ids == frozenset({"001EM0000000001AAA"})
    assert "SystemModstamp >=" not in soql_of(mocked.calls[1])


def test_a_field_missing_on_leads_is_left_empty_after_one_describe(
    mocked: responses.RequestsMock, sleeps: list[float], caplog: pytest.LogCaptureFixture
) -> None:
    login(mocked)
    mocked.get(f"{DATA}/query/", json=page([contact(1, NPS__c=9)]))
    mocked.get(f"{DATA}/query/", status=400, json=[
        {"message": "No such column 'NPS__c' on entity 'Lead'", "errorCode": "INVALID_FIELD"}])
    mocked.get(f"{DATA}/sobjects/Lead/describe", json={"fields": [{"name": "Id"},
                                                                  {"name": "Email"}]})
    mocked.get(f"{DATA}/query/", json=page([]))
    with caplog.at_level(logging.WARNING):
        pages = list(make(sleeps).pull(PullRequest("contacts", None, frozenset({"NPS__c"}))))
    assert pages[0].records["NPS__c"].tolist() == ["9"]
    assert "Lead has no field NPS__c" in caplog.text
    assert "NPS__c" not in soql_of(mocked.calls[-1])


def test_a_field_missing_on_contacts_is_a_clear_error(
    mocked: responses.RequestsMock, sleeps: list[float]
) -> None:
    login(mocked)
    mocked.get(f"{DATA}/query/", status=400, json=[
        {"message": "No such column 'NPS__c'", "errorCode": "INVALID_FIELD"}])
    mocked.get(f"{DATA}/sobjects/Contact/describe", json={"fields": [{"name": "Email"}]})
    with pytest.raises(ConnectorError, match=r"Contact has no field NPS__c .*contact_fields"):
        list(make(sleeps).pull(PullRequest("contacts", None, frozenset({"NPS__c"}))))


def test_purchases_one_row_per_opportunity_and_person(
    mocked: responses.RequestsMock, sleeps: list[float]
) -> None:
    login(mocked)
    mocked.get(f"{DATA}/query/", json=page([
        record("OpportunityContactRole", Id="00KA", SystemModstamp=STAMP, OpportunityId="006A",
               ContactId=C2, Opportunity={"Amount": 100.0, "CloseDate": "2025-05-01",
                                          "SystemModstamp": STAMP}),
        record("OpportunityContactRole", Id="00KB", SystemModstamp=STAMP, OpportunityId="006B",
               ContactId=C3, Opportunity={"Amount": None, "CloseDate": "2025-04-01",
                                          "SystemModstamp": STAMP}),
    ]))
    mocked.get(f"{DATA}/query/", json=page([
        record("Opportunity", Id="006A", SystemModstamp=STAMP, ContactId=C1, Amount=100.0,
               CloseDate="2025-05-01", IsWon=True),
    ]))
    events_since = dt.datetime(2024, 6, 2)
    pages = list(make(sleeps).pull(PullRequest("purchases", None, events_since=events_since)))
    rows = pd_rows(pages)
    assert sorted((r["_crm_id"], r["_contact_id"], r["amount"]) for r in rows) == [
        ("006A", C1, 100.0), ("006A", C2, 100.0), ("006B", C3, None)]
    assert {r["type"] for r in rows} == {"purchase"}
    assert pages[-1].present_ids == frozenset({"006A", "006B"})
    assert "Opportunity.CloseDate >= 2024-06-02" in soql_of(mocked.calls[1])
    assert "IsWon = true AND CloseDate >= 2024-06-02" in soql_of(mocked.calls[2])


def pd_rows(pages: list[Any]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for p in pages:
        for row in p.records.to_dict("records"):
            if row["amount"] != row["amount"]:  # NaN -> None
                row["amount"] = None
            rows.append(row)
    return rows


def test_incremental_purchases_follow_role_changes_and_reopened_deals(
    mocked: responses.RequestsMock, sleeps: list[float]
) -> None:
    t0 = dt.datetime(2025, 6, 2, 9, tzinfo=dt.UTC)
    since = Marks().advanced("Opportunity", t0, t0).advanced(
        "OpportunityContactRole", t0, t0).encode()
    login(mocked)
    mocked.get(f"{DATA}/queryAll/", json=page([  # changed opportunities
        record("Opportunity", Id="006A", SystemModstamp=STAMP, ContactId=None, Amount=5.0,
               CloseDate="2025-05-01", IsWon=False, IsDeleted=False),
        record("Opportunity", Id="006D", SystemModstamp=STAMP, ContactId=None, Amount=5.0,
               CloseDate="2025-05-01", IsWon=True, IsDeleted=True),
    ]))
    mocked.get(f"{DATA}/queryAll/", json=page([  # changed roles
        record("OpportunityContactRole", Id="00KA", SystemModstamp=STAMP, OpportunityId="006B",
               IsDeleted=False),
    ]))
    mocked.get(f"{DATA}/query/", json=page([  # the role's opportunity
        record("Opportunity", Id="006B", SystemModstamp=STAMP, ContactId=C1, Amount=7.0,
               CloseDate="2025-05-05", IsWon=True),
    ]))
    mocked.get(f"{DATA}/query/", json=page([  # everyone on the won ones
        record("OpportunityContactRole", OpportunityId="006B", ContactId=C2),
    ]))
    (only,) = list(make(sleeps).pull(PullRequest("purchases", since)))
    assert sorted(only.deleted) == ["006A", "006D"]
    assert sorted(only.records["_contact_id"]) == [C1, C2]
    assert "WHERE Id IN ('006B')" in soql_of(mocked.calls[3])
    assert "WHERE OpportunityId IN ('006B')" in soql_of(mocked.calls[4])


def test_activities_from_tasks_events_and_incoming_email(
    ordered: responses.RequestsMock, sleeps: list[float]
) -> None:
    """A full pull: incoming EmailMessages with their senders first, then Tasks and Events.
    The Task logged for an incoming email (00TB) counts once, as that email's
    email_received: the messages read first name it, so no lookup per Task page."""
    login(ordered)
    ordered.get(f"{DATA}/query/", json=page([
        record("EmailMessage", Id="02sA", SystemModstamp=STAMP, ActivityId="00TB",
               MessageDate="2025-05-23T07:30:00.000+0000"),
        record("EmailMessage", Id="02sB", SystemModstamp=STAMP, ActivityId=None,
               MessageDate="2025-05-24T07:30:00.000+0000"),
        record("EmailMessage", Id="02sC", SystemModstamp=STAMP, ActivityId=None,
               MessageDate="2025-05-25T07:30:00.000+0000"),
    ]))
    ordered.get(f"{DATA}/query/", json=page([
        record("EmailMessageRelation", EmailMessageId="02sA", RelationId=C3,
               SystemModstamp=STAMP),
        record("EmailMessageRelation", EmailMessageId="02sB", RelationId=L1,
               SystemModstamp="2025-06-02T09:30:00.000+0000"),
        record("EmailMessageRelation", EmailMessageId="02sB", RelationId=C4,
               SystemModstamp=STAMP),
        # a sender no Contact or Lead matched, and a User: not people
        record("EmailMessageRelation", EmailMessageId="02sC", RelationId=None,
               SystemModstamp=STAMP),
        record("EmailMessageRelation", EmailMessageId="02sC", RelationId="005EM0000000001AAA",
               SystemModstamp=STAMP),
    ]))
    ordered.get(f"{DATA}/queryAll/", json=page([
        record("Task", Id="00TA", SystemModstamp=STAMP, WhoId=C1, Type="Call", TaskSubtype="Task",
               ActivityDate="2025-05-20", CompletedDateTime=None, CreatedDate=STAMP),
        record("Task", Id="00TB", SystemModstamp=STAMP, WhoId=C3, Type="Email",
               TaskSubtype="Email", ActivityDate="2025-05-21", CompletedDateTime=None,
               CreatedDate=STAMP),
        record("Task", Id="00TC", SystemModstamp=STAMP, WhoId=L1, Type=None, TaskSubtype="Email",
               ActivityDate=None, CompletedDateTime="2025-05-21T08:00:00.000+0000",
               CreatedDate=STAMP),
    ]))
    ordered.get(f"{DATA}/queryAll/", json=page([
        record("Event", Id="00UA", SystemModstamp=STAMP, WhoId=C2, Type="Meeting",
               EventSubtype="Event", ActivityDateTime="2025-05-22T10:00:00.000+0000",
               ActivityDate="2025-05-22", CreatedDate=STAMP),
    ]))
    events_since = dt.datetime(2024, 6, 2)
    pages = list(make(sleeps).pull(PullRequest("activities", None, events_since=events_since)))
    rows = sorted(pd_rows(pages), key=lambda r: (r["_crm_id"], r["_contact_id"]))
    assert [(r["_crm_id"], r["_contact_id"], r["type"], str(r["ts"])) for r in rows] == [
        ("00TA", C1, "call", "2025-05-20 00:00:00"),
        ("00TC", L1, "email_sent", "2025-05-21 08:00:00"),
        ("00UA", C2, "meeting", "2025-05-22 10:00:00"),
        ("02sA", C3, "email_received", "2025-05-23 07:30:00"),
        ("02sB", C4, "email_received", "2025-05-24 07:30:00"),
        ("02sB", L1, "email_received", "2025-05-24 07:30:00"),
    ]
    modified = {(r["_crm_id"], r["_contact_id"]): str(r["_modified_at"]) for r in rows}
    assert modified["02sB", L1] == "2025-06-02 09:30:00"  # the newer of message and relation
    deleted = {i for p in pages for i in p.deleted}
    assert {"00TB", "02sC"} <= deleted  # the logged Task; a message with no person sender
    assert pages[-1].present_ids == frozenset({"00TA", "00TC", "00UA", "02sA", "02sB"})
    assert soql_of(ordered.calls[1]) == (
        "SELECT Id, SystemModstamp, ActivityId, MessageDate FROM EmailMessage WHERE Incoming = "
        "true AND MessageDate >= 2024-06-02T00:00:00+00:00 ORDER BY SystemModstamp ASC, Id ASC")
    assert "EmailMessageId IN ('02sA','02sB','02sC') AND RelationType = 'FromAddress'" in \
        soql_of(ordered.calls[2])
    task_query = soql_of(ordered.calls[3])
    assert "IsDeleted = false AND WhoId != null AND (ActivityDate >= 2024-06-02 OR " \
           "CreatedDate >= 2024-06-02T00:00:00+00:00)" in task_query
    assert len(ordered.calls) == 5  # login, messages, senders, Tasks, Events
    final = Marks.decode(pages[-1].watermark)
    assert final.get("EmailMessageRelation").since == final.get("EmailMessage").since
    assert final.get("EmailMessageRelation").checked == NOW


def test_incremental_email_follows_messages_and_sender_changes(
    ordered: responses.RequestsMock, sleeps: list[float]
) -> None:
    t0 = dt.datetime(2025, 6, 2, 9, tzinfo=dt.UTC)
    since = Marks()
    for name in ("Task", "Event", "EmailMessage", "EmailMessageRelation"):
        since = since.advanced(name, t0, t0)
    login(ordered)
    ordered.get(f"{DATA}/queryAll/", json=page([  # a Task edited: it logs an incoming email
        record("Task", Id="00TD", SystemModstamp=STAMP, WhoId=C1, Type="Email",
               TaskSubtype="Email", ActivityDate="2025-06-01", CompletedDateTime=None,
               CreatedDate=STAMP, IsDeleted=False)]))
    ordered.get(f"{DATA}/query/", json=page([record("EmailMessage", ActivityId="00TD")]))
    ordered.get(f"{DATA}/queryAll/", json=page([]))  # Events
    ordered.get(f"{DATA}/queryAll/", json=page([  # changed messages
        record("EmailMessage", Id="02sD", SystemModstamp=STAMP, ActivityId="00TD",
               MessageDate="2025-06-01T10:00:00.000+0000", IsDeleted=False),
        record("EmailMessage", Id="02sE", SystemModstamp=STAMP, ActivityId=None,
               MessageDate="2025-06-01T10:00:00.000+0000", IsDeleted=True),
    ]))
    ordered.get(f"{DATA}/query/", json=page([
        record("EmailMessageRelation", EmailMessageId="02sD", RelationId=C1,
               SystemModstamp=STAMP)]))
    ordered.get(f"{DATA}/queryAll/", json=page([  # changed sender relations
        record("EmailMessageRelation", Id="0EdA", SystemModstamp=STAMP, EmailMessageId="02sD",
               IsDeleted=False),
        record("EmailMessageRelation", Id="0EdB", SystemModstamp=STAMP, EmailMessageId="02sF",
               IsDeleted=False),
        record("EmailMessageRelation", Id="0EdC", SystemModstamp=STAMP, EmailMessageId="02sG",
               IsDeleted=True),
    ]))
    ordered.get(f"{DATA}/query/", json=page([  # the touched messages still there
        record("EmailMessage", Id="02sF", SystemModstamp=STAMP, ActivityId=None,
               MessageDate="2025-05-30T10:00:00.000+0000")]))
    ordered.get(f"{DATA}/query/", json=page([
        record("EmailMessageRelation", EmailMessageId="02sF", RelationId=L1,
               SystemModstamp=STAMP)]))
    pages = list(make(sleeps).pull(PullRequest("activities", since.encode())))
    rows = sorted((r["_crm_id"], r["_contact_id"], r["type"]) for r in pd_rows(pages))
    assert rows == [("02sD", C1, "email_received"), ("02sF", L1, "email_received")]
    deleted = [i for p in pages for i in p.deleted]
    assert sorted(deleted) == ["00TD", "00TD", "02sE", "02sG"]
    assert all(p.present_ids is None for p in pages)
    assert "FROM EmailMessage WHERE Incoming = true AND SystemModstamp >= " \
        "2025-06-02T09:00:00+00:00" in soql_of(ordered.calls[4])
    assert "FROM EmailMessageRelation WHERE RelationType = 'FromAddress' AND SystemModstamp" \
        in soql_of(ordered.calls[6])
    assert "WHERE Id IN ('02sF','02sG') AND Incoming = true" in soql_of(ordered.calls[7])
    final = Marks.decode(pages[-1].watermark)
    for name in ("EmailMessage", "EmailMessageRelation"):
        assert final.get(name).checked == NOW  # each object's own mark completed
        assert final.get(name).since == t0  # no Date header: newest stamp - overlap < t0


def test_an_org_without_enhanced_email_is_pulled_without_it(
    ordered: responses.RequestsMock, sleeps: list[float], caplog: pytest.LogCaptureFixture
) -> None:
    login(ordered)
    ordered.get(f"{DATA}/query/", status=400, json=[{
        "message": "sObject type 'EmailMessage' is not supported.", "errorCode": "INVALID_TYPE"}])
    ordered.get(f"{DATA}/queryAll/", json=page([
        record("Task", Id="00TB", SystemModstamp=STAMP, WhoId=L1, Type=None, TaskSubtype="Email",
               ActivityDate="2025-05-21", CompletedDateTime=None, CreatedDate=STAMP)]))
    ordered.get(f"{DATA}/queryAll/", json=page([]))  # Events; no EmailMessage query after this
    with caplog.at_level(logging.WARNING):
        pages = list(make(sleeps).pull(PullRequest("activities", None)))
    assert [(r["_crm_id"], r["type"]) for r in pd_rows(pages)] == [("00TB", "email_sent")]
    assert pages[-1].present_ids == frozenset({"00TB"})
    assert caplog.text.count("Enhanced Email is off") == 1
    assert "EmailMessage" not in Marks.decode(pages[-1].watermark).objects


def test_a_big_first_pull_switches_to_bulk_api_2(
    mocked: responses.RequestsMock, sleeps: list[float]
) -> None:
    login(mocked)
    first = [record("Account", Id=f"001EM{i:010d}AAA", SystemModstamp=STAMP, BillingLatitude=None,
                    BillingLongitude=None) for i in range(3)]
    mocked.get(f"{DATA}/query/", json=page(first, total=50_000,
                                            next_url="/services/data/v64.0/query/0r8-2000"))
    mocked.post(f"{DATA}/jobs/query", json={"id": "750EM0000000001AAA", "state": "UploadComplete"},
                match=[matchers.json_params_matcher({
                    "operation": "query", "contentType": "CSV", "columnDelimiter": "COMMA",
                    "lineEnding": "LF",
                    "query": "SELECT Id, SystemModstamp, BillingLatitude, BillingLongitude FROM "
                             "Account"})])
    mocked.get(f"{DATA}/jobs/query/750EM0000000001AAA", json={"state": "InProgress"})
    mocked.get(f"{DATA}/jobs/query/750EM0000000001AAA", json={"state": "JobComplete"})
    header = '"Id","SystemModstamp","BillingLatitude","BillingLongitude"\n'
    mocked.get(f"{DATA}/jobs/query/750EM0000000001AAA/results",
               match=[matchers.query_param_matcher({"maxRecords": "100000"})],
               body=header + '"001EM0000000009AAA","2025-06-02T09:00:00.000Z","52.5",""\n',
               headers={"Sforce-Locator": "MTAwMDAw"})
    mocked.get(f"{DATA}/jobs/query/750EM0000000001AAA/results",
               match=[matchers.query_param_matcher({"maxRecords": "100000",
                                                    "locator": "MTAwMDAw"})],
               body=header + '"001EM0000000010AAA","2025-06-02T09:01:00.000Z","",""\n',
               headers={"Sforce-Locator": "null"})
    connector = make(sleeps)
    pages = list(connector.pull(PullRequest("companies", None)))
    assert [len(p.records) for p in pages] == [3, 1, 1, 0, 0]
    assert [p.watermark is None for p in pages[:3]] == [False, True, True]
    assert pages[1].records["_lat"].tolist() == [52.5]
    assert len(pages[-1].present_ids or ()) == 5
    assert sleeps == [0.5]
    assert connector.reader.bulk_jobs == 1


# --- campaigns ---------------------------------------------------------------------------------


def test_a_campaign_is_created_when_the_name_is_free(
    mocked: responses.RequestsMock, sleeps: list[float]
) -> None:
    login(mocked)
    mocked.get(f"{DATA}/query/", json=page([]))
    mocked.post(f"{DATA}/sobjects/Campaign/", json={"id": CAMPAIGN, "success": True, "errors": []},
                match=[matchers.json_params_matcher({"Name": "segsync: Berlin", "IsActive": True},
                                                    strict_match=False)])
    ref = make(sleeps).ensure_target(TargetSpec("berlin", "segsync: Berlin"), None, False)
    assert ref == TargetRef(CAMPAIGN, "segsync: Berlin")
    assert soql_of(mocked.calls[1]) == ("SELECT Id, Name FROM Campaign WHERE Name = "
                                        "'segsync: Berlin' ORDER BY CreatedDate DESC")


def test_a_foreign_campaign_with_the_name_is_a_conflict_unless_adopting(
    mocked: responses.RequestsMock, sleeps: list[float]
) -> None:
    login(mocked)
    existing = page([record("Campaign", Id=CAMPAIGN, Name="segsync: Berlin")])
    mocked.get(f"{DATA}/query/", json=existing)
    connector = make(sleeps)
    with pytest.raises(TargetConflict, match="already exists"):
        connector.ensure_target(TargetSpec("berlin", "segsync: Berlin"), None, False)
    ref = connector.ensure_target(TargetSpec("berlin", "segsync: Berlin"), None, True)
    assert ref.target_id == CAMPAIGN
    assert connector.api_usage().get("POST sobjects/Campaign") is None


def test_renaming_patches_the_campaign(
    mocked: responses.RequestsMock, sleeps: list[float]
) -> None:
    login(mocked)
    mocked.get(f"{DATA}/query/", json=page([record("Campaign", Id=CAMPAIGN, Name="new")]))
    mocked.patch(f"{DATA}/sobjects/Campaign/{CAMPAIGN}", status=204,
                 match=[matchers.json_params_matcher({"Name": "new"})])
    ref = make(sleeps).ensure_target(TargetSpec("k", "new"), TargetRef(CAMPAIGN, "old"), False)
    assert ref == TargetRef(CAMPAIGN, "new")


def test_a_failed_campaign_create_is_looked_up_before_it_is_sent_again(
    ordered: responses.RequestsMock, sleeps: list[float]
) -> None:
    login(ordered)
    ordered.get(f"{DATA}/query/", json=page([]))
    ordered.post(f"{DATA}/sobjects/Campaign/", status=503, body="<html>down</html>")
    ordered.get(f"{DATA}/query/", json=page([record("Campaign", Id=CAMPAIGN, Name="x")]))
    ref = make(sleeps).ensure_target(TargetSpec("k", "x"), None, False)
    assert ref.target_id == CAMPAIGN  # it had been created: no second campaign


def test_adds_go_in_one_collections_call_with_per_record_results(
    ordered: responses.RequestsMock, sleeps: list[float]
) -> None:
    login(ordered)
    ordered.post(f"{DATA}/composite/sobjects", match=[matchers.json_params_matcher(
        member_body(C1, C2, C3, C4, L1))], json=[
        ok(),
        failure("DUPLICATE_VALUE", "Already a campaign member."),
        failure("ENTITY_IS_DELETED", "entity is deleted", ("ContactId",)),
        failure("UNABLE_TO_LOCK_ROW", "unable to obtain exclusive access"),
        failure("CANNOT_UPDATE_CONVERTED_LEAD", "cannot reference converted lead", ("LeadId",)),
    ])
    ordered.post(f"{DATA}/composite/sobjects", match=[matchers.json_params_matcher(
        member_body(C4))], json=[ok()])
    connector = make(sleeps)
    result = connector.apply(TargetRef(CAMPAIGN, "x"), Batch(adds=(C1, C2, C3, C4, L1, C1)))
    assert result.failed == {}
    assert result.unknown == {}
    # a deleted contact and a converted lead are reported gone, not as plain success
    assert result.gone == frozenset({C3, L1})
    assert result.api_calls == 3  # login, insert, one retry of the locked row
    assert len(sleeps) == 1


def test_lock_errors_are_retried_a_bounded_number_of_times(
    mocked: responses.RequestsMock, sleeps: list[float]
) -> None:
    login(mocked)
    mocked.post(f"{DATA}/composite/sobjects",
                json=[failure("UNABLE_TO_LOCK_ROW", "unable to obtain exclusive access")])
    result = make(sleeps).apply(TargetRef(CAMPAIGN, "x"), Batch(adds=(C1,)))
    assert result.failed == {C1: "UNABLE_TO_LOCK_ROW: unable to obtain exclusive access"}
    assert len(sleeps) == 3
    assert sleeps == sorted(sleeps), "backoff grows"


def test_other_record_errors_are_reported_and_the_rest_succeeds(
    mocked: responses.RequestsMock, sleeps: list[float]
) -> None:
    login(mocked)
    mocked.post(f"{DATA}/composite/sobjects", json=[
        ok(), failure("FIELD_CUSTOM_VALIDATION_EXCEPTION", "no campaigns on Sundays")])
    result = make(sleeps).apply(TargetRef(CAMPAIGN, "x"), Batch(adds=(C1, C2)))
    assert result.failed == {C2: "FIELD_CUSTOM_VALIDATION_EXCEPTION: no campaigns on Sundays"}


def test_a_deleted_campaign_stops_the_run(
    mocked: responses.RequestsMock, sleeps: list[float]
) -> None:
    login(mocked)
    mocked.post(f"{DATA}/composite/sobjects",
                json=[failure("ENTITY_IS_DELETED", "entity is deleted", ("CampaignId",))])
    with pytest.raises(ConnectorError, match="recycle bin"):
        make(sleeps).apply(TargetRef(CAMPAIGN, "x"), Batch(adds=(C1,)))


def test_removes_look_up_member_ids_then_delete_them_in_one_call(
    mocked: responses.RequestsMock, sleeps: list[float]
) -> None:
    login(mocked)
    mocked.get(f"{DATA}/query/", json=page([
        record("CampaignMember", Id="00vA", ContactId=C1, LeadId=None),
        record("CampaignMember", Id="00vB", ContactId=C4, LeadId=L1),  # a converted lead
    ]))
    mocked.delete(f"{DATA}/composite/sobjects", match=[matchers.query_param_matcher(
        {"ids": "00vA,00vB", "allOrNone": "false"})], json=[
        ok("00vA"), failure("ENTITY_IS_DELETED", "entity is deleted")])
    mocked.post(f"{DATA}/composite/sobjects", json=[ok()])
    result = make(sleeps).apply(TargetRef(CAMPAIGN, "x"), Batch(adds=(C3,),
                                                                removes=(C1, C2, L1)))
    assert result.failed == {}
    assert result.api_calls == 4  # login + lookup + delete + insert
    assert soql_of(mocked.calls[1]) == (
        f"SELECT Id, ContactId, LeadId FROM CampaignMember WHERE CampaignId = '{CAMPAIGN}' AND "
        f"(ContactId IN ('{C1}','{C2}') OR LeadId IN ('{L1}'))")
    assert [c.request.method for c in mocked.calls] == ["POST", "GET", "DELETE", "POST"]


def test_only_a_success_item_proves_a_write(
    ordered: responses.RequestsMock, sleeps: list[float]
) -> None:
    """Mixed per-record answers: each person gets exactly what their item proves."""
    login(ordered)
    ordered.get(f"{DATA}/query/", json=page([
        record("CampaignMember", Id="00vA", ContactId=C1, LeadId=None),
        record("CampaignMember", Id="00vB", ContactId=C2, LeadId=None),
        record("CampaignMember", Id="00vC", ContactId=C3, LeadId=None),
    ]))
    ordered.delete(f"{DATA}/composite/sobjects", json=[
        ok("00vA"),
        failure("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id"),  # already gone
        failure("INSUFFICIENT_ACCESS_ON_CROSS_REFERENCE_ENTITY", "no access"),
    ])
    adds = [f"003EM00000000{i:02d}AAA" for i in range(10, 16)]
    ordered.post(f"{DATA}/composite/sobjects", match=[matchers.json_params_matcher(
        member_body(*adds))], json=[
        ok(),
        failure("DUPLICATE_VALUE", "Already a campaign member."),
        failure("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", ("ContactId",)),
        failure("ENTITY_IS_DELETED", "entity is deleted"),  # names no field: not proof
        failure("REQUIRED_FIELD_MISSING", "Required fields are missing: [Status]", ("Status",)),
        failure("FIELD_FILTER_VALIDATION_EXCEPTION", "filtered"),
    ])
    result = make(sleeps).apply(TargetRef(CAMPAIGN, "x"), Batch(adds=tuple(adds),
                                                                removes=(C1, C2, C3, C4)))
    assert result.failed == {
        C3: "INSUFFICIENT_ACCESS_ON_CROSS_REFERENCE_ENTITY: no access",
        adds[3]: "ENTITY_IS_DELETED: entity is deleted",
        adds[4]: "REQUIRED_FIELD_MISSING: Required fields are missing: [Status]",
        adds[5]: "FIELD_FILTER_VALIDATION_EXCEPTION: filtered",
    }
    assert result.gone == frozenset({adds[2]})
    assert result.unknown == {}
    assert result.api_calls == 4


TRUNCATED = '[{"id": "00vEM0000000001AAA", "success": true, "errors": []}, {"succ'


@pytest.mark.parametrize(("answer", "why"), [
    ({"body": TRUNCATED}, "not valid JSON"),
    ({"body": "<html><body>Maintenance</body></html>", "content_type": "text/html"},
     "not valid JSON"),
    ({"json": [ok()]}, "for 2 records with 1 results"),
    ({"json": {"ok": True}}, "for 2 records with dict"),
])
def test_an_unreadable_insert_answer_makes_that_calls_people_unknown(
    ordered: responses.RequestsMock, sleeps: list[float], answer: dict[str, Any], why: str
) -> None:
    """The removes' calls were answered: they stay proven; the insert may or may not have
    happened, so its people are unknown -- not done, not failed, no exception."""
    login(ordered)
    ordered.get(f"{DATA}/query/", json=page([
        record("CampaignMember", Id="00vA", ContactId=C1, LeadId=None)]))
    ordered.delete(f"{DATA}/composite/sobjects", json=[ok("00vA")])
    ordered.post(f"{DATA}/composite/sobjects", match=[matchers.json_params_matcher(
        member_body(C2, C3))], **answer)
    result = make(sleeps).apply(TargetRef(CAMPAIGN, "x"), Batch(adds=(C2, C3), removes=(C1,)))
    assert set(result.unknown) == {C2, C3}
    assert why in result.unknown[C2]
    assert "may or may not be added" in result.unknown[C2]
    assert (result.failed, result.gone) == ({}, frozenset())  # C1's remove is done
    assert result.api_calls == 4
    assert sleeps == []  # an answer that arrived is not retried


def test_an_unreadable_delete_answer_makes_the_removes_unknown(
    ordered: responses.RequestsMock, sleeps: list[float]
) -> None:
    login(ordered)
    ordered.get(f"{DATA}/query/", json=page([
        record("CampaignMember", Id="00vA", ContactId=C1, LeadId=None),
        record("CampaignMember", Id="00vB", ContactId=C4, LeadId=L1),  # a converted lead
    ]))
    ordered.delete(f"{DATA}/composite/sobjects", body='[{"id": "00vA", "success": tr')
    ordered.post(f"{DATA}/composite/sobjects", json=[ok()])
    result = make(sleeps).apply(TargetRef(CAMPAIGN, "x"),
                                Batch(adds=(C3,), removes=(C1, C2, C4, L1)))
    # C2 had no member row (absent: done); both ids of the converted lead's row are unknown
    assert set(result.unknown) == {C1, C4, L1}
    assert "may or may not be deleted" in result.unknown[L1]
    assert (result.failed, result.gone) == ({}, frozenset())  # C3's insert was proven


def test_an_unreadable_member_lookup_fails_the_removes_without_deleting(
    ordered: responses.RequestsMock, sleeps: list[float]
) -> None:
    login(ordered)
    ordered.get(f"{DATA}/query/", body='{"totalSize": 1, "done": true, "records": [{"Id"')
    ordered.post(f"{DATA}/composite/sobjects", json=[ok()])  # the adds still go out
    result = make(sleeps).apply(TargetRef(CAMPAIGN, "x"), Batch(adds=(C3,), removes=(C1, L1)))
    assert set(result.failed) == {C1, L1}
    assert "nothing was deleted" in result.failed[C1]
    assert (result.unknown, result.gone) == ({}, frozenset())
    assert [c.request.method for c in ordered.calls] == ["POST", "GET", "POST"]  # no DELETE


def test_a_lock_retry_answered_unreadably_keeps_what_the_first_answer_proved(
    ordered: responses.RequestsMock, sleeps: list[float]
) -> None:
    login(ordered)
    ordered.post(f"{DATA}/composite/sobjects", json=[
        ok(), failure("UNABLE_TO_LOCK_ROW", "unable to obtain exclusive access"),
        failure("DUPLICATE_VALUE", "Already a campaign member.")])
    ordered.post(f"{DATA}/composite/sobjects", match=[matchers.json_params_matcher(
        member_body(C2))], body="[{")
    result = make(sleeps).apply(TargetRef(CAMPAIGN, "x"), Batch(adds=(C1, C2, C3)))
    assert list(result.unknown) == [C2]
    assert (result.failed, result.gone) == ({}, frozenset())
    assert len(sleeps) == 1


def test_a_write_without_an_answer_or_refused_as_a_whole_raises(
    mocked: responses.RequestsMock, sleeps: list[float]
) -> None:
    """No answer (retries exhausted) proves nothing and a whole-request 4xx proves nothing
    was done: both raise, so the engine keeps the batch as it recorded it."""
    login(mocked)
    mocked.post(f"{DATA}/composite/sobjects", status=503, body="<html>down</html>")
    connector = make(sleeps)
    with pytest.raises(RetriableAPIError, match="gave up after 5 attempts"):
        connector.apply(TargetRef(CAMPAIGN, "x"), Batch(adds=(C1,)))
    mocked.replace(responses.POST, f"{DATA}/composite/sobjects", status=400, json=[
        {"message": "Unexpected character", "errorCode": "JSON_PARSER_ERROR"}])
    with pytest.raises(ConnectorError, match="JSON_PARSER_ERROR"):
        connector.apply(TargetRef(CAMPAIGN, "x"), Batch(adds=(C1,)))
    mocked.replace(responses.POST, f"{DATA}/composite/sobjects", status=401, json=[
        {"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}])
    login(mocked)
    with pytest.raises(AuthError):
        connector.apply(TargetRef(CAMPAIGN, "x"), Batch(adds=(C1,)))


def people(prefix: str, count: int, start: int = 0) -> list[str]:
    return [f"{prefix}EM{i:010d}AAA" for i in range(start, start + count)]


def test_read_memberships_queries_200_people_at_a_time_in_every_campaign(
    ordered: responses.RequestsMock, sleeps: list[float]
) -> None:
    spring, autumn = CAMPAIGN, "701EM0000000002AAA"
    contacts, leads = people("003", 230), people("00Q", 20)
    not_a_person = "001EM0000000001AAA"
    asked = [*contacts, not_a_person, *leads, contacts[0]]
    login(ordered)
    ordered.get(f"{DATA}/query/", json=page([
        record("CampaignMember", CampaignId=spring, ContactId=contacts[0], LeadId=None),
        record("CampaignMember", CampaignId=autumn, ContactId=contacts[0], LeadId=None),
    ], total=3, next_url="/services/data/v64.0/query/0r8EM0000000001-2"))
    ordered.get(f"{DATA}/query/0r8EM0000000001-2", json=page([
        record("CampaignMember", CampaignId=spring, ContactId=contacts[199], LeadId=None)],
        total=3))
    ordered.get(f"{DATA}/query/", json=page([
        # a converted lead's row: the lead and its contact are both members
        record("CampaignMember", CampaignId=autumn, ContactId=contacts[210], LeadId=leads[5]),
        record("CampaignMember", CampaignId=spring, ContactId=None, LeadId=leads[19]),
    ]))
    connector = make(sleeps)
    read = connector.read_memberships(
        [TargetRef(spring, "Spring"), TargetRef(autumn, "Autumn")], asked)
    assert read.present == frozenset({
        (spring, contacts[0]), (autumn, contacts[0]), (spring, contacts[199]),
        (autumn, contacts[210]), (autumn, leads[5]), (spring, leads[19])})
    assert read.known == frozenset(contacts) | frozenset(leads)
    assert read.gone == frozenset({not_a_person})
    assert read.api_calls == 4  # login + 2 queries + 1 next page
    first, second = soql_of(ordered.calls[1]), soql_of(ordered.calls[3])
    assert first.startswith(
        "SELECT CampaignId, ContactId, LeadId FROM CampaignMember WHERE CampaignId IN "
        f"('{spring}','{autumn}') AND (ContactId IN ('{contacts[0]}',")
    assert first.count("'003EM") == 200
    assert "LeadId" not in first.split("WHERE")[1]
    assert second.count("'003EM") == 30
    assert second.count("'00QEM") == 20
    assert isinstance(connector, MembershipReader)
    assert connector.capabilities().max_read_batch == 200


def test_read_memberships_leaves_people_of_an_unreadable_answer_unknown(
    ordered: responses.RequestsMock, sleeps: list[float], caplog: pytest.LogCaptureFixture
) -> None:
    contacts = people("003", 250)
    login(ordered)
    ordered.get(f"{DATA}/query/", body='{"totalSize": 1, "done": true, "rec')
    ordered.get(f"{DATA}/query/", json=page([
        record("CampaignMember", CampaignId=CAMPAIGN, ContactId=contacts[249], LeadId=None)]))
    with caplog.at_level(logging.WARNING):
        read = make(sleeps).read_memberships([TargetRef(CAMPAIGN, "x")], contacts)
    assert read.known == frozenset(contacts[200:])
    assert read.present == frozenset({(CAMPAIGN, contacts[249])})
    assert "they stay unknown" in caplog.text


def test_read_memberships_without_targets_knows_everyone_without_a_call(
    sleeps: list[float]
) -> None:
    read = make(sleeps).read_memberships([], [C1, L1])
    assert (read.known, read.present, read.api_calls) == (frozenset({C1, L1}), frozenset(), 0)


def test_members_reads_the_live_campaign(
    mocked: responses.RequestsMock, sleeps: list[float]
) -> None:
    login(mocked)
    mocked.get(f"{DATA}/query/", json=page([
        record("CampaignMember", ContactId=C1, LeadId=None),
        record("CampaignMember", ContactId=None, LeadId=L1),
        record("CampaignMember", ContactId=C4, LeadId=L1.replace("1", "2")),
    ]))
    assert list(make(sleeps).members(TargetRef(CAMPAIGN, "x"))) == [C1, L1, C4]


# --- limits and failures -----------------------------------------------------------------------


def test_total_request_limit_stops_the_run_without_retrying(
    mocked: responses.RequestsMock, sleeps: list[float]
) -> None:
    login(mocked)
    mocked.get(f"{DATA}/query/", status=403, json=[
        {"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}])
    with pytest.raises(QuotaExhausted, match="REQUEST_LIMIT_EXCEEDED"):
        list(make(sleeps).pull(PullRequest("companies", None)))
    assert sleeps == []


def test_concurrent_request_limit_and_5xx_are_retried_with_backoff(
    ordered: responses.RequestsMock, sleeps: list[float]
) -> None:
    login(ordered)
    ordered.get(f"{DATA}/query/", status=403, json=[{
        "message": "ConcurrentRequests (Concurrent API Requests) Limit exceeded.",
        "errorCode": "REQUEST_LIMIT_EXCEEDED"}])
    ordered.get(f"{DATA}/query/", status=503, body="<html>Service Unavailable</html>")
    ordered.get(f"{DATA}/query/", body=requests.ConnectionError("reset"))
    ordered.get(f"{DATA}/query/", body=requests.ReadTimeout("slow"))
    ordered.get(f"{DATA}/query/", json=page([]))
    connector = make(sleeps)
    list(connector.pull(PullRequest("companies", None)))
    assert len(sleeps) == 4
    assert sleeps == sorted(sleeps)  # exponential, with jitter
    assert connector.api_usage()["GET query"] == 5


def test_5xx_gives_up_after_the_retry_budget(
    mocked: responses.RequestsMock, sleeps: list[float]
) -> None:
    login(mocked)
    mocked.get(f"{DATA}/query/", status=500, json=[
        {"message": "An unexpected error occurred.", "errorCode": "UNKNOWN_EXCEPTION"}])
    with pytest.raises(RetriableAPIError, match="gave up after 5 attempts"):
        list(make(sleeps).pull(PullRequest("companies", None)))
    assert len(sleeps) == 4


def test_validation_errors_are_not_retried(
    mocked: responses.RequestsMock, sleeps: list[float]
) -> None:
    login(mocked)
    mocked.get(f"{DATA}/query/", status=400, json=[
        {"message": "unexpected token: FROM", "errorCode": "MALFORMED_QUERY"}])
    with pytest.raises(ConnectorError, match="MALFORMED_QUERY"):
        list(make(sleeps).pull(PullRequest("companies", None)))
    assert sleeps == []


def test_an_html_page_where_json_was_expected(
    mocked: responses.RequestsMock, sleeps: list[float]
) -> None:
    login(mocked)
    mocked.get(f"{DATA}/query/", body="<html><body>Maintenance</body></html>",
               content_type="text/html")
    with pytest.raises(CrmDataError, match="not valid JSON"):
        list(make(sleeps).pull(PullRequest("companies", None)))


def test_writes_stop_before_passing_the_daily_share(
    mocked: responses.RequestsMock, sleeps: list[float]
) -> None:
    login(mocked)
    mocked.get(f"{DATA}/query/", json=page([]), headers={"Sforce-Limit-Info": "api-usage=7400/10000"})
    connector = make(sleeps, max_daily_api_share=0.75)
    list(connector.pull(PullRequest("companies", None)))
    assert connector.write_budget() == 100
    connector.check_budget(100)
    with pytest.raises(QuotaExhausted, match="need about 101 API calls, but only 100 remain"):
        connector.check_budget(101)
    mocked.get(f"{DATA}/query/", json=page([]), headers={"Sforce-Limit-Info": "api-usage=7500/10000"})
    list(connector.pull(PullRequest("companies", None)))
    with pytest.raises(QuotaExhausted):
        connector.apply(TargetRef(CAMPAIGN, "x"), Batch(adds=(C1,)))
    assert "POST composite/sobjects" not in connector.api_usage()


# --- the multi-select picklist -----------------------------------------------------------------


def describe(*fields: dict[str, Any]) -> dict[str, Any]:
    return {"name": "Contact", "fields": [{"name": "Id", "type": "id"}, *fields]}


def picklist(values: list[str], *, restricted: bool = False,
             updateable: bool = True) -> dict[str, Any]:
    return {"name": "Segsync_Segments__c", "type": "multipicklist", "updateable": updateable,
            "restrictedPicklist": restricted,
            "picklistValues": [{"value": v, "active": True} for v in values]}


def test_field_writes_go_in_chunks_with_per_record_results(
    mocked: responses.RequestsMock, sleeps: list[float]
) -> None:
    login(mocked)
    mocked.patch(f"{DATA}/composite/sobjects", match=[matchers.json_params_matcher({
        "allOrNone": False, "records": [
            {"attributes": {"type": "Contact"}, "id": C1, "Segsync_Segments__c": "a;b"},
            {"attributes": {"type": "Contact"}, "id": C2, "Segsync_Segments__c": None},
            {"attributes": {"type": "Lead"}, "id": L1, "Segsync_Segments__c": "a"},
        ]})], json=[
        {"id": C1, "success": True, "errors": []},
        failure("INVALID_FIELD_FOR_INSERT_UPDATE", "Unable to create/update fields"),
        failure("CANNOT_UPDATE_CONVERTED_LEAD", "cannot reference converted lead"),
    ])
    result = make(sleeps).write_field({C1: ("b", "a"), C2: (), L1: ("a",)})
    assert result.failed == {C2: "INVALID_FIELD_FOR_INSERT_UPDATE: Unable to create/update fields"}
    assert result.gone == frozenset({L1})  # the record itself is a converted lead
    assert result.unknown == {}


@pytest.mark.parametrize("answer", [
    {"body": '[{"id": "003EM0000000001AAA", "success": true, "errors": []}, {"id": "003'},
    {"json": [{"id": C1, "success": True, "errors": []}]},  # one result for two records
])
def test_an_unreadable_field_answer_leaves_its_people_unknown(
    mocked: responses.RequestsMock, sleeps: list[float], answer: dict[str, Any]
) -> None:
    login(mocked)
    mocked.patch(f"{DATA}/composite/sobjects", **answer)
    result = make(sleeps).write_field({C1: ("a",), C2: ()})
    assert set(result.unknown) == {C1, C2}
    assert all("may or may not be written" in r for r in result.unknown.values())
    assert (result.failed, result.gone) == ({}, frozenset())


def test_ensure_field_tells_the_admin_what_to_do(
    mocked: responses.RequestsMock, sleeps: list[float]
) -> None:
    login(mocked)
    mocked.get(f"{DATA}/sobjects/Contact/describe", json=describe())
    mocked.get(f"{DATA}/sobjects/Lead/describe",
               json=describe(picklist(["a"], restricted=True, updateable=False)))
    with pytest.raises(ConnectorError) as caught:
        make(sleeps).ensure_field(["a", "b"])
    text = str(caught.value)
    assert "Contact.Segsync_Segments__c does not exist" in text
    assert "Setup > Object Manager > Contact" in text
    assert "Lead.Segsync_Segments__c is read-only" in text
    assert "restricted picklist without the value(s) b" in text


def test_ensure_field_accepts_missing_values_on_an_open_picklist(
    mocked: responses.RequestsMock, sleeps: list[float], caplog: pytest.LogCaptureFixture
) -> None:
    login(mocked)
    mocked.get(f"{DATA}/sobjects/Contact/describe", json=describe(picklist(["a"])))
    with caplog.at_level(logging.WARNING):
        make(sleeps, objects=("Contact",)).ensure_field(["a", "b"])
    assert "lacks the value(s) b" in caplog.text


def test_segment_values_with_a_semicolon_are_refused(sleeps: list[float]) -> None:
    with pytest.raises(ConnectorError, match="cannot be picklist values"):
        make(sleeps).ensure_field(["a;b"])
