"""HubSpot connector at the HTTP level, with ``responses`` through segsync's own session."""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import responses
from responses import matchers
from responses.registries import OrderedRegistry

from connectors.base import Batch, PullRequest, TargetRef, TargetSpec
from connectors.errors import (
    AuthError,
    ConnectorError,
    CrmDataError,
    QuotaExhausted,
    RetriableAPIError,
    TargetConflict,
)
from connectors.hubspot.mapping import Cursor, decode_watermark, encode_watermark
from tests.connectors.hubspot_helpers import (
    BASE,
    NOW,
    TOKEN,
    FakeTime,
    SearchServer,
    WallClock,
    contact,
    iso,
    make_connector,
    ms,
    no_associations,
)

SEARCH = f"{BASE}/crm/v3/objects/contacts/search"
ASSOC = f"{BASE}/crm/v4/associations/contacts/companies/batch/read"
ARCHIVED = f"{BASE}/crm/v3/objects/contacts"
LIST_URL = f"{BASE}/crm/v3/lists"


@pytest.fixture(autouse=True)
def _token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUBSPOT_TOKEN", TOKEN)


@pytest.fixture
def mocked() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        yield mock


@pytest.fixture
def ordered() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(
        assert_all_requests_are_fired=True, registry=OrderedRegistry
    ) as mock:
        yield mock


def pull(connector: Any, since: str | None = None, fields: frozenset[str] = frozenset(),
         stream: str = "contacts") -> list[Any]:
    return list(connector.pull(PullRequest(stream, since, fields)))  # type: ignore[arg-type]


def archived_empty(mock: responses.RequestsMock) -> None:
    mock.get(ARCHIVED, json={"results": []},
             match=[matchers.query_param_matcher({"archived": "true"}, strict_match=False)])


# --------------------------------------------------------------------------- pulling


def test_full_pull_reads_past_the_10000_result_wall(mocked: responses.RequestsMock) -> None:
    server = SearchServer([contact(i) for i in range(1, 10_451)])
    mocked.add_callback(responses.POST, SEARCH, callback=server)
    mocked.add_callback(responses.POST, ASSOC, callback=no_associations)
    pages = pull(make_connector())
    ids = [i for page in pages for i in page.records["_crm_id"]]
    assert len(ids) == 10_450
    assert len(set(ids)) == 10_450
    assert all(body["after"] == "0" for body in server.bodies)
    assert len(server.bodies) == 53  # ceil(10,450 / 200): the theoretical minimum
    assert pages[-1].present_ids == frozenset(ids)
    assert pages[-1].deleted == ()  # a full pull needs no archived sweep
    # every intermediate watermark records how far the pull got
    middle = decode_watermark(pages[0].watermark)
    assert middle.in_progress
    assert middle.after == pages[0].records["_crm_id"].iloc[-1]
    assert decode_watermark(pages[-1].watermark) == Cursor(ms(NOW))


def test_equal_timestamps_never_loop(mocked: responses.RequestsMock) -> None:
    stamp = NOW - dt.timedelta(hours=1)
    server = SearchServer([contact(i, stamp) for i in range(1, 501)])
    mocked.add_callback(responses.POST, SEARCH, callback=server)
    mocked.add_callback(responses.POST, ASSOC, callback=no_associations)
    archived_empty(mocked)
    since = iso(NOW - dt.timedelta(hours=2))
    pages = pull(make_connector(), since)
    assert sum(len(p.records) for p in pages) == 500
    assert len(server.bodies) == 3
    first = server.bodies[0]["filterGroups"][0]["filters"]
    watermark_ms = ms(NOW - dt.timedelta(hours=2)) - 300_000  # overlap margin
    assert first == [{"propertyName": "lastmodifieddate", "operator": "GTE",
                      "value": str(watermark_ms)}]
    anchors = [b["filterGroups"][0]["filters"][-1] for b in server.bodies[1:]]
    assert anchors == [{"propertyName": "hs_object_id", "operator": "GT", "value": "200"},
                       {"propertyName": "hs_object_id", "operator": "GT", "value": "400"}]


