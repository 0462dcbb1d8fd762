"""Alerts: parsing [alerts], state changes only, delivery with one retry, the sync hook."""

from __future__ import annotations

import json
import logging
import tomllib
from pathlib import Path

import pytest
import requests
import responses

import sync.cli
from segment_rules.errors import Problem
from segment_rules.tables import TableReader
from sync.alerts import (
    STATE_KEY,
    AlertSettings,
    RunSummary,
    notify,
    parse_alerts,
    post_webhook,
    transitions,
)
from sync.cli import main
from sync.store import Store
from tests.fakes import FakeConnector

URL = "https://hooks.example.test/services/T000/B000/SECRETxyz123"
SETTINGS = AlertSettings("SEGSYNC_TEST_WEBHOOK", partial_failure_threshold=0.1,
                         size_change_fraction=0.5)


def parse(text: str) -> tuple[AlertSettings | None, list[str]]:
    problems: list[Problem] = []
    settings = parse_alerts(TableReader(problems), tomllib.loads(text)["alerts"])
    return settings, [str(p) for p in problems]


def test_parse_alerts_reads_every_key_with_defaults() -> None:
    settings, problems = parse('[alerts]\nwebhook_url_env = "SLACK_URL"\n')
    assert problems == []
    assert settings == AlertSettings("SLACK_URL", True, True, None, None)
    settings, problems = parse('[alerts]\nwebhook_url_env = "SLACK_URL"\non_failure = false\n'
                               "on_guard = true\npartial_failure_threshold = 0.05\n"
                               "size_change_fraction = 0.3\n")
    assert problems == []
    assert settings == AlertSettings("SLACK_URL", False, True, 0.05, 0.3)


def test_parse_alerts_reports_every_problem() -> None:
    settings, problems = parse(
        '[alerts]\nwebhook_url = "https://hooks.slack.com/x"\non_falure = true\n'
        "partial_failure_threshold = 1.5\n")
    assert settings is None
    assert problems == [
        "alerts.webhook_url: the webhook URL is a secret and must not be written in the config "
        "file (put it in an environment variable and name it with webhook_url_env)",
        "alerts.on_falure: is not a known key (did you mean 'on_failure'?)",
        "alerts.webhook_url_env: is required",
        "alerts.partial_failure_threshold: must be at most 1 (got 1.5)",
    ]
    _, problems = parse('[alerts]\nwebhook_url_env = "not a name"\n')
    assert problems[0].startswith("alerts.webhook_url_env: 'not a name' is not valid")


OK = RunSummary(1, "ok", attempted=10)


def test_only_changes_of_state_send_messages_and_recovery_follows() -> None:
    failed = RunSummary(2, "failed", "401 Unauthorized")
    first = transitions(SETTINGS, failed, {})
    assert first.raised == ("run 2 failed: 401 Unauthorized",)
    again = transitions(SETTINGS, RunSummary(3, "failed", "401 Unauthorized"), first.state)
    assert again.empty  # still failing: no second message
    back = transitions(SETTINGS, RunSummary(4, "ok"), again.state)
    assert back.recovered == ("run 4 succeeded (ok) after a failed run",)
    assert back.state == {}
    assert "recovered" in back.text("acme.toml")


def test_guard_trips_are_per_segment_and_survive_a_failed_run() -> None:
    blocked = RunSummary(1, "blocked", blocked=(("vip", "would remove 9 of 10"),))
    first = transitions(SETTINGS, blocked, {})
    assert first.raised == ("safety guard held back vip: would remove 9 of 10",)
    both = transitions(SETTINGS, RunSummary(2, "blocked", blocked=(
        ("vip", "would remove 9 of 10"), ("promoters", "would remove 50 of 60"))), first.state)
    assert both.raised == ("safety guard held back promoters: would remove 50 of 60",)
    crashed = transitions(SETTINGS, RunSummary(3, "failed", "timeout"), both.state)
    assert crashed.recovered == ()  # a failed run says nothing about the guard
    assert set(crashed.state) == {"failure", "guard:vip", "guard:promoters"}
    fine = transitions(SETTINGS, OK, crashed.state)
    assert len(fine.recovered) == 3
    off = AlertSettings("X", on_guard=False, on_failure=False)
    assert transitions(off, blocked, {}).empty
    assert transitions(off, RunSummary(1, "failed", "boom"), {}).empty


def test_partial_failures_above_the_threshold_and_size_jumps() -> None:
    under = RunSummary(1, "partial", attempted=100, failed=10)
    assert transitions(SETTINGS, under, {}).empty  # 10% is not above 10%
    over = RunSummary(2, "partial", attempted=100, failed=11)
    notice = transitions(SETTINGS, over, {})
    assert notice.raised == ("run 2: 11 of 100 membership changes failed (11%, threshold "
                             "10%); they are retried on the next run",)
    sizes = RunSummary(3, "ok", sizes=(("a", 100, 40), ("b", 100, 149), ("new", 0, 50)))
    jump = transitions(SETTINGS, sizes, notice.state)
    assert jump.events == ("a: 100 -> 40 members (-60%, limit ±50%)",)
    assert "partial" not in jump.state
    # size jumps are events: the same jump next run alerts again, and nothing "recovers"
    assert transitions(SETTINGS, sizes, jump.state).events == jump.events


