"""The whole loop (pull -> compute -> plan -> apply -> record) against the fake connector."""

from __future__ import annotations

import datetime as dt
import tomllib
from pathlib import Path

import pytest

from sync.config import Config, parse_config
from sync.engine import run_sync
from sync.store import Store
from tests.fakes import Crash, FakeConnector
from tests.storeview import sql

NOW = dt.datetime(2026, 6, 1)

SEGMENTS = """
[crm]
type = "csv"
[store]
path = "store.duckdb"
[sync]
max_removal_fraction = 0.5
min_removals_to_guard = 2

[[segment]]
key = "berlin"
name = "Berlin"
all = [{ field = "city", op = "eq", value = "Berlin" }]

[[segment]]
key = "adults"
name = "Adults"
mode = "add_only"
all = [{ field = "age", op = "gte", value = 18 }]
"""


def make_config(tmp_path: Path, text: str = SEGMENTS) -> Config:
    return parse_config(tomllib.loads(text), tmp_path / "segsync.toml")


def seeded() -> FakeConnector:
    crm = FakeConnector()
    people = [("1", "Berlin", 30), ("2", "Berlin", 12), ("3", "Paris", 40), ("4", "Berlin", 50),
              ("5", "Rome", 20), ("6", "Berlin", 22), ("7", "Berlin", 33)]
    for crm_id, city, age in people:
        crm.put_contact(crm_id, city=city, age=age, email=f"p{crm_id}@example.com")
    crm.put_contact("8", city="Berlin", age=60, _opted_out=True)
    return crm


def sync(config: Config, crm: FakeConnector, **kwargs: object):
    with Store.open(config.store.path) as store:
        return run_sync(config, crm, store, clock=lambda: NOW, **kwargs)  # type: ignore[arg-type]


def test_first_sync_writes_the_computed_memberships(tmp_path: Path) -> None:
    config, crm = make_config(tmp_path), seeded()
    outcome = sync(config, crm)
    assert outcome.status == "ok"
    assert crm.list_named("segsync: Berlin") == {"1", "2", "4", "6", "7"}
    assert crm.list_named("segsync: Adults") == {"1", "3", "4", "5", "6", "7"}
    assert outcome.applied is not None
    assert (outcome.applied.adds, outcome.applied.removes) == (11, 0)


def test_second_sync_plans_and_writes_nothing(tmp_path: Path) -> None:
    config, crm = make_config(tmp_path), seeded()
    sync(config, crm)
    before = len(crm.write_calls())
    outcome = sync(config, crm)
    assert (outcome.plan.adds, outcome.plan.removes) == (0, 0)
    assert len(crm.write_calls()) == before


def test_changing_one_contact_moves_exactly_that_contact(tmp_path: Path) -> None:
    config, crm = make_config(tmp_path), seeded()
    sync(config, crm)
    crm.put_contact("4", city="Paris")
    crm.calls.clear()
    outcome = sync(config, crm)
    assert [(c.key, c.adds, c.removes) for c in outcome.plan.segments if c.changed] == [
        ("berlin", 0, 1)
    ]
    assert crm.write_calls() == [("apply", "L1", (), ("4",))]


def test_add_only_segment_keeps_members_who_no_longer_match(tmp_path: Path) -> None:
    config, crm = make_config(tmp_path), seeded()
    sync(config, crm)
    crm.put_contact("3", age=10)
    sync(config, crm)
    assert "3" in crm.list_named("segsync: Adults")


def test_deleted_contact_leaves_its_lists(tmp_path: Path) -> None:
    config, crm = make_config(tmp_path), seeded()
    sync(config, crm)
    del crm.contacts["7"]
    sync(config, crm)
    assert "7" not in crm.list_named("segsync: Berlin")


@pytest.mark.parametrize("crash_after", [0, 1, 2, 3])
def test_run_stopped_mid_apply_converges_without_repeating_batches(
    tmp_path: Path, crash_after: int
) -> None:
    config, crm = make_config(tmp_path), seeded()
    crm.crash_after_calls = crash_after
    with pytest.raises(Crash):
        sync(config, crm)
    done_before = [c for c in crm.calls if c[0] == "apply"]
    crm.crash_after_calls = None
    sync(config, crm)
    applies = [c for c in crm.calls if c[0] == "apply"]
    assert applies[: len(done_before)] == done_before
    sent = [(t, i) for _, t, adds, removes in applies for i in adds + removes]
    assert len(sent) == len(set(sent)), "an id was sent twice"
    assert crm.list_named("segsync: Berlin") == {"1", "2", "4", "6", "7"}
    assert crm.list_named("segsync: Adults") == {"1", "3", "4", "5", "6", "7"}
    with Store.open(config.store.path) as store:
        statuses = [r.status for r in store.recent_runs()]
    assert statuses == ["ok", "failed"]


