"""The real engine against the stateful HubSpot emulator (127.0.0.1, started per test).

Time is fake everywhere: the emulator's rate limiter and the connector's limiters share
one monotonic clock that only moves when the connector sleeps, and record timestamps
come from the emulator's frozen wall clock, so nothing here waits on real time.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import tomllib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import connectors
from connectors.base import TargetRef
from connectors.errors import AuthError, ConnectorError, TargetConflict
from connectors.hubspot import HubSpotConnector
from sync.config import Config, parse_config
from sync.engine import SyncOutcome, run_sync
from sync.store import Store
from tests.connectors.hubspot_helpers import FakeTime
from tests.emulators.hubspot import Clock, Fault, HubSpotEmulator, RateLimitConfig
from tests.storeview import sql

TOKEN = "pat-na1-e2e00000-1111-2222-3333-444444444444"
T0 = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)
PREFIX = "segsync: "

SEGMENTS = """
[[segment]]
key = "berlin"
name = "Berlin"
all = [{ field = "city", op = "eq", value = "Berlin" }]

[[segment]]
key = "bigco"
name = "Big companies"
all = [{ field = "company.employees", op = "gte", value = 250 }]

[[segment]]
key = "buyers"
name = "Recent buyers"
all = [{ activity = "purchase", at_least = 1, within_days = 90 }]

