"""No secret reaches anything segsync produces, for the CSV connector and both CRMs.

Recognisable canary values stand in for every secret (HubSpot private-app token, OAuth
client secret and refresh token, Salesforce consumer key and secret, a wrong secret); the
access tokens the emulators hand out are secrets too. Then segsync runs the commands a
user runs -- check, plan (text, JSON, markdown), sync (text and JSON logs, --verbose,
--debug), status, report, explain -- in-process through ``sync.cli.main`` and as real
subprocesses, including runs that fail (a malformed answer, a revoked token, an expired
OAuth refresh token, a wrong client secret) and runs that survive an expired session.

Everything produced is scanned for every secret: stdout, stderr, log records (also those
of loggers outside "segsync"), the store file and its WAL byte by byte and every table
row by row (DuckDB compresses strings, so the bytes alone prove little), and every file
left in the run folders (reports, CSV outputs, configs). Zero hits. The store, its WAL
and the lock file are created readable by their owner only (0600).
"""

from __future__ import annotations

import logging
import os
import stat
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pytest

from sync.cli import main
from tests.conftest import REPO, SAMPLE_DATA
from tests.reliability.crm_worlds import (
    hubspot_config_text,
    salesforce_config_text,
    seed_hubspot,
    seed_salesforce,
)

#: Start the scenario pool (conftest.py) now: it works while these in-process tests run.
pytestmark = pytest.mark.usefixtures("lab")

HS_TOKEN = "pat-na1-SECRET-CANARY-5d1e4b7a-9c3f-4e21-8a6b-000000000001"
HS_CLIENT_SECRET = "HSSECRET-CANARY-oauth-client-secret-7731"
HS_REFRESH = "HSREFRESH-CANARY-refresh-token-4410"
SF_KEY = "SFKEY-CANARY-consumer-key-2291"
SF_SECRET = "SFSECRET-CANARY-consumer-secret-8812"
SF_WRONG = "SFSECRET-CANARY-wrong-secret-0043"
CANARIES = [HS_TOKEN, HS_CLIENT_SECRET, HS_REFRESH, SF_KEY, SF_SECRET, SF_WRONG]
ENV = {"HUBSPOT_TOKEN": HS_TOKEN, "HUBSPOT_CLIENT_ID": "test-client-id",
       "HUBSPOT_CLIENT_SECRET": HS_CLIENT_SECRET, "HUBSPOT_REFRESH_TOKEN": HS_REFRESH,
       "SF_CLIENT_ID": SF_KEY, "SF_CLIENT_SECRET": SF_SECRET}


class Collector:
    """Everything segsync produced, by label, and the folders it wrote to."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys
        self.texts: list[tuple[str, str]] = []
        self.codes: dict[str, int] = {}
        self.folders: list[Path] = []

    def cli(self, label: str, *argv: str) -> int:
        code = main(list(argv))
        out, err = self.capsys.readouterr()
        self.texts += [(f"{label} stdout", out), (f"{label} stderr", err)]
        self.codes[label] = code
        return code

    def process(self, label: str, *argv: str) -> None:
        done = subprocess.run([sys.executable, "-m", "sync", *argv], capture_output=True,
                              text=True, timeout=120, check=False, cwd=REPO,
                              env={**os.environ, **ENV})
        self.texts += [(f"{label} stdout", done.stdout), (f"{label} stderr", done.stderr)]
        self.codes[label] = done.returncode


def hits(text: str, secrets: list[str]) -> list[str]:
    return [s for s in secrets if s in text]


def store_texts(path: Path) -> list[tuple[str, str]]:
    """The store file and WAL as bytes (decoded loosely) and every table's rows."""
    found = []
    for file in (path, path.with_name(path.name + ".wal")):
        if file.exists():
            found.append((str(file), file.read_bytes().decode("latin-1")))
    with duckdb.connect(str(path), read_only=True) as conn:
        for (table,) in conn.execute("SELECT table_name FROM information_schema.tables"
                                     ).fetchall():
            rows = conn.execute(f'SELECT * FROM "{table}"').fetchall()
            found.append((f"{path}:{table}", repr(rows)))
    return found


def assert_private(store: Path) -> None:
    for file in (store, store.with_name(store.name + ".wal"),
                 store.with_name(store.name + ".lock")):
        if file.exists() or not file.name.endswith(".wal"):
            mode = stat.S_IMODE(file.stat().st_mode)
            assert mode == 0o600, f"{file} is {oct(mode)}"