def test_guard_blocks_a_segment_losing_too_many_members(tmp_path: Path) -> None:
    config, crm = make_config(tmp_path), seeded()
    sync(config, crm)
    for crm_id in ("1", "2", "4"):
        crm.put_contact(crm_id, city="Hamburg")
    outcome = sync(config, crm)
    (blocked,) = outcome.plan.blocked
    assert blocked.key == "berlin"
    assert "would remove 3 of 5 members" in (blocked.blocked or "")
    assert outcome.status == "blocked"
    assert crm.list_named("segsync: Berlin") == {"1", "2", "4", "6", "7"}
    forced = sync(config, crm, force=True)
    assert forced.status == "ok"
    assert crm.list_named("segsync: Berlin") == {"6", "7"}


def test_per_record_failures_are_recorded_and_retried_next_run(tmp_path: Path) -> None:
    config, crm = make_config(tmp_path), seeded()
    crm.reject = {"4": "CONTACT_LOCKED"}
    outcome = sync(config, crm)
    assert outcome.status == "partial"
    assert "4" not in crm.list_named("segsync: Berlin")
    with Store.open(config.store.path) as store:
        assert ("berlin", "4", "add", "CONTACT_LOCKED") in store.retry_queue()
    crm.reject = {}
    crm.calls.clear()
    retry = sync(config, crm)
    assert retry.status == "ok"
    assert list(crm.write_calls()) == [
        ("apply", "L1", ("4",), ()), ("apply", "L2", ("4",), ())
    ]
    with Store.open(config.store.path) as store:
        assert store.retry_queue() == []


def test_renaming_a_segment_renames_its_target_and_keeps_members(tmp_path: Path) -> None:
    config, crm = make_config(tmp_path), seeded()
    sync(config, crm)
    renamed = make_config(tmp_path, SEGMENTS.replace('name = "Berlin"', 'name = "Berliners"'))
    crm.calls.clear()
    sync(renamed, crm)
    assert crm.write_calls() == [("rename", "L1", (), ())]
    assert crm.list_named("segsync: Berliners") == {"1", "2", "4", "6", "7"}


def test_name_clash_with_a_foreign_list_is_an_error_not_an_adoption(tmp_path: Path) -> None:
    from connectors.errors import TargetConflict

    config, crm = make_config(tmp_path), seeded()
    crm.names["X9"] = "segsync: Berlin"
    crm.lists["X9"] = {"someone"}
    for _ in range(2):  # the second run must not adopt it either
        with pytest.raises(TargetConflict):
            sync(config, crm)
    assert crm.lists["X9"] == {"someone"}
    assert not [c for c in crm.write_calls() if c[1] == "X9"]


def test_a_pull_that_loses_every_contact_trips_the_breaker(tmp_path: Path) -> None:
    from sync.errors import SafetyGuardTripped

    config, crm = make_config(tmp_path), seeded()
    sync(config, crm)
    crm.contacts.clear()
    with pytest.raises(SafetyGuardTripped, match="returned no contacts"):
        sync(config, crm)
    assert crm.list_named("segsync: Berlin") == {"1", "2", "4", "6", "7"}


class CrashAfterCreate(FakeConnector):
    """Creates the list in the CRM, then dies before segsync can record its id."""

    def ensure_target(self, spec, current, adopt):  # type: ignore[no-untyped-def]
        ref = super().ensure_target(spec, current, adopt)
        if self.crash_after_calls == -1:
            self.crash_after_calls = None
            raise Crash("killed after create")
        return ref


