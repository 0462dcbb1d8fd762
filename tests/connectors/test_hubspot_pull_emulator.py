"""Connector-level pulls of purchases and activities against the emulator."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pandas as pd
import pytest

from connectors.base import Page, PullRequest
from connectors.hubspot import HubSpotConnector
from connectors.hubspot import mapping as m
from connectors.hubspot.settings import DEFAULT_ACTIVITY_TYPES
from tests.connectors.hubspot_helpers import FakeTime, make_connector
from tests.emulators.hubspot import Clock, HubSpotEmulator

TOKEN = "pat-na1-pull0000-1111-2222-3333-444444444444"
T0 = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)
SINCE = dt.datetime(2026, 1, 1)  # events_since, naive UTC like the engine's


@pytest.fixture
def hs(monkeypatch: pytest.MonkeyPatch) -> Iterator[HubSpotEmulator]:
    monkeypatch.setenv("HUBSPOT_TOKEN", TOKEN)
    with HubSpotEmulator(token=TOKEN, clock=Clock(T0)) as emulator:
        yield emulator
        assert emulator.internal_errors == []


def connector(hs: HubSpotEmulator, **overrides: Any) -> HubSpotConnector:
    return make_connector(FakeTime(), lambda: hs.clock.now(),  # type: ignore[arg-type]
                          base_url=hs.base_url, **overrides)


def pull(conn: HubSpotConnector, stream: str, since: str | None = None) -> list[Page]:
    return list(conn.pull(PullRequest(stream, since, frozenset(), SINCE)))  # type: ignore[arg-type]


def rows(pages: list[Page]) -> list[tuple[str, str, str]]:
    frames = [p.records for p in pages if not p.records.empty]
    if not frames:
        return []
    frame = pd.concat(frames)
    return sorted(zip(frame["_crm_id"], frame["_contact_id"], frame["type"], strict=True))


def test_activity_kinds_and_email_directions(hs: HubSpotEmulator) -> None:
    person = hs.add_contact(email="a@example.com")
    made: dict[str, str] = {}
    for kind, props in [
        ("calls", {}), ("meetings", {}), ("notes", {}), ("tasks", {}),
        ("emails", {"hs_email_direction": "EMAIL", "hs_email_status": "SENT"}),
        ("emails", {"hs_email_direction": "INCOMING_EMAIL"}),
        ("emails", {"hs_email_direction": "EMAIL", "hs_email_status": "BOUNCED"}),
    ]:
        eid = hs.add_engagement(kind, hs_timestamp=T0 - dt.timedelta(days=1), **props)
        hs.associate(kind, eid, "contacts", person)
        made.setdefault(kind, eid)
    old = hs.add_engagement("calls", hs_timestamp=dt.datetime(2025, 1, 1, tzinfo=dt.UTC))
    hs.associate("calls", old, "contacts", person)
    kinds = {"calls": "call", "meetings": "meeting", "notes": "note", "tasks": "task",
             "emails": "email_sent", "incoming_emails": "email_click"}
    pages = pull(connector(hs, activity_types=kinds), "activities")
    types = sorted(t for _, _, t in rows(pages))
    assert types == ["call", "email_click", "email_sent", "meeting", "note", "task"]
    assert all(c == person for _, c, _ in rows(pages))
    assert f"calls:{old}" not in {i for i, _, _ in rows(pages)}  # outside the look-back
    assert pages[-1].present_ids == frozenset(i for i, _, _ in rows(pages))


def test_incoming_emails_are_activity_by_default(hs: HubSpotEmulator) -> None:
    """INCOMING_EMAIL -> email_received; EMAIL and FORWARDED_EMAIL -> email_sent."""
    person = hs.add_contact(email="a@example.com")
    made: dict[str, str] = {}
    for name, props in [
        ("incoming", {"hs_email_direction": "INCOMING_EMAIL"}),
        ("incoming, odd status", {"hs_email_direction": "INCOMING_EMAIL",
                                  "hs_email_status": "BOUNCED"}),
        ("sent", {"hs_email_direction": "EMAIL", "hs_email_status": "SENT"}),
        ("forwarded", {"hs_email_direction": "FORWARDED_EMAIL", "hs_email_status": "SENT"}),
        ("bounced", {"hs_email_direction": "EMAIL", "hs_email_status": "BOUNCED"}),
        ("forward failed", {"hs_email_direction": "FORWARDED_EMAIL", "hs_email_status": "FAILED"}),
    ]:
        made[name] = hs.add_engagement("emails", hs_timestamp=T0 - dt.timedelta(days=1), **props)
        hs.associate("emails", made[name], "contacts", person)
    # The default email mapping; other kinds off so the emulator's 5 searches/s hold.
    emails_only = {**DEFAULT_ACTIVITY_TYPES, "calls": "", "meetings": "", "notes": "",
                   "tasks": ""}
    conn = connector(hs, activity_types=emails_only)
    kinds = {i.split(":")[1]: t for i, _, t in rows(pull(conn, "activities"))}
    assert kinds == {made["incoming"]: "email_received",
                     made["incoming, odd status"]: "email_received",
                     made["sent"]: "email_sent", made["forwarded"]: "email_sent"}
    assert conn.api_usage()["search emails"] == 1  # one search serves both directions
    only_sent = connector(hs, activity_types={**emails_only, "incoming_emails": ""})
    kinds = {i.split(":")[1]: t for i, _, t in rows(pull(only_sent, "activities"))}
    assert kinds == {made["sent"]: "email_sent", made["forwarded"]: "email_sent"}


def test_disabled_kinds_cost_no_calls(hs: HubSpotEmulator) -> None:
    conn = connector(hs, activity_types={"calls": "call", "meetings": "", "emails": "",
                                         "incoming_emails": "", "notes": "", "tasks": ""})
    pull(conn, "activities")
    assert conn.api_usage() == {"search calls": 1}


def test_activities_resume_at_the_part_they_stopped_in(hs: HubSpotEmulator) -> None:
    person = hs.add_contact(email="a@example.com")
    for kind in ("calls", "meetings", "emails", "notes", "tasks"):
        eid = hs.add_engagement(kind, hs_timestamp=T0, hs_email_direction="EMAIL")
        hs.associate(kind, eid, "contacts", person)
    stopped = m.encode_watermark(m.Cursor(m.to_ms(T0), m.to_ms(T0) - 1000, 2, None))
    conn = connector(hs)
    pages = pull(conn, "activities", stopped)
    assert sorted(i.split(":")[0] for i, _, _ in rows(pages)) == ["emails", "notes", "tasks"]
    assert "search calls" not in conn.api_usage()
    assert m.decode_watermark(pages[-1].watermark or "") == m.Cursor(m.to_ms(T0))


def test_deals_that_stop_being_won_are_deleted(hs: HubSpotEmulator) -> None:
    a, b = hs.add_contact(email="a@example.com"), hs.add_contact(email="b@example.com")
    won = hs.add_deal(dealstage="closedwon", amount=50, closedate=T0 - dt.timedelta(days=2))
    hs.associate("deals", won, "contacts", a)
    hs.associate("deals", won, "contacts", b)
    lost = hs.add_deal(dealstage="closedlost", amount=9, closedate=T0)
    hs.associate("deals", lost, "contacts", a)
    conn = connector(hs)
    first = pull(conn, "purchases")
    assert rows(first) == sorted([(won, a, "purchase"), (won, b, "purchase")])
    assert first[-1].present_ids == frozenset({won})
    hs.clock.advance(minutes=30)
    hs.update_object("deals", won, dealstage="closedlost")
    hs.clock.advance(minutes=1)
    second = pull(conn, "purchases", first[-1].watermark)
    assert rows(second) == []
    assert won in {d for p in second for d in p.deleted}
    assert conn.api_usage()["pipelines deals"] == 1  # only the full pull needs the stages


def test_archived_deals_and_merged_companies_are_swept(hs: HubSpotEmulator) -> None:
    person = hs.add_contact(email="a@example.com")
    deal = hs.add_deal(dealstage="closedwon", amount=5, closedate=T0)
    hs.associate("deals", deal, "contacts", person)
    keep, absorbed = hs.add_company(name="Keep"), hs.add_company(name="Gone")
    conn = connector(hs)
    deals_mark = pull(conn, "purchases")[-1].watermark
    companies_mark = pull(conn, "companies")[-1].watermark
    hs.clock.advance(minutes=30)
    hs.archive_object("deals", deal)
    hs.merge_objects("companies", keep, absorbed)
    hs.clock.advance(minutes=1)
    assert deal in {d for p in pull(conn, "purchases", deals_mark) for d in p.deleted}
    pages = pull(conn, "companies", companies_mark)
    assert absorbed in {d for p in pages for d in p.deleted}
    assert keep in set(pd.concat([p.records for p in pages])["_crm_id"])
