"""Purchase attributes (e.g. ``category``): pulled only when a rule reads them, filtered
with ``where``, through the real CSV connector, pull, store and evaluation."""

from __future__ import annotations

import datetime as dt
import tomllib
from pathlib import Path

import pandas as pd
import pytest

import connectors
from connectors.errors import CrmDataError
from sync.config import parse_config
from sync.engine import run_sync
from sync.errors import ConfigError
from sync.store import Store
from tests.storeview import sql

NOW = dt.datetime(2026, 6, 1, 12, 0)


def exports(folder: Path, *, category: bool = True) -> None:
    folder.mkdir(exist_ok=True)
    stamp = "2026-05-01T00:00:00Z"
    pd.DataFrame({"id": ["1", "2", "3"], "email": ["a@x", "b@x", "c@x"],
                  "modified_at": [stamp] * 3}).to_csv(folder / "contacts.csv", index=False)
    rows = [("p1", "1", "pizza", 10), ("p2", "1", "pizza", 30), ("p3", "2", "pizza", 20),
            ("p4", "2", "pasta", 5), ("p5", "3", "pizza", 200), ("p6", "3", "", 1)]
    frame = pd.DataFrame({
        "id": [r[0] for r in rows], "contact_id": [r[1] for r in rows],
        "amount": [10] * len(rows),
        "purchased_at": [(NOW - dt.timedelta(days=r[3])).isoformat() + "Z" for r in rows],
        "modified_at": [stamp] * len(rows)})
    if category:
        frame["category"] = [r[2] for r in rows]
    frame.to_csv(folder / "purchases.csv", index=False)


def config(tmp: Path, rule: str):  # type: ignore[no-untyped-def]
    text = (f'[crm]\ntype = "csv"\npath = "exports"\n[store]\npath = "s.duckdb"\n'
            f'[[segment]]\nkey = "s"\nall = [{rule}]\n')
    return parse_config(tomllib.loads(text), tmp / "segsync.toml")


def members(tmp: Path, rule: str) -> set[str]:
    cfg = config(tmp, rule)
    with Store.open(cfg.store.path) as store:
        run_sync(cfg, connectors.create(cfg.crm), store, clock=lambda: NOW)
        return store.applied_members().get("s", set())


@pytest.mark.parametrize(("rule", "expected"), [
    ('{ activity = "purchase", where = { category = "pizza" }, at_least = 2, within_days = 90 }',
     {"1"}),
    ('{ activity = "purchase", where = { category = ["pizza", "pasta"] }, at_least = 2 }',
     {"1", "2"}),
    ('{ activity = "purchase", where = { category = "pizza" }, at_least = 1, '
     'within_days = 25 }', {"1", "2"}),
    ('{ activity = "purchase", at_least = 2 }', {"1", "2", "3"}),
])
def test_where_filters_purchases_by_attribute(tmp_path: Path, rule: str,
                                              expected: set[str]) -> None:
    exports(tmp_path / "exports")
    assert members(tmp_path, rule) == expected


def test_attributes_are_stored_only_while_a_rule_reads_them(tmp_path: Path) -> None:
    exports(tmp_path / "exports")
    members(tmp_path, '{ activity = "purchase", where = { category = "pizza" }, at_least = 1 }')
    with Store.open(tmp_path / "s.duckdb") as store:
        assert "category" in store.columns("events")
        assert sql(store, "SELECT count(*) FROM events WHERE category = 'pizza'").fetchone() == (4,)
    members(tmp_path, '{ activity = "purchase", at_least = 1 }')
    with Store.open(tmp_path / "s.duckdb") as store:
        assert "category" not in store.columns("events")


def test_a_missing_attribute_column_is_one_clear_error(tmp_path: Path) -> None:
    exports(tmp_path / "exports", category=False)
    with pytest.raises(CrmDataError, match=r"purchases\.csv: the rules use category"):
        members(tmp_path, '{ activity = "purchase", where = { category = "pizza" }, '
                          'at_least = 1 }')


def test_where_applies_to_purchases_only(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match='filters purchase attributes: use activity = "purchase"'):
        config(tmp_path, '{ activity = "call", where = { category = "pizza" }, at_least = 1 }')