def test_a_stopped_pull_resumes_after_the_last_stored_id(mocked: responses.RequestsMock) -> None:
    server = SearchServer([contact(i) for i in range(1, 301)])
    mocked.add_callback(responses.POST, SEARCH, callback=server)
    mocked.add_callback(responses.POST, ASSOC, callback=no_associations)
    archived_empty(mocked)
    started = NOW - dt.timedelta(minutes=10)
    since = encode_watermark(Cursor(ms(started), None, 0, "250"))
    pages = pull(make_connector(), since)
    assert [i for p in pages for i in p.records["_crm_id"]] == [str(i) for i in range(251, 301)]
    assert pages[-1].present_ids is None  # a resumed full pull did not see every id
    assert decode_watermark(pages[-1].watermark) == Cursor(ms(started))


def test_ignored_string_sort_falls_back_to_object_sort(
    mocked: responses.RequestsMock, caplog: pytest.LogCaptureFixture
) -> None:
    server = SearchServer([contact(i) for i in range(1, 251)], honour_string_sort=False)
    mocked.add_callback(responses.POST, SEARCH, callback=server)
    mocked.add_callback(responses.POST, ASSOC, callback=no_associations)
    pages = pull(make_connector())
    assert sum(len(p.records) for p in pages) == 250
    assert server.bodies[0]["sorts"] == ["hs_object_id"]
    assert server.bodies[-1]["sorts"] == [{"propertyName": "hs_object_id",
                                           "direction": "ASCENDING"}]
    assert "object form" in caplog.text


def test_a_sort_ignored_in_both_forms_stops_with_a_clear_error(
    mocked: responses.RequestsMock,
) -> None:
    server = SearchServer([contact(i) for i in range(1, 20)], honour_string_sort=False,
                          honour_object_sort=False)
    mocked.add_callback(responses.POST, SEARCH, callback=server)
    with pytest.raises(CrmDataError, match="ignored the hs_object_id sort"):
        pull(make_connector())


def test_contact_frame_mapping_company_merges_and_archived(mocked: responses.RequestsMock) -> None:
    records = [
        contact(7, NOW, city="Berlin", hs_email_optout="true", latitude="52.5",
                longitude="13.4", lifecyclestage="customer", hs_merged_object_ids="3;5"),
        contact(9, NOW, city="", latitude="not a number"),
    ]
    mocked.add_callback(responses.POST, SEARCH, callback=SearchServer(records))
    mocked.post(ASSOC, status=207, json={
        "status": "COMPLETE",
        "results": [{"from": {"id": "7"}, "to": [
            {"toObjectId": "40", "associationTypes": [{"category": "HUBSPOT_DEFINED", "typeId": 279}]},
            {"toObjectId": "41", "associationTypes": [{"category": "HUBSPOT_DEFINED", "typeId": 1},
                                                      {"category": "HUBSPOT_DEFINED", "typeId": 279}]},
        ]}],
        "errors": [{"status": "error", "category": "OBJECT_NOT_FOUND", "message": "none",
                    "context": {"fromObjectId": ["9"]}}],
        "numErrors": 1,
    })
    mocked.get(ARCHIVED, json={"results": [
        {"id": "11", "archived": True, "archivedAt": iso(NOW)},
        {"id": "12", "archived": True, "archivedAt": iso(NOW - dt.timedelta(days=30))},
    ]})
    pages = pull(make_connector(), iso(NOW - dt.timedelta(hours=1)),
                 frozenset({"city", "lifecycle_stage"}))
    frame = pages[0].records
    assert list(frame.columns) == ["_crm_id", "_modified_at", "_company_id", "_opted_out",
                                   "_lat", "_lon", "_kind", "city", "email", "lifecycle_stage"]
    first, second = frame.to_dict("records")
    assert first["_company_id"] == "41"  # the primary association wins
    assert first["_opted_out"] is True
    assert (first["_lat"], first["_lon"]) == (52.5, 13.4)
    assert first["lifecycle_stage"] == "customer"
    assert first["_modified_at"] == NOW.replace(tzinfo=None)
    assert second["city"] is None
    assert second["_company_id"] is None
    assert pages[0].merged == {"3": "7", "5": "7"}
    assert pages[-1].deleted == ("11",)  # archived before this pull's window: already seen


