"""`segsync schedule`: cron arithmetic with literals, the loop with a fake clock and sleep."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import sync.cli
from sync.cli import main
from sync.schedule import next_run, run_schedule, stop_on_signals, upcoming
from sync.store import Store
from tests.conftest import REPO
from tests.fakes import FakeConnector

T = dt.datetime


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        ("0 */6 * * *", T(2026, 3, 1, 0, 0), T(2026, 3, 1, 6, 0)),  # strictly after
        ("0 */6 * * *", T(2026, 3, 1, 5, 59, 59), T(2026, 3, 1, 6, 0)),
        ("0 */6 * * *", T(2026, 3, 1, 23, 0), T(2026, 3, 2, 0, 0)),
        ("30 2 * * 1", T(2026, 3, 1, 12, 0), T(2026, 3, 2, 2, 30)),  # 2026-03-02 is a Monday
        ("*/15 * * * *", T(2026, 12, 31, 23, 50), T(2027, 1, 1, 0, 0)),
        ("0 0 29 2 *", T(2026, 3, 1), T(2028, 2, 29)),  # next leap day
        ("0 9 1 * *", T(2026, 1, 31, 10), T(2026, 2, 1, 9)),
    ],
)
def test_next_run(expression: str, after: dt.datetime, expected: dt.datetime) -> None:
    assert next_run(expression, after) == expected


def test_upcoming_lists_the_next_slots() -> None:
    assert upcoming("0 */6 * * *", T(2026, 3, 1, 1), 3) == [
        T(2026, 3, 1, 6), T(2026, 3, 1, 12), T(2026, 3, 1, 18)]


class FakeTime:
    """A clock that only moves when the loop sleeps (or a job takes time)."""

    def __init__(self, start: dt.datetime) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def clock(self) -> dt.datetime:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += dt.timedelta(seconds=seconds)


def test_loop_runs_at_each_slot_and_survives_a_failed_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake = FakeTime(T(2026, 3, 1, 5, 0))
    ran: list[dt.datetime] = []

    def job() -> None:
        ran.append(fake.now)
        fake.now += dt.timedelta(minutes=3)  # a run takes time
        if len(ran) == 2:
            raise RuntimeError("CRM unreachable")

    caplog.set_level("INFO", logger="segsync")
    code = run_schedule("0 */6 * * *", job, clock=fake.clock, sleep=fake.sleep,
                        stop=threading.Event(), max_runs=3)
    assert code == 0
    assert ran == [T(2026, 3, 1, 6), T(2026, 3, 1, 12), T(2026, 3, 1, 18)]
    assert max(fake.sleeps) <= 60  # long waits are chunked, so the clock is re-read
    assert "scheduled run failed: CRM unreachable; the schedule continues" in caplog.text


def test_a_run_overrunning_its_next_slot_is_not_followed_by_a_burst() -> None:
    fake = FakeTime(T(2026, 3, 1, 0, 59))
    ran: list[dt.datetime] = []

    def slow_job() -> None:
        ran.append(fake.now)
        fake.now += dt.timedelta(minutes=70)  # overruns the 02:00 slot

    run_schedule("0 * * * *", slow_job, clock=fake.clock, sleep=fake.sleep,
                 stop=threading.Event(), max_runs=2)
    assert ran == [T(2026, 3, 1, 1, 0), T(2026, 3, 1, 3, 0)]


def test_stop_abandons_the_wait_and_finishes_the_current_run() -> None:
    fake = FakeTime(T(2026, 3, 1, 5, 0))
    stop = threading.Event()
    ran: list[dt.datetime] = []

    def job() -> None:
        ran.append(fake.now)
        stop.set()  # SIGTERM arrives during the run: the run still completes

    def sleep(seconds: float) -> None:
        fake.sleep(seconds)

    assert run_schedule("0 */6 * * *", job, clock=fake.clock, sleep=sleep, stop=stop) == 0
    assert ran == [T(2026, 3, 1, 6)]

    stop = threading.Event()
    waits: list[float] = []

    def interrupted_sleep(seconds: float) -> None:
        waits.append(seconds)
        stop.set()  # a signal during the wait

    assert run_schedule("0 */6 * * *", lambda: ran.append(fake.now), clock=fake.clock,
                        sleep=interrupted_sleep, stop=stop) == 0
    assert len(waits) == 1
    assert ran == [T(2026, 3, 1, 6)]  # nothing more ran


def test_signals_set_the_stop_flag_and_a_second_one_aborts() -> None:
    stop = threading.Event()
    before = signal.getsignal(signal.SIGTERM)
    with stop_on_signals(stop):
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.wait(5)
        with pytest.raises(KeyboardInterrupt):  # the handler raises once the signal lands
            os.kill(os.getpid(), signal.SIGTERM)
    assert signal.getsignal(signal.SIGTERM) is before


CONFIG = """
[crm]
type = "csv"
[store]
path = "store.duckdb"
[sync]
schedule = "0 */6 * * *"
[[segment]]
key = "berlin"
all = [{ field = "city", op = "eq", value = "Berlin" }]
"""


def test_schedule_without_a_cron_expression_is_a_config_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "segsync.toml"
    config.write_text(CONFIG.replace('schedule = "0 */6 * * *"', ""), encoding="utf-8")
    assert main(["schedule", "--config", str(config)]) == 3
    assert "[sync].schedule is not set" in capsys.readouterr().err


def test_schedule_command_syncs_on_each_slot_and_keeps_going_after_a_failure(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "segsync.toml"
    config.write_text(CONFIG, encoding="utf-8")
    crm = FakeConnector()
    crm.put_contact("1", city="Berlin")
    crm.put_contact("2", city="Rome")
    calls = {"n": 0}

    def create(settings: object) -> FakeConnector:
        calls["n"] += 1
        if calls["n"] == 2:
            raise ConnectionError("CRM down for maintenance")
        return crm

    fake = FakeTime(T(2026, 3, 1, 5, 0))
    real = sync.cli.run_schedule

    def scheduled(expression: str, job, **kwargs):  # type: ignore[no-untyped-def]
        kwargs.update(clock=fake.clock, sleep=fake.sleep, max_runs=3)
        return real(expression, job, **kwargs)

    monkeypatch.setattr(sync.cli, "create", create)
    monkeypatch.setattr(sync.cli, "run_schedule", scheduled)
    code = main(["schedule", "--config", str(config)])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "scheduled run failed: CRM down for maintenance" in err
    with Store.open(tmp_path / "store.duckdb") as store:
        runs = store.recent_runs()
    assert [r.status for r in runs] == ["ok", "ok"]  # runs 1 and 3; run 2 never started
    assert crm.list_named("segsync: berlin") == {"1"}


def test_sigterm_stops_the_real_process_cleanly(tmp_path: Path) -> None:
    config = tmp_path / "segsync.toml"
    config.write_text(CONFIG.replace("0 */6 * * *", "0 0 1 1 *"), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEGSYNC_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "sync", "schedule", "--config", str(config)],
        cwd=REPO, env=env, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stderr is not None
        line = process.stderr.readline()
        while line and "next run at" not in line:
            line = process.stderr.readline()
        assert "next run at" in line
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=20)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == 0, err
    assert "received SIGTERM" in err
    assert "schedule stopped" in err
