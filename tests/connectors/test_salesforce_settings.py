"""``[crm] type = "salesforce"``: parsing, validation messages, and the registry entry."""

from __future__ import annotations

import logging
import tomllib
from pathlib import Path

import pytest

import connectors
from connectors.salesforce import API_VERSION, SalesforceConnector, SalesforceSettings
from connectors.salesforce.settings import DEFAULT_LEAD_FIELDS
from sync.config import parse_config
from sync.errors import ConfigError

SEGMENT = """
[[segment]]
key = "berlin"
name = "Berlin"
all = [{ field = "city", op = "eq", value = "Berlin" }]
"""


def parse(tmp_path: Path, crm: str) -> SalesforceSettings:
    config = parse_config(tomllib.loads(f'[crm]\ntype = "salesforce"\n{crm}\n{SEGMENT}'),
                          tmp_path / "segsync.toml")
    assert isinstance(config.crm, SalesforceSettings)
    return config.crm


def problems(tmp_path: Path, crm: str) -> str:
    with pytest.raises(ConfigError) as caught:
        parse(tmp_path, crm)
    return str(caught.value)


def test_api_version_is_pinned_in_one_place() -> None:
    assert API_VERSION == "64.0"


def test_jwt_settings_with_defaults(tmp_path: Path) -> None:
    settings = parse(tmp_path, """
auth = "jwt"
username = "integration@acme.com"
consumer_key_env = "SF_CONSUMER_KEY"
private_key_file = "keys/segsync.key"
domain = "acme.my"
""")
    assert settings.private_key_file == tmp_path / "keys/segsync.key"
    assert settings.login_url == "https://acme.my.salesforce.com"
    assert (settings.write_mode, settings.objects) == ("campaigns", ("Contact", "Lead"))
    assert settings.sf_field("Contact", "email_opt_out") == "HasOptedOutOfEmail"
    assert settings.sf_field("Contact", "do_not_call") == "DoNotCall"
    assert settings.sf_field("Account", "employees") == "NumberOfEmployees"
    assert settings.sf_field("Account", "latitude") == "BillingLatitude"
    assert settings.sf_field("Lead", "city") == "City"
    assert settings.sf_field("Contact", "NPS_Score__c") == "NPS_Score__c"
    assert (settings.bulk_threshold, settings.max_daily_api_share) == (20_000, 0.5)


def test_sandbox_and_instance_override(tmp_path: Path) -> None:
    settings = parse(tmp_path, """
auth = "client_credentials"
client_id_env = "SF_ID"
client_secret_env = "SF_SECRET"
domain = "test"
instance_url = "https://127.0.0.1:8443/"
ca_file = "ca.pem"
write_mode = "both"
objects = ["Lead"]
""")
    assert settings.sandbox
    assert settings.login_url == "https://127.0.0.1:8443"
    assert settings.ca_file == tmp_path / "ca.pem"
    assert settings.writes_campaigns
    assert settings.writes_field
    assert settings.objects == ("Lead",)


def test_field_maps_merge_with_the_defaults(tmp_path: Path) -> None:
    settings = parse(tmp_path, """
auth = "client_credentials"
client_id_env = "SF_ID"
client_secret_env = "SF_SECRET"
domain = "acme.my"
[crm.contact_fields]
nps = "NPS_Score__c"
[crm.lead_fields]
nps = ""
""")
    assert settings.sf_field("Contact", "nps") == "NPS_Score__c"
    assert settings.sf_field("Lead", "nps") == ""
    assert settings.sf_field("Lead", "company") == DEFAULT_LEAD_FIELDS["company"]
    assert settings.explicitly_mapped("Contact", "nps")
    assert not settings.explicitly_mapped("Contact", "email")


@pytest.mark.parametrize(
    ("crm", "expected"),
    [
        ('auth = "oauth"', "crm.auth: must be one of"),
        ("domain = \"acme.my\"", "crm.auth: is required"),
        ('auth = "jwt"\nconsumer_key_env = "K"', "crm.username: is required with auth = \"jwt\""),
        ('auth = "jwt"\nusername = "u"\nconsumer_key_env = "K"',
         "crm.private_key_file: is required"),
        ('auth = "client_credentials"\nclient_id_env = "A"\nclient_secret_env = "B"',
         "crm.domain: client_credentials needs your My Domain"),
        ('auth = "password"\nusername = "u"\npassword_env = "P"',
         "crm.security_token_env: is required"),
        ('auth = "client_credentials"\nclient_id_env = "not a name"\nclient_secret_env = "B"\n'
         'domain = "acme.my"', "crm.client_id_env: 'not a name' is not valid"),
        ('auth = "client_credentials"\nclient_id_env = "A"\nclient_secret_env = "B"\n'
         'domain = "acme.my"\nobjects = ["Contact", "Account"]', "crm.objects: must be"),
        ('auth = "client_credentials"\nclient_id_env = "A"\nclient_secret_env = "B"\n'
         'domain = "acme.my"\nwrite_mode = "lists"', "crm.write_mode: must be one of"),
        ('auth = "client_credentials"\nclient_id_env = "A"\nclient_secret_env = "B"\n'
         'domain = "acme.my"\nmax_daily_api_share = 2', "crm.max_daily_api_share: must be at most"),
        ('auth = "client_credentials"\nclient_id_env = "A"\nclient_secret_env = "B"\n'
         'domain = "acme.my"\ninstance_url = "http://x"', "crm.instance_url: 'http://x'"),
        ('auth = "client_credentials"\nclient_id_env = "A"\nclient_secret_env = "B"\n'
         'domain = "acme.my"\n[crm.contact_fields]\ncity = "Mailing City"',
         'crm.contact_fields.city: must be a Salesforce field API name'),
        ('auth = "client_credentials"\nclient_id_env = "A"\nclient_secret_env = "B"\n'
         'domain = "acme.my"\nbulk_treshold = 5', "did you mean 'bulk_threshold'?"),
        ('auth = "password"\nusername = "u"\npassword = "hunter22"',
         "crm.password: secrets must not be written in the config file"),
    ],
    ids=["unknown-auth", "auth-missing", "jwt-username", "jwt-key-file", "cc-my-domain",
         "password-token", "env-name", "objects", "write-mode", "share", "instance-url",
         "field-name", "typo", "inline-secret"],
)
def test_invalid_settings_are_reported(tmp_path: Path, crm: str, expected: str) -> None:
    assert expected in problems(tmp_path, crm)


def test_password_auth_warns_that_salesforce_deprecated_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, "segsync.salesforce"):
        settings = parse(tmp_path, 'auth = "password"\nusername = "u"\npassword_env = "P"\n'
                                   'security_token_env = "T"')
    assert settings.auth == "password"
    assert "deprecated" in caplog.text
    assert "API 65.0" in caplog.text


def test_registry_builds_the_connector_without_touching_secrets(tmp_path: Path) -> None:
    settings = parse(tmp_path, 'auth = "client_credentials"\nclient_id_env = "NOT_SET_ANYWHERE"\n'
                               'client_secret_env = "NOT_SET_EITHER"\ndomain = "acme.my"')
    connector = connectors.create(settings)
    assert isinstance(connector, SalesforceConnector)
    assert connector.capabilities().max_batch == 200
    assert connector.capabilities().max_field_batch == 200
    assert connector.api_usage() == {}
    connector.close()
