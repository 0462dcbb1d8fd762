"""``[crm]`` settings for ``type = "hubspot"`` and the static facts they build on.

Example::

    [crm]
    type = "hubspot"
    token_env = "HUBSPOT_TOKEN"          # private app token / service key, by env var name
    tier = "professional"                # starter (100/10 s) | professional | enterprise (190/10 s)
    write_mode = "lists"                 # lists | property | both
    [crm.fields]                         # canonical field (as rules name it) = HubSpot property
    nps_score = "nps"
    [crm.company_fields]
    employees = "numberofemployees"
    [crm.activity_types]                 # HubSpot engagement kind = canonical activity type ("" = skip)
    incoming_emails = ""                 # e.g. to ignore emails contacts sent (default email_received)

Secrets are only ever named (``*_env``); the values are read when the connector first
needs them, through :func:`connectors.redact.read_secret`, so they are scrubbed from
every message.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from connectors.base import ACTIVITY_TYPES
from segment_rules.errors import did_you_mean
from segment_rules.tables import TableReader, key_path

__all__ = [
    "DEFAULT_ACTIVITY_TYPES",
    "DEFAULT_COMPANY_FIELDS",
    "DEFAULT_CONTACT_FIELDS",
    "ENGAGEMENT_KINDS",
    "MAX_MEMBERSHIP_BATCH",
    "SETTINGS_KEYS",
    "TIER_LIMITS",
    "HubSpotSettings",
    "parse_settings",
]

SETTINGS_KEYS = (
    "auth",
    "token_env",
    "client_id_env",
    "client_secret_env",
    "refresh_token_env",
    "base_url",
    "proxy",
    "tier",
    "requests_per_10s",
    "search_per_second",
    "write_mode",
    "property_name",
    "property_label",
    "membership_batch_size",
    "fields",
    "company_fields",
    "activity_types",
    "opt_out_properties",
    "overlap_seconds",
    "timeout",
    "max_retries",
    "timezone",
)

#: Requests per rolling 10 seconds for privately distributed apps (fact sheet §12).
TIER_LIMITS: Mapping[str, int] = MappingProxyType(
    {"starter": 100, "professional": 190, "enterprise": 190}
)
#: Lists v3 add/remove: no per-call cap in the spec; the guide reportedly allows 100,000
#: (unverified) and the fact sheet recommends <= 10,000. Default 10,000, configurable to
#: 100,000; a "too many ids" answer halves the chunk automatically.
DEFAULT_MEMBERSHIP_BATCH = 10_000
MAX_MEMBERSHIP_BATCH = 100_000

#: Canonical contact field -> HubSpot property, used unless ``[crm.fields]`` overrides it.
#: Fields not listed here are read from the property of the same name.
DEFAULT_CONTACT_FIELDS: Mapping[str, str] = MappingProxyType({
    "email": "email",
    "first_name": "firstname",
    "last_name": "lastname",
    "job_title": "jobtitle",
    "lifecycle_stage": "lifecyclestage",
    "lead_status": "hs_lead_status",
    "postal_code": "zip",
    "region": "state",
    "created_at": "createdate",
    "email_opt_out": "hs_email_optout",
    "marketable": "hs_marketable_status",
    "latitude": "latitude",  # no standard HubSpot property: a custom one by convention
    "longitude": "longitude",
    # Roll-ups: marketing-email and web engagement exist per contact only as a last date
    # and a lifetime count (fact sheet 2026-12 update, 5); segment_rules.sources says which
    # rules they answer.
    "rollup:email_open:last": "hs_email_last_open_date",
    "rollup:email_open:count": "hs_email_open",
    "rollup:email_click:last": "hs_email_last_click_date",
    "rollup:email_click:count": "hs_email_click",
    "rollup:page_view:last": "hs_analytics_last_visit_timestamp",
    "rollup:page_view:count": "hs_analytics_num_page_views",
    "rollup:form_submission:last": "recent_conversion_date",
    "rollup:form_submission:count": "num_conversion_events",
})
#: Where each canonical activity type comes from on HubSpot (segment_rules.sources):
#: engagements and deals are events; these are contact roll-ups only.
ROLLUP_ACTIVITY = ("email_open", "email_click", "page_view", "form_submission")
DEFAULT_COMPANY_FIELDS: Mapping[str, str] = MappingProxyType({
    "employees": "numberofemployees",
    "annual_revenue": "annualrevenue",
    "created_at": "createdate",
    "latitude": "latitude",
    "longitude": "longitude",
})
#: HubSpot engagement kind -> canonical activity type ("" skips the kind: no API calls).
#: Sales emails (CRM ``emails`` objects) are split by ``hs_email_direction``: ``EMAIL`` and
#: ``FORWARDED_EMAIL`` are ours (``emails`` -> email_sent, only when actually sent), while
#: ``INCOMING_EMAIL`` is the contact writing to us (``incoming_emails`` -> email_received).
#: Incoming emails count by default because they are activity (fact sheet 2026-12 update,
#: 6): a customer who wrote last week is not inactive, and an "inactive for 90 days" rule
#: must not say so. Both kinds come from the same search, so enabling one costs nothing
#: extra once the other is on. Marketing email opens/clicks exist only in the legacy v1
#: email-events API, which segsync does not use -- rules can read the contact roll-ups
#: (hs_email_open, hs_email_last_open_date...).
ENGAGEMENT_KINDS = ("calls", "meetings", "emails", "incoming_emails", "notes", "tasks")
DEFAULT_ACTIVITY_TYPES: Mapping[str, str] = MappingProxyType({
    "calls": "call",
    "meetings": "meeting",
    "emails": "email_sent",
    "incoming_emails": "email_received",
    "notes": "note",
    "tasks": "task",
})

_PROPERTY_NAME = re.compile(r"^[a-z][a-z0-9_]{0,99}$")
_FIELD_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,99}$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ENV_HINT = "the name of an environment variable, e.g. HUBSPOT_TOKEN"


@dataclass(frozen=True)
class HubSpotSettings:
    """Validated ``[crm]`` settings for HubSpot."""

    auth: str = "token"
    token_env: str = "HUBSPOT_TOKEN"
    client_id_env: str = "HUBSPOT_CLIENT_ID"
    client_secret_env: str = "HUBSPOT_CLIENT_SECRET"
    refresh_token_env: str = "HUBSPOT_REFRESH_TOKEN"
    base_url: str = "https://api.hubapi.com"
    proxy: str | None = None
    tier: str = "starter"
    requests_per_10s: int = TIER_LIMITS["starter"]
    search_per_second: int = 4
    write_mode: str = "lists"
    property_name: str = "segsync_segments"
    property_label: str = "Segsync segments"
    membership_batch_size: int = DEFAULT_MEMBERSHIP_BATCH
    fields: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_CONTACT_FIELDS))
    company_fields: Mapping[str, str] = field(
        default_factory=lambda: dict(DEFAULT_COMPANY_FIELDS)
    )
    activity_types: Mapping[str, str] = field(
        default_factory=lambda: dict(DEFAULT_ACTIVITY_TYPES)
    )
    opt_out_properties: tuple[str, ...] = ("hs_email_optout",)
    #: Incremental searches start this long before the last watermark (clock skew + the
    #: search index lagging writes by seconds to minutes).
    overlap_seconds: int = 300
    timeout: float = 30.0
    max_retries: int = 5
    #: IANA time zone of the portal (only used to say when the daily quota resets).
    timezone: str | None = None

    @property
    def writes_lists(self) -> bool:
        return self.write_mode in ("lists", "both")

    @property
    def writes_property(self) -> bool:
        return self.write_mode in ("property", "both")

    #: The CRM-neutral name (Salesforce's settings use it too).
    writes_field = writes_property

    def contact_property(self, canonical: str) -> str:
        return self.fields.get(canonical, DEFAULT_CONTACT_FIELDS.get(canonical, canonical))

    def activity_sources(self) -> dict[str, str]:
        """Canonical activity type -> "events" | "rollup" on this portal."""
        return {kind: "rollup" if kind in ROLLUP_ACTIVITY else "events"
                for kind in ACTIVITY_TYPES}

    def company_property(self, canonical: str) -> str:
        return self.company_fields.get(canonical, canonical)


def _env_name(reader: TableReader, table: Mapping[str, Any], key: str, default: str) -> str:
    value = reader.string(table, key, "crm", default=default,
                          pattern=_ENV_NAME, pattern_hint=_ENV_HINT)
    return value or default


def _mapping(
    reader: TableReader,
    table: Mapping[str, Any],
    key: str,
    defaults: Mapping[str, str],
) -> dict[str, str]:
    merged = dict(defaults)
    if key not in table:
        return merged
    raw = reader.table(table[key], key_path("crm", key))
    if raw is None:
        return merged
    for name, value in raw.items():
        where = key_path(key_path("crm", key), name)
        if not _FIELD_NAME.match(name):
            reader.problem(where, "is not a valid field name", "letters, digits and '_'")
            continue
        if not isinstance(value, str):
            reader.problem(where, "must be a string naming a HubSpot property")
            continue
        if value and not _PROPERTY_NAME.match(value):
            reader.problem(where, f"{value!r} is not a HubSpot property internal name",
                           "lowercase letter first, then [a-z0-9_]")
            continue
        if not value and name not in ("latitude", "longitude"):
            reader.problem(where, "must not be empty",
                           'only latitude/longitude may be "" (no coordinates)')
            continue
        merged[name] = value
    return merged


def _activity_types(reader: TableReader, table: Mapping[str, Any]) -> dict[str, str]:
    merged = dict(DEFAULT_ACTIVITY_TYPES)
    if "activity_types" not in table:
        return merged
    raw = reader.table(table["activity_types"], "crm.activity_types")
    if raw is None:
        return merged
    for kind, value in raw.items():
        where = key_path("crm.activity_types", kind)
        if kind not in ENGAGEMENT_KINDS:
            reader.problem(where, "is not a HubSpot engagement kind segsync reads",
                           did_you_mean(kind, ENGAGEMENT_KINDS) or
                           f"one of {', '.join(ENGAGEMENT_KINDS)}")
            continue
        if not isinstance(value, str) or (value and value not in ACTIVITY_TYPES):
            reader.problem(where, f"must be one of {', '.join(ACTIVITY_TYPES)} or \"\" to skip",
                           did_you_mean(str(value), ACTIVITY_TYPES))
            continue
        merged[kind] = value
    return merged


def _base_url(reader: TableReader, value: str, key: str) -> str | None:
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        parts = urlsplit("")
    if parts.scheme not in ("http", "https") or not parts.netloc:
        reader.problem(f"crm.{key}", f"{value!r} is not an http(s) URL",
                       "e.g. https://api.hubapi.com")
        return None
    if parts.username or parts.password or parts.query:
        reader.problem(f"crm.{key}", "must not contain credentials or a query string")
        return None
    return value.rstrip("/")


def parse_settings(
    reader: TableReader, table: dict[str, Any], base: Path
) -> HubSpotSettings | None:
    """Read the hubspot keys of ``[crm]``, recording every problem in ``reader``."""
    before = len(reader.problems)
    defaults = HubSpotSettings()
    auth = reader.string(table, "auth", "crm", default="token", choices=("token", "oauth"))
    token_env = _env_name(reader, table, "token_env", defaults.token_env)
    client_id_env = _env_name(reader, table, "client_id_env", defaults.client_id_env)
    client_secret_env = _env_name(reader, table, "client_secret_env", defaults.client_secret_env)
    refresh_env = _env_name(reader, table, "refresh_token_env", defaults.refresh_token_env)
    if auth == "token":
        for key in ("client_id_env", "client_secret_env", "refresh_token_env"):
            if key in table:
                reader.problem(f"crm.{key}", 'is only used with auth = "oauth"')
    elif "token_env" in table:
        reader.problem("crm.token_env", 'is only used with auth = "token"')
    base_url = _base_url(reader, reader.string(table, "base_url", "crm",
                                               default=defaults.base_url) or "", "base_url")
    proxy_raw = reader.string(table, "proxy", "crm")
    proxy = _base_url(reader, proxy_raw, "proxy") if proxy_raw is not None else None
    tier = reader.string(table, "tier", "crm", default="starter", choices=TIER_LIMITS) or "starter"
    per_10s = reader.integer(table, "requests_per_10s", "crm",
                             default=TIER_LIMITS.get(tier, 100), minimum=1, maximum=1000)
    search = reader.integer(table, "search_per_second", "crm", default=4, minimum=1, maximum=5)
    mode = reader.string(table, "write_mode", "crm", default="lists",
                         choices=("lists", "property", "both"))
    prop = reader.string(table, "property_name", "crm", default=defaults.property_name,
                         pattern=_PROPERTY_NAME,
                         pattern_hint="a property internal name: lowercase letter first, [a-z0-9_]")
    label = reader.string(table, "property_label", "crm", default=defaults.property_label)
    chunk = reader.integer(table, "membership_batch_size", "crm",
                           default=DEFAULT_MEMBERSHIP_BATCH, minimum=1,
                           maximum=MAX_MEMBERSHIP_BATCH)
    fields = _mapping(reader, table, "fields", DEFAULT_CONTACT_FIELDS)
    company_fields = _mapping(reader, table, "company_fields", DEFAULT_COMPANY_FIELDS)
    activity = _activity_types(reader, table)
    opt_out = _opt_out(reader, table)
    overlap = reader.integer(table, "overlap_seconds", "crm", default=300, minimum=0,
                             maximum=86_400)
    timeout = reader.number(table, "timeout", "crm", default=30.0, minimum=1.0, maximum=600.0)
    retries = reader.integer(table, "max_retries", "crm", default=5, minimum=0, maximum=20)
    timezone = reader.string(table, "timezone", "crm")
    if timezone is not None:
        _check_timezone(reader, timezone)
    if len(reader.problems) > before:
        return None
    return HubSpotSettings(
        auth=auth or "token",
        token_env=token_env,
        client_id_env=client_id_env,
        client_secret_env=client_secret_env,
        refresh_token_env=refresh_env,
        base_url=base_url or defaults.base_url,
        proxy=proxy,
        tier=tier,
        requests_per_10s=int(per_10s or 100),
        search_per_second=int(search or 4),
        write_mode=mode or "lists",
        property_name=prop or defaults.property_name,
        property_label=label or defaults.property_label,
        membership_batch_size=int(chunk or DEFAULT_MEMBERSHIP_BATCH),
        fields=fields,
        company_fields=company_fields,
        activity_types=activity,
        opt_out_properties=opt_out,
        overlap_seconds=int(overlap if overlap is not None else 300),
        timeout=float(timeout or 30.0),
        max_retries=int(retries if retries is not None else 5),
        timezone=timezone,
    )


def _opt_out(reader: TableReader, table: Mapping[str, Any]) -> tuple[str, ...]:
    if "opt_out_properties" not in table:
        return ("hs_email_optout",)
    raw = table["opt_out_properties"]
    where = "crm.opt_out_properties"
    if not isinstance(raw, list) or not all(isinstance(v, str) for v in raw):
        reader.problem(where, "must be an array of HubSpot property names")
        return ()
    bad = [v for v in raw if not _PROPERTY_NAME.match(v)]
    if bad:
        reader.problem(where, f"{bad[0]!r} is not a HubSpot property internal name")
        return ()
    return tuple(dict.fromkeys(raw))


def _check_timezone(reader: TableReader, name: str) -> None:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        reader.problem("crm.timezone", f"{name!r} is not a known IANA time zone",
                       'e.g. "Europe/Berlin" (the portal\'s Account Defaults time zone)')