@responses.activate
def test_webhook_is_retried_once_on_a_server_error() -> None:
    responses.post(URL, status=503, headers={"Retry-After": "120"})
    responses.post(URL, body="ok")
    waits: list[float] = []
    assert post_webhook(URL, "hello", sleep=waits.append) is True
    assert waits == [10.0]  # Retry-After honoured, capped
    assert [json.loads(c.request.body or b"") for c in responses.calls] == [{"text": "hello"}] * 2


@responses.activate
def test_webhook_gives_up_after_one_retry_and_never_retries_a_client_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    responses.post(URL, body=requests.ConnectionError("refused"))
    assert post_webhook(URL, "x", sleep=lambda s: None) is False
    assert len(responses.calls) == 2
    responses.replace(responses.POST, URL, status=404)
    responses.calls.reset()
    assert post_webhook(URL, "x", sleep=lambda s: None) is False
    assert len(responses.calls) == 1


@responses.activate
def test_notify_keeps_state_in_the_store_and_resends_what_was_not_delivered(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("SEGSYNC_TEST_WEBHOOK", URL)
    store = Store.in_memory()
    responses.post(URL, status=500)
    failed = RunSummary(1, "failed", "boom")
    notify(store, SETTINGS, failed, "acme.toml", sleep=lambda s: None)
    assert store.meta(STATE_KEY) is None  # not delivered: try again after the next run
    responses.replace(responses.POST, URL, body="ok")
    responses.calls.reset()
    notify(store, SETTINGS, RunSummary(2, "failed", "boom"), "acme.toml", sleep=lambda s: None)
    assert len(responses.calls) == 1
    text = json.loads(responses.calls[0].request.body or b"")["text"]
    assert text.startswith(":rotating_light: segsync (acme.toml): run 2 failed: boom")
    assert json.loads(store.meta(STATE_KEY) or "{}") == {"failure": "run 2 failed: boom"}
    notify(store, SETTINGS, RunSummary(3, "failed", "boom"), "acme.toml")
    assert len(responses.calls) == 1  # no spam
    notify(store, SETTINGS, RunSummary(4, "ok"), "acme.toml")
    assert len(responses.calls) == 2
    assert "recovered" in json.loads(responses.calls[1].request.body or b"")["text"]
    assert URL not in caplog.text


def test_notify_without_the_env_var_only_warns(caplog: pytest.LogCaptureFixture) -> None:
    store = Store.in_memory()
    notice = notify(store, SETTINGS, RunSummary(1, "failed", "boom"), "x")
    assert notice.empty
    assert "SEGSYNC_TEST_WEBHOOK" in caplog.text
    assert store.meta(STATE_KEY) is None


CONFIG = """
[crm]
type = "csv"
[store]
path = "store.duckdb"
[[segment]]
key = "promoters"
all = [{ field = "nps_score", op = "gte", value = 9 }]
[alerts]
webhook_url_env = "SEGSYNC_TEST_WEBHOOK"
partial_failure_threshold = 0.1
"""
#: CONFIG's alerts plus size changes: the same triggers as SETTINGS.
CONFIG_SIZES = CONFIG + "size_change_fraction = 0.5\n"


@responses.activate
def test_sync_command_alerts_on_partial_failure_once_then_recovers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SEGSYNC_TEST_WEBHOOK", URL)
    responses.post(URL, body="ok")
    crm = FakeConnector()
    for i in range(5):
        crm.put_contact(str(i), nps_score=10)
    crm.reject = {"3": "INVALID_EMAIL", "4": "INVALID_EMAIL"}
    monkeypatch.setattr(sync.cli, "create", lambda settings: crm)
    config = tmp_path / "segsync.toml"
    config.write_text(CONFIG, encoding="utf-8")
    assert main(["sync", "--config", str(config)]) == 5
    assert len(responses.calls) == 1
    text = json.loads(responses.calls[0].request.body or b"")["text"]
    assert "2 of 5 membership changes failed" in text
    assert main(["sync", "--config", str(config)]) == 5  # the same two fail again
    assert len(responses.calls) == 1
    crm.reject = {}
    assert main(["sync", "--config", str(config)]) == 0
    assert len(responses.calls) == 2
    assert "back below the threshold" in json.loads(responses.calls[1].request.body or b"")["text"]
    assert main(["sync", "--dry-run", "--config", str(config)]) == 0
    assert len(responses.calls) == 2
    capsys.readouterr()


@responses.activate
def test_sync_command_alerts_when_the_run_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("SEGSYNC_TEST_WEBHOOK", URL)
    responses.post(URL, body="ok")
    crm = FakeConnector()
    crm.put_contact("1", nps_score=10)
    crm.crash_after_calls = 0
    monkeypatch.setattr(sync.cli, "create", lambda settings: crm)
    config = tmp_path / "segsync.toml"
    config.write_text(CONFIG_SIZES, encoding="utf-8")
    caplog.set_level(logging.WARNING)
    assert main(["sync", "--config", str(config)]) == 1
    assert "Error: internal error (Crash)" in capsys.readouterr().err
    text = json.loads(responses.calls[0].request.body or b"")["text"]
    assert text == ":rotating_light: segsync (segsync.toml): run 1 failed: process killed"


def test_check_shows_the_alert_settings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sync.cli, "create", lambda settings: FakeConnector())
    config = tmp_path / "segsync.toml"
    config.write_text(CONFIG_SIZES, encoding="utf-8")
    assert main(["check", "--config", str(config)]) == 0
    assert ("Alerts: to the webhook in $SEGSYNC_TEST_WEBHOOK (NOT SET: no alert can be sent) on "
            "run failures, safety guard trips, partial failures above 10%, size changes above "
            "50%") in capsys.readouterr().out
