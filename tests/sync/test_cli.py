"""The CLI end to end on the bundled sample data: output, exit codes, no tracebacks."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import sync.cli
from connectors.errors import AuthError
from connectors.redact import read_secret
from sync.cli import main
from sync.lock import store_lock
from tests.conftest import REPO, SAMPLE_DATA
from tests.fakes import FakeConnector

EXAMPLE = (REPO / "config.example.toml").read_text(encoding="utf-8")


def demo_config(tmp_path: Path, data: Path = SAMPLE_DATA) -> Path:
    text = EXAMPLE.replace('path = "sample_data"', f'path = "{data}"')
    path = tmp_path / "segsync.toml"
    path.write_text(text, encoding="utf-8")
    return path


AS_OF = ["--as-of", "2026-11-16T00:00:00"]  # the sample data's "today": windows never drift


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main([*argv, *AS_OF] if argv and argv[0] in ("sync", "plan", "status") else list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_sync_on_the_sample_data_then_nothing_to_do(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = demo_config(tmp_path)
    code, out, err = run(capsys, "sync", "--config", str(config))
    assert code == 0, err
    assert "Plan: 32 segment(s)" in out
    assert "Result: run 1 ok" in out
    memberships = pd.read_csv(tmp_path / "segsync-out" / "memberships.csv", dtype=str)
    assert memberships.groupby("segment_key").size()["nps-promoters"] > 100
    code, out, _ = run(capsys, "sync", "--config", str(config))
    assert code == 0
    assert "+0 / -0 membership change(s)" in out
    assert "0 write call(s)" in out
    code, out, _ = run(capsys, "status", "--config", str(config))
    assert code == 0
    assert "nps-promoters:" in out
    assert "Failed records waiting for retry: 0" in out


def test_dry_run_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "sync", "--dry-run", "--config", str(demo_config(tmp_path)))
    assert code == 0
    assert "Dry run: nothing was written" in out
    assert not (tmp_path / "segsync-out").exists()


def test_config_with_typo_wrong_type_and_unknown_operator(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("""
[crm]
type = "csv"
[[segment]]
key = "x"
nmae = "X"
all = [
  { field = "age", op = "gte", value = "old" },
  { field = "city", op = "equalz", value = "Berlin" },
]
""", encoding="utf-8")
    code, out, err = run(capsys, "check", "--config", str(config))
    assert code == 3
    assert out == ""
    assert "3 problems" in err
    assert "segment[x].nmae: is not a known key (did you mean 'name'?)" in err
    assert "segment[x].all[0].value" in err
    assert "segment[x].all[1].op: must be one of" in err
    assert "(got 'equalz')" in err
    assert "Traceback" not in err


def test_second_run_on_a_locked_store_exits_with_its_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = demo_config(tmp_path)
    with store_lock(tmp_path / "segsync-demo.duckdb"):
        code, _, err = run(capsys, "sync", "--config", str(config))
    assert code == 7
    assert "another segsync run is using" in err


def test_guard_trip_exits_with_its_code_and_applies_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    shutil.copytree(SAMPLE_DATA, data)
    config = demo_config(tmp_path, data)
    assert run(capsys, "sync", "--config", str(config))[0] == 0
    before = (tmp_path / "segsync-out" / "memberships.csv").read_text()
    contacts = pd.read_csv(data / "contacts.csv", dtype=str, keep_default_na=False)
    contacts.head(2000).to_csv(data / "contacts.csv", index=False)
    code, out, err = run(capsys, "sync", "--config", str(config))
    assert code == 6
    assert "BLOCKED" in out
    assert "safety guard" in err
    assert (tmp_path / "segsync-out" / "memberships.csv").read_text() == before
    assert run(capsys, "sync", "--force", "--config", str(config))[0] == 0


def test_partial_failure_exit_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    crm = FakeConnector()
    for i in range(5):
        crm.put_contact(str(i), lifecycle_stage="customer", nps_score=10)
    crm.reject = {"3": "INVALID_ID"}
    monkeypatch.setattr(sync.cli, "create", lambda settings: crm)
    config = tmp_path / "c.toml"
    config.write_text('[crm]\ntype = "csv"\n[[segment]]\nkey = "p"\n'
                      'all = [{ field = "nps_score", op = "gte", value = 9 }]\n')
    code, out, _ = run(capsys, "sync", "--config", str(config))
    assert code == 5
    assert "1 failed" in out
    assert "p: 1" in out


def test_tokens_never_reach_the_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "pat-na1-SECRET-7f3a9c"
    monkeypatch.setenv("SEGSYNC_TEST_TOKEN", secret)

    class LeakyConnector(FakeConnector):
        def check(self) -> list[str]:
            token = read_secret("SEGSYNC_TEST_TOKEN", "[crm].token_env")
            raise AuthError(f"401 for https://api.example/x?access_token={token} (token {token})")

    monkeypatch.setattr(sync.cli, "create", lambda settings: LeakyConnector())
    code, out, err = run(capsys, "check", "--debug", "--config", str(demo_config(tmp_path)))
    assert code == 4
    assert secret not in out + err
    assert "[redacted]" in err


def test_json_log_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "pull", "--log-format", "json", "--config",
                       str(demo_config(tmp_path)))
    assert code == 0
    entries = [json.loads(line) for line in err.splitlines()]
    assert {e["logger"] for e in entries} == {"segsync.pull"}
    assert any("pulled contacts: 5000" in e["message"] for e in entries)


def test_init_writes_a_valid_starter(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "segsync.toml"
    assert run(capsys, "init", "--config", str(config))[0] == 0
    code, _, err = run(capsys, "init", "--config", str(config))
    assert code == 1
    assert "already exists" in err
    (tmp_path / "exports").mkdir()
    shutil.copy(SAMPLE_DATA / "contacts.csv", tmp_path / "exports" / "contacts.csv")
    code, out, _ = run(capsys, "check", "--config", str(config))
    assert code == 0
    assert "Fields read from contacts: email, lifecycle_stage, nps_score" in out


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "frobnicate")[0] == 2


def test_the_installed_console_script_runs(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("segsync")
    assert script.exists(), "segsync must be installed in the test environment (pip install -e .)"
    done = subprocess.run([str(script), "plan", "--config", str(demo_config(tmp_path))],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "Plan: 32 segment(s)" in done.stdout
