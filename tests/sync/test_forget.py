"""`segsync forget` (erasure from the store) and `segsync prune` (delete orphaned targets)."""

from __future__ import annotations

import datetime as dt
import io
import re
import tomllib
from pathlib import Path

import pandas as pd
import pytest

import sync.cli
from connectors.base import TargetRef
from connectors.csvfile import CsvConnector, CsvSettings
from sync.cli import main
from sync.config import Config, parse_config
from sync.engine import run_sync
from sync.forget import SALT_KEY, forget, pseudonym
from sync.store import Store
from tests.fakes import BASE_TIME, FakeConnector
from tests.storeview import sql

NOW = dt.datetime(2026, 6, 1)

CONFIG = """
[crm]
type = "csv"
[store]
path = "store.duckdb"
[[segment]]
key = "berlin"
name = "Berlin"
all = [{ field = "city", op = "eq", value = "Berlin" }]
[[segment]]
key = "buyers"
name = "Buyers"
all = [{ activity = "purchase", at_least = 1 }]
"""


def setup(tmp_path: Path, text: str = CONFIG) -> tuple[Path, Config, FakeConnector]:
    path = tmp_path / "segsync.toml"
    path.write_text(text, encoding="utf-8")
    config = parse_config(tomllib.loads(text), path)
    crm = FakeConnector()
    for crm_id, city in [("1001", "Berlin"), ("1002", "Berlin"), ("1003", "Rome")]:
        crm.put_contact(crm_id, city=city, email=f"p{crm_id}@example.com")
    crm.events = [
        {"stream": "purchases", "_crm_id": f"d{i}", "_contact_id": cid, "type": "purchase",
         "ts": BASE_TIME, "amount": 10.0, "_modified_at": BASE_TIME}
        for i, cid in enumerate(["1001", "1001", "1003"])
    ]
    return path, config, crm


def sync_once(config: Config, crm: FakeConnector) -> None:
    with Store.open(config.store.path) as store:
        run_sync(config, crm, store, clock=lambda: NOW)


def dump(store: Store) -> str:
    """Every value in every table, as text: the erased id must appear nowhere."""
    tables = [r[0] for r in sql(store, "SELECT table_name FROM duckdb_tables()").fetchall()]
    return "\n".join(sql(store, f"SELECT * FROM {t}").df().to_csv() for t in tables)


def test_forget_erases_the_person_and_keeps_only_a_salted_hash(tmp_path: Path) -> None:
    _, config, crm = setup(tmp_path)
    crm.reject = {"1001": "1001 p1001@example.com is not a valid member"}
    sync_once(config, crm)
    crm.reject = {}
    sync_once(config, crm)
    with Store.open(config.store.path) as store:
        assert "1001" in dump(store)
        result = forget(store, "1001")
        text = dump(store)
        salt = bytes.fromhex(store.meta(SALT_KEY) or "")
        assert result.pseudonym == pseudonym(salt, "1001")
        # The id as a token (random hex in the salt or digits of a timestamp may contain
        # the same four characters by chance).
        assert re.search(r"(?<![0-9A-Za-z])1001(?![0-9A-Za-z])",
                         text.replace(result.pseudonym, "")) is None
        assert "p1001@example.com" not in text
        assert result.counts == {"contacts": 1, "events": 2, "memberships": 2,
                                 "field values": 0, "change-log rows": 4}
        # the change log still counts their rows, under the pseudonym
        assert sql(store, "SELECT count(*) FROM changes WHERE crm_id = ? AND op <> "
                                  "'forget'", [result.pseudonym]).fetchone() == (4,)
        # the erasure itself is logged without the id
        run = store.recent_runs(1)[0]
        assert (run.command, run.status) == ("forget", "ok")
        assert "1001" not in run.message
        assert sql(store, "SELECT op FROM changes WHERE run_id = ?",
                                  [result.run_id]).fetchall() == [("forget",)]
        # other people are untouched; a retry queue never lists an erased person
        assert sql(store, "SELECT count(*) FROM contacts").fetchone() == (2,)
        assert store.retry_queue() == []
        # the salt is made once: a second erasure uses the same one
        again = forget(store, "1002")
        assert store.meta(SALT_KEY) == salt.hex()
        assert again.pseudonym != result.pseudonym
        assert store.meta("forget_count") == "2"


def test_salts_differ_between_stores() -> None:
    first, second = Store.in_memory(), Store.in_memory()
    assert forget(first, "42").pseudonym != forget(second, "42").pseudonym
    assert not forget(first, "42").found