def test_bad_modified_date_is_one_clear_error(mocked: responses.RequestsMock) -> None:
    mocked.post(SEARCH, json={"total": 1, "results": [
        {"id": "1", "properties": {"lastmodifieddate": "yesterday-ish"}}]})
    mocked.add_callback(responses.POST, ASSOC, callback=no_associations)
    with pytest.raises(CrmDataError, match=r"not a date for record\(s\) 1 \('yesterday-ish'\)"):
        pull(make_connector())


# --------------------------------------------------------------------------- limits & failures


def rate_limited(policy: str) -> dict[str, Any]:
    return {"status": "error", "message": f"You have reached your {policy.lower()} limit.",
            "errorType": "RATE_LIMIT", "correlationId": "c-1", "policyName": policy,
            "groupName": "publicapi:private-app:1"}


@pytest.mark.parametrize(("policy", "wait"), [("TEN_SECONDLY_ROLLING", 10.0), ("SECONDLY", 1.0)])
def test_429_waits_by_policy_then_retries(
    ordered: responses.RequestsMock, policy: str, wait: float
) -> None:
    time = FakeTime()
    ordered.post(SEARCH, status=429, json=rate_limited(policy))
    ordered.post(SEARCH, json={"total": 0, "results": []})
    ordered.get(ARCHIVED, json={"results": []})
    pull(make_connector(time), iso(NOW))
    assert len(time.slept) == 1
    assert wait <= time.slept[0] <= wait + 1.0  # plus jitter


def test_429_retry_after_header_is_honoured(ordered: responses.RequestsMock) -> None:
    time = FakeTime()
    ordered.post(SEARCH, status=429, json=rate_limited("TEN_SECONDLY_ROLLING"),
                 headers={"Retry-After": "3"})
    ordered.post(SEARCH, json={"total": 0, "results": []})
    ordered.get(ARCHIVED, json={"results": []})
    pull(make_connector(time), iso(NOW))
    assert 3.0 <= time.slept[0] <= 4.0


def test_daily_429_stops_cleanly_and_says_when_to_resume(mocked: responses.RequestsMock) -> None:
    time = FakeTime()
    mocked.post(SEARCH, status=429, json=rate_limited("DAILY"),
                headers={"X-HubSpot-RateLimit-Daily": "250000"})
    with pytest.raises(QuotaExhausted) as caught:
        pull(make_connector(time, timezone="Europe/Berlin"), iso(NOW))
    text = str(caught.value)
    assert "daily API limit" in text
    assert "2026-06-02 00:00 Europe/Berlin (2026-06-01 22:00 UTC)" in text
    assert time.slept == []  # no waiting, no retry
    assert len(mocked.calls) == 1


@pytest.mark.parametrize("status", [500, 502, 503, 504, 423])
def test_transient_statuses_back_off_and_are_bounded(
    mocked: responses.RequestsMock, status: int
) -> None:
    time = FakeTime()
    mocked.post(SEARCH, status=status, json={"status": "error", "message": "busy"})
    with pytest.raises(RetriableAPIError, match=f"HTTP {status}"):
        pull(make_connector(time, max_retries=3), iso(NOW))
    assert len(mocked.calls) == 4
    assert len(time.slept) == 3
    if status != 423:
        assert time.slept[0] < time.slept[1] < time.slept[2]  # exponential


def test_connection_resets_and_timeouts_are_retried(ordered: responses.RequestsMock) -> None:
    ordered.post(SEARCH, body=requests.ConnectionError("connection reset by peer"))
    ordered.post(SEARCH, body=requests.ReadTimeout("read timed out"))
    ordered.post(SEARCH, json={"total": 0, "results": []})
    ordered.get(ARCHIVED, json={"results": []})
    connector = make_connector()
    pull(connector, iso(NOW))
    assert connector.api_usage()["search contacts"] == 3


def test_html_error_page_after_retries_is_one_clear_error(mocked: responses.RequestsMock) -> None:
    page = "<!DOCTYPE html><html><title>502 Bad Gateway</title></html>"
    mocked.post(SEARCH, status=502, body=page, content_type="text/html")
    with pytest.raises(RetriableAPIError) as caught:
        pull(make_connector(max_retries=1), iso(NOW))
    assert "an HTML page (not JSON)" in str(caught.value)
    assert "<html" not in str(caught.value)


