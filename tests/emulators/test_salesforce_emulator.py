"""The Salesforce emulator, driven through simple-salesforce 1.12.10 over real HTTPS."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from simple_salesforce import Salesforce, format_soql
from simple_salesforce.exceptions import (
    SalesforceAuthenticationFailed,
    SalesforceExpiredSession,
    SalesforceGeneralError,
    SalesforceMalformedRequest,
    SalesforceRefusedRequest,
    SalesforceResourceNotFound,
)

from tests.emulators.salesforce import (
    DEFAULT_CONSUMER_KEY,
    DEFAULT_CONSUMER_SECRET,
    DEFAULT_PASSWORD,
    DEFAULT_SECURITY_TOKEN,
    DEFAULT_USERNAME,
    Fault,
    SalesforceEmulator,
)

UTC = dt.UTC
SEGMENTS = "Segsync_Segments__c"


@pytest.fixture
def sf() -> Iterator[SalesforceEmulator]:
    with SalesforceEmulator() as emulator:
        yield emulator
        assert emulator.internal_errors == []


@pytest.fixture
def http(sf: SalesforceEmulator) -> Iterator[requests.Session]:
    with sf.make_session() as session:
        yield session


@pytest.fixture
def client(sf: SalesforceEmulator, http: requests.Session) -> Salesforce:
    return Salesforce(
        instance_url=sf.instance_url, session_id=sf.issue_session(), session=http, version="64.0"
    )


def composite(
    client: Salesforce, method: str, records: list[dict], all_or_none: bool = False
) -> list[dict]:
    return client.restful(
        "composite/sobjects", method=method, json={"allOrNone": all_or_none, "records": records}
    )


def member(campaign_id: str, person_id: str) -> dict:
    key = "LeadId" if person_id.startswith("00Q") else "ContactId"
    return {"attributes": {"type": "CampaignMember"}, "CampaignId": campaign_id, key: person_id}


def error_code(exc: pytest.ExceptionInfo[Exception]) -> str:
    return str(exc.value.content[0]["errorCode"])  # type: ignore[attr-defined]


# --- transport and authentication ------------------------------------------------------------


def test_plain_session_with_verify_reaches_the_emulator(sf: SalesforceEmulator) -> None:
    with requests.Session() as session:
        session.verify = sf.ca_file
        session.trust_env = False  # else REQUESTS_CA_BUNDLE, if set, silently overrides verify
        client = Salesforce(
            instance_url=sf.instance_url,
            session_id=sf.issue_session(),
            session=session,
            version="64.0",
        )
        assert client.base_url == f"{sf.instance_url}/services/data/v64.0/"
        assert client.limits()["DailyApiRequests"] == {"Max": 15000, "Remaining": 14999}


def test_soap_login_with_security_token_through_the_rerouting_session(
    sf: SalesforceEmulator, http: requests.Session
) -> None:
    sf.add("Contact", LastName="Lovelace")
    client = Salesforce(
        username=DEFAULT_USERNAME,
        password=DEFAULT_PASSWORD,
        security_token=DEFAULT_SECURITY_TOKEN,
        session=http,
        version="64.0",
    )
    assert client.sf_instance == sf.netloc
    assert client.query("SELECT Id FROM Contact")["totalSize"] == 1
    sf.expire_sessions()  # password mode logs in again on 401 by itself
    assert client.query("SELECT Id FROM Contact")["totalSize"] == 1
    assert sf.count("POST", "/services/Soap/u/64.0") == 2


def test_soap_login_with_the_domain_parameter_and_no_rerouting(sf: SalesforceEmulator) -> None:
    with sf.make_session(reroute_salesforce_hosts=False) as session:
        client = Salesforce(
            username=DEFAULT_USERNAME,
            password=DEFAULT_PASSWORD,
            security_token=DEFAULT_SECURITY_TOKEN,
            session=session,
            version="64.0",
            # login URL is https://{domain}.salesforce.com/services/Soap/u/64.0: the query string eats the rest
            domain=f"{sf.netloc}/services/Soap/u/64.0?to=",
        )
        assert client.query("SELECT COUNT() FROM Contact")["totalSize"] == 0


def test_soap_login_failures(sf: SalesforceEmulator, http: requests.Session) -> None:
    with pytest.raises(SalesforceAuthenticationFailed) as wrong:
        Salesforce(
            username=DEFAULT_USERNAME,
            password="nope",
            security_token=DEFAULT_SECURITY_TOKEN,
            session=http,
            version="64.0",
        )
    assert wrong.value.code == "INVALID_LOGIN"
    with pytest.raises(SalesforceAuthenticationFailed) as retired:
        Salesforce(
            username=DEFAULT_USERNAME,
            password=DEFAULT_PASSWORD,
            security_token=DEFAULT_SECURITY_TOKEN,
            session=http,
            version="65.0",
        )
    assert retired.value.code == "UNSUPPORTED_API_VERSION"


def test_jwt_bearer_login_verifies_the_signature(
    sf: SalesforceEmulator, http: requests.Session
) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    sf.add_connected_app("jwt-app", public_key_pem=public_pem)
    client = Salesforce(
        username=DEFAULT_USERNAME,
        consumer_key="jwt-app",
        privatekey=private_pem,
        session=http,
        version="64.0",
    )
    assert client.query("SELECT COUNT() FROM Lead")["done"] is True
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = other.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    with pytest.raises(SalesforceAuthenticationFailed) as failed:
        Salesforce(
            username=DEFAULT_USERNAME, consumer_key="jwt-app", privatekey=forged, session=http
        )
    assert failed.value.code == "invalid_grant"


def test_client_credentials_login(sf: SalesforceEmulator, http: requests.Session) -> None:
    client = Salesforce(
        consumer_key=DEFAULT_CONSUMER_KEY,
        consumer_secret=DEFAULT_CONSUMER_SECRET,
        domain="acme.my",
        session=http,
    )
    assert client.sf_instance == sf.netloc
    assert client.limits()["DailyApiRequests"]["Max"] == 15000
    with pytest.raises(SalesforceAuthenticationFailed) as failed:
        Salesforce(
            consumer_key=DEFAULT_CONSUMER_KEY,
            consumer_secret="wrong",
            domain="acme.my",
            session=http,
        )
    assert failed.value.code == "invalid_client"


def test_expired_session_in_direct_mode(sf: SalesforceEmulator, client: Salesforce) -> None:
    sf.expire_sessions()
    with pytest.raises(SalesforceExpiredSession) as expired:
        client.query("SELECT Id FROM Contact")
    assert expired.value.content == [
        {"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}
    ]


# --- queries ---------------------------------------------------------------------------------


def test_query_pages_with_next_records_url(sf: SalesforceEmulator, client: Salesforce) -> None:
    sf.page_size = 5
    ids = sf.add_many("Contact", [{"LastName": f"Person {i:02d}"} for i in range(12)])
    first = client.query("SELECT Id, Name FROM Contact ORDER BY Name")
    assert (first["totalSize"], first["done"], len(first["records"])) == (12, False, 5)
    assert first["nextRecordsUrl"].startswith("/services/data/v64.0/query/0r8")
    assert first["nextRecordsUrl"].endswith("-5")
    assert first["records"][0]["attributes"] == {
        "type": "Contact",
        "url": f"/services/data/v64.0/sobjects/Contact/{ids[0]}",
    }
    second = client.query_more(first["nextRecordsUrl"], identifier_is_url=True)
    assert (second["totalSize"], second["done"], second["nextRecordsUrl"][-3:]) == (
        12,
        False,
        "-10",
    )
    sf.clear_requests()
    assert [r["Id"] for r in client.query_all_iter("SELECT Id FROM Contact")] == ids
    assert sf.count("GET", "query") == 3


def test_batch_size_header_is_clamped_to_200(sf: SalesforceEmulator, client: Salesforce) -> None:
    sf.add_many("Lead", [{"LastName": f"L{i}", "Company": "Co"} for i in range(250)])
    page = client.query("SELECT Id FROM Lead", headers={"Sforce-Query-Options": "batchSize=10"})
    assert (len(page["records"]), page["totalSize"]) == (200, 250)


def test_soql_filters_ordering_and_relationships(
    sf: SalesforceEmulator, client: Salesforce
) -> None:
    retail = sf.add(
        "Account", Name="Shop", Industry="Retail", NumberOfEmployees=12, BillingCountry="DE"
    )
    bank = sf.add("Account", Name="Bank", Industry="Banking", NumberOfEmployees=900)
    ada = sf.add(
        "Contact", FirstName="Ada", LastName="Lovelace", Email="ada@shop.example", AccountId=retail
    )
    sf.clock.advance(hours=1)
    bob = sf.add(
        "Contact", FirstName="Bob", LastName="Babbage", AccountId=bank, HasOptedOutOfEmail=True
    )
    cy = sf.add("Contact", LastName="Cyan", Email="cy@bank.example")

    def ids(where: str, order: str = "ORDER BY LastName") -> list[str]:
        return [
            r["Id"]
            for r in client.query_all(f"SELECT Id FROM Contact WHERE {where} {order}")["records"]
        ]

    assert ids(
        "Email LIKE '%.example' AND (HasOptedOutOfEmail = false OR Account.Industry = 'Banking')"
    ) == [cy, ada]
    assert ids("Email = null") == [bob]
    assert ids("Email != null AND AccountId != null") == [ada]
    assert ids(f"Id IN ('{ada}', '{bob[:15]}')") == [bob, ada]
    assert ids(f"Id NOT IN ('{ada}')") == [bob, cy]
    assert ids("SystemModstamp >= 2025-06-02T09:30:00Z") == [bob, cy]
    assert ids("CreatedDate < 2025-06-02T10:30:00+01:00") == [ada]
    assert ids("Account.NumberOfEmployees > 100") == [bob]
    assert ids("NOT LastName LIKE 'b%'") == [cy, ada]
    assert ids("LastName != 'x'", "ORDER BY AccountId DESC NULLS LAST, LastName LIMIT 2") == [
        bob,
        ada,
    ]
    opportunity = sf.add(
        "Opportunity",
        Name="Deal",
        StageName="Closed Won",
        CloseDate="2025-05-01",
        Amount=120.5,
        ContactId=ada,
    )
    won = client.query(
        "SELECT Id, Amount, IsWon, CloseDate, Contact.Account.Name FROM Opportunity WHERE IsWon = true AND CloseDate >= 2025-05-01"
    )
    assert won["records"][0]["Id"] == opportunity
    assert (won["records"][0]["Amount"], won["records"][0]["CloseDate"]) == (120.5, "2025-05-01")
    assert won["records"][0]["Contact"]["Account"]["Name"] == "Shop"
    task = sf.add(
        "Task",
        WhoId=bob,
        Subject="Call",
        Type="Call",
        ActivityDate="2025-06-01",
        Status="Completed",
    )
    tasks = client.query(
        "SELECT Id, Who.Type, Who.Name, IsClosed FROM Task WHERE Who.Type = 'Contact'"
    )["records"]
    assert [(t["Id"], t["Who"]["Type"], t["Who"]["Name"], t["IsClosed"]) for t in tasks] == [
        (task, "Contact", "Bob Babbage", True)
    ]
    no_account = client.query(f"SELECT Account.Name FROM Contact WHERE Id = '{cy}'")["records"][0]
    assert no_account["Account"] is None


@pytest.mark.parametrize(
    ("soql", "code"),
    [
        ("SELECT Id, Foo__c FROM Contact", "INVALID_FIELD"),
        ("SELECT Id FROM Contact WHERE", "MALFORMED_QUERY"),
        ("SELECT Id FROM Widget__c", "INVALID_TYPE"),
        ("SELECT Id FROM Contact WHERE SystemModstamp > '2025-01-01T00:00:00Z'", "INVALID_FIELD"),
        (
            "SELECT Id FROM Contact WHERE SystemModstamp > 2025-01-01T00:00:00 00:00",
            "MALFORMED_QUERY",
        ),
        (
            "SELECT Id FROM Contact WHERE LastName = 'a' AND Email = 'b' OR Title = 'c'",
            "MALFORMED_QUERY",
        ),
        ("SELECT Id FROM Contact WHERE Id = 'not-an-id'", "INVALID_QUERY_FILTER_OPERATOR"),
        (
            "SELECT Id FROM Contact WHERE Id IN (SELECT ContactId FROM CampaignMember)",
            "MALFORMED_QUERY",
        ),
        ("SELECT MasterRecordId FROM Opportunity", "INVALID_FIELD"),
    ],
    ids=[
        "unknown-field",
        "truncated",
        "unknown-object",
        "quoted-datetime",
        "plus-as-space",
        "and-or-mix",
        "bad-id",
        "semi-join",
        "not-mergeable",
    ],
)
def test_soql_errors(client: Salesforce, soql: str, code: str) -> None:
    with pytest.raises(SalesforceMalformedRequest) as failed:
        client.query(soql)
    assert error_code(failed) == code


def test_incremental_pull_on_systemmodstamp(sf: SalesforceEmulator, client: Salesforce) -> None:
    old = sf.add("Contact", LastName="Old")
    sf.clock.advance(minutes=10)
    watermark = sf.clock.now()
    sf.clock.advance(minutes=1)
    new = sf.add("Contact", LastName="New")
    sf.update(old, Title="CEO")
    sf.clock.advance(minutes=1)
    sf.touch(new)
    soql = format_soql(
        "SELECT Id, LastModifiedDate, SystemModstamp FROM Contact WHERE SystemModstamp >= {} ORDER BY SystemModstamp, Id",
        watermark,
    )
    rows = client.query_all(soql)["records"]
    assert [r["Id"] for r in rows] == [old, new]
    assert rows[1]["LastModifiedDate"] == "2025-06-02T09:11:00.000+0000"
    assert rows[1]["SystemModstamp"] == "2025-06-02T09:12:00.000+0000"


# --- deletes, merges, conversions --------------------------------------------------------------


def test_query_all_sees_deleted_and_merged_rows(sf: SalesforceEmulator, client: Salesforce) -> None:
    keep, loser, gone = (sf.add("Contact", LastName=name) for name in ("Keep", "Dupe", "Gone"))
    campaign = sf.add("Campaign", Name="Spring")
    sf.add_member(campaign, keep)
    duplicate_member = sf.add_member(campaign, loser)
    sf.clock.advance(minutes=5)
    sf.merge(keep, loser)
    sf.delete(gone)
    assert [r["Id"] for r in client.query_all("SELECT Id FROM Contact")["records"]] == [keep]
    deleted = client.query_all(
        "SELECT Id, IsDeleted, MasterRecordId FROM Contact WHERE IsDeleted = true",
        include_deleted=True,
    )
    assert [(r["Id"], r["MasterRecordId"]) for r in deleted["records"]] == [
        (loser, keep),
        (gone, None),
    ]
    assert sf.get(duplicate_member)["IsDeleted"] is True  # the survivor already was a member
    assert [m["ContactId"] for m in sf.members(campaign)] == [keep]
    sf.undelete(gone)
    assert client.query("SELECT COUNT() FROM Contact")["totalSize"] == 2


def test_get_deleted_and_get_updated(sf: SalesforceEmulator, client: Salesforce) -> None:
    start = sf.clock.now()
    first, second = (
        sf.add("Lead", LastName="A", Company="X"),
        sf.add("Lead", LastName="B", Company="X"),
    )
    sf.clock.advance(minutes=3)
    sf.delete(second)
    sf.clock.advance(minutes=3)
    end = sf.clock.now() + dt.timedelta(hours=1)
    deleted = client.Lead.deleted(start, end)
    assert deleted["deletedRecords"] == [
        {"id": second, "deletedDate": "2025-06-02T09:03:00.000+0000"}
    ]
    assert deleted["latestDateCovered"] == "2025-06-02T09:06:00.000+0000"  # now, not the future end
    assert deleted["earliestDateAvailable"] == "2025-05-18T09:06:00.000+0000"
    assert client.Lead.updated(start, end)["ids"] == [first]


def test_get_deleted_range_older_than_the_recycle_bin(
    sf: SalesforceEmulator, client: Salesforce
) -> None:
    lead = sf.add("Lead", LastName="A", Company="X")
    sf.delete(lead)
    sf.recycle_bin_days = 2
    sf.clock.advance(days=3)
    with pytest.raises(SalesforceMalformedRequest) as too_old:
        client.Lead.deleted(sf.clock.now() - dt.timedelta(days=4), sf.clock.now())
    assert error_code(too_old) == "INVALID_REPLICATION_DATE"
    assert (
        client.Lead.deleted(sf.clock.now() - dt.timedelta(days=1), sf.clock.now())["deletedRecords"]
        == []
    )
    assert client.query_all("SELECT Id FROM Lead", include_deleted=True)["totalSize"] == 0  # purged
    with pytest.raises(SalesforceMalformedRequest) as backwards:
        client.Lead.updated(sf.clock.now(), sf.clock.now())
    assert error_code(backwards) == "INVALID_REPLICATION_DATE"


def test_converted_leads_are_read_only(sf: SalesforceEmulator, client: Salesforce) -> None:
    lead = sf.add(
        "Lead", FirstName="Grace", LastName="Hopper", Company="Navy", Email="grace@navy.example"
    )
    campaign = sf.add("Campaign", Name="Old")
    membership = sf.add_member(campaign, lead)
    conversion = sf.convert_lead(lead)
    converted = client.query(
        f"SELECT IsConverted, ConvertedContactId FROM Lead WHERE Id = '{lead}'"
    )["records"][0]
    assert (converted["IsConverted"], converted["ConvertedContactId"]) == (
        True,
        conversion.contact_id,
    )
    assert sf.get(conversion.contact_id)["Email"] == "grace@navy.example"
    assert sf.get(membership)["ContactId"] == conversion.contact_id
    with pytest.raises(SalesforceMalformedRequest) as read_only:
        client.Lead.update(lead, {"Title": "Admiral"})
    assert error_code(read_only) == "CANNOT_UPDATE_CONVERTED_LEAD"


# --- writes ----------------------------------------------------------------------------------


def test_composite_insert_reports_each_record(sf: SalesforceEmulator, client: Salesforce) -> None:
    contacts = sf.add_many("Contact", [{"LastName": "A"}, {"LastName": "B"}, {"LastName": "C"}])
    lead = sf.add("Lead", LastName="L", Company="Co")
    converted = sf.add("Lead", LastName="Conv", Company="Co")
    sf.convert_lead(converted)
    sf.delete(contacts[2])
    created = composite(
        client,
        "POST",
        [{"attributes": {"type": "Campaign"}, "Name": "segsync: lapsed", "IsActive": True}],
    )
    campaign = created[0]["id"]
    assert campaign.startswith("701")
    assert len(campaign) == 18
    results = composite(
        client,
        "POST",
        [
            member(campaign, contacts[0]),
            member(campaign, contacts[0]),  # same person twice in one batch
            member(campaign, lead),
            member(campaign, converted),
            member(campaign, contacts[2]),
            {"attributes": {"type": "CampaignMember"}, "CampaignId": campaign},
        ],
    )
    assert [r["success"] for r in results] == [True, False, True, False, False, False]
    assert [r["errors"][0]["statusCode"] for r in results if not r["success"]] == [
        "DUPLICATE_VALUE",
        "CANNOT_UPDATE_CONVERTED_LEAD",
        "ENTITY_IS_DELETED",
        "REQUIRED_FIELD_MISSING",
    ]
    assert results[1] == {
        "success": False,
        "errors": [
            {"statusCode": "DUPLICATE_VALUE", "message": "Already a campaign member.", "fields": []}
        ],
    }
    again = composite(client, "POST", [member(campaign, contacts[0])])
    assert again[0]["errors"][0]["statusCode"] == "DUPLICATE_VALUE"
    assert (sf.get(campaign)["NumberOfContacts"], sf.get(campaign)["NumberOfLeads"]) == (1, 1)
    assert sf.foreign_writes == []


def test_composite_all_or_none_rolls_back(sf: SalesforceEmulator, client: Salesforce) -> None:
    contact = sf.add("Contact", LastName="A")
    campaign = composite(client, "POST", [{"attributes": {"type": "Campaign"}, "Name": "Seg"}])[0][
        "id"
    ]
    results = composite(
        client,
        "POST",
        [
            member(campaign, contact),
            {"attributes": {"type": "CampaignMember"}, "CampaignId": campaign},
        ],
        all_or_none=True,
    )
    assert [r["errors"][0]["statusCode"] for r in results] == [
        "ALL_OR_NONE_OPERATION_ROLLED_BACK",
        "REQUIRED_FIELD_MISSING",
    ]
    assert sf.members(campaign) == []
    assert sf.get(campaign)["NumberOfContacts"] == 0


def test_composite_update_and_delete(sf: SalesforceEmulator, client: Salesforce) -> None:
    sf.define_multipicklist(SEGMENTS, ["lapsed", "nearby", "promoter"])
    contact, lead = sf.add("Contact", LastName="A"), sf.add("Lead", LastName="B", Company="C")
    updated = composite(
        client,
        "PATCH",
        [
            {"attributes": {"type": "Contact"}, "id": contact, SEGMENTS: "promoter;lapsed"},
            {"attributes": {"type": "Lead"}, "id": lead, SEGMENTS: None},
            {"attributes": {"type": "Contact"}, "id": "003EM0000000999AAA", SEGMENTS: "lapsed"},
        ],
    )
    assert [r["success"] for r in updated] == [True, True, False]
    assert updated[2]["errors"][0]["statusCode"] in ("INVALID_CROSS_REFERENCE_KEY", "MALFORMED_ID")
    assert sf.get(contact)[SEGMENTS] == "lapsed;promoter"  # value-set order
    rows = client.query(f"SELECT Id FROM Contact WHERE {SEGMENTS} INCLUDES ('promoter')")["records"]
    assert [r["Id"] for r in rows] == [contact]
    campaign = composite(client, "POST", [{"attributes": {"type": "Campaign"}, "Name": "Seg"}])[0][
        "id"
    ]
    member_id = composite(client, "POST", [member(campaign, contact)])[0]["id"]
    deleted = client.restful(
        "composite/sobjects",
        method="DELETE",
        params={"ids": f"{member_id},{member_id}", "allOrNone": "false"},
    )
    assert [(r["id"], r["success"]) for r in deleted] == [(member_id, True), (member_id, False)]
    assert deleted[1]["errors"][0]["statusCode"] == "ENTITY_IS_DELETED"
    assert sf.foreign_writes == []  # picklist-only edits of foreign people are allowed


def test_collections_refuse_more_than_200_records(client: Salesforce) -> None:
    records = [{"attributes": {"type": "Contact"}, "LastName": f"N{i}"} for i in range(201)]
    with pytest.raises(SalesforceMalformedRequest) as too_many:
        composite(client, "POST", records)
    assert error_code(too_many) == "EXCEEDED_ID_LIMIT"
    ids = ",".join(f"003EM{i:010d}" for i in range(201))
    with pytest.raises(SalesforceMalformedRequest) as too_many_ids:
        client.restful("composite/sobjects", method="DELETE", params={"ids": ids})
    assert error_code(too_many_ids) == "EXCEEDED_ID_LIMIT"
    assert len(composite(client, "POST", records[:200])) == 200


def test_writes_to_records_segsync_did_not_create_are_recorded(
    sf: SalesforceEmulator, client: Salesforce
) -> None:
    sf.define_multipicklist(SEGMENTS, ["lapsed"])
    person = sf.add("Contact", LastName="Foreign")
    foreign = sf.seed_foreign_campaign("Sales team's campaign", member_ids=[person])
    their_member = sf.members(foreign)[0]["Id"]
    client.Contact.update(person, {SEGMENTS: "lapsed"})
    assert sf.foreign_writes == []
    client.Contact.update(person, {"Email": "changed@example.com"})
    composite(client, "POST", [member(foreign, sf.add("Contact", LastName="Other"))])
    client.restful("composite/sobjects", method="DELETE", params={"ids": their_member})
    assert [(w.sobject, w.record_id, w.reason.split(" ")[0]) for w in sf.foreign_writes] == [
        ("Contact", person, "update"),
        ("Campaign", foreign, "member"),
        ("CampaignMember", their_member, "delete"),
    ]
    assert [r.method for r in sf.write_requests()] == ["PATCH", "PATCH", "POST", "DELETE"]


def test_single_record_endpoints(sf: SalesforceEmulator, client: Salesforce) -> None:
    created = client.Campaign.create({"Name": "Seg", "IsActive": True})
    assert created["success"] is True
    campaign = created["id"]
    assert client.Campaign.get(campaign)["Name"] == "Seg"
    assert client.Campaign.update(campaign, {"Name": "Seg 2"}) == 204
    with pytest.raises(SalesforceMalformedRequest) as too_long:
        client.Campaign.update(campaign, {"Name": "x" * 81})
    assert error_code(too_long) == "STRING_TOO_LONG"
    with pytest.raises(SalesforceMalformedRequest) as read_only:
        client.Campaign.update(campaign, {"NumberOfContacts": 3})
    assert error_code(read_only) == "INVALID_FIELD_FOR_INSERT_UPDATE"
    assert client.Campaign.delete(campaign) == 204
    with pytest.raises(SalesforceResourceNotFound):
        client.Campaign.get(campaign)
    assert sf.created_by_segsync(campaign)


def test_describe_picklist_and_field_level_access(
    sf: SalesforceEmulator, client: Salesforce
) -> None:
    sf.define_multipicklist(SEGMENTS, ["lapsed", "nearby"], restricted=True)
    fields = {f["name"]: f for f in client.Contact.describe()["fields"]}
    segments = fields[SEGMENTS]
    assert (segments["type"], segments["updateable"], segments["restrictedPicklist"]) == (
        "multipicklist",
        True,
        True,
    )
    assert [v["value"] for v in segments["picklistValues"]] == ["lapsed", "nearby"]
    contact = sf.add("Contact", LastName="A")
    with pytest.raises(SalesforceMalformedRequest) as restricted:
        client.Contact.update(contact, {SEGMENTS: "lapsed;unknown"})
    assert error_code(restricted) == "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"
    sf.set_field_access("Contact", SEGMENTS, updateable=False)
    assert client.Contact.describe()["fields"][-1]["updateable"] is False
    update = composite(
        client, "PATCH", [{"attributes": {"type": "Contact"}, "id": contact, SEGMENTS: "lapsed"}]
    )
    assert update[0]["errors"][0]["statusCode"] == "INVALID_FIELD_FOR_INSERT_UPDATE"
    sf.set_field_access("Lead", SEGMENTS, readable=False)
    assert SEGMENTS not in {f["name"] for f in client.Lead.describe()["fields"]}
    with pytest.raises(SalesforceMalformedRequest) as hidden:
        client.query(f"SELECT {SEGMENTS} FROM Lead")
    assert error_code(hidden) == "INVALID_FIELD"
    names = {o["name"] for o in client.describe()["sobjects"]}
    assert {
        "Contact",
        "Lead",
        "Campaign",
        "CampaignMember",
        "Opportunity",
        "Task",
        "Event",
    } <= names


def test_limits_header_and_exhaustion(sf: SalesforceEmulator, client: Salesforce) -> None:
    client.query("SELECT Id FROM Contact")
    assert client.api_usage["api-usage"].used == 1
    sf.api_limit = 3
    assert client.limits()["DailyApiRequests"] == {"Max": 3, "Remaining": 1}
    client.query("SELECT Id FROM Contact")
    with pytest.raises(SalesforceRefusedRequest) as exhausted:
        client.query("SELECT Id FROM Contact")
    assert exhausted.value.content == [
        {"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}
    ]
    response = client.session.get(
        sf.data_url() + "limits/", headers={"Authorization": f"Bearer {sf.issue_session()}"}
    )
    assert (response.status_code, response.headers["Sforce-Limit-Info"]) == (403, "api-usage=3/3")


def test_bulk2_query_pages_csv(sf: SalesforceEmulator, client: Salesforce) -> None:
    account = sf.add("Account", Name='Acme, "Inc"')
    ids = sf.add_many(
        "Contact",
        [{"LastName": f"C{i}", "AccountId": account, "DoNotCall": i == 0} for i in range(5)],
    )
    sf.delete(ids[4])
    sf.bulk_polls_before_complete = 1
    pages = list(
        client.bulk2.Contact.query(
            "SELECT Id, DoNotCall, Account.Name FROM Contact", max_records=3, wait=0
        )
    )
    assert pages == [
        f'"Id","DoNotCall","Account.Name"\n"{ids[0]}","true","Acme, ""Inc"""\n"{ids[1]}","false","Acme, ""Inc"""\n"{ids[2]}","false","Acme, ""Inc"""\n',
        f'"Id","DoNotCall","Account.Name"\n"{ids[3]}","false","Acme, ""Inc"""\n',
    ]
    everything = "".join(
        client.bulk2.Contact.query_all("SELECT Id, IsDeleted FROM Contact", wait=0)
    )
    assert f'"{ids[4]}","true"' in everything
    assert sf.count("GET", "jobs/query/") >= 4