def test_forget_command_says_the_crm_was_not_touched(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, config, crm = setup(tmp_path)
    sync_once(config, crm)
    assert main(["forget", "1003", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    assert "Erased contact 1003 from the store" in out
    assert "1 contacts, 1 events, 1 memberships" in out
    assert "segsync did not touch the CRM" in out
    assert main(["forget", "1003", "--config", str(path)]) == 0
    assert "Nothing was stored about contact 1003" in capsys.readouterr().out
    assert main(["status", "--config", str(path)]) == 0
    assert "forget" in capsys.readouterr().out


# -- prune --------------------------------------------------------------------------------


def removed_buyers(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                   monkeypatch: pytest.MonkeyPatch) -> tuple[Path, FakeConnector]:
    path, config, crm = setup(tmp_path)
    sync_once(config, crm)
    path.write_text(CONFIG.split("[[segment]]\nkey = \"buyers\"")[0], encoding="utf-8")
    monkeypatch.setattr(sync.cli, "create", lambda settings: crm)
    assert main(["status", "--config", str(path)]) == 0
    assert "Targets without a configured segment: buyers" in capsys.readouterr().out
    return path, crm


def test_prune_refuses_without_confirmation_when_not_on_a_terminal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, crm = removed_buyers(tmp_path, capsys, monkeypatch)
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert main(["prune", "--config", str(path)]) == 2
    out, err = capsys.readouterr()
    assert "buyers: 'segsync: Buyers', 2 member(s)" in out
    assert err == "Error: not deleting without confirmation: run on a terminal to be asked, " \
                  "or pass --yes\n"
    assert "segsync: Buyers" in crm.names.values()


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_prune_asks_on_a_terminal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, crm = removed_buyers(tmp_path, capsys, monkeypatch)
    monkeypatch.setattr("sys.stdin", Tty("n\n"))
    assert main(["prune", "--config", str(path)]) == 0
    assert "Nothing was deleted." in capsys.readouterr().out
    assert "segsync: Buyers" in crm.names.values()
    monkeypatch.setattr("sys.stdin", Tty("yes\n"))
    assert main(["prune", "--config", str(path)]) == 0
    assert "Deleted 1 list(s)/campaign(s): buyers" in capsys.readouterr().out
    assert "segsync: Buyers" not in crm.names.values()
    assert "segsync: Berlin" in crm.names.values()
    with Store.open(tmp_path / "store.duckdb") as store:
        assert set(store.targets()) == {"berlin"}
        assert set(store.applied_sizes_by_key()) == {"berlin"}
        assert store.recent_runs(1)[0].command == "prune"
    assert main(["prune", "--yes", "--config", str(path)]) == 0
    assert "Nothing to prune" in capsys.readouterr().out


def test_prune_with_yes_and_a_connector_that_cannot_delete(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, crm = removed_buyers(tmp_path, capsys, monkeypatch)

    class NoDelete:
        def __getattr__(self, name: str) -> object:
            if name == "delete_target":
                raise AttributeError(name)
            return getattr(crm, name)

    monkeypatch.setattr(sync.cli, "create", lambda settings: NoDelete())
    assert main(["prune", "--yes", "--config", str(path)]) == 1
    assert "connector cannot delete lists/campaigns" in capsys.readouterr().err
    monkeypatch.setattr(sync.cli, "create", lambda settings: crm)
    assert main(["prune", "--yes", "--config", str(path)]) == 0
    assert [c[0] for c in crm.calls if c[0] == "delete"] == ["delete"]


def test_per_value_segments_are_not_orphans(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    text = CONFIG + '[[segment]]\nkey = "city"\nkind = "per_value"\nfield = "city"\ntop = 2\n'
    path, config, crm = setup(tmp_path, text)
    sync_once(config, crm)
    monkeypatch.setattr(sync.cli, "create", lambda settings: crm)
    assert main(["status", "--config", str(path)]) == 0
    assert "without a configured segment" not in capsys.readouterr().out
    assert main(["prune", "--yes", "--config", str(path)]) == 0
    assert "Nothing to prune" in capsys.readouterr().out


def test_csv_connector_deletes_a_list_file(tmp_path: Path) -> None:
    out = tmp_path / "out"
    csv = CsvConnector(CsvSettings(path=tmp_path / "in", output_dir=out))
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "contacts.csv").write_text("id,modified_at\n1,2026-01-01\n2,2026-01-01\n")
    from connectors.base import Batch, TargetSpec

    for key in ("a", "b"):
        ref = csv.ensure_target(TargetSpec(key, key.upper()), None, adopt=False)
        csv.apply(ref, Batch(adds=("1", "2")))
    csv.finish()
    csv.delete_target(TargetRef("a", "A"))
    csv.finish()
    assert not (out / "lists" / "a.csv").exists()
    assert list(pd.read_csv(out / "lists.csv")["target_id"]) == ["b"]
    assert set(pd.read_csv(out / "memberships.csv")["segment_key"]) == {"b"}
    csv.delete_target(TargetRef("a", "A"))  # already gone: fine
    csv.delete_target(TargetRef("b", "B"))
    assert not (out / "memberships.csv").exists()
    assert not (out / "contacts_with_segments.csv").exists()