@pytest.mark.parametrize(
    ("body", "content_type", "expected"),
    [
        ("<html><body>Login</body></html>", "text/html", "an HTML page"),
        ('{"results": [{"id": "1", "properties": {"email":', "application/json", "expected JSON"),
    ],
)
def test_html_or_malformed_json_with_200_is_a_data_error(
    mocked: responses.RequestsMock, body: str, content_type: str, expected: str
) -> None:
    mocked.post(SEARCH, body=body, content_type=content_type)
    with pytest.raises(CrmDataError, match=expected):
        pull(make_connector(), iso(NOW))


def test_401_and_403_are_auth_errors_without_the_token(mocked: responses.RequestsMock) -> None:
    mocked.post(SEARCH, status=401, json={"status": "error", "category": "INVALID_AUTHENTICATION",
                                          "message": f"bad token {TOKEN}", "correlationId": "x"})
    with pytest.raises(AuthError) as caught:
        pull(make_connector(), iso(NOW))
    assert "HUBSPOT_TOKEN" in str(caught.value)
    assert TOKEN not in str(caught.value)
    mocked.replace(responses.POST, SEARCH, status=403, json={
        "status": "error", "category": "MISSING_SCOPES", "message": "missing scopes",
        "errors": [{"message": "One or more of the following scopes are required.",
                    "context": {"requiredGranularScopes": ["crm.objects.contacts.read"]}}]})
    with pytest.raises(AuthError, match=r"lacks the scope\(s\) crm.objects.contacts.read"):
        pull(make_connector(), iso(NOW))


def test_missing_token_env_is_an_auth_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HUBSPOT_TOKEN")
    with pytest.raises(AuthError, match=r"HUBSPOT_TOKEN \(named by \[crm\].token_env\)"):
        pull(make_connector(), iso(NOW))


