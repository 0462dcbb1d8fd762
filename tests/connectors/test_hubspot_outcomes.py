"""HubSpot writes report only what HubSpot's answers prove (segsync issue "exact CRM state").

Two kinds of evidence: recorded-style payloads through ``responses`` (every answer shape,
including the odd ones HubSpot is known to send: a 207 whose error names no record, the
``recordsIdsAdded`` typo, an HTML page with 200) and the emulator, whose faults lose an
answer after the request was committed -- so each test can check the connector's claim
against the portal's real state.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import responses
from responses.registries import OrderedRegistry

from connectors.base import Batch, MembershipReader, PullRequest, TargetRef
from connectors.errors import AuthError, ConnectorError, CrmDataError, QuotaExhausted
from connectors.http import RetriesExhausted
from connectors.hubspot import HubSpotConnector
from tests.connectors.hubspot_helpers import (
    BASE,
    NOW,
    TOKEN,
    FakeTime,
    SearchServer,
    contact,
    make_connector,
    no_associations,
)
from tests.emulators.hubspot import Clock, Fault, HubSpotEmulator, RateLimitConfig

LIST_URL = f"{BASE}/crm/v3/lists"
CHANGE = f"{LIST_URL}/77/memberships/add-and-remove"
UPDATE = f"{BASE}/crm/v3/objects/contacts/batch/update"
READ = f"{LIST_URL}/records/memberships/batch/read"
SEARCH = f"{BASE}/crm/v3/objects/contacts/search"
ASSOC = f"{BASE}/crm/v4/associations/contacts/companies/batch/read"
LIST = TargetRef("77", "segsync: L")
T0 = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)


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


def unattributed(*ids: str, category: str = "VALIDATION_ERROR") -> dict[str, Any]:
    """A StandardError as HubSpot sends it in 207 answers (``context.ids`` as given)."""
    return {"status": "error", "category": category, "message": "Some records failed",
            "context": {"ids": list(ids)}, "errors": [], "links": {}}


# --------------------------------------------------------------------------- list memberships


@pytest.mark.parametrize("added_key", ["recordsIdsAdded", "recordIdsAdded"])
def test_ids_in_no_array_are_done_when_the_answer_carries_no_error(
    mocked: responses.RequestsMock, added_key: str
) -> None:
    mocked.put(CHANGE, json={added_key: ["1"], "recordIdsRemoved": [], "recordIdsMissing": []})
    result = make_connector().apply(LIST, Batch(("1", "2"), ("3",)))
    # "2" already a member, "3" already out: HubSpot ignores both silently.
    assert (result.failed, result.unknown, result.gone) == ({}, {}, frozenset())
    assert result.api_calls == 1


def test_an_unattributed_error_makes_unlisted_ids_unknown(mocked: responses.RequestsMock) -> None:
    mocked.put(CHANGE, status=207, json={
        "recordsIdsAdded": ["1"], "recordIdsRemoved": ["5"], "recordIdsMissing": ["9"],
        "numErrors": 2,
        "errors": [unattributed(""), unattributed("4", category="VALIDATION_ERROR")]})
    result = make_connector().apply(LIST, Batch(("1", "2", "4", "9"), ("3", "5")))
    assert result.gone == frozenset({"9"})
    assert result.failed == {"4": "VALIDATION_ERROR: Some records failed"}
    # "2" and "3" are in no array: already in/out, or what the "" error is about.
    assert set(result.unknown) == {"2", "3"}
    assert "error that names no record" in result.unknown["2"]
    assert "VALIDATION_ERROR" in result.unknown["2"]


@pytest.mark.parametrize(
    ("status", "extra"),
    [(207, {}), (200, {"errors": [unattributed()]}), (207, {"errors": [unattributed("8")]})],
    ids=["207 without errors", "200 with an errors entry", "207 naming another record"],
)
def test_any_error_entry_or_207_withholds_the_silent_ignore(
    mocked: responses.RequestsMock, status: int, extra: dict[str, Any]
) -> None:
    mocked.put(CHANGE, status=status, json={
        "recordsIdsAdded": ["1"], "recordIdsRemoved": [], "recordIdsMissing": [], **extra})
    result = make_connector().apply(LIST, Batch(("1", "2")))
    assert list(result.unknown) == ["2"]
    assert f"HubSpot answered {status}" in result.unknown["2"]
    assert result.failed == {}


def test_missing_ids_are_gone_for_adds_and_removes(mocked: responses.RequestsMock) -> None:
    mocked.put(CHANGE, json={"recordsIdsAdded": [], "recordIdsRemoved": [],
                             "recordIdsMissing": ["1", "2"]})
    result = make_connector().apply(LIST, Batch(("1",), ("2",)))
    assert result.gone == frozenset({"1", "2"})
    assert result.failed == {}
    assert result.unknown == {}


def test_not_found_errors_are_gone_and_contradictions_unknown(
    mocked: responses.RequestsMock,
) -> None:
    mocked.put(CHANGE, status=207, json={
        "recordsIdsAdded": ["1", "3"], "recordIdsRemoved": ["2"], "recordIdsMissing": ["3"],
        "errors": [unattributed("4", category="OBJECT_NOT_FOUND")]})
    result = make_connector().apply(LIST, Batch(("1", "2", "3", "4"), ()))
    assert result.gone == frozenset({"4"})
    # "2" was to be added yet is reported removed; "3" both added and missing.
    assert set(result.unknown) == {"2", "3"}
    assert "contradicts itself" in result.unknown["3"]
    assert "reported changed the other way" in result.unknown["2"]


@pytest.mark.parametrize(
    ("body", "content_type", "named"),
    [
        ('{"recordsIdsAdded": ["1"], "recordIdsRem', "application/json", "expected JSON"),
        ("<html><body>Service OK</body></html>", "text/html", "an HTML page"),
        ('["1", "2"]', "application/json", "not an object (list)"),
        ("", "application/json", "an empty body"),
        ('{"recordsIdsAdded": "1", "recordIdsRemoved": [], "recordIdsMissing": []}',
         "application/json", "non-list recordsIdsAdded"),
        ('{"status": "COMPLETE"}', "application/json", "carries none of"),
    ],
    ids=["truncated", "html", "array", "empty", "non-list", "no arrays"],
)
def test_an_unreadable_membership_answer_leaves_every_id_unknown(
    mocked: responses.RequestsMock, body: str, content_type: str, named: str
) -> None:
    mocked.put(CHANGE, body=body, content_type=content_type)
    result = make_connector().apply(LIST, Batch(("1", "2"), ("3",)))  # does not raise
    assert set(result.unknown) == {"1", "2", "3"}
    assert named in result.unknown["1"]
    assert result.failed == {}
    assert result.api_calls == 1


def test_refusals_still_raise_because_nothing_was_done(ordered: responses.RequestsMock) -> None:
    connector = make_connector(max_retries=1)
    ordered.put(CHANGE, status=403, json={"status": "error", "category": "MISSING_SCOPES",
                                          "message": "missing", "errors": []})
    with pytest.raises(AuthError):
        connector.apply(LIST, Batch(("1",)))
    ordered.put(CHANGE, status=400, json={"status": "error", "category": "VALIDATION_ERROR",
                                          "message": "List 77 is DYNAMIC"})
    with pytest.raises(ConnectorError, match="DYNAMIC"):
        connector.apply(LIST, Batch(("1",)))
    ordered.put(CHANGE, status=429, json={"status": "error", "policyName": "DAILY",
                                          "message": "daily"})
    with pytest.raises(QuotaExhausted):
        connector.apply(LIST, Batch(("1",)))
    ordered.put(CHANGE, status=502, json={"message": "Bad Gateway"})
    ordered.put(CHANGE, body=requests.ConnectionError("reset by peer"))
    with pytest.raises(RetriesExhausted):  # no answer at all: the engine keeps it unknown
        connector.apply(LIST, Batch(("1",)))


def test_a_timeout_then_a_clean_retry_proves_the_write(ordered: responses.RequestsMock) -> None:
    """The first attempt was committed but its answer came too late; the retry meets the
    members already in and already out: not echoed back, no error -- done."""
    ordered.put(CHANGE, body=requests.ReadTimeout("read timed out"))
    ordered.put(CHANGE, json={"recordsIdsAdded": [], "recordIdsRemoved": [],
                              "recordIdsMissing": []})
    result = make_connector().apply(LIST, Batch(("1",), ("2",)))
    assert (result.failed, result.unknown, result.gone) == ({}, {}, frozenset())
    assert result.api_calls == 2


# --------------------------------------------------------------------------- the emulator: lost answers


@pytest.fixture
def hs() -> Iterator[HubSpotEmulator]:
    with HubSpotEmulator(token=TOKEN, clock=Clock(T0),
                         rate_limits=RateLimitConfig(enabled=False)) as emulator:
        yield emulator
        assert emulator.internal_errors == []


def on(hs: HubSpotEmulator, **overrides: Any) -> HubSpotConnector:
    return make_connector(FakeTime(), lambda: hs.clock.now(),  # type: ignore[arg-type]
                          base_url=hs.base_url, write_mode="both", **overrides)


@pytest.mark.parametrize(
    "spec",
    [
        {"kind": "status", "status": 502, "reach": True},
        {"kind": "status", "status": 504, "reach": True},
        {"kind": "disconnect"},
        {"kind": "disconnect", "abort": True},
    ],
    ids=["502 after commit", "504 after commit", "cut mid-body", "connection reset"],
)
def test_a_lost_answer_retried_is_proven_by_the_retry(
    hs: HubSpotEmulator, spec: dict[str, Any]
) -> None:
    a, b, c = (hs.add_contact(email=f"{x}@example.com") for x in "abc")
    list_id = hs.add_list("segsync: L", members=[c], foreign=False)
    fault = hs.inject(Fault(**spec, method="PUT"))
    connector = on(hs)
    result = connector.apply(TargetRef(list_id, "segsync: L"), Batch((a, b), (c,)))
    assert fault.reached.is_set()  # the first attempt was committed
    assert (result.failed, result.unknown, result.gone) == ({}, {}, frozenset())
    assert result.api_calls == 2
    assert hs.list_members(list_id) == [a, b]
    assert [r.processed for r in hs.requests if r.method == "PUT"] == [True, True]


def test_a_truncated_answer_after_commit_is_unknown_not_an_error(hs: HubSpotEmulator) -> None:
    a, b = hs.add_contact(email="a@example.com"), hs.add_contact(email="b@example.com")
    list_id = hs.add_list("segsync: L", members=[b], foreign=False)
    hs.inject(Fault("malformed_json", reach=True, method="PUT"))
    result = on(hs).apply(TargetRef(list_id, "segsync: L"), Batch((a,), (b,)))
    assert set(result.unknown) == {a, b}
    assert "expected JSON" in result.unknown[a]
    assert hs.list_members(list_id) == [a]  # HubSpot did it; segsync does not claim it


def test_no_answer_after_every_retry_raises_though_the_portal_changed(
    hs: HubSpotEmulator,
) -> None:
    a = hs.add_contact(email="a@example.com")
    list_id = hs.add_list("segsync: L", foreign=False)
    hs.inject(Fault("status", status=503, reach=True, method="PUT", times=None))
    with pytest.raises(RetriesExhausted):
        on(hs, max_retries=2).apply(TargetRef(list_id, "segsync: L"), Batch((a,)))
    assert hs.list_members(list_id) == [a]


def test_an_unattributed_membership_207_leaves_only_the_hidden_ids_unknown(
    hs: HubSpotEmulator,
) -> None:
    a, b, c = (hs.add_contact(email=f"{x}@example.com") for x in "abc")
    list_id = hs.add_list("segsync: L", members=[c], foreign=False)
    hs.inject(Fault("unattributed", method="PUT", ids=(b,), applied=False))
    result = on(hs).apply(TargetRef(list_id, "segsync: L"), Batch((a, b), (c,)))
    assert list(result.unknown) == [b]
    assert "names no record" in result.unknown[b]
    assert hs.list_members(list_id) == [a]  # b was in fact not added: unknown was right


# --------------------------------------------------------------------------- the checkbox property


def test_batch_update_207_with_an_empty_id_is_unknown(mocked: responses.RequestsMock) -> None:
    mocked.post(UPDATE, status=207, json={
        "status": "COMPLETE", "results": [{"id": "1", "properties": {}}], "numErrors": 1,
        "errors": [unattributed("")]})
    result = make_connector().write_field({"1": ("A",), "2": ("A",), "3": ()})
    assert set(result.unknown) == {"2", "3"}
    assert "error that names no record" in result.unknown["2"]
    assert result.failed == {}
    assert result.gone == frozenset()


def test_batch_update_errors_named_ids_fail_or_are_gone(mocked: responses.RequestsMock) -> None:
    mocked.post(UPDATE, status=207, json={
        "status": "COMPLETE", "numErrors": 2,
        "results": [{"id": "1", "properties": {}}, {"id": "4", "properties": {}}],
        "errors": [unattributed("2", category="VALIDATION_ERROR"),
                   unattributed("3", "4", category="OBJECT_NOT_FOUND")]})
    result = make_connector().write_field(dict.fromkeys("1234", ("A",)))
    assert result.failed == {"2": "VALIDATION_ERROR: Some records failed"}
    assert result.gone == frozenset({"3"})
    assert list(result.unknown) == ["4"]  # in results[] and named not found: contradiction


def test_batch_update_unreadable_chunk_is_unknown_and_400_fails_its_chunk(
    ordered: responses.RequestsMock,
) -> None:
    ordered.post(UPDATE, body="<html>OK</html>", content_type="text/html")
    ordered.post(UPDATE, status=400, json={"status": "error", "category": "VALIDATION_ERROR",
                                           "message": "A was not one of the allowed options"})
    ordered.post(UPDATE, json={"status": "COMPLETE", "results": [
        {"id": str(i), "properties": {}} for i in range(201, 251)]})
    updates = {str(i): ("A",) for i in range(1, 251)}
    result = make_connector().write_field(updates)
    assert set(result.unknown) == {str(i) for i in range(1, 101)}
    assert "an HTML page" in result.unknown["1"]
    assert set(result.failed) == {str(i) for i in range(101, 201)}
    assert "allowed options" in result.failed["150"]
    assert result.api_calls == 3


def test_batch_update_on_the_emulator(hs: HubSpotEmulator) -> None:
    hs.define_property("segsync_segments", type="enumeration", field_type="checkbox",
                       group_name="segsync", options=[{"label": "A", "value": "A"}],
                       foreign=False)
    a, b, c = (hs.add_contact(email=f"{x}@example.com") for x in "abc")
    survivor, absorbed = hs.add_contact(email="s@example.com"), hs.add_contact(email="t@x.org")
    hs.merge_contacts(survivor, absorbed)
    hs.inject(Fault("unattributed", path_prefix="/crm/v3/objects/contacts/batch/update",
                    ids=(b,), context_ids=()))
    result = on(hs).write_field({a: ("A",), b: ("A",), "999999": ("A",), absorbed: ("A",)})
    assert result.gone == frozenset({"999999"})  # OBJECT_NOT_FOUND names it
    # b was written but left out of results[]; the absorbed id was written to the
    # survivor, whose id is what results[] lists -- neither is proven.
    assert set(result.unknown) == {b, absorbed}
    assert result.failed == {}
    assert hs.contact(b)["properties"]["segsync_segments"] == "A"  # type: ignore[index]
    assert hs.contact(survivor)["properties"]["segsync_segments"] == "A"  # type: ignore[index]
    assert "segsync_segments" not in hs.contact(c)["properties"]  # type: ignore[index]


# --------------------------------------------------------------------------- reading memberships


def read_answer(*records: tuple[str, list[Any]], errors: list[Any] | None = None,
                ) -> dict[str, Any]:
    body: dict[str, Any] = {
        "status": "COMPLETE", "startedAt": "2026-06-01T12:00:00.000Z",
        "completedAt": "2026-06-01T12:00:00.100Z",
        "results": [{"objectTypeId": "0-1", "recordId": rid, "recordListMemberships": [
            {"listId": lid, "listVersion": 3, "firstAddedTimestamp": "2026-05-01T00:00:00Z",
             "lastAddedTimestamp": "2026-05-02T00:00:00Z"} for lid in lists]}
            for rid, lists in records]}
    if errors is not None:
        body["errors"] = errors
        body["numErrors"] = len(errors)
    return body


def test_the_connector_is_a_membership_reader() -> None:
    connector = make_connector()
    assert isinstance(connector, MembershipReader)
    assert connector.capabilities().max_read_batch == 100


def test_read_memberships_200(mocked: responses.RequestsMock) -> None:
    call = mocked.post(READ, json=read_answer(("1", ["77", 5]), ("2", ["99"])))
    connector = make_connector()
    read = connector.read_memberships([LIST, TargetRef("78", "other")], ["1", "2", "1"])
    assert read.present == frozenset({("77", "1")})  # list 99 was not asked about
    assert read.known == frozenset({"1", "2"})  # so ("78", "1"), ("77", "2")... are absent
    assert read.gone == frozenset()
    assert read.api_calls == 1
    assert json.loads(call.calls[0].request.body) == {"inputs": [
        {"objectTypeId": "0-1", "recordId": "1"}, {"objectTypeId": "0-1", "recordId": "2"}]}
    assert connector.api_usage() == {"read record memberships": 1}


def test_read_memberships_207_not_found_is_gone_unlisted_stays_unknown(
    mocked: responses.RequestsMock,
) -> None:
    mocked.post(READ, status=207, json=read_answer(("1", ["77"]), ("3", ["77"]), errors=[
        unattributed("2", "3", category="OBJECT_NOT_FOUND"), unattributed("")]))
    read = make_connector().read_memberships([LIST], ["1", "2", "3", "4"])
    assert read.known == frozenset({"1"})
    assert read.present == frozenset({("77", "1")})
    assert read.gone == frozenset({"2"})  # "3" is listed and not found: neither
    assert "4" not in read.known | read.gone  # not in the answer at all: unknown


def test_read_memberships_pages_more_than_100_ids_into_several_calls(
    mocked: responses.RequestsMock,
) -> None:
    def answer(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        inputs = json.loads(request.body or b"{}")["inputs"]
        assert len(inputs) <= 100
        assert all(i["objectTypeId"] == "0-1" and isinstance(i["recordId"], str)
                   for i in inputs)
        ids = [i["recordId"] for i in inputs]
        return 200, {}, json.dumps(read_answer(*((i, ["77"] if int(i) % 2 else [])
                                                 for i in ids)))

    call = mocked.add_callback(responses.POST, READ, callback=answer)
    ids = [str(i) for i in range(1, 251)]
    read = make_connector().read_memberships([LIST], ids)
    assert [len(json.loads(c.request.body)["inputs"]) for c in call.calls] == [100, 100, 50]
    assert read.api_calls == 3
    assert read.known == frozenset(ids)
    assert read.present == frozenset(("77", i) for i in ids if int(i) % 2)


def test_read_memberships_unreadable_answer_leaves_its_records_unknown(
    ordered: responses.RequestsMock,
) -> None:
    ordered.post(READ, body='{"status": "COMPLETE", "results": [{"objectTypeId": "0-1", "rec',
                 content_type="application/json")
    ordered.post(READ, json=read_answer(*((str(i), ["77"]) for i in range(101, 121))))
    read = make_connector().read_memberships([LIST], [str(i) for i in range(1, 121)])
    assert read.known == frozenset(str(i) for i in range(101, 121))
    assert read.gone == frozenset()
    assert read.api_calls == 2


def test_read_memberships_refusals_raise(mocked: responses.RequestsMock) -> None:
    mocked.post(READ, status=403, json={"status": "error", "category": "MISSING_SCOPES",
                                        "message": "missing", "errors": [
                                            {"message": "need", "context": {
                                                "requiredGranularScopes": ["crm.lists.read"]}}]})
    with pytest.raises(AuthError, match=r"crm\.lists\.read"):
        make_connector().read_memberships([LIST], ["1"])


@pytest.mark.parametrize("mode", ["move", "drop"])
def test_read_memberships_settles_a_merge_on_the_emulator(mode: str) -> None:
    with HubSpotEmulator(token=TOKEN, clock=Clock(T0), merge_memberships=mode) as hs:
        keep, absorbed, other = (hs.add_contact(email=f"{x}@example.com") for x in "kao")
        both = hs.add_list("segsync: both", members=[keep, absorbed], foreign=False)
        only = hs.add_list("segsync: absorbed", members=[absorbed], foreign=False)
        hs.add_list("someone else's", members=[keep], foreign=True)
        hs.merge_contacts(keep, absorbed)
        connector = on(hs)
        read = connector.read_memberships(
            [TargetRef(both, "segsync: both"), TargetRef(only, "segsync: absorbed")],
            [keep, absorbed, other])
        assert read.known == frozenset({keep, other})
        assert read.gone == frozenset({absorbed})
        expected = {(both, keep), (only, keep)} if mode == "move" else {(both, keep)}
        assert read.present == frozenset(expected)
        assert connector.api_usage() == {"read record memberships": 1}
        assert hs.foreign_writes() == []
        assert hs.internal_errors == []


# --------------------------------------------------------------------------- search paging


def pull_ids(connector: HubSpotConnector) -> list[str]:
    pages = list(connector.pull(PullRequest("contacts", None)))
    return [i for page in pages for i in page.records["_crm_id"]]


def test_a_short_page_with_paging_next_does_not_end_the_pull(
    mocked: responses.RequestsMock,
) -> None:
    server = SearchServer([contact(i) for i in range(1, 451)], short_pages={0: 150, 1: 7})
    mocked.add_callback(responses.POST, SEARCH, callback=server)
    mocked.add_callback(responses.POST, ASSOC, callback=no_associations)
    ids = pull_ids(make_connector())
    assert ids == [str(i) for i in range(1, 451)]  # the old pull stopped after 150
    anchors = [b["filterGroups"][0]["filters"][-1]["value"] for b in server.bodies[1:]]
    assert anchors == ["150", "157", "357"]
    assert all(b["after"] == "0" for b in server.bodies)


def test_a_full_last_page_without_paging_next_ends_the_pull(
    mocked: responses.RequestsMock,
) -> None:
    server = SearchServer([contact(i) for i in range(1, 401)])
    mocked.add_callback(responses.POST, SEARCH, callback=server)
    mocked.add_callback(responses.POST, ASSOC, callback=no_associations)
    assert len(pull_ids(make_connector())) == 400
    assert len(server.bodies) == 2  # no empty call to find out there is nothing more


def page(ids: range | list[int], after: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {"total": 999, "results": [
        {"id": str(i), "properties": {"lastmodifieddate": "2026-06-01T00:00:00.000Z"}}
        for i in ids]}
    if after is not None:
        body["paging"] = {"next": {"after": after}}
    return body


def test_an_empty_page_with_paging_next_is_followed_on_the_same_anchor(
    ordered: responses.RequestsMock,
) -> None:
    first = ordered.post(SEARCH, json=page(range(1, 201), "200"))
    empty = ordered.post(SEARCH, json=page([], "200"))
    after = ordered.post(SEARCH, json=page(range(401, 451), "250"))
    last = ordered.post(SEARCH, json=page(range(451, 460), None))
    ordered.add_callback(responses.POST, ASSOC, callback=no_associations)
    ids = pull_ids(make_connector())
    assert ids == [str(i) for i in [*range(1, 201), *range(401, 460)]]
    sent = [json.loads(c.calls[0].request.body) for c in (first, empty, after, last)]
    anchor = [b["filterGroups"][0]["filters"][-1] if b["filterGroups"] else None for b in sent]
    assert [b["after"] for b in sent] == ["0", "0", "200", "0"]
    assert anchor[1] == anchor[2] == {"propertyName": "hs_object_id", "operator": "GT",
                                      "value": "200"}
    assert anchor[3]["value"] == "450"


def test_an_empty_page_repeating_the_request_stops_with_a_clear_error(
    mocked: responses.RequestsMock,
) -> None:
    mocked.post(SEARCH, json=page([], "0"))
    with pytest.raises(CrmDataError, match="repeats a request already made"):
        pull_ids(make_connector())
    assert len(mocked.calls) == 1


def test_short_pages_on_the_emulator_lose_nothing(hs: HubSpotEmulator) -> None:
    made = [hs.add_contact(email=f"c{i}@example.com") for i in range(450)]
    fault = hs.inject(Fault("short_page", keep=60, times=None,
                            path_prefix="/crm/v3/objects/contacts/search"))
    connector = on(hs)
    assert pull_ids(connector) == made
    assert connector.api_usage()["search contacts"] == 8  # ceil(450 / 60)
    assert fault.fired == 8


def test_an_empty_emulator_page_whose_cursor_repeats_is_refused(hs: HubSpotEmulator) -> None:
    for i in range(3):
        hs.add_contact(email=f"c{i}@example.com")
    hs.inject(Fault("short_page", keep=0, path_prefix="/crm/v3/objects/contacts/search"))
    with pytest.raises(CrmDataError, match="repeats a request"):
        pull_ids(on(hs))


def test_watermarks_still_track_the_last_stored_id(mocked: responses.RequestsMock) -> None:
    server = SearchServer([contact(i, NOW) for i in range(1, 301)], short_pages={0: 10})
    mocked.add_callback(responses.POST, SEARCH, callback=server)
    mocked.add_callback(responses.POST, ASSOC, callback=no_associations)
    pages = list(make_connector().pull(PullRequest("contacts", None)))
    assert sum(len(p.records) for p in pages) == 300
    assert pages[-1].present_ids == frozenset(str(i) for i in range(1, 301))


def test_a_per_record_refusal_fails_and_a_not_found_is_gone(hs: HubSpotEmulator) -> None:
    a, b, c = (hs.add_contact(email=f"{x}@example.com") for x in "abc")
    list_id = hs.add_list("segsync: L", foreign=False)
    ref = TargetRef(list_id, "segsync: L")
    hs.inject(Fault("partial", method="PUT", ids=(a,)))
    refused = on(hs).apply(ref, Batch((a, b)))
    assert list(refused.failed) == [a]
    assert "VALIDATION_ERROR" in refused.failed[a]
    assert refused.unknown == {}  # the error names a; b is in recordsIdsAdded
    hs.inject(Fault("partial", method="PUT", ids=(c,), category="OBJECT_NOT_FOUND"))
    missing = on(hs).apply(ref, Batch((c,)))
    assert missing.gone == frozenset({c})
    assert hs.list_members(list_id) == [b]