def test_expired_query_cursor(sf: SalesforceEmulator, client: Salesforce) -> None:
    sf.page_size = 1
    sf.add_many("Contact", [{"LastName": "A"}, {"LastName": "B"}])
    first = client.query("SELECT Id FROM Contact")
    sf.expire_query_cursors()
    with pytest.raises(SalesforceMalformedRequest) as expired:
        client.query_more(first["nextRecordsUrl"], identifier_is_url=True)
    assert error_code(expired) == "INVALID_QUERY_LOCATOR"


def test_ids_and_order_are_deterministic() -> None:
    def run() -> list[str]:
        with SalesforceEmulator() as emulator:
            account = emulator.add("Account", Name="A")
            return [
                account,
                emulator.add("Contact", LastName="B", AccountId=account),
                emulator.add("Campaign", Name="C"),
            ]

    first = run()
    assert first == run()
    assert [i[:3] for i in first] == ["001", "003", "701"]


# --- faults ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "exception", "status"),
    [
        ("http_500", SalesforceGeneralError, 500),
        ("http_502", SalesforceGeneralError, 502),
        ("http_503", SalesforceGeneralError, 503),
        ("server_unavailable", SalesforceGeneralError, 503),
        ("request_limit_exceeded", SalesforceRefusedRequest, 403),
        ("session_expired", SalesforceExpiredSession, 401),
    ],
)
def test_error_status_faults(
    sf: SalesforceEmulator, client: Salesforce, kind: str, exception: type[Exception], status: int
) -> None:
    sf.inject(Fault(kind, path_prefix="query"))  # type: ignore[arg-type]
    with pytest.raises(exception) as failed:
        client.query("SELECT Id FROM Contact")
    assert failed.value.status == status  # type: ignore[attr-defined]
    if kind == "server_unavailable":
        assert failed.value.content[0]["errorCode"] == "SERVER_UNAVAILABLE"  # type: ignore[attr-defined]
    if kind == "session_expired":  # the session really is gone
        with pytest.raises(SalesforceExpiredSession):
            client.query("SELECT Id FROM Contact")
    else:
        assert client.query("SELECT Id FROM Contact")["done"] is True


