"""Exact lists when HubSpot's answer is lost or proves too little, or HubSpot moves
memberships itself -- the real engine and connector against the HubSpot emulator.

Each scenario: a first run meets the CRM behaviour (a write applied whose answer is lost
as a reset, a late answer, a 502 or a truncated body; a 207 whose error names no record;
a merge), then the people concerned leave the segment, then one more run. After it, every
owned list holds exactly the computed members, the store agrees, and nothing is unknown.
"""

from __future__ import annotations

import datetime as dt
import random
import threading
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from connectors.errors import ConnectorError
from connectors.hubspot import HubSpotConnector
from sync.config import Config, parse_config
from sync.engine import SyncOutcome, run_sync
from sync.store import Store
from tests.connectors.hubspot_helpers import FakeTime
from tests.emulators.hubspot import Clock, Fault, HubSpotEmulator

TOKEN = "pat-na1-exact000-1111-2222-3333-444444444444"
T0 = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)
LIST = "segsync: Berlin"
MEMBERSHIPS = "/crm/v3/lists/"
READ = "/crm/v3/lists/records/memberships/batch/read"
SEGMENTS = """
[[segment]]
key = "berlin"
name = "Berlin"
all = [{ field = "city", op = "eq", value = "Berlin" }]
"""


@dataclass
class World:
    hs: HubSpotEmulator
    tmp: Path
    fake: FakeTime
    people: dict[str, str]
    crm: str = "max_retries = 2"
    segments: str = SEGMENTS
    timeout: float | None = None

    def config(self) -> Config:
        text = (f'[crm]\ntype = "hubspot"\nbase_url = "{self.hs.base_url}"\n{self.crm}\n'
                '[store]\npath = "store.duckdb"\n[sync]\nmax_removal_fraction = 1.0\n'
                + self.segments)
        return parse_config(tomllib.loads(text), self.tmp / "segsync.toml")

    def sync(self) -> SyncOutcome:
        config = self.config()
        settings: Any = config.crm
        if self.timeout is not None:
            settings = replace(settings, timeout=self.timeout)
        connector = HubSpotConnector(settings, now=self.hs.clock.now, sleep=self.fake.sleep,
                                     monotonic=self.fake.monotonic, rng=random.Random(7))
        with Store.open(config.store.path) as store:
            return run_sync(config, connector, store,
                            clock=lambda: self.hs.clock.now().replace(tzinfo=None))

    def later(self) -> None:
        self.hs.clock.advance(minutes=10)
        self.fake.now += 600

    def move(self, crm_id: str, city: str) -> None:
        self.people[crm_id] = city
        self.hs.update_contact(crm_id, city=city)

    def desired(self) -> set[str]:
        return {i for i, city in self.people.items() if city == "Berlin"}

    def members(self, name: str = LIST) -> set[str]:
        found = self.hs.find_list(name)
        assert found is not None, name
        return set(self.hs.list_members(found["listId"]))

    def assert_exact(self) -> None:
        assert self.members() == self.desired()
        with Store.open(self.config().store.path) as store:
            assert store.applied_members().get("berlin", set()) == self.desired()
            assert store.unknown_counts() == {}


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    monkeypatch.setenv("HUBSPOT_TOKEN", TOKEN)
    fake = FakeTime()  # the emulator's limiter and the connector's share this clock
    with HubSpotEmulator(token=TOKEN, clock=Clock(T0 - dt.timedelta(days=1)),
                         monotonic=fake.monotonic) as hs:
        people = {}
        for i in range(12):
            city = "Berlin" if i % 2 == 0 else "Paris"
            people[hs.add_contact(email=f"p{i}@example.com", city=city)] = city
        hs.clock.set(T0)
        yield World(hs, tmp_path, fake, people)


LOST = {
    "reset": {"kind": "disconnect", "abort": True},
    "502": {"kind": "status", "status": 502, "reach": True},
    "truncated body": {"kind": "malformed_json", "reach": True},
}


@pytest.mark.parametrize("how", [*LOST, "late answer"])
def test_a_write_applied_whose_answer_is_lost_is_settled_when_its_people_leave(
    world: World, how: str
) -> None:
    hold = threading.Event()
    spec = ({"kind": "delay", "hold": hold} if how == "late answer" else LOST[how])
    if how == "late answer":
        world.timeout = 0.3  # the client gives up; the emulator answers only at the end
    fault = world.hs.inject(Fault(**spec, method="PUT", path_prefix=MEMBERSHIPS, times=None))
    try:
        outcome: SyncOutcome | None = world.sync()
    except ConnectorError:
        outcome = None
    assert fault.reached.is_set()  # HubSpot did the work
    assert world.members() == world.desired()  # ... every Berlin contact is in the list
    if how == "truncated body":
        assert outcome is not None
        assert outcome.status == "partial"  # one unreadable answer: unknown, not failed
    else:
        assert outcome is None  # every retry's answer was lost: the run fails
    with Store.open(world.config().store.path) as store:
        assert store.unknown_counts() == {"berlin": len(world.desired())}
    hold.set()
    world.hs.clear_faults()

    leaving = sorted(world.desired())[:3]
    for crm_id in leaving:
        world.move(crm_id, "Paris")
    world.later()
    assert world.sync().status == "ok"
    world.assert_exact()
    assert not set(leaving) & world.members()


