"""The DuckDB store: file mode, schema version, atomic pages, deletes and merges."""

from __future__ import annotations

import datetime as dt
import stat
from pathlib import Path

import pandas as pd
import pytest

from connectors.base import Page
from sync.errors import StoreError
from sync.store import SCHEMA_VERSION, Store, contact_key
from tests.storeview import sql

T0 = dt.datetime(2026, 1, 1)


def contacts(*ids: str, city: str = "Berlin") -> pd.DataFrame:
    return pd.DataFrame({
        "_crm_id": list(ids), "_modified_at": [T0] * len(ids), "_opted_out": [False] * len(ids),
        "_kind": ["contact"] * len(ids), "_company_id": [None] * len(ids),
        "_lat": [None] * len(ids), "_lon": [None] * len(ids), "city": [city] * len(ids),
    })


def events(*pairs: tuple[str, str]) -> pd.DataFrame:
    return pd.DataFrame({
        "_crm_id": [p[0] for p in pairs], "_contact_id": [p[1] for p in pairs],
        "type": ["call"] * len(pairs), "ts": [T0] * len(pairs), "amount": [None] * len(pairs),
        "_modified_at": [T0] * len(pairs),
    })


def ids(store: Store, table: str = "contacts") -> list[str]:
    rows = sql(store, f"SELECT _crm_id FROM {table} ORDER BY _crm_id").fetchall()
    return [r[0] for r in rows]


@pytest.fixture
def store(tmp_path: Path):
    with Store.open(tmp_path / "s.duckdb") as s:
        s.keep_properties("contacts", ["city", "email"])
        yield s


def test_store_files_are_readable_by_their_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "state" / "s.duckdb"
    with Store.open(path) as store:
        store.keep_properties("contacts", ["city"])
        store.write_page("contacts", Page(contacts("1"), "w1"), ["city"])
        wal = path.with_name(path.name + ".wal")
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (path, wal) if p.exists()}
    assert set(modes.values()) == {0o600}, modes
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_store_from_a_newer_segsync_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.duckdb"
    with Store.open(path) as store:
        sql(store, "UPDATE meta SET value = '999' WHERE key = 'schema_version'")
    with pytest.raises(StoreError, match="newer segsync"):
        Store.open(path)


def test_page_and_watermark_commit_together(store: Store) -> None:
    store.write_page("contacts", Page(contacts("1", "2"), "2026-01-01T00:00:00"), ["city"])
    assert store.watermark("contacts") == ("2026-01-01T00:00:00", frozenset({"city"}))
    bad = contacts("3").assign(_modified_at=["not a time"])
    with pytest.raises(Exception):  # noqa: B017,PT011 - any DuckDB conversion error
        store.write_page("contacts", Page(bad, "2026-02-01T00:00:00"), ["city"])
    assert ids(store) == ["1", "2"]
    assert store.watermark("contacts")[0] == "2026-01-01T00:00:00"


def test_upsert_replaces_and_duplicate_ids_keep_the_last(store: Store) -> None:
    store.write_page("contacts", Page(contacts("1", "2")), ["city"])
    page = pd.concat([contacts("2", city="Paris"), contacts("2", city="Rome")])
    store.write_page("contacts", Page(page), ["city"])
    rows = sql(store, "SELECT _crm_id, city, _cid FROM contacts ORDER BY 1").fetchall()
    assert rows == [("1", "Berlin", contact_key("1")), ("2", "Rome", contact_key("2"))]


def test_deletes_merges_and_snapshots(store: Store) -> None:
    store.write_page("contacts", Page(contacts("1", "2", "3", "4")), ["city"])
    store.write_page("activities", Page(events(("e1", "2"), ("e2", "3"), ("e3", "4"))), [])
    store.write_page("contacts", Page(contacts(), deleted=("1",)), ["city"])
    store.write_page("contacts", Page(contacts(), merged={"3": "2"}), ["city"])
    assert ids(store) == ["2", "4"]
    moved = sql(store, "SELECT _crm_id, _contact_id, _cid FROM events ORDER BY 1").fetchall()
    assert moved == [("e1", "2", contact_key("2")), ("e2", "2", contact_key("2")),
                     ("e3", "4", contact_key("4"))]
    store.write_page("contacts", Page(contacts(), present_ids=frozenset({"2"})), ["city"])
    assert ids(store) == ["2"]
    assert ids(store, "events") == ["e1", "e2"]


def test_properties_no_rule_reads_are_dropped(store: Store) -> None:
    store.write_page("contacts", Page(contacts("1")), ["city"])
    store.keep_properties("contacts", ["email"])
    assert store.property_columns("contacts") == {"email"}


def test_contact_keys_are_stable_and_distinct() -> None:
    keys = {contact_key(str(i)) for i in range(50_000)}
    assert len(keys) == 50_000
    assert contact_key("0031x00000AbCdE") == contact_key("0031x00000AbCdE")
    assert all(0 <= k < 2**63 for k in keys)


def test_a_schema_1_store_gains_the_unknown_tables_and_keeps_its_data(tmp_path: Path) -> None:
    path = tmp_path / "old.duckdb"
    with Store.open(path) as store:
        sql(store, "INSERT INTO applied VALUES (1, 7, 'c7')")
        sql(store, "DROP TABLE unknown")
        sql(store, "DROP TABLE field_unknown")
        sql(store, "UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    with Store.open(path) as store:
        assert store.meta("schema_version") == str(SCHEMA_VERSION)
        assert store.unknown_pairs() == []
        assert store.unknown_counts() == {}
        assert sql(store, "SELECT crm_id FROM applied").fetchall() == [("c7",)]


def test_a_page_out_of_the_canonical_shape_is_refused_before_anything_is_written(
    store: Store,
) -> None:
    from connectors.errors import CrmDataError

    with pytest.raises(CrmDataError, match="lacks the column"):
        store.write_page("contacts", Page(contacts("1").drop(columns=["_lat"]), "w1"),
                         ["city"])
    text_times = contacts("2").assign(_modified_at=["2026-01-01"])
    with pytest.raises(CrmDataError, match="not timestamps"):
        store.write_page("contacts", Page(text_times, "w2"), ["city"])
    assert ids(store) == []
    assert store.watermark("contacts") == (None, frozenset())
