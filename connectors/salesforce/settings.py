"""``[crm]`` settings for ``type = "salesforce"``, and the connector's fixed facts.

Everything a Salesforce deployment may choose lives in :class:`SalesforceSettings`; facts
about the API that segsync relies on (version, batch sizes, windows) are constants here,
in one place. The API version is pinned on purpose: 64.0 is the newest version on which
SOAP ``login()`` (the deprecated username + password + token flow) still exists, and it
is supported until at least mid-2028.

Example::

    [crm]
    type = "salesforce"
    auth = "jwt"                              # jwt | client_credentials | password
    username = "integration@acme.com"
    consumer_key_env = "SF_CONSUMER_KEY"
    private_key_file = "secrets/segsync.key"  # relative to the config file
    domain = "acme.my"                        # login | test (sandboxes) | My Domain prefix
    write_mode = "campaigns"                  # campaigns | field | both
    field_name = "Segsync_Segments__c"

    [crm.contact_fields]                      # rule field -> Contact field
    nps = "NPS_Score__c"
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from connectors.base import ACTIVITY_TYPES
from segment_rules.tables import TableReader, key_path

__all__ = [
    "API_VERSION",
    "COLLECTION_LIMIT",
    "DEFAULT_COMPANY_FIELDS",
    "DEFAULT_CONTACT_FIELDS",
    "DEFAULT_LEAD_FIELDS",
    "SETTINGS_KEYS",
    "AuthKind",
    "SalesforceSettings",
    "WriteMode",
    "parse_settings",
]

log = logging.getLogger("segsync.salesforce")

#: The one place the REST API version is chosen (no leading "v": simple-salesforce wants "64.0").
API_VERSION = "64.0"
#: sObject Collections take at most this many records (or ids) per call.
COLLECTION_LIMIT = 200
#: Canonical activity types no object segsync reads holds (see ``activity_sources``).
UNAVAILABLE_ACTIVITY = ("email_open", "email_click", "page_view", "form_submission", "note")
#: A query page holds at most this many rows (Sforce-Query-Options batchSize maximum).
QUERY_PAGE = 2000
#: Records deleted longer ago than this may be gone from the recycle bin (15 days, minus a margin).
DELETE_WINDOW_DAYS = 14
#: Every incremental window starts this much before the last modstamp seen (late commits).
OVERLAP_SECONDS = 300
#: Campaign.Name is at most 80 characters.
CAMPAIGN_NAME_MAX = 80
#: Id lists in SOQL travel in the URL: keep ``IN (...)`` to this many ids per query.
SOQL_IDS_PER_QUERY = 200

AuthKind = Literal["jwt", "client_credentials", "password"]
WriteMode = Literal["campaigns", "field", "both"]
AUTH_KINDS: tuple[AuthKind, ...] = ("jwt", "client_credentials", "password")
WRITE_MODES: tuple[WriteMode, ...] = ("campaigns", "field", "both")
PERSON_OBJECTS = ("Contact", "Lead")

#: Canonical (rule) field names -> Salesforce API names; anything unlisted is used verbatim.
DEFAULT_CONTACT_FIELDS: Mapping[str, str] = {
    "email": "Email",
    "first_name": "FirstName",
    "last_name": "LastName",
    "title": "Title",
    "city": "MailingCity",
    "state": "MailingState",
    "postal_code": "MailingPostalCode",
    "country": "MailingCountry",
    "latitude": "MailingLatitude",
    "longitude": "MailingLongitude",
    "lead_source": "LeadSource",
    "email_opt_out": "HasOptedOutOfEmail",
    "do_not_call": "DoNotCall",
    "created_at": "CreatedDate",
}
DEFAULT_LEAD_FIELDS: Mapping[str, str] = {
    **DEFAULT_CONTACT_FIELDS,
    "city": "City",
    "state": "State",
    "postal_code": "PostalCode",
    "country": "Country",
    "latitude": "Latitude",
    "longitude": "Longitude",
    "company": "Company",
    "industry": "Industry",
    "employees": "NumberOfEmployees",
    "annual_revenue": "AnnualRevenue",
    "status": "Status",
}
DEFAULT_COMPANY_FIELDS: Mapping[str, str] = {
    "name": "Name",
    "industry": "Industry",
    "employees": "NumberOfEmployees",
    "annual_revenue": "AnnualRevenue",
    "type": "Type",
    "city": "BillingCity",
    "state": "BillingState",
    "postal_code": "BillingPostalCode",
    "country": "BillingCountry",
    "latitude": "BillingLatitude",
    "longitude": "BillingLongitude",
    "created_at": "CreatedDate",
}

SETTINGS_KEYS = (
    "auth",
    "username",
    "consumer_key_env",
    "private_key_file",
    "client_id_env",
    "client_secret_env",
    "password_env",
    "security_token_env",
    "domain",
    "instance_url",
    "ca_file",
    "write_mode",
    "field_name",
    "objects",
    "contact_fields",
    "lead_fields",
    "company_fields",
    "bulk_threshold",
    "max_daily_api_share",
    "max_requests_per_second",
    "timeout",
)
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_DOMAIN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]*(\.[A-Za-z0-9-]+)*$")
_API_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_INSTANCE_URL = re.compile(r"^https://[A-Za-z0-9.-]+(:\d+)?/?$")


@dataclass(frozen=True)
class SalesforceSettings:
    """``[crm]`` settings for ``type = "salesforce"``; secrets are env-var *names*."""

    auth: AuthKind
    username: str | None = None
    consumer_key_env: str | None = None
    private_key_file: Path | None = None
    client_id_env: str | None = None
    client_secret_env: str | None = None
    password_env: str | None = None
    security_token_env: str | None = None
    domain: str = "login"
    instance_url: str | None = None
    ca_file: Path | None = None
    write_mode: WriteMode = "campaigns"
    field_name: str = "Segsync_Segments__c"
    objects: tuple[str, ...] = PERSON_OBJECTS
    contact_fields: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_CONTACT_FIELDS))
    lead_fields: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_LEAD_FIELDS))
    company_fields: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_COMPANY_FIELDS))
    #: A first pull of an object larger than this uses Bulk API 2.0 (0: never).
    bulk_threshold: int = 20_000
    #: Writes stop before the org's daily API use would pass this share of its allocation.
    max_daily_api_share: float = 0.5
    #: Client-side request rate (Salesforce publishes none for short calls; 0: unlimited).
    max_requests_per_second: int = 25
    timeout: float = 120.0

    @property
    def login_url(self) -> str:
        """Where logins go: the override, else ``https://{domain}.salesforce.com``."""
        if self.instance_url:
            return self.instance_url.rstrip("/")
        return f"https://{self.domain}.salesforce.com"

    @property
    def sandbox(self) -> bool:
        return self.domain == "test" or ".sandbox." in f".{self.domain}."

    @property
    def writes_campaigns(self) -> bool:
        return self.write_mode in ("campaigns", "both")

    @property
    def writes_field(self) -> bool:
        return self.write_mode in ("field", "both")

    def activity_sources(self) -> dict[str, str]:
        """Canonical activity type -> "events" | "none" in an org: Tasks, Events, won
        Opportunities and (with Enhanced Email) incoming EmailMessages are events; the
        core objects hold no marketing-email opens or clicks, page views, form
        submissions or notes for segsync to read."""
        return {kind: "none" if kind in UNAVAILABLE_ACTIVITY else "events"
                for kind in ACTIVITY_TYPES}

    def sf_field(self, sobject: str, name: str) -> str:
        """The Salesforce API name a rule field maps to on ``sobject`` ("" = not on it)."""
        table = {"Contact": self.contact_fields, "Lead": self.lead_fields,
                 "Account": self.company_fields}.get(sobject, {})
        return table.get(name, name)

    def explicitly_mapped(self, sobject: str, name: str) -> bool:
        table = {"Contact": self.contact_fields, "Lead": self.lead_fields,
                 "Account": self.company_fields}.get(sobject, {})
        defaults = {"Contact": DEFAULT_CONTACT_FIELDS, "Lead": DEFAULT_LEAD_FIELDS,
                    "Account": DEFAULT_COMPANY_FIELDS}.get(sobject, {})
        return name in table and table.get(name) != defaults.get(name)


