"""``[crm] type = "hubspot"``: every key validated, every problem reported, secrets by name."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import connectors
from connectors.base import ACTIVITY_TYPES
from connectors.hubspot import SETTINGS_KEYS, HubSpotConnector, HubSpotSettings, parse_settings
from segment_rules.errors import Problem
from segment_rules.tables import TableReader
from sync.config import Config, parse_config
from sync.errors import ConfigError

SEGMENT = """
[[segment]]
key = "berlin"
name = "Berlin"
all = [{ field = "city", op = "eq", value = "Berlin" }]
"""


def config(tmp_path: Path, crm: str) -> Config:
    text = f'[crm]\ntype = "hubspot"\n{crm}\n{SEGMENT}'
    return parse_config(tomllib.loads(text), tmp_path / "segsync.toml")


def problems(tmp_path: Path, crm: str) -> str:
    with pytest.raises(ConfigError) as caught:
        config(tmp_path, crm)
    return str(caught.value)


def test_defaults(tmp_path: Path) -> None:
    settings = config(tmp_path, "").crm
    assert isinstance(settings, HubSpotSettings)
    assert settings.token_env == "HUBSPOT_TOKEN"
    assert settings.base_url == "https://api.hubapi.com"
    assert settings.requests_per_10s == 100
    assert settings.search_per_second == 4
    assert settings.write_mode == "lists"
    assert settings.property_name == "segsync_segments"
    assert settings.contact_property("email_opt_out") == "hs_email_optout"
    assert settings.contact_property("lifecycle_stage") == "lifecyclestage"
    assert settings.contact_property("nps_score") == "nps_score"  # unmapped: same name
    assert settings.company_property("employees") == "numberofemployees"
    assert settings.activity_types["calls"] == "call"


def test_the_registry_builds_a_hubspot_connector(tmp_path: Path) -> None:
    settings = config(tmp_path, 'base_url = "http://127.0.0.1:9/"').crm
    built = connectors.create(settings)
    assert isinstance(built, HubSpotConnector)
    assert built.api.base_url == "http://127.0.0.1:9"
    caps = built.capabilities()
    assert caps.max_batch == 10_000
    assert caps.lists
    assert not caps.field
    both = connectors.create(config(tmp_path, 'write_mode = "both"').crm).capabilities()
    assert both.lists
    assert both.field


def test_tiers_and_explicit_budget(tmp_path: Path) -> None:
    assert config(tmp_path, 'tier = "professional"').crm.requests_per_10s == 190  # type: ignore[attr-defined]
    assert config(tmp_path, 'tier = "enterprise"').crm.requests_per_10s == 190  # type: ignore[attr-defined]
    explicit = config(tmp_path, 'tier = "starter"\nrequests_per_10s = 80').crm
    assert explicit.requests_per_10s == 80  # type: ignore[attr-defined]


def test_incoming_emails_default_to_email_received(tmp_path: Path) -> None:
    settings = config(tmp_path, "").crm
    assert isinstance(settings, HubSpotSettings)
    assert settings.activity_types["incoming_emails"] == "email_received"
    assert settings.activity_types["emails"] == "email_sent"
    assert "email_received" in ACTIVITY_TYPES  # a canonical type rules can name
    skipped = config(tmp_path, '[crm.activity_types]\nincoming_emails = ""').crm
    assert skipped.activity_types["incoming_emails"] == ""  # type: ignore[attr-defined]


def test_mappings_merge_with_defaults(tmp_path: Path) -> None:
    crm = """
[crm.fields]
nps_score = "nps"
latitude = ""
[crm.company_fields]
industry = "industry_code"
[crm.activity_types]
incoming_emails = "email_click"
notes = ""
"""
    settings = config(tmp_path, crm).crm
    assert isinstance(settings, HubSpotSettings)
    assert settings.contact_property("nps_score") == "nps"
    assert settings.fields["latitude"] == ""
    assert settings.contact_property("first_name") == "firstname"
    assert settings.company_property("industry") == "industry_code"
    assert settings.activity_types["incoming_emails"] == "email_click"
    assert settings.activity_types["notes"] == ""


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    crm = """
tier = "gold"
write_mode = "list"
search_per_second = 9
property_name = "Segsync Segments"
base_url = "ftp://example.com"
token_env = "not a name"
membership_batch_size = 200000
timezone = "Mars/Olympus"
[crm.fields]
nps = "NPS Score"
[crm.activity_types]
call = "call"
meetings = "meeting_booked"
"""
    text = problems(tmp_path, crm)
    for expected in (
        "crm.tier: must be one of", "crm.write_mode: must be one of",
        "did you mean 'lists'?", "crm.search_per_second: must be at most 5",
        "crm.property_name", "crm.base_url", "crm.token_env",
        "crm.membership_batch_size: must be at most 100000", "crm.timezone",
        "crm.fields.nps", "crm.activity_types.call", "did you mean 'calls'?",
        "crm.activity_types.meetings",
    ):
        assert expected in text


def test_unknown_keys_get_a_hint(tmp_path: Path) -> None:
    assert "did you mean 'token_env'?" in problems(tmp_path, 'tokenenv = "X"')


def test_secrets_must_not_be_written_in_the_file(tmp_path: Path) -> None:
    text = problems(tmp_path, 'token = "pat-na1-abc"')
    assert "secrets must not be written in the config file" in text
    assert "pat-na1-abc" not in text


def test_oauth_keys_only_with_oauth(tmp_path: Path) -> None:
    text = problems(tmp_path, 'client_id_env = "ID"')
    assert 'crm.client_id_env: is only used with auth = "oauth"' in text
    settings = config(tmp_path, 'auth = "oauth"\nrefresh_token_env = "HS_REFRESH"').crm
    assert settings.refresh_token_env == "HS_REFRESH"  # type: ignore[attr-defined]


odd = st.one_of(
    st.integers(), st.floats(allow_nan=True), st.text(max_size=20), st.booleans(),
    st.lists(st.text(max_size=5), max_size=3),
    st.dictionaries(st.text(max_size=8), st.one_of(st.text(max_size=8), st.integers()),
                    max_size=3),
    st.sampled_from(["http://[", "http://h:99999", "../../etc", "Europe/Berlin\x00", ""]),
)


@given(table=st.dictionaries(st.sampled_from(SETTINGS_KEYS), odd, max_size=6))
@settings(max_examples=150, deadline=None)
def test_any_value_gives_settings_or_a_config_error(table: dict[str, object]) -> None:
    problems: list[Problem] = []
    result = parse_settings(TableReader(problems), dict(table), Path("."))
    assert (result is None) == bool(problems)