@pytest.mark.parametrize("kind", ["malformed_json", "html_error"])
def test_garbled_200_faults(sf: SalesforceEmulator, client: Salesforce, kind: str) -> None:
    sf.inject(Fault(kind, path_prefix="query"))  # type: ignore[arg-type]
    with pytest.raises(json.JSONDecodeError):
        client.query("SELECT Id FROM Contact")


def test_unable_to_lock_row_fails_chosen_records(
    sf: SalesforceEmulator, client: Salesforce
) -> None:
    people = sf.add_many("Contact", [{"LastName": n} for n in "ABC"])
    campaign = composite(client, "POST", [{"attributes": {"type": "Campaign"}, "Name": "Seg"}])[0][
        "id"
    ]
    sf.inject(
        Fault(
            "unable_to_lock_row",
            path_prefix="composite/sobjects",
            method="POST",
            record_indexes=(1,),
        )
    )
    first = composite(client, "POST", [member(campaign, p) for p in people])
    assert [r["success"] for r in first] == [True, False, True]
    assert first[1]["errors"][0]["statusCode"] == "UNABLE_TO_LOCK_ROW"
    assert composite(client, "POST", [member(campaign, people[1])])[0]["success"] is True


def test_delay_beats_a_client_timeout_after_the_write_happened(
    sf: SalesforceEmulator, client: Salesforce
) -> None:
    sf.inject(Fault("delay", path_prefix="composite/sobjects", seconds=0.3))
    with pytest.raises(requests.exceptions.ReadTimeout):
        client.restful(
            "composite/sobjects",
            method="POST",
            json={"records": [{"attributes": {"type": "Campaign"}, "Name": "Seg"}]},
            timeout=0.05,
        )
    assert [c["Name"] for c in sf.campaigns()] == ["Seg"]  # processed; only the answer was lost