def small_csv_export(folder: Path) -> Path:
    """60 sample contacts with their companies, purchases and activities."""
    folder.mkdir()
    contacts = pd.read_csv(SAMPLE_DATA / "contacts.csv", dtype=str, keep_default_na=False).head(60)
    contacts.to_csv(folder / "contacts.csv", index=False)
    companies = pd.read_csv(SAMPLE_DATA / "companies.csv", dtype=str, keep_default_na=False)
    companies[companies["id"].isin(set(contacts["company_id"]))].to_csv(
        folder / "companies.csv", index=False)
    for name in ("purchases.csv", "activities.csv"):
        frame = pd.read_csv(SAMPLE_DATA / name, dtype=str, keep_default_na=False)
        frame[frame["contact_id"].isin(set(contacts["id"]))].to_csv(folder / name, index=False)
    return folder


def csv_scenarios(run: Collector, root: Path) -> None:
    data = small_csv_export(root / "export")
    text = (REPO / "config.example.toml").read_text(encoding="utf-8")
    config = root / "csv" / "segsync.toml"
    config.parent.mkdir()
    config.write_text(text.replace('path = "sample_data"', f'path = "{data}"'), encoding="utf-8")
    run.folders.append(config.parent)
    c = str(config)
    assert run.cli("csv check", "check", "--config", c, "--verbose") == 0
    assert run.cli("csv plan", "plan", "--config", c, "--format", "json", "--verbose") == 0
    assert run.cli("csv sync", "sync", "--config", c, "--verbose", "--log-format", "json") == 0
    assert run.cli("csv status", "status", "--config", c) == 0
    assert run.cli("csv report", "report", "--config", c, "--html",
                   str(config.parent / "report.html")) == 0
    assert_private(config.parent / "segsync-demo.duckdb")


def hubspot_scenarios(run: Collector, root: Path, hs: Any, contact: str) -> None:
    from tests.emulators.hubspot import Fault

    token_cfg = root / "hubspot" / "segsync.toml"
    oauth_cfg = root / "hubspot-oauth" / "segsync.toml"
    # Own name prefixes: the subprocess run's store already owns the "segsync: " lists.
    for path, extra in ((token_cfg, 'name_prefix = "token: "'),
                        (oauth_cfg, 'name_prefix = "oauth: "\nauth = "oauth"')):
        path.parent.mkdir(exist_ok=True)
        path.write_text(hubspot_config_text(hs.base_url, f"membership_batch_size = 5\n{extra}"))
        run.folders.append(path.parent)
    c = str(token_cfg)
    assert run.cli("hubspot check", "check", "--config", c, "--verbose") == 0
    assert run.cli("hubspot plan", "plan", "--config", c, "--format", "json", "--verbose") == 0
    assert run.cli("hubspot status", "status", "--config", c) == 0
    assert run.cli("hubspot report", "report", "--config", c, "--html",
                   str(token_cfg.parent / "report.html")) == 0
    assert run.cli("hubspot explain", "explain", contact, "--config", c) == 0
    assert run.cli("hubspot sync", "sync", "--config", c, "--verbose") == 0
    hs.inject(Fault("malformed_json", method="POST", path_prefix="/crm/v3/objects/contacts"))
    assert run.cli("hubspot malformed", "sync", "--config", c, "--full", "--debug",
                   "--verbose") == 1
    # OAuth: an access token expiring mid-run is refreshed; a dead refresh token is an error
    o = str(oauth_cfg)
    hs.inject(Fault("expired_token", method="PUT", path_prefix="/crm/v3/lists/", after=1))
    assert run.cli("hubspot oauth", "sync", "--config", o, "--verbose", "--log-format",
                   "json", "--debug") == 0
    hs.revoke_private_token(HS_TOKEN)
    assert run.cli("hubspot revoked", "sync", "--config", c, "--debug", "--verbose") == 4
    hs.auth.refresh_tokens.clear()
    hs.expire_tokens()
    assert run.cli("hubspot refresh refused", "sync", "--config", o, "--debug") == 4
    assert_private(token_cfg.parent / "store.duckdb")


