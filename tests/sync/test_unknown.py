"""Writes whose outcome the CRM did not prove: recorded as unknown, settled by the next run.

Each test drives the real engine and store against the fake connector, whose writes can
take effect while their answer is lost, report ids as unproven or missing, and whose
contacts can be merged the way a CRM merges them. The promise under test: after the run
that follows, every owned list holds exactly the computed members.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from connectors.base import TargetRef
from sync.config import Config
from sync.engine import run_sync
from sync.plan import SegmentChange
from sync.resolve import choose
from sync.store import Store
from tests.fakes import FakeConnector, LostAnswer, ReadingFakeConnector
from tests.storeview import sql
from tests.sync.test_engine import SEGMENTS, make_config

NOW = dt.datetime(2026, 6, 1)
BERLIN = "segsync: Berlin"
ADULTS = "segsync: Adults"


def people(crm: FakeConnector) -> FakeConnector:
    for crm_id, city, age in [("1", "Berlin", 30), ("2", "Berlin", 12), ("3", "Paris", 40),
                              ("4", "Berlin", 50), ("5", "Rome", 20), ("6", "Berlin", 22)]:
        crm.put_contact(crm_id, city=city, age=age, email=f"p{crm_id}@example.com")
    return crm


def sync(config: Config, crm: FakeConnector, **kwargs: object):
    with Store.open(config.store.path) as store:
        return run_sync(config, crm, store, clock=lambda: NOW, **kwargs)  # type: ignore[arg-type]


def unknown_rows(config: Config) -> list[tuple[str, str, str]]:
    with Store.open(config.store.path) as store:
        return [(str(k), str(c), str(o)) for k, c, o in sql(store,
            "SELECT s.key, u.crm_id, u.op FROM unknown u JOIN segments s USING (sid) "
            "ORDER BY 1, 2").fetchall()]


@pytest.mark.parametrize("reader", [FakeConnector, ReadingFakeConnector])
def test_an_applied_write_whose_answer_is_lost_is_unknown_then_settled(
    tmp_path: Path, reader: type[FakeConnector]
) -> None:
    config = make_config(tmp_path)
    crm = people(reader(max_batch=10))
    crm.lose_after_calls = 0  # the first write (Berlin) lands in the CRM, its answer is lost
    with pytest.raises(LostAnswer):
        sync(config, crm)
    first = next(c for c in crm.calls if c[0] == "apply")
    assert crm.lists[first[1]] == set(first[2]) == {"1", "2", "4", "6"}  # it took effect
    assert unknown_rows(config) == [("berlin", i, "add") for i in ("1", "2", "4", "6")]

    # Two of them leave the segment before the next run: they must leave the list too.
    for crm_id in ("1", "4"):
        crm.put_contact(crm_id, city="Paris")
    crm.lose_after_calls = None
    outcome = sync(config, crm)
    assert outcome.status == "ok"
    assert crm.list_named(BERLIN) == {"2", "6"}
    assert crm.list_named(ADULTS) == {"1", "3", "4", "5", "6"}
    assert unknown_rows(config) == []


def test_a_rerun_writes_only_the_difference_plus_the_unknown_pairs(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    crm = people(FakeConnector(max_batch=10))
    crm.lose_after_calls = 1  # the second segment's batch: applied, answer lost
    with pytest.raises(LostAnswer):
        sync(config, crm)
    lost = [c for c in crm.calls if c[0] == "apply"][1]
    crm.lose_after_calls = None
    before = len(crm.calls)
    sync(config, crm)
    again = [c for c in crm.calls[before:] if c[0] == "apply"]
    # The batch whose answer was known is not sent again; the lost one is, once.
    assert [(c[1], set(c[2])) for c in again] == [(lost[1], set(lost[2]))]


def test_an_explicit_refusal_restores_what_was_known_before(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    crm = people(FakeConnector(max_batch=10))
    sync(config, crm)
    crm.put_contact("4", city="Paris")
    crm.reject["4"] = "CONTACT_LOCKED"
    outcome = sync(config, crm)
    assert outcome.status == "partial"
    assert unknown_rows(config) == []  # refused: still a known member, retried next run
    with Store.open(config.store.path) as store:
        assert ("berlin", "4", "remove", "CONTACT_LOCKED") in store.retry_queue()


def test_unproven_ids_make_the_run_partial_and_are_settled_next_run(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    crm = people(FakeConnector(max_batch=10))
    crm.unproven = {"2", "5"}
    outcome = sync(config, crm)
    assert outcome.status == "partial"
    assert outcome.unknown_left == 2  # 2 in berlin, 5 in adults (2 is a minor)
    assert {(k, c) for k, c, _ in unknown_rows(config)} == {("berlin", "2"), ("adults", "5")}
    crm.unproven = set()
    crm.put_contact("2", city="Rome")  # leaves Berlin meanwhile
    outcome = sync(config, crm)
    assert outcome.status == "ok"
    assert crm.list_named(BERLIN) == {"1", "4", "6"}
    assert crm.list_named(ADULTS) == {"1", "3", "4", "5", "6"}


def test_a_missing_record_is_gone_not_a_failure(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    crm = people(FakeConnector(max_batch=10))
    crm.missing = {"6"}
    outcome = sync(config, crm)
    assert outcome.status == "ok"
    assert outcome.applied is not None
    assert outcome.applied.failed == 0
    assert "6" not in crm.list_named(BERLIN)
    with Store.open(config.store.path) as store:
        assert store.retry_queue() == []
        held = {str(r[0]) for r in sql(store, "SELECT crm_id FROM applied").fetchall()}
    assert "6" not in held  # not believed to be a member


@pytest.mark.parametrize("moves", [True, False], ids=["moved", "dropped"])
def test_a_merge_makes_the_survivor_unknown_and_one_read_settles_it(
    tmp_path: Path, moves: bool
) -> None:
    config = make_config(tmp_path)
    crm = people(ReadingFakeConnector(max_batch=10))
    sync(config, crm)
    # 4 (Berlin, adult) is merged into 3 (Paris, adult): HubSpot may move 4's list
    # memberships to 3 or drop them; Salesforce re-parents the CampaignMember rows.
    crm.merge("4", "3", move_memberships=moves)
    calls = len(crm.calls)
    outcome = sync(config, crm)
    assert crm.list_named(BERLIN) == {"1", "2", "6"}
    assert crm.list_named(ADULTS) == {"1", "3", "5", "6"}
    reads = [c for c in crm.calls[calls:] if c[0] == "read"]
    assert [set(c[2]) for c in reads] == [{"3"}]  # one targeted read, not a reconcile
    assert outcome.resolution.read == 2
    assert outcome.resolution.read_calls == 1
    writes = [c[2:] for c in crm.calls[calls:] if c[0] == "apply"]
    # Only the true difference is written: 3 out of Berlin when the CRM moved it there.
    assert writes == ([((), ("3",))] if moves else [])
    assert unknown_rows(config) == []


def test_a_merge_of_a_contact_the_store_never_saw_changes_nothing(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    crm = people(ReadingFakeConnector(max_batch=10))
    sync(config, crm)
    crm.merged["999"] = "3"  # HubSpot lists every id ever merged into 3 on each read
    crm.put_contact("3")
    calls = len(crm.calls)
    sync(config, crm)
    assert [c for c in crm.calls[calls:] if c[0] in ("read", "apply")] == []


def test_without_a_reader_merged_survivors_are_written_in_their_desired_state(
    tmp_path: Path,
) -> None:
    config = make_config(tmp_path)
    crm = people(FakeConnector(max_batch=10))
    sync(config, crm)
    crm.merge("4", "3")
    outcome = sync(config, crm)
    assert outcome.status == "ok"
    assert crm.list_named(BERLIN) == {"1", "2", "6"}
    assert crm.list_named(ADULTS) == {"1", "3", "5", "6"}
    assert unknown_rows(config) == []


def test_add_only_pairs_that_cannot_be_written_are_read(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    crm = people(ReadingFakeConnector(max_batch=10))
    crm.lose_after_calls = 1
    with pytest.raises(LostAnswer):
        sync(config, crm)  # the adults batch (add_only) lands, its answer is lost
    crm.lose_after_calls = None
    for crm_id in ("1", "4"):
        crm.put_contact(crm_id, age=5)  # no longer wanted by the add-only segment
    calls = len(crm.calls)
    outcome = sync(config, crm)
    assert outcome.status == "ok"
    reads = {i for c in crm.calls[calls:] if c[0] == "read" for i in c[2]}
    assert {"1", "4"} <= reads  # an add-only segment never removes: these must be read
    assert [c for c in crm.calls[calls:] if c[0] == "apply"] == []  # all were there
    assert crm.list_named(ADULTS) == {"1", "3", "4", "5", "6"}  # add-only keeps them
    assert unknown_rows(config) == []


def test_field_mode_rewrites_values_whose_answer_was_lost(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    crm = people(FakeConnector(writes_field=True, writes_lists=False, max_field_batch=10))
    crm.lose_after_calls = 0
    with pytest.raises(LostAnswer):
        sync(config, crm)
    with Store.open(config.store.path) as store:
        assert store.unknown_counts() == {"(field)": 6}
    crm.lose_after_calls = None
    crm.put_contact("1", city="Rome")
    outcome = sync(config, crm)
    assert outcome.status == "ok"
    assert crm.field_values["1"] == ("Adults",)
    assert crm.field_values["4"] == ("Adults", "Berlin")
    with Store.open(config.store.path) as store:
        assert store.unknown_counts() == {}
    calls = len(crm.calls)
    sync(config, crm)
    assert [c for c in crm.calls[calls:] if c[0] == "field"] == []


def test_field_mode_merge_rewrites_the_survivor(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    crm = people(FakeConnector(writes_field=True, writes_lists=False, max_field_batch=10))
    sync(config, crm)
    crm.field_values["3"] = ("Adults", "Berlin")  # the CRM combined the merged values
    crm.merge("4", "3")
    sync(config, crm)
    assert crm.field_values["3"] == ("Adults",)


def test_a_killed_run_leaves_its_batch_unknown(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    with Store.open(config.store.path) as store:
        sids = store.segment_ids(["berlin"])
        fresh = store.intend_batch(1, sids["berlin"], ["1", "2"], [])
    assert fresh == {"1", "2"}
    # The process died between sending and recording: both pairs stay unknown.
    assert [(k, c) for k, c, _ in unknown_rows(config)] == [("berlin", "1"), ("berlin", "2")]
    with Store.open(config.store.path) as store:
        assert store.intend_batch(2, sids["berlin"], ["2", "3"], []) == {"3"}


def test_status_counts_unknown_writes() -> None:
    from sync.output import render_status

    text = render_status([], {}, [], [], unknown={"berlin": 3, "(field)": 1})
    assert "Writes whose outcome the CRM did not prove: 4" in text
    assert "berlin: 3" in text


def change(key: str, adds: int, removes: int, unknown_adds: int = 0,
           unknown_removes: int = 0) -> SegmentChange:
    return SegmentChange(key, key, "mirror", 0, 0, adds, removes,
                         unknown_adds=unknown_adds, unknown_removes=unknown_removes)


def per_call(size: int):
    return lambda adds, removes: -(-(adds + removes) // size)


def test_choose_prefers_writing_a_lost_batch_and_reading_merged_survivors() -> None:
    # A lost HubSpot batch: 10,000 pairs of one list ride in one add-and-remove call,
    # where reading them would take 100 calls.
    assert not choose([change("a", 10_000, 0, 10_000)], per_call(10_000),
                      records=10_000, forced_records=0, read_batch=100)
    # One merged survivor unknown in 30 lists with nothing else to write: 30 calls to
    # write, 1 to read.
    survivors = [change(f"s{i}", 1, 0, 1) for i in range(30)]
    assert choose(survivors, per_call(10_000), records=1, forced_records=0, read_batch=100)
    # The same survivor in lists that change anyway costs nothing extra to write.
    busy = [change(f"s{i}", 51, 0, 1) for i in range(30)]
    assert not choose(busy, per_call(10_000), records=1, forced_records=0, read_batch=100)
    # A tie goes to writing (it also makes the change).
    assert not choose([change("a", 1, 0, 1)], per_call(200), records=1, forced_records=0,
                      read_batch=200)
    # Pairs that must be read anyway count on the writing side too.
    assert choose([change("a", 2, 0, 2)], per_call(1), records=2, forced_records=2,
                  read_batch=100)


def test_record_read_settles_only_covered_records(tmp_path: Path) -> None:
    from connectors.base import MembershipRead

    config = make_config(tmp_path, SEGMENTS)
    with Store.open(config.store.path) as store:
        sid = store.segment_ids(["berlin"])["berlin"]
        store.record_target("berlin", TargetRef("L1", "segsync: Berlin"))
        store.intend_batch(1, sid, ["1", "2", "3"], [])
        pairs = store.unknown_pairs()
        settled = store.record_read({"L1": sid}, pairs, MembershipRead(
            present=frozenset({("L1", "1")}), known=frozenset({"1", "2"}),
            gone=frozenset()))
        assert settled == 2
        assert [p.crm_id for p in store.unknown_pairs()] == ["3"]
        held = {str(r[0]) for r in sql(store, "SELECT crm_id FROM applied").fetchall()}
        assert held == {"1"}