def test_disconnect_mid_response_then_the_page_can_be_fetched_again(
    sf: SalesforceEmulator, client: Salesforce
) -> None:
    sf.page_size = 10
    sf.add_many("Contact", [{"LastName": f"C{i}"} for i in range(20)])
    first = client.query("SELECT Id, Name FROM Contact")
    sf.inject(Fault("disconnect", path_prefix="query/"))
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        client.query_more(first["nextRecordsUrl"], identifier_is_url=True)
    last = client.query_more(first["nextRecordsUrl"], identifier_is_url=True)
    assert (len(last["records"]), last["done"]) == (10, True)


def test_fault_after_and_times(sf: SalesforceEmulator, client: Salesforce) -> None:
    fault = sf.inject(
        Fault("http_503", path_prefix="/services/data/", method="GET", after=1, times=2)
    )
    outcomes = []
    for _ in range(4):
        try:
            client.limits()
            outcomes.append("ok")
        except SalesforceGeneralError as exc:
            outcomes.append(str(exc.status))
    assert outcomes == ["ok", "503", "503", "ok"]
    assert fault.fired == 2
    assert [r.fault for r in sf.requests] == [None, "http_503", "http_503", None]


def test_concurrent_clients_get_distinct_ids(sf: SalesforceEmulator) -> None:
    def insert_batch(worker: int) -> list[str]:
        with sf.make_session() as session:
            client = sf.client(session)
            records = [
                {"attributes": {"type": "Campaign"}, "Name": f"W{worker}-{i}"} for i in range(10)
            ]
            return [r["id"] for r in composite(client, "POST", records)]

    with ThreadPoolExecutor(max_workers=8) as pool:
        ids = [i for batch in pool.map(insert_batch, range(8)) for i in batch]
    assert len(set(ids)) == 80
    assert sf.count("POST", "composite/sobjects") == 8