def salesforce_scenarios(run: Collector, root: Path, sf: Any,
                         monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.emulators.salesforce import Fault

    config = root / "salesforce" / "segsync.toml"
    config.parent.mkdir(exist_ok=True)
    config.write_text(salesforce_config_text(
        sf, 'name_prefix = "canary: "\nmax_requests_per_second = 0'), encoding="utf-8")
    run.folders.append(config.parent)
    c = str(config)
    assert run.cli("salesforce check", "check", "--config", c, "--verbose") == 0
    assert run.cli("salesforce plan", "plan", "--config", c, "--format", "markdown") == 0
    sf.clock.advance(minutes=5)
    sf.inject(Fault("session_expired", path_prefix="query", after=1))
    assert run.cli("salesforce sync", "sync", "--config", c, "--verbose", "--log-format",
                   "json") == 0
    assert run.cli("salesforce status", "status", "--config", c) == 0
    assert run.cli("salesforce report", "report", "--config", c, "--html",
                   str(config.parent / "report.html")) == 0
    sf.clock.advance(minutes=5)
    sf.inject(Fault("malformed_json", path_prefix="query"))
    assert run.cli("salesforce malformed", "sync", "--config", c, "--full", "--debug",
                   "--verbose") == 1
    monkeypatch.setenv("SF_CLIENT_SECRET", SF_WRONG)
    assert run.cli("salesforce wrong secret", "sync", "--config", c, "--debug",
                   "--verbose") == 4
    monkeypatch.setenv("SF_CLIENT_SECRET", SF_SECRET)
    assert_private(config.parent / "store.duckdb")


def test_no_secret_reaches_any_output_log_store_or_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tests.emulators.hubspot import HubSpotEmulator, RateLimitConfig
    from tests.emulators.salesforce import SalesforceEmulator

    caplog.set_level(logging.DEBUG)
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr("connectors.salesforce.connector._real_sleep", lambda seconds: None)
    run = Collector(capsys)
    # No server-side rate limit here: a 429 would make the CLI's connector sleep for real.
    with HubSpotEmulator(token=HS_TOKEN, oauth_client_secret=HS_CLIENT_SECRET,
                         refresh_token=HS_REFRESH,
                         rate_limits=RateLimitConfig(enabled=False)) as hs, SalesforceEmulator(
            consumer_key=SF_KEY, consumer_secret=SF_SECRET) as sf:
        expected = seed_hubspot(hs)
        seed_salesforce(sf)
        contact = sorted(next(iter(expected.values())))[0]
        # Real processes first, all three at once (JSON logs, debug level).
        folders = {}
        for crm, text in (("hubspot", hubspot_config_text(hs.base_url)),
                          ("salesforce", salesforce_config_text(sf))):
            folders[crm] = tmp_path / f"process-{crm}"
            folders[crm].mkdir()
            (folders[crm] / "segsync.toml").write_text(text, encoding="utf-8")
            run.folders.append(folders[crm])
        with ThreadPoolExecutor(max_workers=2) as threads:
            list(threads.map(lambda crm: run.process(
                f"{crm} process", "sync", "--config", str(folders[crm] / "segsync.toml"),
                "--verbose", "--log-format", "json"), folders))
        assert run.codes == {"hubspot process": 0, "salesforce process": 0}, run.texts
        csv_scenarios(run, tmp_path)
        hubspot_scenarios(run, tmp_path, hs, contact)
        salesforce_scenarios(run, tmp_path, sf, monkeypatch)
        issued = [*hs.oauth_access_tokens(), *sf._auth.sessions]
    secrets = [*CANARIES, *issued]
    assert len(issued) >= 3  # OAuth access tokens and Salesforce sessions were handed out
    run.texts.append(("log records", caplog.text))
    for folder in run.folders:
        for file in sorted(folder.rglob("*")):
            if file.is_file() and file.suffix not in (".duckdb", ".wal", ".lock"):
                run.texts.append((str(file), file.read_bytes().decode("latin-1")))
        for store in folder.glob("*.duckdb"):
            run.texts += store_texts(store)
    # The scan itself works: a canary planted in a store is found, and the runs did
    # produce output of every kind.
    planted = tmp_path / "planted.duckdb"
    with duckdb.connect(str(planted)) as conn:
        conn.execute("CREATE TABLE t AS SELECT ? AS v FROM range(500)", [HS_TOKEN])
    assert any(hits(text, secrets) == [HS_TOKEN] for _, text in store_texts(planted))
    produced = "".join(text for _, text in run.texts)
    for sign in ('"level": "debug"', "Error:", "<html", "Traceback"):
        assert sign in produced, sign
    found = [(label, hits(text, secrets)) for label, text in run.texts if hits(text, secrets)]
    assert found == []