[[segment]]
key = "called"
name = "Called this month"
all = [{ activity = "call", at_least = 1, within_days = 30 }]
"""


@dataclass
class Person:
    index: int
    crm_id: str
    city: str
    big: bool
    opted_out: bool
    bought: bool
    called: bool


@dataclass
class World:
    hs: HubSpotEmulator
    fake: FakeTime
    tmp: Path
    people: dict[str, Person] = field(default_factory=dict)
    crm: str = ""
    segments: str = SEGMENTS
    connector: HubSpotConnector | None = None

    def config(self) -> Config:
        text = (f'[crm]\ntype = "hubspot"\nbase_url = "{self.hs.base_url}"\n{self.crm}\n'
                '[store]\npath = "store.duckdb"\n'
                "[sync]\nmax_removal_fraction = 1.0\n" + self.segments)
        return parse_config(tomllib.loads(text), self.tmp / "segsync.toml")

    def make_connector(self, config: Config) -> HubSpotConnector:
        return HubSpotConnector(config.crm, now=self.hs.clock.now,  # type: ignore[arg-type]
                                sleep=self.fake.sleep, monotonic=self.fake.monotonic,
                                rng=random.Random(1))

    def sync(self, connector: Any = None, **kwargs: Any) -> SyncOutcome:
        config = self.config()
        self.connector = connector or self.make_connector(config)
        with Store.open(config.store.path) as store:
            return run_sync(config, self.connector, store,
                            clock=lambda: self.hs.clock.now().replace(tzinfo=None), **kwargs)

    def later(self, minutes: float = 10) -> None:
        """Let time pass between runs (wall clock and the limiters' clock)."""
        self.hs.clock.advance(minutes=minutes)
        self.fake.now += minutes * 60

    def lists(self) -> dict[str, set[str]]:
        return {lst["name"]: set(self.hs.list_members(lst["listId"]))
                for lst in self.hs.lists() if not lst["foreign"]}

    def expected(self) -> dict[str, set[str]]:
        live = [p for p in self.people.values() if not p.opted_out]
        return {
            PREFIX + "Berlin": {p.crm_id for p in live if p.city == "Berlin"},
            PREFIX + "Big companies": {p.crm_id for p in live if p.big},
            PREFIX + "Recent buyers": {p.crm_id for p in live if p.bought},
            PREFIX + "Called this month": {p.crm_id for p in live if p.called},
        }

    def list_id(self, name: str) -> str:
        found = self.hs.find_list(PREFIX + name)
        assert found is not None
        return str(found["listId"])


def seed(hs: HubSpotEmulator, count: int) -> dict[str, Person]:
    """Contacts with companies, won/lost deals and calls, all modified a day before T0."""
    big = hs.add_company(name="Big GmbH", numberofemployees=500, industry="software")
    small = hs.add_company(name="Small Ltd", numberofemployees=20, industry="retail")
    people: dict[str, Person] = {}
    for i in range(count):
        city = "Berlin" if i % 3 == 0 else "Paris"
        crm_id = hs.add_contact(email=f"person{i}@example.com", city=city,
                                hs_email_optout="true" if i % 10 == 9 else "false")
        hs.associate("contacts", crm_id, "companies", big if i % 4 == 0 else small,
                     type_id=1)
        if i % 5 == 0:
            deal = hs.add_deal(dealname=f"deal {i}", amount=100 + i, dealstage="closedwon",
                               closedate=T0 - dt.timedelta(days=10))
            hs.associate("deals", deal, "contacts", crm_id)
        if i % 7 == 0:
            lost = hs.add_deal(dealname=f"lost {i}", amount=5, dealstage="closedlost",
                               closedate=T0 - dt.timedelta(days=10))
            hs.associate("deals", lost, "contacts", crm_id)
        if i % 6 == 0:
            call = hs.add_engagement("calls", hs_timestamp=T0 - dt.timedelta(days=3),
                                     hs_call_status="COMPLETED")
            hs.associate("calls", call, "contacts", crm_id)
        people[crm_id] = Person(i, crm_id, city, i % 4 == 0, i % 10 == 9, i % 5 == 0, i % 6 == 0)
    return people


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    monkeypatch.setenv("HUBSPOT_TOKEN", TOKEN)
    fake = FakeTime()
    with HubSpotEmulator(token=TOKEN, clock=Clock(T0 - dt.timedelta(days=1)),
                         monotonic=fake.monotonic) as hs:
        w = World(hs, fake, tmp_path)
        w.people = seed(hs, 120)
        hs.clock.set(T0)
        yield w
        assert hs.internal_errors == []
        assert hs.foreign_writes() == []


def add_remove_bodies(hs: HubSpotEmulator, ok_only: bool = True) -> list[dict[str, Any]]:
    return [r.body for r in hs.requests
            if r.path.endswith("/memberships/add-and-remove") and (r.status == 200 or not ok_only)]


# --------------------------------------------------------------------------- promises


def test_full_sync_creates_lists_with_exactly_the_computed_members(world: World) -> None:
    outcome = world.sync()
    assert outcome.status == "ok"
    assert world.lists() == world.expected()
    for lst in world.hs.lists():
        assert lst["processingType"] == "MANUAL"
        assert lst["objectTypeId"] == "0-1"
    assert world.connector is not None
    # the fewest calls these batch sizes allow (search 200, associations 1,000, lists 10,000)
    assert world.connector.api_usage() == {
        "associations calls->contacts": 1, "associations contacts->companies": 1,
        "associations deals->contacts": 1, "create list": 4,
        "list memberships add-and-remove": 4, "pipelines deals": 1, "search calls": 1,
        "search companies": 1, "search contacts": 1, "search deals": 1, "search emails": 1,
        "search meetings": 1, "search notes": 1, "search tasks": 1,
    }
    assert world.hs.count() == 20
    assert world.hs.rate_stats.limiter_429s == 0


def test_an_immediate_rerun_makes_zero_write_calls(world: World) -> None:
    world.sync()
    world.later()
    world.hs.reset_requests()
    outcome = world.sync()
    assert outcome.status == "ok"
    assert world.hs.write_requests() == []
    assert (outcome.plan.adds, outcome.plan.removes) == (0, 0)
    # reads: one search per object type and one archived sweep per object type
    assert world.hs.count() == 16


def test_an_incremental_change_moves_exactly_the_affected_contacts(world: World) -> None:
    world.sync()
    world.later()
    before = world.lists()
    movers = [p for p in world.people.values() if not p.opted_out][:4]
    for person in movers:
        person.city = "Paris" if person.city == "Berlin" else "Berlin"
        world.hs.update_contact(person.crm_id, city=person.city)
    world.later()
    world.hs.reset_requests()
    outcome = world.sync()
    assert outcome.pulled is not None
    assert outcome.pulled.records["contacts"] == 4  # only the changed records were read
    after = world.lists()
    assert after == world.expected()
    changed = {name: before[name] ^ after[name] for name in after}
    assert changed[PREFIX + "Berlin"] == {p.crm_id for p in movers}
    assert all(not diff for name, diff in changed.items() if name != PREFIX + "Berlin")
    writes = world.hs.write_requests()
    assert [w.path for w in writes] == [
        f"/crm/v3/lists/{world.list_id('Berlin')}/memberships/add-and-remove"]


def test_archive_and_merge_are_reflected(world: World) -> None:
    world.sync()
    world.later()
    berliners = [p for p in world.people.values() if p.city == "Berlin" and not p.opted_out]
    archived, loser, survivor = berliners[0], berliners[1], berliners[2]
    world.hs.archive_contact(archived.crm_id)
    world.hs.merge_contacts(survivor.crm_id, loser.crm_id)
    del world.people[archived.crm_id]
    del world.people[loser.crm_id]
    survivor.bought = survivor.bought or loser.bought
    survivor.called = survivor.called or loser.called
    survivor.big = survivor.big or loser.big
    world.later()
    outcome = world.sync()
    assert outcome.status == "ok"
    assert world.lists() == world.expected()
    config = world.config()
    with Store.open(config.store.path) as store:
        held = {row[0] for row in sql(store, "SELECT _crm_id FROM contacts").fetchall()}
    assert archived.crm_id not in held
    assert loser.crm_id not in held
    assert survivor.crm_id in held


def test_members_reads_the_live_list_including_manual_edits(world: World) -> None:
    world.sync()
    list_id = world.list_id("Berlin")
    outsider = next(p for p in world.people.values() if p.city == "Paris")
    world.hs.state.lists[list_id].members[outsider.crm_id] = T0  # a user's manual edit
    assert world.connector is not None
    live = set(world.connector.members(TargetRef(list_id, PREFIX + "Berlin")))
    assert live == world.expected()[PREFIX + "Berlin"] | {outsider.crm_id}


def test_a_run_killed_mid_apply_converges_without_resending_done_batches(world: World) -> None:
    world.crm = "membership_batch_size = 7"
    world.hs.inject(Fault("status", status=400, method="PUT", path_prefix="/crm/v3/lists/",
                          after=5, times=1))
    with pytest.raises(ConnectorError):
        world.sync()
    first = add_remove_bodies(world.hs)
    assert 0 < len(first) < sum(len(v) for v in world.expected().values()) // 7
    world.later()
    outcome = world.sync()
    assert outcome.status == "ok"
    assert world.lists() == world.expected()
    done = Counter(
        (r.path, i) for r in world.hs.requests
        if r.path.endswith("/add-and-remove") and r.status == 200
        for i in (*r.body["recordIdsToAdd"], *r.body["recordIdsToRemove"])
    )
    assert set(done.values()) == {1}  # no completed batch (nor any id in it) went out twice
    world.later()
    world.hs.reset_requests()
    world.sync()
    assert world.hs.write_requests() == []


def test_a_run_killed_after_creating_a_list_adopts_it(world: World) -> None:
    config = world.config()
    connector = world.make_connector(config)
    real = connector.ensure_target
    calls = {"n": 0}

    def dies_after_the_second_create(spec: Any, current: Any, adopt: bool) -> Any:
        ref = real(spec, current, adopt)
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # the process is killed before the id is recorded
        return ref

    connector.ensure_target = dies_after_the_second_create  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        world.sync(connector)
    world.later()
    outcome = world.sync()
    assert outcome.status == "ok"
    assert world.lists() == world.expected()
    assert len(world.hs.lists()) == 4  # the orphan was adopted, not duplicated


def test_a_429_storm_and_random_5xx_converge_within_the_limits(world: World) -> None:
    world.crm = "requests_per_10s = 12\nsearch_per_second = 3\nmembership_batch_size = 10"
    world.hs.limiter.config = RateLimitConfig(burst_limit=12, search_limit=3)
    world.hs.inject(Fault("rate_limit", path_prefix="/crm/v3/objects/contacts/search",
                          policy_name="SECONDLY", times=3))
    world.hs.inject(Fault("rate_limit", path_prefix="/crm/v3/lists", times=3))
    rng = random.Random(4)
    for _ in range(8):
        world.hs.inject(Fault("status", status=rng.choice([500, 502, 503, 504]),
                              after=rng.randint(0, 40), times=1))
    outcome = world.sync()
    assert outcome.status == "ok"
    assert world.lists() == world.expected()
    stats = world.hs.rate_stats
    assert stats.limiter_429s == 0  # only the injected 429s: the limiter kept us under
    assert stats.max_requests_in_window <= 12
    assert stats.max_search_requests_in_window <= 3
    assert world.hs.count(status=429) == 6
    assert world.fake.slept  # it waited instead of hammering


def test_partial_failures_are_recorded_and_retried_next_run(world: World) -> None:
    victim = next(p for p in world.people.values() if p.city == "Berlin" and not p.opted_out)
    world.hs.inject(Fault("partial", method="PUT", path_prefix="/crm/v3/lists/",
                          ids=(victim.crm_id,), times=1))
    first = world.sync()
    assert first.status == "partial"
    assert first.applied is not None
    assert first.applied.failed == 1
    assert victim.crm_id not in world.lists()[PREFIX + "Berlin"]
    config = world.config()
    with Store.open(config.store.path) as store:
        assert [(k, c) for k, c, _, _ in store.retry_queue()] == [("berlin", victim.crm_id)]
    world.later()
    world.hs.reset_requests()
    second = world.sync()
    assert second.status == "ok"
    assert world.lists() == world.expected()
    retried = add_remove_bodies(world.hs)
    assert retried == [{"recordIdsToAdd": [victim.crm_id], "recordIdsToRemove": []}]


def test_foreign_lists_are_never_written_and_a_clash_is_an_error(world: World) -> None:
    foreign = world.hs.add_list(PREFIX + "Berlin", members=["1", "2"], foreign=True)
    world.hs.add_list("Newsletter", members=[], foreign=True)
    with pytest.raises(TargetConflict, match="did not create it"):
        world.sync()
    assert world.hs.list_members(foreign) == ["1", "2"]
    world.later()
    with pytest.raises(TargetConflict):  # and still no adoption on the next run
        world.sync()
    assert world.hs.foreign_writes() == []


def test_renaming_a_segment_renames_its_list(world: World) -> None:
    world.sync()
    list_id = world.list_id("Berlin")
    world.segments = SEGMENTS.replace('name = "Berlin"', 'name = "Berliners"')
    world.later()
    world.sync()
    renamed = world.hs.get_list(list_id)
    assert renamed is not None
    assert renamed["name"] == PREFIX + "Berliners"


def test_the_token_never_appears_in_logs_errors_or_the_store(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    world.hs.inject(Fault("status", status=503, times=2))
    world.sync()
    world.hs.revoke_private_token(TOKEN)
    world.later()
    with pytest.raises(AuthError) as caught:
        world.sync()
    assert "HUBSPOT_TOKEN" in str(caught.value)
    config = world.config()
    with Store.open(config.store.path) as store:
        dump = repr(sql(store, "SELECT * FROM runs").fetchall())
        dump += repr(sql(store, "SELECT * FROM changes").fetchall())
    for text in (caplog.text, str(caught.value), dump):
        assert TOKEN not in text


def test_the_registry_factory_and_check_work_against_the_emulator(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the factory takes its clock from the time module: point it at the fake one
    monkeypatch.setattr("connectors.hubspot.connector.time", SimpleNamespace(
        sleep=world.fake.sleep, monotonic=world.fake.monotonic))
    config = world.config()
    connector = connectors.create(config.crm)
    assert isinstance(connector, HubSpotConnector)
    lines = connector.check()
    assert any("scopes segsync needs" in line for line in lines)
    outcome = world.sync(connector)
    assert outcome.status == "ok"
    assert world.lists() == world.expected()
    world.hs.set_scopes(["crm.objects.contacts.read", "crm.objects.companies.read",
                         "crm.objects.deals.read", "crm.lists.read"])
    with pytest.raises(AuthError, match=r"crm\.lists\.write"):
        connectors.create(config.crm).check()


def test_oauth_refreshes_through_a_run(
    world: World, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("HUBSPOT_CLIENT_ID", "test-client-id")
    monkeypatch.setenv("HUBSPOT_CLIENT_SECRET", "test-client-secret")
    monkeypatch.setenv("HUBSPOT_REFRESH_TOKEN", "test-refresh-token")
    world.crm = 'auth = "oauth"'
    world.sync()
    assert world.lists() == world.expected()
    world.hs.expire_tokens()  # expired server-side while the client thinks it is fresh
    world.hs.update_contact(next(iter(world.people)), city="Rome")
    next(iter(world.people.values())).city = "Rome"
    world.hs.clock.advance(minutes=1)
    world.sync(world.connector)  # same connector: still holds the expired token
    assert world.lists() == world.expected()
    assert world.hs.count(path_prefix="/oauth/v1/token") == 2
    assert world.connector is not None
    assert any("scopes segsync needs" in line for line in world.connector.check())
    issued = world.hs.oauth_access_tokens()
    assert issued
    assert not [token for token in issued if token in caplog.text]


def test_property_mode_keeps_options_and_values(world: World) -> None:
    world.crm = 'write_mode = "both"'
    world.hs.define_property("favourite_colour", type="enumeration", field_type="checkbox",
                             options=[{"label": "Red", "value": "red"}], foreign=True)
    connector = world.make_connector(world.config())
    connector.ensure_field(["Berlin", "Recent buyers"])
    connector.ensure_field(["Berlin", "Recent buyers"])  # unchanged: no write
    connector.ensure_field(["Berlin", "Recent buyers", "Big companies"])
    prop = world.hs.get_property("segsync_segments")
    assert prop is not None
    assert [o["value"] for o in prop["options"]] == ["Berlin", "Recent buyers", "Big companies"]
    ids = list(world.people)[:150]
    victim = ids[3]
    world.hs.inject(Fault("partial", path_prefix="/crm/v3/objects/contacts/batch/update",
                          ids=(victim,), times=1))
    result = connector.write_field(dict.fromkeys(ids, ("Berlin", "Big companies")))
    assert list(result.failed) == [victim]
    assert result.api_calls == 2  # 120 contacts: 100 + 20
    contact = world.hs.contact(ids[0])
    assert contact is not None
    assert contact["properties"]["segsync_segments"] == "Berlin;Big companies"
    patches = [r for r in world.hs.requests if r.method == "PATCH"]
    assert len(patches) == 1
    world.hs.define_property("taken", foreign=True)
    other = HubSpotConnector(replace(world.config().crm, property_name="taken"),  # type: ignore[type-var]
                             now=world.hs.clock.now, sleep=world.fake.sleep,
                             monotonic=world.fake.monotonic)
    with pytest.raises(TargetConflict, match="not created by segsync"):
        other.ensure_field(["x"])


def test_reconcile_corrects_a_manual_list_edit(world: World) -> None:
    world.sync()
    list_id = world.list_id("Berlin")
    outsider = next(p for p in world.people.values() if p.city == "Paris")
    insider = next(iter(world.expected()[PREFIX + "Berlin"]))
    world.hs.state.lists[list_id].members[outsider.crm_id] = T0   # added by hand
    del world.hs.state.lists[list_id].members[insider]            # removed by hand
    world.later()
    outcome = world.sync(reconcile_first=True)
    assert outcome.plan.drift == (("berlin", 1, 1),)
    assert world.lists() == world.expected()


def test_property_mode_through_the_engine(world: World) -> None:
    world.crm = 'write_mode = "property"'
    first = world.sync()
    assert first.plan.field_updates > 0
    assert world.lists() == {}, "property mode creates no lists"
    expected = world.expected()
    for person in world.people.values():
        contact = world.hs.contact(person.crm_id)
        assert contact is not None
        names = {n for n in (contact["properties"].get("segsync_segments") or "").split(";") if n}
        assert names == {name.removeprefix(PREFIX) for name, members in expected.items()
                         if person.crm_id in members}, person
    world.later()
    world.hs.reset_requests()
    again = world.sync()
    assert again.plan.field_updates == 0
    assert world.hs.write_requests() == []


def test_delete_target_removes_an_owned_list_for_prune(world: World) -> None:
    world.sync()
    list_id = world.list_id("Berlin")
    assert world.connector is not None
    world.connector.delete_target(TargetRef(list_id, PREFIX + "Berlin"))
    assert world.hs.find_list(PREFIX + "Berlin") is None
    world.connector.delete_target(TargetRef(list_id, PREFIX + "Berlin"))  # gone = deleted
    assert world.hs.foreign_writes() == []