# --- answers lost after the org committed (reach_org) --------------------------------------


def seeded_campaign(sf: SalesforceEmulator, people: int = 2) -> tuple[str, list[str]]:
    campaign = sf.add("Campaign", Name="segsync: Seg")
    return campaign, sf.add_many("Contact", [{"LastName": f"P{i}"} for i in range(people)])


@pytest.mark.parametrize(
    ("kind", "status"), [("http_500", 500), ("http_502", 502), ("http_503", 503), ("http_504", 504)]
)
def test_a_5xx_with_reach_org_commits_then_answers_the_error(
    sf: SalesforceEmulator, client: Salesforce, kind: str, status: int
) -> None:
    campaign, people = seeded_campaign(sf)
    sf.inject(Fault(kind, path_prefix="composite/sobjects", method="POST", reach_org=True))  # type: ignore[arg-type]
    with pytest.raises(SalesforceGeneralError) as failed:
        composite(client, "POST", [member(campaign, people[0])])
    assert failed.value.status == status
    assert [m["ContactId"] for m in sf.members(campaign)] == [people[0]]  # committed anyway
    (sent,) = [r for r in sf.requests if r.relative == "composite/sobjects"]
    assert (sent.fault, sent.status) == (kind, status)
    # the same payload again: the org answers that the work is already done
    again = composite(client, "POST", [member(campaign, people[0])])
    assert again[0]["errors"][0]["statusCode"] == "DUPLICATE_VALUE"
    # without reach_org the same fault stops the request before the org
    sf.inject(Fault(kind, path_prefix="composite/sobjects", method="POST"))  # type: ignore[arg-type]
    with pytest.raises(SalesforceGeneralError):
        composite(client, "POST", [member(campaign, people[1])])
    assert [m["ContactId"] for m in sf.members(campaign)] == [people[0]]


