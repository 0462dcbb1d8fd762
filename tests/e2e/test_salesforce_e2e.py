"""segsync's real engine against the stateful Salesforce emulator, over HTTPS on 127.0.0.1.

The connector is built from a parsed config exactly as the CLI builds it
(``connectors.create(config.crm)``), pointed at the emulator with ``instance_url`` and
``ca_file``. Sleeps (retry backoff) are recorded instead of slept.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

import connectors
from connectors.base import PullRequest, TargetRef
from connectors.errors import (
    AuthError,
    ConnectorError,
    QuotaExhausted,
    RetriableAPIError,
    TargetConflict,
)
from connectors.salesforce.connector import SalesforceConnector
from sync.cli import main
from sync.config import Config, parse_config
from sync.engine import SyncOutcome, run_sync
from sync.store import Store
from tests.emulators.salesforce import (
    DEFAULT_CONSUMER_KEY,
    DEFAULT_CONSUMER_SECRET,
    DEFAULT_PASSWORD,
    DEFAULT_SECURITY_TOKEN,
    DEFAULT_USERNAME,
    Fault,
    SalesforceEmulator,
)
from tests.storeview import sql

UTC = dt.UTC
SEGMENTS = """
[[segment]]
key = "berlin"
name = "Berlin"
all = [{ field = "city", op = "eq", value = "Berlin" }]

[[segment]]
key = "retail"
name = "Retail firms"
all = [{ field = "company.industry", op = "eq", value = "Retail" }]

[[segment]]
key = "buyers"
name = "Buyers"
all = [{ activity = "purchase", at_least = 1, within_days = 365 }]

[[segment]]
key = "called"
name = "Called"
all = [{ activity = "call", at_least = 1, within_days = 90 }]
"""


@pytest.fixture
def sf() -> Iterator[SalesforceEmulator]:
    with SalesforceEmulator() as emulator:
        yield emulator
        assert emulator.internal_errors == []


@pytest.fixture(autouse=True)
def _secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SF_CLIENT_ID", DEFAULT_CONSUMER_KEY)
    monkeypatch.setenv("SF_CLIENT_SECRET", DEFAULT_CONSUMER_SECRET)


@pytest.fixture(autouse=True)
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Retry backoff and lock retries are recorded, never slept."""
    waited: list[float] = []
    monkeypatch.setattr("connectors.salesforce.connector._real_sleep", waited.append)
    return waited


def config_text(sf: SalesforceEmulator, extra: str = "", segments: str = SEGMENTS) -> str:
    return f"""
[crm]
type = "salesforce"
auth = "client_credentials"
client_id_env = "SF_CLIENT_ID"
client_secret_env = "SF_CLIENT_SECRET"
instance_url = "{sf.instance_url}"
ca_file = "{sf.ca_file}"
max_requests_per_second = 0
{extra}

[store]
path = "store.duckdb"

[sync]
max_removal_fraction = 1.0
{segments}
"""


def make_config(sf: SalesforceEmulator, tmp_path: Path, extra: str = "",
                segments: str = SEGMENTS) -> Config:
    return parse_config(tomllib.loads(config_text(sf, extra, segments)), tmp_path / "segsync.toml")


def sync(sf: SalesforceEmulator, config: Config, **kwargs: Any) -> tuple[SyncOutcome, Any]:
    connector = connectors.create(config.crm)
    assert isinstance(connector, SalesforceConnector)
    try:
        with Store.open(config.store.path) as store:
            outcome = run_sync(config, connector, store,
                               clock=lambda: sf.clock.now().replace(tzinfo=None), **kwargs)
    finally:
        connector.close()
    return outcome, connector


def campaign(sf: SalesforceEmulator, name: str) -> set[str]:
    (found,) = sf.campaigns(name)
    people = [m["ContactId"] or m["LeadId"] for m in sf.members(found["Id"])]
    assert len(people) == len(set(people)), f"{name} holds someone twice"
    return set(people)


@dataclass
class World:
    c: list[str]
    leads: list[str]
    retail: str
    won: str
    newsletter: str


