"""Bad input gets one clear message and a documented exit code, never a traceback.

Thousands of generated configs (wrong types, unknown keys, broken TOML, cycles,
impossible values, huge numbers, unicode) and malformed CRM exports (nulls, wrong types,
unparseable dates, huge strings, duplicate ids): each run must end in a known exit code
with an ``Error:`` line and leave the store exactly as it was.
"""

from __future__ import annotations

import copy
import datetime as dt
import os
import shutil
import tomllib
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sync.cli import main
from tests.conftest import REPO, SAMPLE_DATA
from tests.storeview import connection

BASE: dict[str, Any] = tomllib.loads((REPO / "config.example.toml").read_text())
BASE["crm"]["path"] = str(SAMPLE_DATA)

DOCUMENTED_EXIT_CODES = {0, 1, 3, 4, 5, 6, 7, 8}

odd_values = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.text(alphabet="🙂ßäé中文\u200b\u202e\x00'\"\\", max_size=12),
    st.booleans(),
    st.dates(),
    st.datetimes(),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            out.extend(_paths(value, (*prefix, key)))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            out.extend(_paths(value, (*prefix, index)))
    return out


PATHS = _paths(BASE)


def _get(node: Any, path: tuple[Any, ...]) -> Any:
    """The node at ``path``, or None when an earlier mutation removed or replaced it."""
    for part in path:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return None
    return node


TABLES = [p for p in [(), *PATHS] if isinstance(_get(BASE, p), dict)]


@st.composite
def mutated_configs(draw: st.DrawFn) -> dict[str, Any]:
    config = copy.deepcopy(BASE)
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["replace", "unknown-key", "delete", "cycle"]))
        if kind == "replace":
            path = draw(st.sampled_from(PATHS))
            parent = _get(config, path[:-1])
            value = draw(odd_values)
            index = path[-1]
            if isinstance(parent, dict) or (
                isinstance(parent, list) and isinstance(index, int) and index < len(parent)
            ):
                parent[index] = value
        elif kind == "unknown-key":
            table = _get(config, draw(st.sampled_from(TABLES)))
            key, value = draw(st.text(min_size=1, max_size=12)), draw(odd_values)
            if isinstance(table, dict):
                table[key] = value
        elif kind == "delete":
            path = draw(st.sampled_from(PATHS))
            parent = _get(config, path[:-1])
            if isinstance(parent, dict):
                parent.pop(path[-1], None)
            elif isinstance(parent, list) and isinstance(path[-1], int) and path[-1] < len(parent):
                del parent[path[-1]]
        else:
            segments = config.get("segment")
            if isinstance(segments, list) and len(segments) > 2 and isinstance(segments[0], dict):
                first, second = segments[0], segments[1]
                if isinstance(first, dict) and isinstance(second, dict):
                    first["all"] = [{"in_segment": second.get("key", "x")}]
                    second["all"] = [{"in_segment": first.get("key", "y")}]
    return config


def _write(tmp: Path, config: dict[str, Any]) -> Path | None:
    try:
        text = tomli_w.dumps(config)
    except (TypeError, ValueError):
        return None  # not representable as TOML (e.g. NUL in a key): covered by text fuzzing
    path = tmp / "segsync.toml"
    path.write_text(text, encoding="utf-8")
    return path


def _check_run(capsys: pytest.CaptureFixture[str], path: Path, store: Path) -> int:
    code = main(["check", "--config", str(path)])
    out, err = capsys.readouterr()
    assert code in DOCUMENTED_EXIT_CODES
    assert "Traceback" not in out + err
    assert "internal error" not in err
    if code:
        assert err.startswith("Error: "), err
    assert not store.exists(), "check must never write the store"
    return code