def test_a_5xx_with_reach_org_on_a_delete_deletes(
    sf: SalesforceEmulator, client: Salesforce
) -> None:
    campaign, people = seeded_campaign(sf)
    member_id = sf.add_member(campaign, people[0])
    sf.inject(Fault("http_503", path_prefix="composite/sobjects", method="DELETE", reach_org=True))
    with pytest.raises(SalesforceGeneralError):
        client.restful("composite/sobjects", method="DELETE", params={"ids": member_id})
    assert sf.members(campaign) == []
    again = client.restful("composite/sobjects", method="DELETE", params={"ids": member_id})
    assert again[0]["errors"][0]["statusCode"] == "ENTITY_IS_DELETED"


def _insert_or_delete(
    sf: SalesforceEmulator, client: Salesforce, method: str, campaign: str, person: str,
    **kwargs: object,
) -> object:
    if method == "POST":
        return client.restful(
            "composite/sobjects", method="POST",
            json={"allOrNone": False, "records": [member(campaign, person)]}, **kwargs,
        )
    (row,) = sf.members(campaign)
    return client.restful(
        "composite/sobjects", method="DELETE", params={"ids": row["Id"]}, **kwargs
    )


@pytest.mark.parametrize("method", ["POST", "DELETE"])
@pytest.mark.parametrize(
    ("kind", "raised"),
    [
        ("delay", requests.exceptions.ReadTimeout),
        ("disconnect", requests.exceptions.ChunkedEncodingError),
        ("malformed_json", json.JSONDecodeError),
    ],
)
def test_collections_answers_lost_after_the_commit(
    sf: SalesforceEmulator, client: Salesforce, method: str, kind: str,
    raised: type[Exception],
) -> None:
    campaign, people = seeded_campaign(sf, 1)
    if method == "DELETE":
        sf.add_member(campaign, people[0])
    sf.inject(Fault(kind, path_prefix="composite/sobjects", method=method, seconds=0.2))  # type: ignore[arg-type]
    timeout = {"timeout": 0.05} if kind == "delay" else {}
    with pytest.raises(raised):
        _insert_or_delete(sf, client, method, campaign, people[0], **timeout)
    expected = [people[0]] if method == "POST" else []
    assert [m["ContactId"] for m in sf.members(campaign)] == expected
    (sent,) = [r for r in sf.requests if r.relative == "composite/sobjects"]
    assert (sent.method, sent.fault, sent.status) == (method, kind, 200)