def seed(sf: SalesforceEmulator) -> World:
    today = sf.clock.now().date()
    retail = sf.add("Account", Name="Shop GmbH", Industry="Retail", BillingLatitude=52.5,
                    BillingLongitude=13.4)
    bank = sf.add("Account", Name="Bank AG", Industry="Banking")
    rows = [("Berlin", retail, False), ("Berlin", bank, False), ("Paris", retail, False),
            ("Berlin", retail, True), ("Rome", None, False), ("Berlin", None, False),
            ("Berlin", None, False)]
    c = [sf.add("Contact", LastName=f"C{i}", Email=f"c{i}@example.com", MailingCity=city,
                AccountId=account, HasOptedOutOfEmail=opted)
         for i, (city, account, opted) in enumerate(rows)]
    leads = [sf.add("Lead", LastName="L0", Company="Startup", City="Berlin", Email="l0@x.com"),
             sf.add("Lead", LastName="L1", Company="Startup", City="Paris"),
             sf.add("Lead", LastName="L2", Company="Startup", City="Berlin", DoNotCall=True)]
    won = sf.add("Opportunity", Name="Won", StageName="Closed Won", Amount=500.0,
                 CloseDate=today - dt.timedelta(days=30), ContactId=c[2], AccountId=retail)
    roles = sf.add("Opportunity", Name="Roles", StageName="Closed Won", Amount=90.0,
                   CloseDate=today - dt.timedelta(days=60), AccountId=bank)
    for person in (c[4], c[5]):
        sf.add("OpportunityContactRole", OpportunityId=roles, ContactId=person)
    sf.add("Opportunity", Name="Lost", StageName="Closed Lost", Amount=1.0,
           CloseDate=today - dt.timedelta(days=5), ContactId=c[1])
    sf.add("Task", WhoId=c[1], Subject="Call", Type="Call", Status="Completed",
           ActivityDate=today - dt.timedelta(days=10))
    sf.add("Event", WhoId=leads[1], Subject="Demo", Type="Meeting",
           ActivityDateTime=sf.clock.now() - dt.timedelta(days=3), DurationInMinutes=30)
    newsletter = sf.seed_foreign_campaign("Newsletter", member_ids=[c[0], c[1]])
    sf.clock.advance(hours=1)  # the org existed before segsync's first run
    return World(c, leads, retail, won, newsletter)


def expected(w: World) -> dict[str, set[str]]:
    c, leads = w.c, w.leads
    return {
        "segsync: Berlin": {c[0], c[1], c[5], c[6], leads[0]},  # c3 and L2 opted out
        "segsync: Retail firms": {c[0], c[2]},
        "segsync: Buyers": {c[2], c[4], c[5]},
        "segsync: Called": {c[1]},
    }


def live(sf: SalesforceEmulator) -> dict[str, set[str]]:
    return {c["Name"]: campaign(sf, c["Name"]) for c in sf.campaigns()
            if c["Name"].startswith("segsync: ")}


# --- logins ------------------------------------------------------------------------------------