@settings(max_examples=int(os.environ.get("SEGSYNC_FUZZ_EXAMPLES", "700")), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(config=mutated_configs())
def test_generated_bad_configs_fail_cleanly(
    config: dict[str, Any], tmp_path_factory: pytest.TempPathFactory,
    capsys: pytest.CaptureFixture[str],
) -> None:
    tmp = tmp_path_factory.mktemp("cfg")
    if "store" in config and isinstance(config["store"], dict):
        config["store"]["path"] = str(tmp / "store.duckdb")
    path = _write(tmp, config)
    if path is not None:
        _check_run(capsys, path, tmp / "store.duckdb")


@settings(max_examples=350, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.integers(0, 4000), junk=st.text(max_size=20))
def test_broken_toml_text_fails_cleanly(
    cut: int, junk: str, tmp_path_factory: pytest.TempPathFactory,
    capsys: pytest.CaptureFixture[str],
) -> None:
    tmp = tmp_path_factory.mktemp("txt")
    text = tomli_w.dumps({**BASE, "store": {"path": str(tmp / "store.duckdb")}})
    broken = text[:cut] + junk + text[cut:]
    path = tmp / "segsync.toml"
    path.write_text(broken, encoding="utf-8", errors="replace")
    _check_run(capsys, path, tmp / "store.duckdb")


def test_a_bad_config_never_touches_the_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = copy.deepcopy(BASE)
    config["store"]["path"] = str(tmp_path / "store.duckdb")
    config["sync"]["max_removal_fraction"] = 7
    path = _write(tmp_path, config)
    assert path is not None
    assert main(["sync", "--config", str(path)]) == 3
    assert "max_removal_fraction" in capsys.readouterr().err
    assert not (tmp_path / "store.duckdb").exists()


# -- malformed CRM data -------------------------------------------------------------------

CORRUPTIONS = {
    "null id": lambda f: f.assign(id=[None, *f["id"][1:]]),
    "duplicate id": lambda f: f.assign(id=[f["id"][1], *f["id"][1:]]),
    "unparseable date": lambda f: f.assign(modified_at=["31/02/2026", *f["modified_at"][1:]]),
    "wrong type": lambda f: f.assign(latitude=["north", *f["latitude"][1:]]),
    "bad flag": lambda f: f.assign(email_opt_out=["perhaps", *f["email_opt_out"][1:]]),
    "huge string": lambda f: f.assign(city=["x" * 2_000_000, *f["city"][1:]]),
    "missing column": lambda f: f.drop(columns=["country"]),
    "not csv": None,
}


@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
def test_malformed_crm_records_leave_the_store_unchanged(
    corruption: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    shutil.copytree(SAMPLE_DATA, data)
    config = copy.deepcopy(BASE)
    config["crm"]["path"] = str(data)
    config["crm"]["output_dir"] = str(tmp_path / "out")
    config["store"]["path"] = str(tmp_path / "store.duckdb")
    path = _write(tmp_path, config)
    assert path is not None
    assert main(["sync", "--config", str(path)]) == 0
    capsys.readouterr()
    before = _snapshot(tmp_path / "store.duckdb")
    outputs = (tmp_path / "out" / "memberships.csv").read_bytes()
    contacts = pd.read_csv(data / "contacts.csv", dtype=str, keep_default_na=False)
    change = CORRUPTIONS[corruption]
    if change is None:
        (data / "contacts.csv").write_bytes(b"\xff\xfe<html>502 Bad Gateway</html>\x00")
    else:
        changed = change(contacts.copy())
        changed.loc[3, "modified_at"] = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        changed.to_csv(data / "contacts.csv", index=False)
    code = main(["sync", "--config", str(path)])
    _out, err = capsys.readouterr()
    assert code == 1, err
    errors = [line for line in err.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, err
    assert "contacts.csv" in errors[0]
    assert "Traceback" not in err
    assert len(errors[0]) < 600, "one clear message, not a dump"
    assert _snapshot(tmp_path / "store.duckdb") == before
    assert (tmp_path / "out" / "memberships.csv").read_bytes() == outputs


def _snapshot(path: Path) -> tuple[object, ...]:
    from sync.store import Store

    with Store.open(path) as store:
        conn = connection(store)
        return (
            conn.execute("SELECT count(*), sum(hash(_crm_id)) FROM contacts").fetchone(),
            conn.execute("SELECT stream, value, fields FROM watermarks ORDER BY stream").fetchall(),
            conn.execute("SELECT count(*) FROM applied").fetchone(),
            conn.execute("SELECT count(*) FROM events").fetchone(),
        )


@pytest.mark.parametrize(("table", "key"), [("crm", "path"), ("crm", "output_dir"),
                                            ("store", "path")])
def test_a_nul_character_in_a_path_is_a_config_error(
    table: str, key: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Found by the generated configs: a NUL used to reach the file system as a ValueError."""
    config = copy.deepcopy(BASE)
    config["store"]["path"] = str(tmp_path / "store.duckdb")
    config[table][key] = "sample\x00data"
    path = _write(tmp_path, config)
    assert path is not None
    assert _check_run(capsys, path, tmp_path / "store.duckdb") == 3
