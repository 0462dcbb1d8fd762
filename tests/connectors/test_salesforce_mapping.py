"""Pure parts of the Salesforce connector, tested with literals: mapping, SOQL, watermarks."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from connectors.errors import (
    AuthError,
    ConnectorError,
    CrmDataError,
    QuotaExhausted,
    RetriableAPIError,
)
from connectors.salesforce import soql
from connectors.salesforce.client import endpoint_label
from connectors.salesforce.connector import SalesforceConnector
from connectors.salesforce.mapping import (
    LimitInfo,
    Outcome,
    UnreadableAnswer,
    activity_kind,
    collection_outcomes,
    contacts_frame,
    csv_frame,
    error_for,
    flatten,
    parse_limit_info,
    records_frame,
    to_text,
)
from connectors.salesforce.streams import Marks, ObjectMark, bulk_calls, use_bulk
from connectors.salesforce.write import campaign_name, person_object

UTC = dt.UTC


def test_flatten_drops_attributes_and_dots_parents() -> None:
    record = {
        "attributes": {"type": "Contact", "url": "/services/data/v64.0/sobjects/Contact/003"},
        "Id": "003xx000004TmiQAAS",
        "Account": {"attributes": {"type": "Account"}, "Industry": "Retail"},
        "Owner": None,
    }
    assert flatten(record) == {"Id": "003xx000004TmiQAAS", "Account.Industry": "Retail",
                               "Owner": None}


def test_records_frame_fills_missing_parents_with_none() -> None:
    frame = records_frame(
        [{"Id": "1", "Account": None}, {"Id": "2", "Account": {"Industry": "Retail"}}],
        ["Id", "Account.Industry"],
    )
    assert frame.to_dict("records") == [{"Id": "1", "Account.Industry": None},
                                        {"Id": "2", "Account.Industry": "Retail"}]


def test_csv_frame_reads_bulk_pages() -> None:
    text = '"Id","SystemModstamp","account.industry"\n"001A","2024-05-01T10:11:12.000Z",""\n'
    frame = csv_frame(text, ["Id", "SystemModstamp", "Account.Industry"])
    assert frame.to_dict("records") == [
        {"Id": "001A", "SystemModstamp": "2024-05-01T10:11:12.000Z", "Account.Industry": None}
    ]
    assert csv_frame("", ["Id"]).empty


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, None),
        (True, "true"),
        (False, "false"),
        (5_000_000.0, "5000000"),
        (12.5, "12.5"),
        (7, "7"),
        ("5000000.0", "5000000"),
        ("golf;travel", "golf;travel"),
        ("2013-05-20T20:49:32.000+0000", "2013-05-20 20:49:32"),
        ("2013-05-20T22:49:32.000+0200", "2013-05-20 20:49:32"),
        ("2024-05-01T10:11:12.000Z", "2024-05-01 10:11:12"),
        ("2024-05-01", "2024-05-01"),
        (float("nan"), None),
    ],
)
def test_property_values_become_text(value: object, text: str | None) -> None:
    assert to_text(value) == text


def test_contacts_frame_has_the_canonical_columns() -> None:
    raw = records_frame([
        {"Id": "003A", "SystemModstamp": "2024-05-01T10:11:12.000+0000", "AccountId": "001A",
         "HasOptedOutOfEmail": False, "DoNotCall": True, "MailingLatitude": 52.5,
         "MailingLongitude": 13.4, "Email": "ana@example.com", "MailingCity": "Berlin"},
        {"Id": "003B", "SystemModstamp": "2024-05-02T00:00:00.000+0000", "AccountId": None,
         "HasOptedOutOfEmail": False, "DoNotCall": False, "MailingLatitude": 91.0,
         "MailingLongitude": None, "Email": None, "MailingCity": None},
    ], ["Id", "SystemModstamp", "AccountId", "HasOptedOutOfEmail", "DoNotCall",
        "MailingLatitude", "MailingLongitude", "Email", "MailingCity"])
    frame = contacts_frame(raw, "contact", {"email": "Email", "city": "MailingCity", "nps": ""},
                           lat="MailingLatitude", lon="MailingLongitude", company="AccountId",
                           opt_outs=["HasOptedOutOfEmail", "DoNotCall"])
    assert list(frame.columns) == ["_crm_id", "_modified_at", "_company_id", "_opted_out", "_lat",
                                   "_lon", "_kind", "city", "email", "nps"]
    first, second = frame.to_dict("records")
    assert first["_modified_at"] == pd.Timestamp("2024-05-01 10:11:12")
    assert (first["_opted_out"], second["_opted_out"]) == (True, False)
    assert (first["_company_id"], second["_company_id"]) == ("001A", None)
    assert (first["_lat"], first["city"], first["nps"]) == (52.5, "Berlin", None)
    assert second["_lat"] is None  # out of range: not a coordinate
    assert (second["_lon"], second["email"], second["city"]) == (None, None, None)  # null
    assert frame["_kind"].tolist() == ["contact", "contact"]


def test_a_bad_timestamp_is_one_clear_error() -> None:
    raw = records_frame([{"Id": "003A", "SystemModstamp": "yesterday"}], ["Id", "SystemModstamp"])
    with pytest.raises(CrmDataError, match="'yesterday' as SystemModstamp"):
        contacts_frame(raw, "contact", {}, lat="", lon="", company=None, opt_outs=[])


@pytest.mark.parametrize(
    ("sobject", "subtype", "kind", "expected"),
    [
        ("Task", "Email", None, "email_sent"),
        ("Task", "ListEmail", "Other", "email_sent"),
        ("Task", "Call", None, "call"),
        ("Task", "Task", "Meeting", "meeting"),
        ("Task", "Task", "Call", "call"),
        ("Task", "Cadence", None, "task"),
        ("Event", "Event", "Call", "meeting"),
        ("EmailMessage", None, None, "email_received"),
    ],
)
def test_activity_kinds(sobject: str, subtype: str, kind: str | None, expected: str) -> None:
    assert activity_kind(sobject, subtype, kind) == expected


def test_collection_results_become_per_record_outcomes() -> None:
    results = [
        {"id": "00vA", "success": True, "errors": []},
        {"success": False, "errors": [{"statusCode": "DUPLICATE_VALUE",
                                       "message": "Already a campaign member.", "fields": []}]},
        {"success": False, "errors": [{"statusCode": "ENTITY_IS_DELETED",
                                       "message": "entity is deleted", "fields": ["ContactId"]}]},
    ]
    assert collection_outcomes(3, results) == [
        Outcome(True, "00vA"),
        Outcome(False, None, "DUPLICATE_VALUE", "Already a campaign member."),
        Outcome(False, None, "ENTITY_IS_DELETED", "entity is deleted", ("ContactId",)),
    ]
    assert collection_outcomes(3, results)[1].reason == (
        "DUPLICATE_VALUE: Already a campaign member.")


@pytest.mark.parametrize("results", [
    None, [], [{"success": True}], "<html>", [{"success": True}, "x"],
    [{"success": True}, {"id": "00vB", "errors": []}],  # no success flag: proves nothing
    [{"success": True}, {"success": "true"}],
])
def test_collection_results_that_do_not_match_the_request_are_unreadable(
    results: object
) -> None:
    with pytest.raises(UnreadableAnswer):
        collection_outcomes(2, results)


@pytest.mark.parametrize(
    ("status", "content", "kind", "text"),
    [
        (401, [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}],
         AuthError, "INVALID_SESSION_ID"),
        (403, [{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}],
         QuotaExhausted, "daily API allocation"),
        (403, [{"message": "ConcurrentRequests (Concurrent API Requests) Limit exceeded.",
                "errorCode": "REQUEST_LIMIT_EXCEEDED"}], RetriableAPIError, "Concurrent"),
        (403, [{"message": "no", "errorCode": "INSUFFICIENT_ACCESS_OR_READONLY"}], AuthError,
         "Marketing User"),
        (400, [{"message": "No such column 'Foo__c'", "errorCode": "INVALID_FIELD"}],
         ConnectorError, "field-level security"),
        (400, [{"message": "locked", "errorCode": "UNABLE_TO_LOCK_ROW"}], RetriableAPIError,
         "UNABLE_TO_LOCK_ROW"),
        (503, [{"message": "down", "errorCode": "SERVER_UNAVAILABLE"}], RetriableAPIError,
         "SERVER_UNAVAILABLE"),
        (502, "<!DOCTYPE html><html>Bad Gateway</html>", RetriableAPIError, "HTML error page"),
        (200, "<html><body>Maintenance</body></html>", CrmDataError, "HTML page"),
        (404, [{"message": "gone", "errorCode": "NOT_FOUND"}], ConnectorError, "NOT_FOUND"),
        (500, "boom", RetriableAPIError, "boom"),
    ],
    ids=["session", "total-limit", "concurrent-limit", "access", "invalid-field", "lock",
         "unavailable", "html-5xx", "html-200", "not-found", "plain-500"],
)
def test_one_map_from_error_arrays_to_exceptions(
    status: int, content: object, kind: type[Exception], text: str
) -> None:
    error = error_for(status, content, "GET query")
    assert type(error) is kind
    assert text in str(error)
    assert str(error).startswith("GET query: ")


def test_limit_info_header() -> None:
    assert parse_limit_info("api-usage=18/15000") == LimitInfo(18, 15000)
    assert parse_limit_info("api-usage=10018/100000; per-app-api-usage=17/250(appName=x)") == (
        LimitInfo(10018, 100000))
    assert parse_limit_info(None) is None
    assert LimitInfo(15001, 15000).remaining == 0


def test_write_calls_estimate() -> None:
    assert SalesforceConnector.estimate_write_calls(0, 0) == 0
    assert SalesforceConnector.estimate_write_calls(201, 0) == 2
    assert SalesforceConnector.estimate_write_calls(10, 10, new_targets=1) == 5


# --- SOQL ------------------------------------------------------------------------------------


def test_changed_query_is_ordered_and_uses_a_utc_literal() -> None:
    since = dt.datetime(2025, 6, 2, 9, 0, 5, 123000, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert soql.changed("Contact", ["Id", "SystemModstamp", "Id", "Account.Industry"], since,
                        ["IsConverted = false"]) == (
        "SELECT Id, SystemModstamp, Account.Industry FROM Contact WHERE IsConverted = false "
        "AND SystemModstamp >= 2025-06-02T07:00:05+00:00 ORDER BY SystemModstamp ASC, Id ASC"
    )
    assert soql.changed("Lead", ["Id"], None, ordered=False) == "SELECT Id FROM Lead"


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        soql.changed("Contact", ["Id"], dt.datetime(2025, 1, 1))


def test_values_are_quoted_and_field_names_checked() -> None:
    assert soql.campaign_by_name("O'Brien's list") == (
        "SELECT Id, Name FROM Campaign WHERE Name = 'O\\'Brien\\'s list' "
        "ORDER BY CreatedDate DESC"
    )
    with pytest.raises(ConnectorError, match="not a Salesforce field API name"):
        soql.field_list(["Id", "Name FROM User --"])


def test_member_rows_query_splits_contacts_and_leads() -> None:
    assert soql.member_rows("701A", ["003A", "003B"], ["00QA"]) == (
        "SELECT Id, ContactId, LeadId FROM CampaignMember WHERE CampaignId = '701A' AND "
        "(ContactId IN ('003A','003B') OR LeadId IN ('00QA'))"
    )
    assert soql.member_rows("701A", [], ["00QA"]).endswith("AND (LeadId IN ('00QA'))")
    with pytest.raises(ValueError, match="at least one"):
        soql.member_rows("701A", [], [])


def test_memberships_query_covers_campaigns_and_both_person_kinds() -> None:
    assert soql.memberships(["701A", "701B"], ["003A"], ["00QA", "00QB"]) == (
        "SELECT CampaignId, ContactId, LeadId FROM CampaignMember WHERE CampaignId IN "
        "('701A','701B') AND (ContactId IN ('003A') OR LeadId IN ('00QA','00QB'))"
    )
    assert soql.memberships(["701A"], ["003A"], []).endswith("AND (ContactId IN ('003A'))")
    with pytest.raises(ValueError, match="campaign"):
        soql.memberships([], ["003A"], [])


def test_email_queries_read_incoming_messages_and_their_senders() -> None:
    assert soql.incoming_tasks(["00TA", "00TB"]) == (
        "SELECT ActivityId FROM EmailMessage WHERE Incoming = true AND ActivityId IN "
        "('00TA','00TB')")
    assert soql.incoming_messages(["Id", "MessageDate"], ["02sA"]) == (
        "SELECT Id, MessageDate FROM EmailMessage WHERE Id IN ('02sA') AND Incoming = true")
    assert soql.from_relations(["02sA", "02sB"]) == (
        "SELECT EmailMessageId, RelationId, SystemModstamp FROM EmailMessageRelation WHERE "
        "EmailMessageId IN ('02sA','02sB') AND RelationType = 'FromAddress'")


def test_won_roles_query_filters_through_the_parent() -> None:
    assert soql.won_roles(["OpportunityId", "Opportunity.Amount"], dt.date(2024, 1, 1)) == (
        "SELECT OpportunityId, Opportunity.Amount FROM OpportunityContactRole "
        "WHERE Opportunity.IsWon = true AND Opportunity.CloseDate >= 2024-01-01"
    )


# --- watermarks and the bulk decision ---------------------------------------------------------


def test_marks_round_trip_and_only_move_forward() -> None:
    t0 = dt.datetime(2025, 6, 2, 9, tzinfo=UTC)
    marks = Marks().advanced("Contact", t0, checked=t0)
    marks = marks.advanced("Contact", t0 - dt.timedelta(hours=1))
    assert marks.get("Contact") == ObjectMark(t0, t0)
    assert Marks.decode(marks.encode()).objects == marks.objects
    assert Marks.decode('{"v": 1, "Lead": {"from": null, "checked": null}}').get("Lead") == (
        ObjectMark())


@pytest.mark.parametrize("text", ["2026-01-01T00:00:00", "{}", '{"v": 2}', "[1]"])
def test_foreign_watermarks_mean_a_full_pull(text: str) -> None:
    assert Marks.decode(text).objects == {}


def test_marks_go_stale_after_the_recycle_bin_window() -> None:
    t0 = dt.datetime(2025, 6, 2, tzinfo=UTC)
    marks = Marks().advanced("Contact", t0, checked=t0).advanced("Lead", t0, checked=t0)
    assert not marks.stale(["Contact", "Lead"], t0 + dt.timedelta(days=14))
    assert marks.stale(["Contact", "Lead"], t0 + dt.timedelta(days=15))
    assert Marks().advanced("Contact", t0).stale(["Contact"], t0)  # never completed


@pytest.mark.parametrize(
    ("total", "already", "threshold", "expected"),
    [
        (10_000, 2000, 20_000, False),  # below the threshold
        (30_000, 2000, 20_000, True),  # 14 more REST pages vs 3 bulk calls
        (9_000, 2000, 5_000, True),  # 4 more pages vs 3 calls
        (8_000, 2000, 5_000, False),  # 3 more pages vs 3 calls: no saving
        (1_000_000, 2000, 20_000, True),
        (30_000, 2000, 0, False),  # disabled
    ],
)
def test_bulk_only_when_it_saves_calls(
    total: int, already: int, threshold: int, expected: bool
) -> None:
    assert use_bulk(total, already, threshold) is expected


def test_bulk_estimate_uses_the_page_size_salesforce_chose() -> None:
    assert not use_bulk(8_000, 2000, 5_000, page_rows=2000)
    assert use_bulk(9_000, 500, 5_000, page_rows=500)  # 17 more pages of 500


def test_bulk_cost() -> None:
    assert bulk_calls(1) == 3
    assert bulk_calls(250_000) == 5


# --- labels and names -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "url", "label"),
    [
        ("GET", "https://h/services/data/v64.0/query/?q=SELECT+Id", "GET query"),
        ("GET", "https://h/services/data/v64.0/query/0r8xx3XyZ1aBcDe-2000", "GET query (next page)"),
        ("GET", "https://h/services/data/v64.0/queryAll/?q=x", "GET queryAll"),
        ("POST", "https://h/services/data/v64.0/composite/sobjects", "POST composite/sobjects"),
        ("PATCH", "https://h/services/data/v64.0/sobjects/Campaign/701EM0000000001YAA",
         "PATCH sobjects/Campaign/{id}"),
        ("GET", "https://h/services/data/v64.0/sobjects/Contact/describe",
         "GET sobjects/Contact/describe"),
        ("GET", "https://h/services/data/v64.0/jobs/query/750EM0000000001AAA/results",
         "GET jobs/query/{id}/results"),
        ("POST", "https://login.salesforce.com/services/oauth2/token", "POST oauth2/token (login)"),
        ("POST", "https://login.salesforce.com/services/Soap/u/64.0", "POST Soap login"),
    ],
)
def test_endpoint_labels(method: str, url: str, label: str) -> None:
    assert endpoint_label(method, url) == label


def test_campaign_names_fit_80_characters() -> None:
    assert campaign_name("segsync: Berlin") == "segsync: Berlin"
    long = campaign_name("x" * 100)
    assert len(long) == 80
    assert long.endswith("…")


def test_person_object_by_id_prefix() -> None:
    assert person_object("003xx000004TmiQAAS") == "Contact"
    assert person_object("00Qxx00000AbCdEAAV") == "Lead"
    assert person_object("001xx000003DGb2AAG") is None
