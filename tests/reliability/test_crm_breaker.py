"""The safety breaker against the CRM emulators: records that vanish never empty the lists.

A permission change in the CRM (the integration user loses sight of every record) shows
up as queries that succeed with no results. What segsync can see depends on the pull:

* a full pull (``sync --full``, the first pull, a new field, Salesforce's periodic
  deletion reconcile) reports every id it saw (``Page.present_ids``); an empty answer
  where the store holds records trips the breaker in ``sync/pull.py``: exit 6, nothing
  written to the store or the CRM, and the message says why and what to do;
* an incremental pull asks "what changed since the watermark?". Hidden records simply do
  not change, so nothing moves: the lists stay as they are (exit 0, no write);
* records that really disappear (archived in HubSpot, deleted in Salesforce) arrive
  incrementally as deletions; then the per-segment guard (``max_removal_fraction``,
  ``min_removals_to_guard``) holds every list that would shrink too much: exit 6.

After the permission comes back, a plain ``sync`` finds the store intact: no writes.
Runs go through ``sync.cli.main`` as a user would call them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sync.cli import main
from sync.store import Store
from tests.reliability.crm_worlds import (
    HS_TOKEN,
    hubspot_config_text,
    hubspot_lists,
    salesforce_campaigns,
    salesforce_config_text,
    seed_hubspot,
    seed_salesforce,
    worker_env,
)

#: Start the scenario pool (conftest.py) now: it works while these in-process tests run.
pytestmark = pytest.mark.usefixtures("lab")

GUARDS = "min_removals_to_guard = 5"  # max_removal_fraction stays at its default, 25 %


@pytest.fixture(autouse=True)
def _secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in worker_env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr("connectors.salesforce.connector._real_sleep", lambda seconds: None)


def _sync(config: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(["sync", "--config", str(config), *args])
    out, err = capsys.readouterr()
    return code, out + err


def _held(store: Path) -> tuple[int, int]:
    with Store.open(store) as opened:
        return opened.count("contacts"), opened.count("companies")


@pytest.fixture
def hubspot(tmp_path: Path) -> Iterator[tuple[Any, dict[str, set[str]], Path]]:
    from tests.emulators.hubspot import Clock, HubSpotEmulator, RateLimitConfig

    day_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    # No server-side rate limit here: a 429 would make the CLI's connector sleep for real.
    with HubSpotEmulator(token=HS_TOKEN, clock=Clock(day_ago),
                         rate_limits=RateLimitConfig(enabled=False)) as hs:
        expected = seed_hubspot(hs)  # modified a day ago: incremental pulls skip them
        hs.clock = Clock()  # the real clock from here on (the CLI's connector uses it)
        config = tmp_path / "segsync.toml"
        config.write_text(hubspot_config_text(hs.base_url, "membership_batch_size = 5", GUARDS))
        yield hs, expected, config
        assert hs.foreign_writes() == []
        assert hs.internal_errors == []


@pytest.fixture
def salesforce(tmp_path: Path) -> Iterator[tuple[Any, dict[str, set[str]], Path]]:
    from tests.emulators.salesforce import SalesforceEmulator

    with SalesforceEmulator() as sf:
        expected = seed_salesforce(sf)
        config = tmp_path / "segsync.toml"
        config.write_text(salesforce_config_text(sf, "max_requests_per_second = 0", GUARDS))
        yield sf, expected, config
        assert sf.foreign_writes == []
        assert sf.internal_errors == []


def _hide_everything(crm: str, emulator: Any) -> None:
    if crm == "hubspot":
        from tests.emulators.hubspot import Fault as HsFault

        for kind in ("contacts", "companies"):
            emulator.inject(HsFault("empty", method="POST", times=None,
                                    path_prefix=f"/crm/v3/objects/{kind}/search"))
    else:
        from tests.emulators.salesforce import Fault as SfFault

        for sobject in ("Account", "Contact", "Lead"):
            emulator.inject(SfFault("empty_result", path_prefix="query", times=None,
                                    query_contains=f"FROM {sobject}"))


def _later(crm: str, emulator: Any) -> None:
    if crm == "salesforce":
        emulator.clock.advance(minutes=10)


@pytest.mark.parametrize("crm", ["hubspot", "salesforce"])
def test_records_hidden_by_a_permission_change_never_empty_the_lists(
    crm: str, request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str]
) -> None:
    emulator, expected, config = request.getfixturevalue(crm)
    live = hubspot_lists if crm == "hubspot" else salesforce_campaigns
    store = config.parent / "store.duckdb"
    assert _sync(config, capsys)[0] == 0
    assert live(emulator) == expected
    held = _held(store)
    assert min(held) > 0

    _hide_everything(crm, emulator)
    writes = len(emulator.write_requests())
    _later(crm, emulator)
    code, text = _sync(config, capsys)  # incremental: nothing changed, nothing moves
    assert code == 0, text
    _later(crm, emulator)
    code, text = _sync(config, capsys, "--full")  # full: the breaker trips
    assert code == 6, text
    assert "returned no" in text  # why ...
    assert "at all" in text
    assert "permissions" in text  # ... and what to do
    assert "--force" in text
    assert "Traceback" not in text
    assert len(emulator.write_requests()) == writes
    assert live(emulator) == expected
    assert _held(store) == held, "the store lost records while the breaker tripped"

    emulator.clear_faults()  # the permission is back
    _later(crm, emulator)
    code, text = _sync(config, capsys)
    assert code == 0, text
    assert len(emulator.write_requests()) == writes
    assert live(emulator) == expected


@pytest.mark.parametrize("crm", ["hubspot", "salesforce"])
def test_records_that_vanish_incrementally_are_held_by_the_segment_guard(
    crm: str, request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str]
) -> None:
    emulator, expected, config = request.getfixturevalue(crm)
    live = hubspot_lists if crm == "hubspot" else salesforce_campaigns
    assert _sync(config, capsys)[0] == 0
    assert live(emulator) == expected
    if crm == "hubspot":
        for contact in emulator.objects("contacts"):
            emulator.archive_contact(contact["id"])
    else:
        for record in [*emulator.records("Contact"), *emulator.records("Lead")]:
            emulator.delete(record["Id"])
    # HubSpot drops archived contacts from lists itself; the guard is about segsync's writes
    before = live(emulator)
    writes = len(emulator.write_requests())
    _later(crm, emulator)
    code, text = _sync(config, capsys)
    assert code == 6, text
    assert "would remove" in text
    assert "--force" in text
    assert len(emulator.write_requests()) == writes
    assert live(emulator) == before