def _env_name(reader: TableReader, table: Mapping[str, Any], key: str) -> str | None:
    return reader.string(table, key, "crm", pattern=_ENV_NAME,
                         pattern_hint="the *name* of an environment variable, e.g. SF_CLIENT_ID")


def _require(reader: TableReader, table: Mapping[str, Any], auth: str, keys: tuple[str, ...]) -> None:
    for key in keys:
        if key not in table:
            reader.problem(key_path("crm", key), f'is required with auth = "{auth}"')


def _field_map(
    reader: TableReader, table: Mapping[str, Any], key: str, defaults: Mapping[str, str]
) -> dict[str, str]:
    merged = dict(defaults)
    if key not in table:
        return merged
    raw = reader.table(table[key], key_path("crm", key))
    for name, value in (raw or {}).items():
        where = key_path(key_path("crm", key), name)
        if not isinstance(value, str) or (value and not _API_NAME.match(value)):
            reader.problem(where, f"must be a Salesforce field API name (got {value!r})",
                           'e.g. "MailingCity" or "NPS_Score__c"; "" when the object has none')
            continue
        merged[name] = value
    return merged


def _objects(reader: TableReader, table: Mapping[str, Any]) -> tuple[str, ...]:
    if "objects" not in table:
        return PERSON_OBJECTS
    value = table["objects"]
    where = key_path("crm", "objects")
    if (not isinstance(value, list) or not value
            or any(v not in PERSON_OBJECTS for v in value) or len(set(value)) != len(value)):
        reader.problem(where, f"must be a non-empty list drawn from {list(PERSON_OBJECTS)} "
                              f"(got {value!r})")
        return PERSON_OBJECTS
    return tuple(v for v in PERSON_OBJECTS if v in value)