def test_malformed_json_cuts_a_collections_answer_in_half(
    sf: SalesforceEmulator, http: requests.Session
) -> None:
    campaign, people = seeded_campaign(sf, 3)
    sf.inject(Fault("malformed_json", path_prefix="composite/sobjects", method="POST"))
    response = http.post(
        sf.data_url() + "composite/sobjects",
        json={"allOrNone": False, "records": [member(campaign, p) for p in people]},
        headers={"Authorization": f"Bearer {sf.issue_session()}"},
    )
    assert response.status_code == 200
    assert response.text.startswith('[{"id": "00v')
    with pytest.raises(json.JSONDecodeError):
        response.json()
    assert len(sf.members(campaign)) == 3


# --- merges and lead conversion ------------------------------------------------------------------


def test_merge_moves_members_activities_and_roles_to_the_master(
    sf: SalesforceEmulator, client: Salesforce
) -> None:
    master = sf.add("Contact", LastName="Master")
    loser = sf.add("Contact", LastName="Loser")
    both = sf.add("Campaign", Name="Both")
    only_loser = sf.add("Campaign", Name="Only the loser")
    kept = sf.add_member(both, master)
    dropped = sf.add_member(both, loser)
    moved = sf.add_member(only_loser, loser)
    task = sf.add("Task", WhoId=loser, Subject="Call", Type="Call")
    event = sf.add("Event", WhoId=loser, ActivityDateTime="2025-06-01T10:00:00Z")
    deal = sf.add("Opportunity", Name="Deal", StageName="Closed Won", CloseDate="2025-05-01")
    role = sf.add("OpportunityContactRole", OpportunityId=deal, ContactId=loser)
    email = sf.log_email(loser, with_task=False)
    before = sf.clock.now()
    sf.clock.advance(minutes=5)
    sf.merge(master, loser)
    after = client.query_all(
        f"SELECT Id, IsDeleted, MasterRecordId FROM Contact WHERE Id = '{loser}'",
        include_deleted=True,
    )["records"]
    assert [(r["IsDeleted"], r["MasterRecordId"]) for r in after] == [(True, master)]
    assert client.query(f"SELECT Id FROM Contact WHERE Id = '{loser}'")["totalSize"] == 0
    assert sf.get(dropped)["IsDeleted"] is True  # the master already was a member
    assert sf.get(kept)["IsDeleted"] is False
    assert (sf.get(moved)["ContactId"], sf.get(moved)["IsDeleted"]) == (master, False)
    assert {m["ContactId"] for m in sf.members(both)} == {master}
    assert sf.get(task)["WhoId"] == sf.get(event)["WhoId"] == master
    assert sf.get(role)["ContactId"] == master
    assert sf.get(email.relation_ids[0])["RelationId"] == master
    stamp = "2025-06-02T09:05:00.000+0000"
    for moved_id in (moved, task, event, role, email.relation_ids[0], master):
        assert sf.get(moved_id)["SystemModstamp"] == stamp, moved_id
    assert sf.get(kept)["SystemModstamp"] < stamp  # untouched rows keep theirs
    assert before < sf.clock.now()
    moved_since = client.query_all(
        "SELECT Id FROM CampaignMember WHERE SystemModstamp >= 2025-06-02T09:05:00Z"
    )["records"]
    assert [r["Id"] for r in moved_since] == [moved]