def test_the_token_never_reaches_logs_or_errors(
    mocked: responses.RequestsMock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    mocked.post(SEARCH, status=500, body=f"upstream said Authorization: Bearer {TOKEN}")
    with pytest.raises(RetriableAPIError) as caught:
        pull(make_connector(max_retries=2), iso(NOW))
    assert TOKEN not in str(caught.value)
    assert TOKEN not in caplog.text
    assert mocked.calls[0].request.headers["Authorization"] == f"Bearer {TOKEN}"


# --------------------------------------------------------------------------- OAuth


@pytest.fixture
def oauth_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUBSPOT_CLIENT_ID", "client-id-123")
    monkeypatch.setenv("HUBSPOT_CLIENT_SECRET", "client-secret-456")
    monkeypatch.setenv("HUBSPOT_REFRESH_TOKEN", "refresh-token-789")


def token_reply(n: int) -> dict[str, Any]:
    return {"access_token": f"oauth-access-token-{n:03d}", "refresh_token": "refresh-token-789",
            "expires_in": 1800, "token_type": "bearer"}


def test_oauth_refreshes_before_expiry(mocked: responses.RequestsMock, oauth_env: None) -> None:
    clock = WallClock()
    token_calls = mocked.post(f"{BASE}/oauth/v1/token", json=token_reply(1), match=[
        matchers.urlencoded_params_matcher({
            "grant_type": "refresh_token", "client_id": "client-id-123",
            "client_secret": "client-secret-456", "refresh_token": "refresh-token-789"})])
    probe = mocked.get(f"{BASE}/crm/v3/objects/contacts", json={"results": []})
    connector = make_connector(now=clock, auth="oauth")
    connector.api.probe()
    connector.api.probe()
    assert token_calls.call_count == 1
    clock.advance(minutes=26)  # within 5 minutes of the 30-minute expiry
    connector.api.probe()
    assert token_calls.call_count == 2
    assert probe.call_count == 3
    assert probe.calls[0].request.headers["Authorization"] == "Bearer oauth-access-token-001"


def test_oauth_refreshes_once_on_expired_authentication(
    ordered: responses.RequestsMock, oauth_env: None
) -> None:
    expired = {"status": "error", "category": "EXPIRED_AUTHENTICATION",
               "message": "The OAuth token used to make this call expired 3 second(s) ago."}
    ordered.post(f"{BASE}/oauth/v1/token", json=token_reply(1))
    ordered.get(f"{BASE}/crm/v3/objects/contacts", status=401, json=expired)
    ordered.post(f"{BASE}/oauth/v1/token", json=token_reply(2))
    ordered.get(f"{BASE}/crm/v3/objects/contacts", json={"results": []})
    ordered.get(f"{BASE}/crm/v3/objects/contacts", status=401, json=expired)
    ordered.post(f"{BASE}/oauth/v1/token", json=token_reply(3))
    ordered.get(f"{BASE}/crm/v3/objects/contacts", status=401, json=expired)
    connector = make_connector(auth="oauth")
    connector.api.probe()  # refreshed once, then fine
    with pytest.raises(AuthError) as caught:  # refreshed once more, still expired: give up
        connector.api.probe()
    assert "oauth-access-token" not in str(caught.value)
    assert "HUBSPOT_REFRESH_TOKEN" in str(caught.value)


def test_oauth_refusal_is_an_auth_error(mocked: responses.RequestsMock, oauth_env: None) -> None:
    mocked.post(f"{BASE}/oauth/v1/token", status=400,
                json={"status": "BAD_REFRESH_TOKEN", "message": "missing or unknown refresh token"})
    with pytest.raises(AuthError, match="BAD_REFRESH_TOKEN"):
        make_connector(auth="oauth").api.probe()


# --------------------------------------------------------------------------- lists


def test_ensure_target_creates_a_manual_contact_list(mocked: responses.RequestsMock) -> None:
    mocked.post(LIST_URL, json={"list": {"listId": "77", "name": "segsync: Berlin"}}, match=[
        matchers.json_params_matcher({"name": "segsync: Berlin", "objectTypeId": "0-1",
                                      "processingType": "MANUAL"})])
    ref = make_connector().ensure_target(TargetSpec("berlin", "segsync: Berlin"), None, False)
    assert ref == TargetRef("77", "segsync: Berlin")


@pytest.mark.parametrize("status", [409, 400])
def test_a_name_clash_is_a_target_conflict_never_an_adoption(
    mocked: responses.RequestsMock, status: int
) -> None:
    mocked.post(LIST_URL, status=status, json={"status": "error", "category": "CONFLICT",
                                               "message": "A list with that name exists"})
    if status == 400:
        mocked.get(f"{LIST_URL}/object-type-id/0-1/name/segsync%3A%20Berlin",
                   json={"list": {"listId": "5", "name": "segsync: Berlin"}})
    with pytest.raises(TargetConflict, match="did not create it"):
        make_connector().ensure_target(TargetSpec("berlin", "segsync: Berlin"), None, False)


def test_adopt_takes_the_list_with_exactly_that_name(mocked: responses.RequestsMock) -> None:
    mocked.get(f"{LIST_URL}/object-type-id/0-1/name/segsync%3A%20Berlin", json={"list": {
        "listId": "88", "name": "segsync: Berlin", "processingType": "MANUAL",
        "objectTypeId": "0-1"}})
    ref = make_connector().ensure_target(TargetSpec("berlin", "segsync: Berlin"), None, True)
    assert ref == TargetRef("88", "segsync: Berlin")


def test_adopt_refuses_a_list_that_only_matches_case_insensitively(
    mocked: responses.RequestsMock,
) -> None:
    mocked.get(f"{LIST_URL}/object-type-id/0-1/name/segsync%3A%20Berlin", json={"list": {
        "listId": "88", "name": "SEGSYNC: BERLIN", "processingType": "MANUAL",
        "objectTypeId": "0-1"}})
    with pytest.raises(TargetConflict):
        make_connector().ensure_target(TargetSpec("berlin", "segsync: Berlin"), None, True)


def test_rename_and_rename_clash(mocked: responses.RequestsMock) -> None:
    rename = mocked.put(f"{LIST_URL}/77/update-list-name",
                        json={"updatedList": {"listId": "77", "name": "segsync: Rome"}},
                        match=[matchers.query_param_matcher({"listName": "segsync: Rome"})])
    connector = make_connector()
    ref = connector.ensure_target(TargetSpec("x", "segsync: Rome"),
                                  TargetRef("77", "segsync: Berlin"), False)
    assert ref == TargetRef("77", "segsync: Rome")
    assert rename.call_count == 1
    mocked.put(f"{LIST_URL}/78/update-list-name", status=409,
               json={"status": "error", "message": "exists"})
    with pytest.raises(TargetConflict):
        connector.ensure_target(TargetSpec("y", "segsync: Rome"), TargetRef("78", "old"), False)


def test_apply_uses_add_and_remove_missing_ids_are_gone_unlisted_ids_done(
    mocked: responses.RequestsMock,
) -> None:
    mocked.put(f"{LIST_URL}/77/memberships/add-and-remove", json={
        "recordsIdsAdded": ["1"], "recordIdsRemoved": ["3"], "recordIdsMissing": ["2", "4"]},
        match=[matchers.json_params_matcher({"recordIdsToAdd": ["1", "2", "5", "6"],
                                             "recordIdsToRemove": ["3", "4", "7"]})])
    result = make_connector().apply(TargetRef("77", "l"),
                                    Batch(("1", "2", "5", "6"), ("3", "4", "7")))
    # recordIdsMissing: no such contact, whether it was to be added or removed (these
    # used to be a MISSING_RECORD failure for adds and a silent success for removes).
    assert result.gone == frozenset({"2", "4"})
    # "5"/"6" already members, "7" not in the list: not echoed back, and the answer
    # carries no error, so HubSpot's silent ignore proves them done.
    assert result.failed == {}
    assert result.unknown == {}
    assert result.api_calls == 1


def test_apply_records_per_record_failures(mocked: responses.RequestsMock) -> None:
    mocked.put(f"{LIST_URL}/77/memberships/add-and-remove", status=207, json={
        "recordsIdsAdded": ["1"], "recordIdsRemoved": [], "recordIdsMissing": [],
        "errors": [{"status": "error", "category": "VALIDATION_ERROR", "message": "locked",
                    "context": {"ids": ["2"]}}]})
    result = make_connector().apply(TargetRef("77", "l"), Batch(("1", "2")))
    assert result.failed == {"2": "VALIDATION_ERROR: locked"}
    assert result.unknown == {}  # the error names "2"; "1" is in recordsIdsAdded
    assert result.gone == frozenset()


def test_apply_halves_a_chunk_hubspot_finds_too_big(ordered: responses.RequestsMock) -> None:
    url = f"{LIST_URL}/77/memberships/add-and-remove"
    ordered.put(url, status=400, json={"status": "error", "category": "VALIDATION_ERROR",
                                       "message": "Too many record ids in one call: 4"})
    ordered.put(url, json={"recordsIdsAdded": [], "recordIdsRemoved": ["1", "2"],
                           "recordIdsMissing": []},
                match=[matchers.json_params_matcher(
                    {"recordIdsToAdd": [], "recordIdsToRemove": ["1", "2"]})])
    ordered.put(url, json={"recordsIdsAdded": ["3"], "recordIdsRemoved": [],
                           "recordIdsMissing": ["4"]},
                match=[matchers.json_params_matcher(
                    {"recordIdsToAdd": ["3", "4"], "recordIdsToRemove": []})])
    connector = make_connector(membership_batch_size=4)
    result = connector.apply(TargetRef("77", "l"), Batch(("3", "4"), ("1", "2")))
    assert result.failed == {}
    assert result.unknown == {}  # the refused call proved nothing, the halves did
    assert result.gone == frozenset({"4"})
    assert result.api_calls == 3
    assert connector.list_writer.chunk_size == 2


def test_apply_to_a_deleted_list_says_so(mocked: responses.RequestsMock) -> None:
    mocked.put(f"{LIST_URL}/77/memberships/add-and-remove", status=404,
               json={"status": "error", "message": "List 77 does not exist."})
    with pytest.raises(ConnectorError, match="no longer exists"):
        make_connector().apply(TargetRef("77", "segsync: X"), Batch(("1",)))


def test_members_pages_250_at_a_time(mocked: responses.RequestsMock) -> None:
    url = f"{LIST_URL}/77/memberships"
    mocked.get(url, json={"results": [{"recordId": str(i)} for i in range(250)],
                          "paging": {"next": {"after": "abc"}}},
               match=[matchers.query_param_matcher({"limit": "250"})])
    mocked.get(url, json={"results": [{"recordId": "999"}]},
               match=[matchers.query_param_matcher({"limit": "250", "after": "abc"})])
    members = list(make_connector().members(TargetRef("77", "l")))
    assert len(members) == 251
    assert members[-1] == "999"


def test_a_repeated_cursor_stops_instead_of_looping(mocked: responses.RequestsMock) -> None:
    mocked.get(f"{LIST_URL}/77/memberships",
               json={"results": [{"recordId": "1"}], "paging": {"next": {"after": "same"}}})
    with pytest.raises(CrmDataError, match="same paging cursor twice"):
        list(make_connector().members(TargetRef("77", "l")))


# --------------------------------------------------------------------------- the checkbox property


PROP_URL = f"{BASE}/crm/v3/properties/contacts/segsync_segments"


def test_ensure_field_creates_group_and_property(mocked: responses.RequestsMock) -> None:
    mocked.get(PROP_URL, status=404, json={"status": "error", "message": "not found"})
    mocked.get(f"{BASE}/crm/v3/properties/contacts/groups/segsync", status=404, json={})
    mocked.post(f"{BASE}/crm/v3/properties/contacts/groups", status=201, json={}, match=[
        matchers.json_params_matcher({"name": "segsync", "label": "Segsync", "displayOrder": -1})])
    create = mocked.post(f"{BASE}/crm/v3/properties/contacts", status=201, json={})
    make_connector().ensure_field(["Champions", "At risk"])
    body = json.loads(create.calls[0].request.body)
    assert body["type"] == "enumeration"
    assert body["fieldType"] == "checkbox"
    assert body["groupName"] == "segsync"
    assert [(o["label"], o["value"], o["hidden"]) for o in body["options"]] == [
        ("Champions", "Champions", False), ("At risk", "At risk", False)]


def owned_property(*names: str) -> dict[str, Any]:
    return {"name": "segsync_segments", "groupName": "segsync", "type": "enumeration",
            "fieldType": "checkbox",
            "options": [{"label": n, "value": n, "hidden": False, "displayOrder": i}
                        for i, n in enumerate(names)]}


def test_ensure_field_sends_the_full_option_set_only_when_it_changed(
    mocked: responses.RequestsMock,
) -> None:
    mocked.get(PROP_URL, json=owned_property("A", "B"))
    connector = make_connector()
    connector.ensure_field(["A", "B"])  # already equal: no write
    patch = mocked.patch(PROP_URL, json={})
    connector.ensure_field(["A", "B", "C"])
    sent = json.loads(patch.calls[0].request.body)["options"]
    assert [o["value"] for o in sent] == ["A", "B", "C"]


def test_ensure_field_refuses_a_foreign_property(mocked: responses.RequestsMock) -> None:
    mocked.get(PROP_URL, json={"name": "segsync_segments", "groupName": "contactinformation",
                               "type": "string", "fieldType": "text"})
    with pytest.raises(TargetConflict, match="not created by segsync"):
        make_connector().ensure_field(["A"])


def test_write_field_batches_100_and_trusts_only_results(mocked: responses.RequestsMock) -> None:
    url = f"{BASE}/crm/v3/objects/contacts/batch/update"
    mocked.post(url, json={"status": "COMPLETE", "results": [
        {"id": str(i), "properties": {}} for i in range(1, 100)]})  # "100" is not listed
    mocked.post(url, status=207, json={"status": "COMPLETE", "numErrors": 1, "results": [
        {"id": str(i), "properties": {}} for i in range(101, 150)],
        "errors": [{"status": "error", "category": "OBJECT_NOT_FOUND",
                    "message": "Could not find", "context": {"ids": ["150"]}}]})
    updates = {str(i): ("A", "B") if i % 2 else () for i in range(1, 151)}
    result = make_connector().write_field(updates)
    # OBJECT_NOT_FOUND used to be a failure: the record does not exist, so it is gone.
    assert result.gone == frozenset({"150"})
    assert result.failed == {}
    # A 200 proves only the ids in results[]: "100" may or may not have been written.
    assert list(result.unknown) == ["100"]
    assert "results[]" in result.unknown["100"]
    assert result.api_calls == 2
    first = json.loads(mocked.calls[0].request.body)["inputs"]
    assert len(first) == 100
    assert first[0] == {"id": "1", "properties": {"segsync_segments": "A;B"}}
    assert first[1] == {"id": "2", "properties": {"segsync_segments": ""}}


# --------------------------------------------------------------------------- check & usage


def test_check_names_the_missing_scope(mocked: responses.RequestsMock) -> None:
    mocked.get(f"{BASE}/crm/v3/objects/contacts", json={"results": []})
    mocked.post(f"{BASE}/oauth/v2/private-apps/get/access-token-info",
                json={"scopes": ["crm.objects.contacts.read", "crm.objects.companies.read",
                                 "crm.objects.deals.read", "crm.lists.read"]},
                match=[matchers.json_params_matcher({"tokenKey": TOKEN})])
    with pytest.raises(AuthError) as caught:
        make_connector().check()
    assert "crm.lists.write" in str(caught.value)
    assert TOKEN not in str(caught.value)


def test_check_passes_and_reports(mocked: responses.RequestsMock) -> None:
    mocked.get(f"{BASE}/crm/v3/objects/contacts", json={"results": []})
    mocked.post(f"{BASE}/oauth/v2/private-apps/get/access-token-info", json={"scopes": [
        "crm.objects.contacts.read", "crm.objects.companies.read", "crm.objects.deals.read",
        "crm.lists.read", "crm.lists.write", "sales-email-read"]})
    lines = make_connector(tier="professional", requests_per_10s=190).check()
    assert any("scopes segsync needs" in line for line in lines)
    assert any("190 requests / 10 s" in line for line in lines)


def test_api_usage_counts_by_endpoint(mocked: responses.RequestsMock) -> None:
    mocked.post(SEARCH, json={"total": 0, "results": []})
    archived_empty(mocked)
    mocked.get(f"{LIST_URL}/5/memberships", json={"results": []})
    connector = make_connector()
    pull(connector, iso(NOW))
    list(connector.members(TargetRef("5", "x")))
    assert connector.api_usage() == {"list contacts": 1, "list memberships read": 1,
                                     "search contacts": 1}


def test_an_exhausted_budget_header_holds_the_next_request_back(
    mocked: responses.RequestsMock,
) -> None:
    time = FakeTime()
    mocked.get(f"{LIST_URL}/5/memberships", json={"results": []}, headers={
        "X-HubSpot-RateLimit-Remaining": "0",
        "X-HubSpot-RateLimit-Interval-Milliseconds": "10000"})
    connector = make_connector(time)
    list(connector.members(TargetRef("5", "x")))
    assert time.slept == []
    list(connector.members(TargetRef("5", "x")))
    assert time.slept == [10.0]  # another app spent the budget: wait a window, no 429


def test_oauth_check_uses_the_scopes_of_the_token_answer_or_introspection(
    mocked: responses.RequestsMock, oauth_env: None
) -> None:
    scopes = ["crm.objects.contacts.read", "crm.objects.companies.read", "crm.objects.deals.read",
              "crm.lists.read", "crm.lists.write"]
    mocked.post(f"{BASE}/oauth/v1/token", json={**token_reply(1), "scopes": scopes})
    mocked.get(f"{BASE}/crm/v3/objects/contacts", json={"results": []})
    assert any("scopes segsync needs" in line for line in make_connector(auth="oauth").check())
    mocked.replace(responses.POST, f"{BASE}/oauth/v1/token", json=token_reply(2))
    mocked.get(f"{BASE}/oauth/v1/access-tokens/oauth-access-token-002",
               json={"scopes": scopes[:2]})
    with pytest.raises(AuthError, match=r"crm\.objects\.deals\.read"):
        make_connector(auth="oauth").check()
