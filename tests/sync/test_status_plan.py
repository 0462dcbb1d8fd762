"""`segsync status` (trend, retry queue, orphans) and `segsync plan --format`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import sync.cli
from sync.cli import main
from sync.output import sparkline
from sync.store import Store
from tests.fakes import FakeConnector

CONFIG = """
[crm]
type = "csv"
[store]
path = "store.duckdb"
[sync]
max_removal_fraction = 0.5
min_removals_to_guard = 3
schedule = "0 */6 * * *"
[[segment]]
key = "berlin"
name = "Berlin | Mitte"
all = [{ field = "city", op = "eq", value = "Berlin" }]
[[segment]]
key = "adults"
name = "Adults"
all = [{ field = "age", op = "gte", value = 18 }]
"""


@pytest.fixture
def crm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeConnector:
    (tmp_path / "segsync.toml").write_text(CONFIG, encoding="utf-8")
    fake = FakeConnector()
    for i in range(1, 8):
        fake.put_contact(str(i), city="Berlin" if i <= 5 else "Rome", age=10 * i)
    monkeypatch.setattr(sync.cli, "create", lambda settings: fake)
    return fake


def run(capsys: pytest.CaptureFixture[str], tmp_path: Path, *argv: str) -> tuple[int, str]:
    code = main([*argv, "--config", str(tmp_path / "segsync.toml")])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out


def test_sparkline() -> None:
    assert sparkline([1, 2, 3, 4, 5, 6, 7, 8]) == "▁▂▃▄▅▆▇█"
    assert sparkline([5, 5, 5]) == "▄▄▄"
    assert sparkline([10, 0]) == "█▁"
    assert sparkline([]) == ""


def test_status_shows_trend_retry_queue_and_schedule(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], crm: FakeConnector
) -> None:
    crm.reject = {"2": "INVALID", "6": "INVALID"}
    assert run(capsys, tmp_path, "sync")[0] == 5
    code, out = run(capsys, tmp_path, "status")
    assert code == 0
    assert "Failed records waiting for retry: 3" in out  # 2 (berlin, adults), 6 (adults)
    assert "  adults: add 6: INVALID" in out
    crm.reject = {"2": "INVALID"}
    crm.put_contact("6", age=5)  # no longer an adult: its failed add is not needed any more
    crm.put_contact("8", city="Berlin", age=30)
    assert run(capsys, tmp_path, "sync")[0] == 5
    crm.reject = {}
    crm.put_contact("9", city="Berlin", age=30)
    crm.put_contact("2", city="Rome")  # 2 leaves berlin: only its adults add is retried
    assert run(capsys, tmp_path, "sync")[0] == 0
    crm.reject = {"3": "LOCKED"}
    crm.put_contact("3", city="Rome")  # a failed remove stays queued while still needed
    assert run(capsys, tmp_path, "sync")[0] == 5
    code, out = run(capsys, tmp_path, "status")
    assert "Failed records waiting for retry: 1" in out
    assert "  berlin: remove 3: LOCKED" in out
    assert "berlin:" in out
    # computed sizes after each run: 5, 6 (+8), 6 (+9 -2), 5 (-3)
    line = next(x for x in out.splitlines() if x.startswith("  berlin:"))
    assert line.split()[1:] == ["5", "▁██▁", "=", "5", "->", "6", "->", "6", "->", "5"]
    assert "Schedule: 0 */6 * * * (UTC); next slot" in out
    assert "API calls of run 4: apply" in out


def test_plan_json_has_samples_and_call_estimates(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], crm: FakeConnector
) -> None:
    code, out = run(capsys, tmp_path, "plan", "--format", "json", "--daily-budget", "4")
    assert code == 0
    plan = json.loads(out)
    berlin = next(s for s in plan["segments"] if s["key"] == "berlin")
    assert berlin["entering_sample"] == ["1", "2", "3", "4", "5"]
    assert berlin["leaving_sample"] == []
    # 5 adds in batches of 3 = 2 calls, plus creating the list
    assert berlin["estimated_calls"] == 3
    adults = next(s for s in plan["segments"] if s["key"] == "adults")
    assert (adults["adds"], adults["estimated_calls"]) == (6, 3)
    assert plan["api"] == {"estimated_write_calls": 6, "max_batch": 3, "target_calls": 2,
                           "field_calls": 0, "daily_budget": 4, "share_of_budget": 1.5,
                           "over_budget": True}
    assert crm.write_calls() == []  # plan writes nothing

    assert run(capsys, tmp_path, "sync")[0] == 0
    crm.put_contact("1", city="Rome")
    plan = json.loads(run(capsys, tmp_path, "plan", "--format", "json")[1])
    berlin = next(s for s in plan["segments"] if s["key"] == "berlin")
    assert (berlin["leaving_sample"], berlin["size_change"], berlin["estimated_calls"]) == (
        ["1"], -1, 1)
    assert plan["api"]["estimated_write_calls"] == 1
    assert plan["api"]["daily_budget"] is None


def test_plan_markdown_for_a_pull_request(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], crm: FakeConnector
) -> None:
    assert run(capsys, tmp_path, "sync")[0] == 0
    for i in (1, 2, 3, 4):
        crm.put_contact(str(i), city="Rome")  # berlin would lose 4 of 5: the guard trips
    crm.put_contact("10", city="Berlin", age=40)
    code, out = run(capsys, tmp_path, "plan", "--format", "markdown", "--daily-budget", "1000")
    assert code == 6
    assert out.startswith("### segsync plan\n")
    assert "Daily API budget: 1000; this plan would use 0.1% of it." in out
    assert "> :no_entry: **Safety guard**" in out
    assert "> - `berlin`: would remove 4 of 5 members" in out
    assert ("| Berlin \\| Mitte `berlin` :no_entry: | 5 | 2 | -3 (-60.0%) | +1 | -4 | `10` | "
            "`1`, `2`, `3`, `4` | 0 |") in out
    assert "| Adults `adults` | 6 | 7 | +1 (+16.7%) | +1 | -0 | `10` |  | 1 |" in out


def test_plan_text_keeps_its_table_and_adds_the_estimate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], crm: FakeConnector
) -> None:
    code, out = run(capsys, tmp_path, "plan")
    assert code == 0
    assert out.startswith("Plan: 2 segment(s), +11 / -0 membership change(s)\n")
    assert "Estimated write calls: 6 (batches of up to 3 ids, 2 list/campaign creation(s)" in out
    with Store.open(tmp_path / "store.duckdb") as store:
        assert [r.command for r in store.recent_runs()] == ["pull"]


def test_status_and_report_work_before_the_first_pull(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], crm: FakeConnector
) -> None:
    code, out = run(capsys, tmp_path, "status")
    assert code == 0
    assert "Last runs:\n  (none yet)" in out
    assert "Pending changes not computed: " in out
    assert "run `segsync pull` first" in out
    code, out = run(capsys, tmp_path, "report", "--html", str(tmp_path / "r.html"))
    assert code == 0
    assert "No sync has run yet." in (tmp_path / "r.html").read_text(encoding="utf-8")