def test_target_created_just_before_a_kill_is_adopted_not_duplicated(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    crm = CrashAfterCreate(contacts=seeded().contacts)
    crm.crash_after_calls = -1
    with pytest.raises(Crash):
        sync(config, crm)
    sync(config, crm)
    assert sorted(crm.names.values()) == ["segsync: Adults", "segsync: Berlin"]
    assert crm.list_named("segsync: Berlin") == {"1", "2", "4", "6", "7"}


HOLDOUT = """
[crm]
type = "csv"
[store]
path = "store.duckdb"

[[segment]]
key = "everyone"
name = "Everyone"
holdout_percent = 30
all = []
"""


def test_holdout_control_group_is_stored_but_not_written(tmp_path: Path) -> None:
    crm = FakeConnector()
    for i in range(40):
        crm.put_contact(str(i), age=30)
    config = make_config(tmp_path, HOLDOUT)
    outcome = sync(config, crm)
    sizes = {c.key: c.after for c in outcome.plan.segments}
    assert sizes["everyone"] + sizes["everyone-control"] == 40
    assert 0 < sizes["everyone-control"] < 40
    assert crm.list_named("segsync: Everyone")
    assert len(crm.list_named("segsync: Everyone")) == sizes["everyone"]
    assert "segsync: Everyone (control)" not in crm.names.values()
    with Store.open(config.store.path) as store:
        stored = sql(store,
            "SELECT count(*) FROM applied a JOIN segments s USING (sid) WHERE s.key = 'everyone-control'"
        ).fetchone()
    assert stored == (sizes["everyone-control"],)
    assert sync(config, crm).plan.adds == 0


def test_holdout_target_writes_the_control_list(tmp_path: Path) -> None:
    crm = FakeConnector()
    for i in range(40):
        crm.put_contact(str(i), age=30)
    sync(make_config(tmp_path, HOLDOUT + "holdout_target = true\n"), crm)
    control = crm.list_named("segsync: Everyone (control)")
    assert control
    assert not control & crm.list_named("segsync: Everyone")


def test_reconcile_corrects_manual_edits_in_the_crm(tmp_path: Path) -> None:
    config, crm = make_config(tmp_path), seeded()
    sync(config, crm)
    berlin = next(i for i, n in crm.names.items() if n == "segsync: Berlin")
    crm.lists[berlin] -= {"1"}          # removed by hand
    crm.lists[berlin] |= {"3", "5"}     # added by hand
    assert sync(config, crm).plan.adds == 0, "without --reconcile segsync trusts its record"
    outcome = sync(config, crm, reconcile_first=True)
    assert outcome.plan.drift == (("berlin", 2, 1),)
    assert crm.list_named("segsync: Berlin") == {"1", "2", "4", "6", "7"}


def test_field_mode_writes_each_changed_contacts_full_set(tmp_path: Path) -> None:
    config, crm = make_config(tmp_path), seeded()
    crm.writes_lists, crm.writes_field = False, True
    outcome = sync(config, crm)
    assert not crm.names, "no lists in field-only mode"
    assert crm.field_options == ["Adults", "Berlin"]
    assert crm.field_values["1"] == ("Adults", "Berlin")
    assert crm.field_values["2"] == ("Berlin",)
    assert "8" not in crm.field_values  # opted out
    assert outcome.plan.field_updates == 7
    crm.calls.clear()
    assert sync(config, crm).plan.field_updates == 0
    assert crm.write_calls() == []
    crm.put_contact("2", city="Rome")
    sync(config, crm)
    assert crm.field_values["2"] == ()
    assert [c for c in crm.write_calls() if c[0] == "field"] == [("field", "", ("2",), ())]


def test_field_mode_failures_are_retried(tmp_path: Path) -> None:
    config, crm = make_config(tmp_path), seeded()
    crm.writes_lists, crm.writes_field = False, True
    crm.reject = {"4": "LOCKED"}
    assert sync(config, crm).status == "partial"
    crm.reject = {}
    assert sync(config, crm).plan.field_updates == 1
    assert crm.field_values["4"] == ("Adults", "Berlin")


def test_a_plan_replaced_by_a_newer_one_is_refused_loudly(tmp_path: Path) -> None:
    from sync.apply import apply_plan
    from sync.compute import compute_plan
    from sync.store import StalePlan

    config, crm = make_config(tmp_path), seeded()
    with Store.open(config.store.path) as store:
        sync(config, crm, dry_run=True)
    with Store.open(config.store.path) as store:
        first = compute_plan(store, config.segments, NOW, config.sync)
        compute_plan(store, config.segments, NOW, config.sync)  # replaces its tables
        before = len(crm.write_calls())
        with pytest.raises(StalePlan, match="compute the plan again"):
            apply_plan(store, crm, first, 1, config.name_prefix)
        assert len(crm.write_calls()) == before