def parse_settings(
    reader: TableReader, table: dict[str, Any], base: Path
) -> SalesforceSettings | None:
    """Read the salesforce keys of ``[crm]``; file paths are relative to the config file."""
    before = len(reader.problems)
    auth = reader.string(table, "auth", "crm", choices=AUTH_KINDS)
    if "auth" not in table:
        reader.problem("crm.auth", "is required",
                       'one of "jwt", "client_credentials" or "password" (deprecated)')
    username = reader.string(table, "username", "crm")
    envs = {key: _env_name(reader, table, key) for key in (
        "consumer_key_env", "client_id_env", "client_secret_env", "password_env",
        "security_token_env")}
    key_file = reader.string(table, "private_key_file", "crm")
    domain = reader.string(table, "domain", "crm", default="login", pattern=_DOMAIN,
                           pattern_hint='"login", "test" or a My Domain prefix such as "acme.my"')
    instance_url = reader.string(table, "instance_url", "crm", pattern=_INSTANCE_URL,
                                 pattern_hint="an https:// URL with no path, "
                                              "e.g. https://acme.my.salesforce.com")
    ca_file = reader.string(table, "ca_file", "crm")
    write_mode = reader.string(table, "write_mode", "crm", default="campaigns", choices=WRITE_MODES)
    field_name = reader.string(table, "field_name", "crm", default="Segsync_Segments__c",
                               pattern=_API_NAME, pattern_hint='a field API name such as '
                                                               '"Segsync_Segments__c"')
    objects = _objects(reader, table)
    contact_fields = _field_map(reader, table, "contact_fields", DEFAULT_CONTACT_FIELDS)
    lead_fields = _field_map(reader, table, "lead_fields", DEFAULT_LEAD_FIELDS)
    company_fields = _field_map(reader, table, "company_fields", DEFAULT_COMPANY_FIELDS)
    bulk = reader.integer(table, "bulk_threshold", "crm", default=20_000, minimum=0)
    share = reader.number(table, "max_daily_api_share", "crm", default=0.5, minimum=0.01,
                          maximum=1.0)
    rate = reader.integer(table, "max_requests_per_second", "crm", default=25, minimum=0,
                          maximum=1000)
    timeout = reader.number(table, "timeout", "crm", default=120.0, minimum=1.0, maximum=3600.0)

    if auth == "jwt":
        _require(reader, table, auth, ("username", "consumer_key_env", "private_key_file"))
    elif auth == "client_credentials":
        _require(reader, table, auth, ("client_id_env", "client_secret_env"))
        if domain in ("login", "test") and not instance_url:
            reader.problem("crm.domain", "client_credentials needs your My Domain",
                           'e.g. domain = "acme.my" (Salesforce refuses this flow on '
                           "login.salesforce.com and test.salesforce.com)")
    elif auth == "password":
        _require(reader, table, auth, ("username", "password_env", "security_token_env"))
    if len(reader.problems) > before or auth is None:
        return None
    if auth == "password":
        log.warning(
            "[crm] auth = \"password\" uses SOAP login(), which Salesforce has deprecated: it is "
            "gone from API 65.0, off by default in new orgs and retired in Summer '27. Switch "
            'to auth = "jwt" or "client_credentials" (an External Client App).'
        )
    return SalesforceSettings(
        auth=auth,  # type: ignore[arg-type]  # checked against AUTH_KINDS above
        username=username,
        consumer_key_env=envs["consumer_key_env"],
        private_key_file=base / key_file if key_file else None,
        client_id_env=envs["client_id_env"],
        client_secret_env=envs["client_secret_env"],
        password_env=envs["password_env"],
        security_token_env=envs["security_token_env"],
        domain=domain or "login",
        instance_url=instance_url.rstrip("/") if instance_url else None,
        ca_file=base / ca_file if ca_file else None,
        write_mode=write_mode or "campaigns",  # type: ignore[arg-type]
        field_name=field_name or "Segsync_Segments__c",
        objects=objects,
        contact_fields=contact_fields,
        lead_fields=lead_fields,
        company_fields=company_fields,
        bulk_threshold=int(bulk if bulk is not None else 20_000),
        max_daily_api_share=float(share if share is not None else 0.5),
        max_requests_per_second=int(rate if rate is not None else 25),
        timeout=float(timeout or 120.0),
    )