@pytest.mark.parametrize("auth", ["jwt", "password", "client_credentials"])
def test_every_auth_flow_logs_in(
    sf: SalesforceEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, auth: str
) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (tmp_path / "app.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    sf.add_connected_app("jwt-app-key", public_key_pem=public)
    monkeypatch.setenv("SF_JWT_KEY", "jwt-app-key")
    monkeypatch.setenv("SF_PASSWORD", DEFAULT_PASSWORD)
    monkeypatch.setenv("SF_SECURITY_TOKEN", DEFAULT_SECURITY_TOKEN)
    lines = {
        "jwt": f'auth = "jwt"\nusername = "{DEFAULT_USERNAME}"\nconsumer_key_env = "SF_JWT_KEY"\n'
               'private_key_file = "app.key"',
        "password": f'auth = "password"\nusername = "{DEFAULT_USERNAME}"\n'
                    'password_env = "SF_PASSWORD"\nsecurity_token_env = "SF_SECURITY_TOKEN"',
        "client_credentials": "",
    }[auth]
    text = config_text(sf).replace('auth = "client_credentials"', lines or
                                   'auth = "client_credentials"')
    config = parse_config(tomllib.loads(text), tmp_path / "segsync.toml")
    sf.add("Account", Name="Acme")
    connector = connectors.create(config.crm)
    pages = list(connector.pull(PullRequest("companies", None)))
    assert len(pages[-1].present_ids or ()) == 1
    assert connector.client.logins == 1


# --- the promises ------------------------------------------------------------------------------


def test_full_sync_creates_campaigns_with_exactly_the_computed_members(
    sf: SalesforceEmulator, tmp_path: Path
) -> None:
    w = seed(sf)
    outcome, connector = sync(sf, make_config(sf, tmp_path))
    assert outcome.status == "ok"
    assert live(sf) == expected(w)
    assert all(sf.created_by_segsync(c["Id"]) for c in sf.campaigns()
               if c["Name"].startswith("segsync: "))
    assert campaign(sf, "Newsletter") == {w.c[0], w.c[1]}
    assert sf.foreign_writes == []
    usage = connector.api_usage()
    assert usage["POST sobjects/Campaign"] == 4
    assert usage["POST composite/sobjects"] == 4  # one insert per campaign
    with Store.open(tmp_path / "store.duckdb") as store:
        assert {r.name for r in store.targets().values()} == set(expected(w))


def test_a_rerun_makes_no_write_calls(sf: SalesforceEmulator, tmp_path: Path) -> None:
    seed(sf)
    config = make_config(sf, tmp_path)
    sync(sf, config)
    sf.clock.advance(hours=6)
    sf.clear_requests()
    outcome, connector = sync(sf, config)
    assert (outcome.plan.adds, outcome.plan.removes) == (0, 0)
    assert sf.write_requests() == []
    # One queryAll per object (Account, Contact, Lead, Opportunity, OpportunityContactRole,
    # Task, Event, EmailMessage, EmailMessageRelation); nothing changed, so nothing more.
    assert connector.api_usage() == {"GET queryAll": 9, "POST oauth2/token (login)": 1}


def test_changes_deletes_merges_and_conversions_are_reflected(
    sf: SalesforceEmulator, tmp_path: Path
) -> None:
    w = seed(sf)
    c, leads = w.c, w.leads
    config = make_config(sf, tmp_path)
    sync(sf, config)
    sf.clock.advance(hours=1)
    sf.update(c[1], MailingCity="Paris")
    sf.update(c[4], MailingCity="Berlin")
    sf.delete(c[5])
    sf.merge(c[0], c[6])
    converted = sf.convert_lead(leads[0])
    sf.update(w.won, StageName="Prospecting")  # a won deal re-opened
    sf.clock.advance(minutes=10)
    outcome, _ = sync(sf, config)
    assert outcome.status == "ok"
    assert live(sf) == {
        "segsync: Berlin": {c[0], c[4], converted.contact_id},
        "segsync: Retail firms": {c[0], c[2]},
        "segsync: Buyers": {c[4]},
        "segsync: Called": {c[1]},
    }
    assert sf.foreign_writes == []
    with Store.open(tmp_path / "store.duckdb") as store:
        ids = {r[0] for r in sql(store, "SELECT _crm_id FROM contacts").fetchall()}
    assert {c[5], c[6], leads[0]}.isdisjoint(ids)
    assert converted.contact_id in ids
    sf.clock.advance(hours=1)
    sf.clear_requests()
    sync(sf, config)
    assert sf.write_requests() == []


def test_deletions_older_than_the_recycle_bin_are_found_by_a_full_reconcile(
    sf: SalesforceEmulator, tmp_path: Path
) -> None:
    w = seed(sf)
    config = make_config(sf, tmp_path)
    sync(sf, config)
    sf.delete(w.c[0])
    sf.clock.advance(days=16)  # the deletion left the recycle bin; queryAll cannot see it
    outcome, _ = sync(sf, config)
    assert outcome.pulled is not None
    assert outcome.pulled.records["contacts"] > 0
    assert w.c[0] not in campaign(sf, "segsync: Berlin")
    assert w.c[0] not in campaign(sf, "segsync: Retail firms")
    queries = [r.query.get("q", [""])[0] for r in sf.requests if r.relative in ("query/", "query")]
    assert any(q.startswith("SELECT Id, SystemModstamp, AccountId") and "SystemModstamp >="
               not in q for q in queries)


def test_a_killed_run_converges_without_redoing_finished_batches(
    sf: SalesforceEmulator, tmp_path: Path, sleeps: list[float]
) -> None:
    w = seed(sf)
    config = make_config(sf, tmp_path)
    sf.inject(Fault("http_503", path_prefix="composite/sobjects", method="POST", after=2,
                    times=None))
    with pytest.raises(RetriableAPIError, match="gave up after 5 attempts"):
        sync(sf, config)
    assert len(sleeps) == 4
    done_before = [r for r in sf.write_requests()
                   if r.relative == "composite/sobjects" and r.status == 200]
    assert len(done_before) == 2
    sf.clear_faults()
    sf.clock.advance(minutes=5)
    outcome, _ = sync(sf, config)
    assert outcome.status == "ok"
    assert live(sf) == expected(w)
    inserted = [(m["CampaignId"], m.get("ContactId") or m.get("LeadId"))
                for r in sf.write_requests()
                if r.relative == "composite/sobjects" and r.status == 200
                for m in r.json["records"]]
    assert len(inserted) == len(set(inserted)), "a finished batch was sent again"


def test_lock_errors_5xx_and_an_expired_session_converge_in_one_run(
    sf: SalesforceEmulator, tmp_path: Path, sleeps: list[float]
) -> None:
    w = seed(sf)
    faults = [
        sf.inject(Fault("unable_to_lock_row", path_prefix="composite/sobjects", method="POST",
                        record_indexes=(0, 1), times=2)),
        # processed, then answered 500: the retry meets DUPLICATE_VALUE, which is success
        sf.inject(Fault("http_500", path_prefix="composite/sobjects", method="POST", after=3,
                        reach_org=True)),
        sf.inject(Fault("server_unavailable", path_prefix="query", times=2)),
        sf.inject(Fault("session_expired", path_prefix="queryAll", times=1)),
        sf.inject(Fault("disconnect", path_prefix="query", after=3)),
    ]
    outcome, connector = sync(sf, make_config(sf, tmp_path))
    assert [f.fired for f in faults] == [2, 1, 2, 1, 1]
    assert outcome.status == "ok"
    assert live(sf) == expected(w)
    assert connector.client.logins == 2  # the expired session was replaced, once
    assert len(sleeps) == 2 + 1 + 2 + 1  # lock retries, 500, 503s, disconnect
    sf.clock.advance(hours=1)
    sf.clear_requests()
    outcome, _ = sync(sf, make_config(sf, tmp_path))
    assert outcome.status == "ok"
    assert sf.write_requests() == []


def test_the_daily_allocation_is_respected(sf: SalesforceEmulator, tmp_path: Path) -> None:
    seed(sf)
    sf.api_used = 7_495  # of 15,000; the default share is 0.5
    with pytest.raises(QuotaExhausted, match=r"max_daily_api_share = 0\.5"):
        sync(sf, make_config(sf, tmp_path))
    assert sf.write_requests() == []  # stopped before the first write
    sf.api_used = 14_999
    with pytest.raises(QuotaExhausted, match="REQUEST_LIMIT_EXCEEDED"):
        sync(sf, make_config(sf, tmp_path, extra="max_daily_api_share = 1.0"))
    assert sf.write_requests() == []


def test_persistent_lock_errors_are_reported_then_retried_next_run(
    sf: SalesforceEmulator, tmp_path: Path
) -> None:
    w = seed(sf)
    config = make_config(sf, tmp_path, segments=SEGMENTS.split("[[segment]]\nkey = \"retail\"")[0])
    sf.inject(Fault("unable_to_lock_row", path_prefix="composite/sobjects", method="POST",
                    record_indexes=(0,), times=4))
    outcome, _ = sync(sf, config)
    assert outcome.status == "partial"
    assert outcome.applied is not None
    assert outcome.applied.failed == 1
    assert len(campaign(sf, "segsync: Berlin")) == len(expected(w)["segsync: Berlin"]) - 1
    sf.clock.advance(minutes=5)
    outcome, _ = sync(sf, config)
    assert outcome.status == "ok"
    assert campaign(sf, "segsync: Berlin") == expected(w)["segsync: Berlin"]


def test_a_foreign_campaign_with_the_segment_name_is_never_touched(
    sf: SalesforceEmulator, tmp_path: Path
) -> None:
    w = seed(sf)
    sf.seed_foreign_campaign("segsync: Berlin", member_ids=[w.c[4]])
    with pytest.raises(TargetConflict, match="segsync: Berlin"):
        sync(sf, make_config(sf, tmp_path))
    assert sf.foreign_writes == []
    assert campaign(sf, "segsync: Berlin") == {w.c[4]}


def test_renaming_a_segment_renames_its_campaign(sf: SalesforceEmulator, tmp_path: Path) -> None:
    w = seed(sf)
    sync(sf, make_config(sf, tmp_path))
    renamed = SEGMENTS.replace('name = "Berlin"', 'name = "Berliners"')
    sf.clock.advance(hours=1)
    sync(sf, make_config(sf, tmp_path, segments=renamed))
    assert sf.campaigns("segsync: Berlin") == []
    assert campaign(sf, "segsync: Berliners") == expected(w)["segsync: Berlin"]


def test_members_reads_live_campaign_members_for_reconcile(
    sf: SalesforceEmulator, tmp_path: Path
) -> None:
    w = seed(sf)
    config = make_config(sf, tmp_path)
    sync(sf, config)
    (berlin,) = sf.campaigns("segsync: Berlin")
    sf.add_member(berlin["Id"], w.c[2])  # a manual edit in Salesforce
    connector = connectors.create(config.crm)
    assert set(connector.members(TargetRef(berlin["Id"], "segsync: Berlin"))) == (
        expected(w)["segsync: Berlin"] | {w.c[2]})


def test_check_reports_access_and_the_marketing_user_flag(
    sf: SalesforceEmulator, tmp_path: Path
) -> None:
    sf.define_multipicklist("Segsync_Segments__c", ["berlin"])
    config = make_config(sf, tmp_path, extra='write_mode = "both"')
    connector = connectors.create(config.crm)
    lines = connector.check()
    assert any("logged in to https://127.0.0.1" in line for line in lines)
    assert any("User.UserPermissionsMarketingUser" in line for line in lines)
    assert any("Segsync_Segments__c: multi-select picklist, writable" in line for line in lines)
    assert any("daily API requests" in line for line in lines)
    sf.marketing_user = False
    with pytest.raises(AuthError, match="Marketing User"):
        connectors.create(config.crm).check()
    sf.marketing_user = True
    sf.set_field_access("Lead", "Segsync_Segments__c", updateable=False)
    with pytest.raises(ConnectorError, match=r"Lead\.Segsync_Segments__c is read-only"):
        connectors.create(config.crm).check()


def test_field_mode_writes_the_multi_select_picklist(
    sf: SalesforceEmulator, tmp_path: Path
) -> None:
    w = seed(sf)
    sf.define_multipicklist("Segsync_Segments__c", ["berlin", "retail"], restricted=True)
    connector = connectors.create(make_config(sf, tmp_path, extra='write_mode = "field"').crm)
    assert isinstance(connector, SalesforceConnector)
    connector.ensure_field(["berlin", "retail"])
    sf.convert_lead(w.leads[1])
    result = connector.write_field({w.c[0]: ("retail", "berlin"), w.c[1]: (),
                                    w.leads[0]: ("berlin",), w.leads[1]: ("berlin",)})
    assert result.failed == {}
    assert sf.get(w.c[0])["Segsync_Segments__c"] == "berlin;retail"  # type: ignore[index]
    assert sf.get(w.c[1])["Segsync_Segments__c"] is None  # type: ignore[index]
    assert sf.get(w.leads[0])["Segsync_Segments__c"] == "berlin"  # type: ignore[index]
    assert sf.foreign_writes == []
    with pytest.raises(ConnectorError, match="without the value"):
        connector.ensure_field(["berlin", "vip"])


def test_secrets_never_reach_the_output_or_the_store(
    sf: SalesforceEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    seed(sf)
    path = tmp_path / "segsync.toml"
    path.write_text(config_text(sf), encoding="utf-8")
    sf.inject(Fault("session_expired", path_prefix="query", after=1, times=1))
    assert main(["sync", "--config", str(path), "--verbose"]) == 0
    sf.marketing_user = False
    assert main(["check", "--config", str(path), "--debug"]) == 4  # AuthError
    out, err = capsys.readouterr()
    text = out + err + caplog.text
    assert "Marketing User" in err
    secrets = [DEFAULT_CONSUMER_SECRET, DEFAULT_CONSUMER_KEY, "EMSESSION"]
    assert [s for s in secrets if s in text] == []
    stored = (tmp_path / "store.duckdb").read_bytes()
    assert [s for s in secrets if s.encode() in stored] == []


def test_bulk_api_2_reads_a_big_first_pull(sf: SalesforceEmulator, tmp_path: Path) -> None:
    sf.page_size = 200
    people = [sf.add("Contact", LastName=f"P{i}", MailingCity="Berlin" if i % 3 else "Rome")
              for i in range(1500)]
    sf.clock.advance(hours=1)
    segments = SEGMENTS.split('[[segment]]\nkey = "retail"')[0]
    outcome, connector = sync(sf, make_config(sf, tmp_path, extra="bulk_threshold = 1000",
                                              segments=segments))
    assert outcome.status == "ok"
    usage = connector.api_usage()
    assert usage["POST jobs/query"] == 1
    assert usage.get("GET query (next page)") is None
    assert campaign(sf, "segsync: Berlin") == {p for i, p in enumerate(people) if i % 3}


# --- API calls ---------------------------------------------------------------------------------


def populate(sf: SalesforceEmulator, people: int) -> list[str]:
    """``people`` persons (80% contacts, 20% leads) on people/10 accounts, a third in Berlin."""
    accounts = [sf.add("Account", Name=f"A{i}", Industry="Retail" if i % 2 else "Banking")
                for i in range(people // 10)]
    cities = ("Berlin", "Paris", "Rome")
    ids = [sf.add("Contact", LastName=f"C{i}", AccountId=accounts[i % len(accounts)],
                  MailingCity=cities[i % 3]) for i in range(people * 8 // 10)]
    ids += [sf.add("Lead", LastName=f"L{i}", Company="X", City=cities[i % 3])
            for i in range(people * 2 // 10)]
    sf.clock.advance(hours=1)
    return ids


def test_api_calls_for_a_full_sync_and_a_one_percent_change(
    sf: SalesforceEmulator, tmp_path: Path
) -> None:
    """The counts match the arithmetic of the design (see the report for 10,000 people)."""
    n = 2000
    ids = populate(sf, n)
    segments = SEGMENTS.split('[[segment]]\nkey = "buyers"')[0]
    config = make_config(sf, tmp_path, segments=segments)
    outcome, connector = sync(sf, config)
    assert outcome.applied is not None
    berlin = len(campaign(sf, "segsync: Berlin"))
    retail = len(campaign(sf, "segsync: Retail firms"))
    reads = math.ceil(n // 10 / 2000) + math.ceil(n * 8 // 10 / 2000) + math.ceil(
        n * 2 // 10 / 2000)
    writes = math.ceil(berlin / 200) + math.ceil(retail / 200)
    assert connector.api_usage() == {
        "GET query": reads + 2,  # + one name check per new campaign
        "POST composite/sobjects": writes,
        "POST sobjects/Campaign": 2,
        "POST oauth2/token (login)": 1,
    }
    # 1% of the people change city.
    sf.clock.advance(hours=1)
    changed = ids[::100]
    for person in changed:
        city = {"Contact": "MailingCity", "Lead": "City"}["Contact" if person[:3] == "003"
                                                          else "Lead"]
        sf.update(person, **{city: "Berlin"})
    sf.clock.advance(minutes=10)
    outcome, connector = sync(sf, config)
    assert outcome.applied is not None
    assert outcome.applied.adds == outcome.plan.adds > 0
    assert connector.api_usage() == {
        "GET queryAll": 3,  # Account, Contact, Lead: each one page
        "POST composite/sobjects": 1,
        "POST oauth2/token (login)": 1,
    }
    report = {"people": n, "full": connector.api_usage()}
    assert json.dumps(report)


# --- emulator behaviours this suite relies on (added for the connector) ------------------------


def test_emulator_date_header_follows_the_org_clock(sf: SalesforceEmulator) -> None:
    sf.clock.advance(days=3)
    with sf.make_session() as http:
        response = http.get(sf.data_url() + "limits/",
                            headers={"Authorization": f"Bearer {sf.issue_session()}"})
    assert response.headers["Date"] == sf.clock.now().strftime("%a, %d %b %Y %H:%M:%S GMT")


def test_emulator_user_row_and_marketing_user_flag(sf: SalesforceEmulator) -> None:
    client = sf.client()
    try:
        (user,) = client.query("SELECT Username, UserPermissionsMarketingUser FROM User")["records"]
        assert (user["Username"], user["UserPermissionsMarketingUser"]) == (DEFAULT_USERNAME, True)
        sf.marketing_user = False
        assert client.Campaign.describe()["createable"] is False
        assert client.CampaignMember.describe()["deletable"] is False
    finally:
        client.session.close()


def test_emulator_conversion_moves_the_leads_activities(sf: SalesforceEmulator) -> None:
    lead = sf.add("Lead", LastName="L", Company="X")
    task = sf.add("Task", WhoId=lead, Subject="Call")
    converted = sf.convert_lead(lead)
    assert sf.get(task)["WhoId"] == converted.contact_id  # type: ignore[index]


def test_reconcile_corrects_a_manual_campaign_edit(sf: SalesforceEmulator, tmp_path: Path) -> None:
    w = seed(sf)
    config = make_config(sf, tmp_path)
    sync(sf, config)
    (berlin,) = sf.campaigns("segsync: Berlin")
    sf.add_member(berlin["Id"], w.c[2])  # added by hand in Salesforce
    sf.clock.advance(minutes=10)
    outcome, _ = sync(sf, config, reconcile_first=True)
    assert outcome.plan.drift == (("berlin", 1, 0),)
    assert live(sf) == expected(w)
    assert sf.foreign_writes == []


def test_field_mode_through_the_engine(sf: SalesforceEmulator, tmp_path: Path) -> None:
    w = seed(sf)
    names = ["Berlin", "Buyers", "Called", "Retail firms"]
    sf.define_multipicklist("Segsync_Segments__c", names, restricted=True)
    config = make_config(sf, tmp_path, extra='write_mode = "field"')
    outcome, _ = sync(sf, config)
    assert outcome.plan.field_updates > 0
    assert live(sf) == {}, "field mode creates no campaigns"
    want: dict[str, set[str]] = {}
    for name, people in expected(w).items():
        for person in people:
            want.setdefault(person, set()).add(name.removeprefix("segsync: "))
    for person, segments in want.items():
        value = sf.get(person)["Segsync_Segments__c"]  # type: ignore[index]
        assert set(value.split(";")) == segments, person
    sf.clock.advance(minutes=10)
    sf.clear_requests()
    again, _ = sync(sf, config)
    assert again.plan.field_updates == 0
    assert sf.write_requests() == []


def test_delete_target_removes_an_owned_campaign_for_prune(
    sf: SalesforceEmulator, tmp_path: Path
) -> None:
    seed(sf)
    config = make_config(sf, tmp_path)
    _, connector = sync(sf, config)
    (berlin,) = sf.campaigns("segsync: Berlin")
    target = TargetRef(berlin["Id"], "segsync: Berlin")
    connector.delete_target(target)
    assert sf.campaigns("segsync: Berlin") == []
    connector.delete_target(target)  # gone already = deleted
    assert sf.foreign_writes == []