@pytest.mark.parametrize("applied", [True, False], ids=["applied", "not-applied"])
def test_a_207_whose_error_names_no_record_is_retried_and_exact(
    world: World, applied: bool
) -> None:
    world.hs.inject(Fault(kind="unattributed", method="PUT", path_prefix=MEMBERSHIPS,
                          applied=applied))
    outcome = world.sync()
    assert outcome.status == "partial"
    assert outcome.unknown_left == len(world.desired())
    world.later()
    second = world.sync()
    assert second.status == "ok"
    world.assert_exact()


def test_a_207_with_empty_context_ids_on_the_property_is_retried(world: World) -> None:
    world.crm = 'max_retries = 2\nwrite_mode = "property"'
    world.hs.inject(Fault(kind="unattributed", method="POST",
                          path_prefix="/crm/v3/objects/contacts/batch/update", context_ids=(),
                          applied=False))
    assert world.sync().status == "partial"
    world.later()
    assert world.sync().status == "ok"
    values = {i: (world.hs.contact(i) or {}).get("properties", {}).get("segsync_segments")
              for i in world.people}
    assert {i for i, v in values.items() if v == "Berlin"} == world.desired()
    with Store.open(world.config().store.path) as store:
        assert store.unknown_counts() == {}


@pytest.mark.parametrize("memberships", ["move", "drop"])
def test_a_merge_settles_the_survivor_with_one_targeted_read(
    world: World, memberships: str
) -> None:
    # Two owned lists: reading the survivor once (both lists) is cheaper than writing it
    # to each, so the engine reads (sync.resolve).
    world.segments = SEGMENTS + """
[[segment]]
key = "everyone"
name = "Everyone"
all = []
"""
    assert world.sync().status == "ok"
    loser = sorted(world.desired())[0]
    survivor = sorted(set(world.people) - world.desired())[0]  # in Paris, not in the list
    world.hs.merge_contacts(survivor, loser, memberships=memberships)
    del world.people[loser]
    if memberships == "move":
        assert survivor in world.members()  # HubSpot put the survivor into our list
    world.later()
    before = len(world.hs.requests)
    assert world.sync().status == "ok"
    world.assert_exact()
    assert world.members("segsync: Everyone") == set(world.people)
    new = world.hs.requests[before:]
    reads = [r for r in new if r.path == READ]
    assert len(reads) == 1
    assert [i["recordId"] for i in reads[0].body["inputs"]] == [survivor]
    assert not [r for r in new if r.method == "GET" and r.path.endswith("/memberships")]
    writes = [r for r in new if r.method == "PUT"]
    assert len(writes) == (1 if memberships == "move" else 0)  # only the true difference


def test_a_short_search_page_with_more_to_come_loses_no_record(world: World) -> None:
    world.hs.inject(Fault(kind="short_page", method="POST",
                          path_prefix="/crm/v3/objects/contacts/search", keep=2))
    assert world.sync().status == "ok"
    world.assert_exact()
    with Store.open(world.config().store.path) as store:
        assert store.count("contacts") == len(world.people)


def test_someone_who_wrote_to_us_is_active(world: World) -> None:
    writer = sorted(world.people)[1]
    email = world.hs.add_engagement(
        "emails", hs_timestamp=(T0 - dt.timedelta(days=3)).isoformat(),
        hs_email_direction="INCOMING_EMAIL", hs_email_status="SENT")
    world.hs.associate("emails", email, "contacts", writer)
    forwarded = world.hs.add_engagement(
        "emails", hs_timestamp=(T0 - dt.timedelta(days=2)).isoformat(),
        hs_email_direction="FORWARDED_EMAIL", hs_email_status="SENT")
    world.hs.associate("emails", forwarded, "contacts", sorted(world.people)[2])
    world.segments = """
[[segment]]
key = "wrote"
name = "Wrote to us"
all = [{ activity = "email_received", at_least = 1, within_days = 30 }]

[[segment]]
key = "quiet"
name = "Quiet"
all = [{ activity = "any", none_within_days = 30 }]
"""
    assert world.sync().status == "ok"
    assert world.members("segsync: Wrote to us") == {writer}
    assert writer not in world.members("segsync: Quiet")
    assert sorted(world.people)[2] not in world.members("segsync: Quiet")
