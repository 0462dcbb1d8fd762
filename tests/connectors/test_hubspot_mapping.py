"""Pure HubSpot mapping and paging: literals in, literals out."""

from __future__ import annotations

import datetime as dt
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connectors.errors import CrmDataError
from connectors.hubspot import mapping as m
from connectors.hubspot.paging import AfterCursor, IdWindow, UnsortedPage

T = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)


@given(
    at=st.integers(0, 4_000_000_000_000),
    since=st.one_of(st.none(), st.integers(0, 4_000_000_000_000)),
    part=st.integers(0, 5),
    after=st.one_of(st.none(), st.integers(1, 10**12).map(str)),
)
def test_watermarks_round_trip(at: int, since: int | None, part: int, after: str | None) -> None:
    cursor = m.Cursor(at, since, part, after)
    decoded = m.decode_watermark(m.encode_watermark(cursor))
    if cursor.in_progress:
        assert decoded == cursor
    else:  # a finished pull keeps only its start time
        assert decoded == m.Cursor(at)


def test_a_finished_watermark_is_a_readable_timestamp() -> None:
    assert m.encode_watermark(m.Cursor(m.to_ms(T))) == "2026-06-01T12:00:00.000Z"


@pytest.mark.parametrize("text", ["yesterday", '{"at": 3}', "[1]"])
def test_foreign_watermarks_are_rejected(text: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - any ValueError subclass
        m.decode_watermark(text)


def test_search_body_shapes() -> None:
    body = m.search_body([m.gte("lastmodifieddate", 5), m.id_after("10")], ["email", "city"])
    assert body == {
        "filterGroups": [{"filters": [
            {"propertyName": "lastmodifieddate", "operator": "GTE", "value": "5"},
            {"propertyName": "hs_object_id", "operator": "GT", "value": "10"}]}],
        "sorts": ["hs_object_id"],
        "properties": ["city", "email"],
        "limit": 200,
        "after": "0",
    }
    assert m.search_body([], ["email"], sort_style="object")["sorts"] == [
        {"propertyName": "hs_object_id", "direction": "ASCENDING"}]
    assert m.search_body([], [])["filterGroups"] == []


def test_batch_failures_and_membership_outcome() -> None:
    body = {"errors": [
        {"category": "OBJECT_NOT_FOUND", "message": "gone", "context": {"ids": ["1", "2"]}},
        {"message": "weird"},
    ]}
    assert m.batch_failures(body) == {"1": "OBJECT_NOT_FOUND: gone", "2": "OBJECT_NOT_FOUND: gone"}
    assert m.batch_failures({}) == {}
    # "" ids name no record; nested detail contexts name records too.
    unattributed = {"errors": [
        {"category": "VALIDATION_ERROR", "message": "x", "context": {"ids": [""]}},
        {"category": "VALIDATION_ERROR", "message": "y", "context": {},
         "errors": [{"message": "bad", "context": {"ids": ["5"]}}]},
    ]}
    assert m.batch_failures(unattributed) == {"5": "VALIDATION_ERROR: y"}
    errors = m.batch_errors(unattributed)
    assert [e.ids for e in errors] == [(), ("5",)]
    assert not any(e.not_found for e in errors)
    assert m.batch_errors(body)[0].not_found
    assert m.membership_outcome(
        {"recordsIdsAdded": ["1"], "recordIdsRemoved": ["2"], "recordIdsMissing": ["3"]}
    ) == (["1"], ["2"], ["3"])
    assert m.membership_outcome({"recordIdsAdded": ["9"]})[0] == ["9"]


def test_primary_company_and_targets() -> None:
    targets = [
        {"toObjectId": "9", "associationTypes": [{"category": "HUBSPOT_DEFINED", "typeId": 279}]},
        {"toObjectId": "12", "associationTypes": [{"category": "USER_DEFINED", "typeId": 1}]},
        {"toObjectId": "3", "associationTypes": [{"category": "HUBSPOT_DEFINED", "typeId": 279}]},
    ]
    assert m.primary_company(targets) == "3"  # no primary flagged: lowest id
    targets.append({"toObjectId": "9", "associationTypes": [
        {"category": "HUBSPOT_DEFINED", "typeId": 1}]})
    assert m.primary_company(targets) == "9"
    assert m.target_ids(targets) == ["9", "12", "3"]
    assert m.primary_company([]) is None


def test_association_targets_with_paging_and_207_errors() -> None:
    body = {"results": [
        {"from": {"id": "1"}, "to": [{"toObjectId": "5"}], "paging": {"next": {"after": "c1"}}},
        {"from": {"id": "2"}, "to": [{"toObjectId": "6"}]},
    ], "errors": [{"context": {"fromObjectId": ["3"]}}]}
    targets, more = m.association_targets(body)
    assert {k: m.target_ids(v) for k, v in targets.items()} == {"1": ["5"], "2": ["6"]}
    assert more == {"1": "c1"}


def test_merged_ids_fold_losers_into_survivors() -> None:
    records = [{"id": "7", "properties": {"hs_merged_object_ids": "3;5;7"}},
               {"id": "8", "properties": {"hs_merged_object_ids": ""}}]
    assert m.merged_ids(records) == {"3": "7", "5": "7"}


def test_purchases_one_row_per_deal_and_contact() -> None:
    deals = [
        {"id": "1", "properties": {"amount": "120.5", "closedate": "2026-05-01T00:00:00Z",
                                   "hs_lastmodifieddate": "2026-05-02T00:00:00Z", "won": "y"}},
        {"id": "2", "properties": {"amount": "", "closedate": None,
                                   "hs_lastmodifieddate": "2026-05-03T00:00:00Z", "won": "y"}},
        {"id": "3", "properties": {"amount": "10", "closedate": "2026-05-01T00:00:00Z",
                                   "hs_lastmodifieddate": "2026-05-02T00:00:00Z", "won": "n"}},
        {"id": "4", "properties": {"amount": "10", "closedate": "2020-05-01T00:00:00Z",
                                   "hs_lastmodifieddate": "2026-05-02T00:00:00Z", "won": "y"}},
    ]
    frame, dropped = m.purchases_frame(
        deals, {"1": ["a", "b"], "2": ["c"], "3": ["a"], "4": ["a"]},
        lambda props: props.get("won") == "y", dt.datetime(2025, 1, 1))
    assert list(frame.columns) == m.EVENT_COLUMNS
    assert frame[["_crm_id", "_contact_id", "type"]].values.tolist() == [
        ["1", "a", "purchase"], ["1", "b", "purchase"], ["2", "c", "purchase"]]
    assert frame["amount"].iloc[0] == 120.5
    assert math.isnan(frame["amount"].iloc[2])
    assert frame["ts"].iloc[2] == dt.datetime(2026, 5, 3)  # no closedate: modified date
    assert dropped == ["3", "4"]


def test_activity_rows_are_prefixed_and_typed() -> None:
    records = [{"id": "5", "properties": {"hs_timestamp": "2026-05-01T10:00:00Z",
                                          "hs_lastmodifieddate": "2026-05-01T10:00:00Z"}},
               {"id": "6", "properties": {"hs_timestamp": "1777600000000",
                                          "hs_lastmodifieddate": "2026-05-01T10:00:00Z"}}]
    frame, dropped = m.activity_frame("calls", records, {"5": ["a"], "6": []},
                                      lambda props: "call", None)
    assert frame[["_crm_id", "_contact_id", "type"]].values.tolist() == [["calls:5", "a", "call"]]
    assert dropped == ["calls:6"]  # no contact: nothing to count


def test_contacts_frame_types() -> None:
    frame = m.contacts_frame(
        [{"id": "1", "properties": {"lastmodifieddate": "1777600000000", "lat": "95",
                                    "lon": "13.4", "email": "a@b.c", "optout": "TRUE"}}],
        {"email": "email"}, {"1": "9"}, latitude="lat", longitude="lon", opt_out=["optout"])
    row = frame.iloc[0]
    assert row["_opted_out"]
    assert math.isnan(row["_lat"])  # out of range: dropped, never guessed
    assert row["_lon"] == 13.4
    assert str(frame["_modified_at"].dtype) == "datetime64[ns]"
    empty = m.contacts_frame([], {"email": "email"}, {}, latitude="", longitude="", opt_out=[])
    assert list(empty.columns) == list(frame.columns)


def test_timestamps_reject_garbage_naming_records() -> None:
    with pytest.raises(CrmDataError, match=r"record\(s\) 7 \('31/02/2026'\)"):
        m.timestamps(["31/02/2026"], ["7"], "contact lastmodifieddate")


def test_option_values_never_contain_the_separator() -> None:
    assert m.option_value("A; B") == "A, B"
    body = m.batch_update_body("p", {"1": ("A; B", "C"), "2": ()})
    assert body["inputs"] == [{"id": "1", "properties": {"p": "A, B;C"}},
                              {"id": "2", "properties": {"p": ""}}]


def test_id_window_checks_order_and_follows_paging_next() -> None:
    window = IdWindow("contacts")
    assert window.advance([{"id": "1"}, {"id": "2"}], "2") is True
    assert window.last_id == "2"
    assert window.after == "0"  # re-anchored: HubSpot's cursor is not needed
    # A short page that still carries paging.next does not end the pull (it used to).
    assert window.advance([{"id": "3"}], "200") is True
    assert (window.last_id, window.after) == ("3", "0")
    # Only the absence of paging.next ends it, even on a full page.
    assert window.advance([{"id": "4"}, {"id": "5"}], None) is False
    with pytest.raises(UnsortedPage):
        IdWindow("contacts").advance([{"id": "5"}, {"id": "4"}], None)
    with pytest.raises(UnsortedPage):
        IdWindow("contacts", last_id="9").advance([{"id": "9"}], None)


def test_id_window_follows_empty_pages_on_the_same_anchor_and_stops_loops() -> None:
    window = IdWindow("contacts", last_id="7")
    assert window.advance([], "200") is True  # nothing to re-anchor on: follow the cursor
    assert (window.last_id, window.after) == ("7", "200")
    assert window.advance([{"id": "8"}], "201") is True
    assert (window.last_id, window.after) == ("8", "0")
    with pytest.raises(CrmDataError, match="repeats a request"):
        IdWindow("contacts").advance([], "0")  # the very request just made
    looping = IdWindow("contacts", last_id="3")
    looping.advance([], "400")
    with pytest.raises(CrmDataError, match="repeats a request"):
        looping.advance([], "400")
    with pytest.raises(CrmDataError, match="10,000"):
        IdWindow("contacts").advance([], "10000")
    assert IdWindow("contacts").advance([], "9800") is True
    assert IdWindow("contacts").advance([], None) is False


def test_after_cursor_detects_loops() -> None:
    pager = AfterCursor("things")
    assert pager.advance({"paging": {"next": {"after": "a"}}}) is True
    assert pager.after == "a"
    assert pager.advance({"results": []}) is False
    looping = AfterCursor("things")
    looping.advance({"paging": {"next": {"after": "x"}}})
    with pytest.raises(CrmDataError):
        looping.advance({"paging": {"next": {"after": "x"}}})
