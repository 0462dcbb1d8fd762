"""The CSV connector: incremental reads, clear errors on bad exports, membership files."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from connectors.base import Batch, PullRequest, TargetRef, TargetSpec
from connectors.csvfile import CsvConnector, CsvSettings
from connectors.errors import CrmDataError, TargetConflict
from tests.conftest import SAMPLE_DATA

HEADER = "id,email,city,company_id,email_opt_out,latitude,longitude,modified_at\n"


def connector(folder: Path, batch: int = 100) -> CsvConnector:
    return CsvConnector(CsvSettings(folder, folder / "out", batch))


def write_contacts(folder: Path, rows: str) -> None:
    folder.mkdir(exist_ok=True)
    (folder / "contacts.csv").write_text(HEADER + rows, encoding="utf-8")


def pull(conn: CsvConnector, stream: str = "contacts", since: str | None = None,
         fields: frozenset[str] = frozenset({"city"})) -> list:
    return list(conn.pull(PullRequest(stream, since, fields)))  # type: ignore[arg-type]


def test_full_then_incremental_pull(tmp_path: Path) -> None:
    write_contacts(tmp_path, "1,a@x.io,Berlin,,false,52.5,13.4,2026-01-01T00:00:00Z\n"
                             "2,b@x.io,Paris,,TRUE,,,2026-02-01T00:00:00Z\n")
    (page,) = pull(connector(tmp_path))
    assert list(page.records["_crm_id"]) == ["1", "2"]
    assert list(page.records["_opted_out"]) == [False, True]
    assert page.records["_lat"].iloc[0] == 52.5
    assert page.watermark == "2026-02-01T00:00:00"
    assert page.present_ids == frozenset({"1", "2"})
    (later,) = pull(connector(tmp_path), since=page.watermark)
    assert list(later.records["_crm_id"]) == ["2"]
    assert set(later.records.columns) >= {"city", "email", "_company_id"}


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ("1,a,B,,false,,,2026-01-01\n1,b,B,,false,,,2026-01-01\n", "duplicate 'id' on line 3"),
        (",a,B,,false,,,2026-01-01\n", "empty 'id' on line 2"),
        ("1,a,B,,false,,,yesterday\n", "'modified_at' is not an ISO 8601 date on line 2"),
        ("1,a,B,,maybe,,,2026-01-01\n", "'email_opt_out' is not true/false on line 2"),
        ("1,a,B,,false,123,0,2026-01-01\n", "'latitude' is not a valid number on line 2"),
    ],
)
def test_bad_exports_give_one_clear_error(tmp_path: Path, rows: str, message: str) -> None:
    write_contacts(tmp_path, rows)
    with pytest.raises(CrmDataError, match=message):
        pull(connector(tmp_path))


def test_a_field_the_rules_use_must_exist(tmp_path: Path) -> None:
    write_contacts(tmp_path, "1,a,B,,false,,,2026-01-01\n")
    with pytest.raises(CrmDataError, match="the rules use shoe_size but the file has no such column"):
        pull(connector(tmp_path), fields=frozenset({"shoe_size"}))


def test_events_from_the_sample_data(tmp_path: Path) -> None:
    pages = pull(connector(SAMPLE_DATA), "purchases", fields=frozenset())
    frame = pd.concat([p.records for p in pages])
    assert set(frame["type"]) == {"purchase"}
    assert frame["amount"].gt(0).all()
    assert pages[-1].present_ids is not None
    assert len(pages[-1].present_ids) == len(frame)
    assert all(p.present_ids is None for p in pages[:-1])


def test_membership_files(tmp_path: Path) -> None:
    shutil.copy(SAMPLE_DATA / "contacts.csv", tmp_path / "contacts.csv")
    conn = connector(tmp_path)
    ref = conn.ensure_target(TargetSpec("vip", "segsync: VIP"), None, adopt=False)
    assert ref == TargetRef("vip", "segsync: VIP")
    conn.apply(ref, Batch(adds=("100001", "100002", "100003")))
    conn.apply(ref, Batch(removes=("100002",), adds=("100004",)))
    assert sorted(conn.members(ref)) == ["100001", "100003", "100004"]
    conn.finish()
    memberships = pd.read_csv(tmp_path / "out" / "memberships.csv", dtype=str)
    assert list(memberships["contact_id"]) == ["100001", "100003", "100004"]
    assert set(memberships["segment_name"]) == {"segsync: VIP"}
    copy = pd.read_csv(tmp_path / "out" / "contacts_with_segments.csv", dtype=str,
                       keep_default_na=False).set_index("id")
    assert copy.loc["100001", "segments"] == "segsync: VIP"
    assert copy.loc["100002", "segments"] == ""
    renamed = conn.ensure_target(TargetSpec("vip", "segsync: Very important"), ref, adopt=False)
    assert renamed.name == "segsync: Very important"
    index = pd.read_csv(tmp_path / "out" / "lists.csv", dtype=str)
    assert index.to_dict("records") == [{"target_id": "vip", "name": "segsync: Very important"}]


def test_a_list_file_segsync_did_not_record_is_not_adopted(tmp_path: Path) -> None:
    write_contacts(tmp_path, "1,a,B,,false,,,2026-01-01\n")
    conn = connector(tmp_path)
    conn.ensure_target(TargetSpec("vip", "VIP"), None, adopt=False)
    with pytest.raises(TargetConflict, match="no record of creating it"):
        conn.ensure_target(TargetSpec("vip", "VIP"), None, adopt=False)
    assert conn.ensure_target(TargetSpec("vip", "VIP"), None, adopt=True).target_id == "vip"