def test_lead_conversion_keeps_member_rows_and_refuses_new_ones(
    sf: SalesforceEmulator, client: Salesforce
) -> None:
    lead = sf.add("Lead", LastName="Hopper", Company="Navy", Email="grace@navy.example")
    existing = sf.add("Contact", LastName="Hopper", Email="grace@navy.example")
    spring, autumn = sf.add("Campaign", Name="Spring"), sf.add("Campaign", Name="Autumn")
    row = sf.add_member(spring, lead)
    sf.clock.advance(minutes=1)
    conversion = sf.convert_lead(lead, contact_id=existing)
    assert conversion.contact_id == existing  # reused, not created
    assert len(sf.records("Contact")) == 1
    converted = client.query(
        f"SELECT IsConverted, ConvertedContactId, ConvertedDate FROM Lead WHERE Id = '{lead}'"
    )["records"][0]
    assert converted == {
        "attributes": converted["attributes"],
        "IsConverted": True,
        "ConvertedContactId": existing,
        "ConvertedDate": "2025-06-02",
    }
    rows = client.query(
        f"SELECT Id, ContactId, LeadId FROM CampaignMember WHERE CampaignId = '{spring}'"
    )["records"]
    assert [(r["Id"], r["ContactId"], r["LeadId"]) for r in rows] == [(row, existing, lead)]
    assert sf.get(row)["SystemModstamp"] == "2025-06-02T09:01:00.000+0000"
    results = composite(client, "POST", [member(autumn, lead), member(autumn, existing)])
    assert results[0]["success"] is False
    assert results[0]["errors"][0] == {
        "statusCode": "CANNOT_UPDATE_CONVERTED_LEAD",
        "message": "cannot reference converted lead",
        "fields": ["LeadId"],
    }
    assert results[1]["success"] is True
    new = sf.convert_lead(sf.add("Lead", LastName="New", Company="Co"))
    assert sf.get(new.contact_id)["LastName"] == "New"  # a Contact created for it


# --- Enhanced Email --------------------------------------------------------------------------------


def test_email_messages_and_relations_are_queryable(
    sf: SalesforceEmulator, client: Salesforce
) -> None:
    ada = sf.add("Contact", LastName="Ada", Email="ada@example.com")
    lead = sf.add("Lead", LastName="Lee", Company="Co", Email="lee@example.com")
    user = sf.records("User")[0]["Id"]
    received = sf.log_email(ada, [user], cc_ids=[lead],
                            message_date=dt.datetime(2025, 6, 1, 8, tzinfo=UTC))
    sent = sf.log_email(user, [lead], incoming=False, with_task=False)
    assert received.task_id is not None
    assert sent.task_id is None
    task = sf.get(received.task_id)
    assert (task["TaskSubtype"], task["WhoId"]) == ("Email", ada)
    incoming = client.query_all(
        "SELECT Id, ActivityId, Incoming, MessageDate FROM EmailMessage WHERE Incoming = true "
        "AND MessageDate >= 2025-05-01T00:00:00Z"
    )["records"]
    assert [(r["Id"], r["ActivityId"], r["Incoming"], r["MessageDate"]) for r in incoming] == [
        (received.message_id, received.task_id, True, "2025-06-01T08:00:00.000+0000")
    ]
    by_task = client.query(
        f"SELECT ActivityId FROM EmailMessage WHERE Incoming = true AND ActivityId IN "
        f"('{received.task_id}')"
    )["records"]
    assert [r["ActivityId"] for r in by_task] == [received.task_id]
    relations = client.query_all(
        "SELECT EmailMessageId, RelationId, RelationType, RelationObjectType, RelationAddress "
        f"FROM EmailMessageRelation WHERE EmailMessageId IN ('{received.message_id}', "
        f"'{sent.message_id}') ORDER BY RelationType"
    )["records"]
    assert [(r["EmailMessageId"], r["RelationId"], r["RelationType"], r["RelationObjectType"])
            for r in relations] == [
        (received.message_id, lead, "CcAddress", "Lead"),
        (received.message_id, ada, "FromAddress", "Contact"),
        (sent.message_id, user, "FromAddress", "User"),
        (received.message_id, user, "ToAddress", "User"),
        (sent.message_id, lead, "ToAddress", "Lead"),
    ]
    assert relations[1]["RelationAddress"] == "ada@example.com"
    senders = client.query(
        f"SELECT RelationId FROM EmailMessageRelation WHERE RelationType = 'FromAddress' "
        f"AND EmailMessageId IN ('{received.message_id}')"
    )["records"]
    assert [r["RelationId"] for r in senders] == [ada]
    with pytest.raises(SalesforceMalformedRequest) as bad_type:
        client.EmailMessageRelation.create(
            {"EmailMessageId": received.message_id, "RelationId": ada, "RelationType": "Sender"}
        )
    assert error_code(bad_type) == "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"
    sf.clock.advance(minutes=1)
    sf.delete(received.message_id)  # its relations go with it, into the recycle bin
    gone = client.query_all(
        "SELECT Id, IsDeleted FROM EmailMessageRelation WHERE IsDeleted = true",
        include_deleted=True,
    )["records"]
    assert {r["Id"] for r in gone} == set(received.relation_ids)


def test_enhanced_email_can_be_turned_off(sf: SalesforceEmulator, client: Salesforce) -> None:
    ada = sf.add("Contact", LastName="Ada")
    logged = sf.log_email(ada)
    sf.enhanced_email = False
    assert sf.enhanced_email is False
    for soql in ("SELECT Id FROM EmailMessage WHERE Incoming = true",
                 "SELECT Id FROM EmailMessageRelation"):
        with pytest.raises(SalesforceMalformedRequest) as refused:
            client.query(soql)
        assert error_code(refused) == "INVALID_TYPE"
    with pytest.raises(SalesforceResourceNotFound):
        client.EmailMessage.describe()
    names = {o["name"] for o in client.describe()["sobjects"]}
    assert "EmailMessage" not in names
    assert "Task" in names
    assert [r["Id"] for r in sf.records("EmailMessage")] == [logged.message_id]  # kept
    with pytest.raises(ValueError, match="NOT_FOUND"):
        sf.log_email(ada)
    sf.enhanced_email = True
    assert client.query("SELECT Id FROM EmailMessage")["totalSize"] == 1
