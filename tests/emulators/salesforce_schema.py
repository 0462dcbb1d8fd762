"""Object and field definitions, record Ids and value conversion for the Salesforce emulator.

Everything here is pure: no HTTP, no threads. The emulator's org state
(`salesforce_store`) and its SOQL engine (`salesforce_soql`) both read these definitions.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

FieldType = Literal[
    "id",
    "reference",
    "string",
    "textarea",
    "email",
    "phone",
    "url",
    "boolean",
    "int",
    "double",
    "currency",
    "percent",
    "date",
    "datetime",
    "picklist",
    "multipicklist",
]

STRING_TYPES: frozenset[str] = frozenset(
    {"string", "textarea", "email", "phone", "url", "picklist", "multipicklist"}
)
NUMBER_TYPES: frozenset[str] = frozenset({"int", "double", "currency", "percent"})
ID_TYPES: frozenset[str] = frozenset({"id", "reference"})

# The org's integration user; CreatedById / LastModifiedById point here.
ORG_ID = "00DEM0000000001"
USER_ID_PREFIX = "005"


@dataclass
class FieldDef:
    """One field of an sObject, as the emulator's describe and validators see it."""

    name: str
    type: FieldType
    label: str = ""
    length: int = 0
    required: bool = False
    createable: bool = True
    updateable: bool = True
    readable: bool = True
    reference_to: tuple[str, ...] = ()
    relationship_name: str | None = None
    picklist_values: list[str] = field(default_factory=list)
    restricted: bool = False
    default: Any = None
    custom: bool = False

    def __post_init__(self) -> None:
        if not self.label:
            self.label = self.name.removesuffix("__c").replace("_", " ")


@dataclass
class ObjectDef:
    """An sObject type: its Id key prefix and its fields (case-insensitive lookup)."""

    name: str
    key_prefix: str
    label: str
    fields: dict[str, FieldDef]
    mergeable: bool = False
    label_plural: str = ""
    # Object-level access of the API user, as describe reports it (profile CRUD and, for
    # Campaign / CampaignMember, the Marketing User flag).
    createable: bool = True
    updateable: bool = True
    deletable: bool = True

    def __post_init__(self) -> None:
        if not self.label_plural:
            self.label_plural = self.label + "s"

    def field(self, name: str) -> FieldDef | None:
        """The field called `name` (any case), or None."""
        direct = self.fields.get(name)
        if direct is not None:
            return direct
        lowered = name.lower()
        for candidate in self.fields.values():
            if candidate.name.lower() == lowered:
                return candidate
        return None

    def readable_field(self, name: str) -> FieldDef | None:
        """Like `field`, but hides fields the API user has no read access to."""
        found = self.field(name)
        return found if found is not None and found.readable else None

    def relationship(self, name: str) -> FieldDef | None:
        """The reference field whose relationship name is `name` (e.g. Account -> AccountId)."""
        lowered = name.lower()
        for candidate in self.fields.values():
            if (
                candidate.relationship_name is not None
                and candidate.relationship_name.lower() == lowered
                and candidate.readable
            ):
                return candidate
        return None

    def add_field(self, definition: FieldDef) -> None:
        self.fields[definition.name] = definition


# --- Ids -----------------------------------------------------------------------------------

_ID_CHARS = re.compile(r"^[a-zA-Z0-9]{15}(?:[a-zA-Z0-5]{3})?$")
_SUFFIX_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"


def _checksum(id15: str) -> str:
    suffix = ""
    for chunk_start in range(0, 15, 5):
        bits = 0
        for position, char in enumerate(id15[chunk_start : chunk_start + 5]):
            if "A" <= char <= "Z":
                bits |= 1 << position
        suffix += _SUFFIX_ALPHABET[bits]
    return suffix


def to18(record_id: str) -> str:
    """The 18-character form of a 15- or 18-character Id; ValueError if malformed."""
    if not isinstance(record_id, str) or not _ID_CHARS.match(record_id):
        raise ValueError(f"malformed id {record_id}")
    base = record_id[:15]
    expected = base + _checksum(base)
    if len(record_id) == 18 and record_id[15:].upper() != expected[15:]:
        raise ValueError(f"malformed id {record_id}")
    return expected


def is_id(value: Any) -> bool:
    try:
        to18(value)
    except ValueError:
        return False
    return True


class IdFactory:
    """Deterministic 18-character Ids: prefix + 'EM' + a 10-digit per-prefix counter."""

    def __init__(self) -> None:
        self._counters: dict[str, int] = {}

    def next(self, prefix: str) -> str:
        number = self._counters.get(prefix, 0) + 1
        self._counters[prefix] = number
        return to18(f"{prefix}EM{number:010d}")


# --- Values --------------------------------------------------------------------------------


class ValueTypeError(ValueError):
    """A JSON value that can't be read as the field's type (JSON_PARSER_ERROR)."""


_DATETIME_RE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,6}))?(Z|[+-]\d{2}:?\d{2})?$"
)
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def parse_datetime(text: str) -> dt.datetime:
    """Parse the ISO 8601 forms Salesforce accepts; a missing zone means UTC."""
    match = _DATETIME_RE.match(text.strip())
    if match is None:
        raise ValueError(f"invalid datetime {text!r}")
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    micros = int((fraction or "0").ljust(6, "0")[:6])
    tz = dt.UTC
    if zone and zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        digits = zone[1:].replace(":", "")
        tz = dt.timezone(sign * dt.timedelta(hours=int(digits[:2]), minutes=int(digits[2:])))
    value = dt.datetime(
        int(year), int(month), int(day), int(hour), int(minute), int(second), micros, tzinfo=tz
    )
    return value.astimezone(dt.UTC)


def parse_date(text: str) -> dt.date:
    if not _DATE_RE.match(text):
        raise ValueError(f"invalid date {text!r}")
    return dt.date.fromisoformat(text)


def format_datetime(value: dt.datetime) -> str:
    """REST form: 2024-05-01T10:11:12.000+0000 (milliseconds, offset without colon)."""
    utc = value.astimezone(dt.UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}+0000"


def format_datetime_csv(value: dt.datetime) -> str:
    """Bulk 2.0 CSV form: 2024-05-01T10:11:12.000Z."""
    utc = value.astimezone(dt.UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def coerce_input(definition: FieldDef, value: Any) -> Any:
    """Read a JSON (or Python seed) value as the field's type. Raises ValueTypeError."""
    if value is None:
        return None
    kind = definition.type
    if kind in ID_TYPES:
        if not isinstance(value, str):
            raise ValueTypeError(f"Cannot deserialize instance of id from {type(value).__name__}")
        return value  # Id validity is a per-record check (MALFORMED_ID), not a parse error.
    if kind in STRING_TYPES:
        if not isinstance(value, str):
            raise ValueTypeError(
                f"Cannot deserialize instance of string from {type(value).__name__} value {value}"
            )
        return value
    if kind == "boolean":
        if not isinstance(value, bool):
            raise ValueTypeError(f"Cannot deserialize instance of boolean from value {value!r}")
        return value
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueTypeError(f"Cannot deserialize instance of int from value {value!r}")
        if isinstance(value, float) and not value.is_integer():
            raise ValueTypeError(f"Cannot deserialize instance of int from value {value!r}")
        return int(value)
    if kind in NUMBER_TYPES:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueTypeError(f"Cannot deserialize instance of double from value {value!r}")
        return float(value)
    if kind == "date":
        if isinstance(value, dt.datetime):
            raise ValueTypeError(f"Cannot deserialize instance of date from value {value!r}")
        if isinstance(value, dt.date):
            return value
        try:
            return parse_date(value)
        except (TypeError, ValueError) as exc:
            raise ValueTypeError(
                f"Cannot deserialize instance of date from VALUE_STRING value {value}"
            ) from exc
    if kind == "datetime":
        if isinstance(value, dt.datetime):
            if value.tzinfo is None:
                raise ValueTypeError("naive datetime: give seed datetimes a timezone")
            return value.astimezone(dt.UTC)
        try:
            return parse_datetime(value)
        except (TypeError, ValueError, AttributeError) as exc:
            raise ValueTypeError(
                f"Cannot deserialize instance of datetime from VALUE_STRING value {value}"
            ) from exc
    raise ValueTypeError(f"unsupported field type {kind}")


def to_json_value(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return format_datetime(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def to_csv_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.datetime):
        return format_datetime_csv(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def join_multipicklist(values: Iterable[str], definition: FieldDef) -> str:
    """Canonical multi-select value: de-duplicated, in value-set order, unknown values last."""
    wanted = [v for v in dict.fromkeys(values) if v]
    order = {v: i for i, v in enumerate(definition.picklist_values)}
    known = sorted((v for v in wanted if v in order), key=order.__getitem__)
    return ";".join(known + [v for v in wanted if v not in order])


# --- Standard objects ----------------------------------------------------------------------


def _f(name: str, kind: FieldType, **options: Any) -> FieldDef:
    return FieldDef(name, kind, **options)


def _readonly(name: str, kind: FieldType, **options: Any) -> FieldDef:
    return FieldDef(name, kind, createable=False, updateable=False, **options)


def _ref(name: str, *targets: str, **options: Any) -> FieldDef:
    relationship = options.pop("relationship_name", name.removesuffix("Id"))
    return FieldDef(
        name, "reference", reference_to=targets, relationship_name=relationship, **options
    )


def _system_fields(mergeable: bool) -> list[FieldDef]:
    fields = [
        _readonly("Id", "id"),
        _readonly("IsDeleted", "boolean"),
        _readonly("CreatedDate", "datetime"),
        _readonly(
            "CreatedById", "reference", reference_to=("User",), relationship_name="CreatedBy"
        ),
        _readonly("LastModifiedDate", "datetime"),
        _readonly(
            "LastModifiedById",
            "reference",
            reference_to=("User",),
            relationship_name="LastModifiedBy",
        ),
        _readonly("SystemModstamp", "datetime"),
    ]
    if mergeable:
        fields.append(
            _readonly(
                "MasterRecordId", "reference", reference_to=(), relationship_name="MasterRecord"
            )
        )
    return fields


INDUSTRIES = [
    "Agriculture",
    "Banking",
    "Education",
    "Healthcare",
    "Hospitality",
    "Manufacturing",
    "Retail",
    "Technology",
    "Other",
]
LEAD_SOURCES = ["Web", "Phone Inquiry", "Partner Referral", "Purchased List", "Other"]
OPPORTUNITY_STAGES = [
    "Prospecting",
    "Qualification",
    "Proposal/Price Quote",
    "Negotiation/Review",
    "Closed Won",
    "Closed Lost",
]
TASK_STATUSES = ["Not Started", "In Progress", "Completed", "Waiting on someone else", "Deferred"]
LEAD_STATUSES = [
    "Open - Not Contacted",
    "Working - Contacted",
    "Closed - Converted",
    "Closed - Not Converted",
]


def _object(
    name: str, prefix: str, fields: list[FieldDef], *, mergeable: bool = False, label: str = ""
) -> ObjectDef:
    all_fields = _system_fields(mergeable) + fields
    definition = ObjectDef(
        name,
        prefix,
        label or name,
        {f.name: f for f in all_fields},
        mergeable=mergeable,
    )
    master = definition.field("MasterRecordId")
    if master is not None:
        master.reference_to = (name,)
    return definition


def standard_objects() -> dict[str, ObjectDef]:
    """Fresh definitions of the objects segsync reads and writes (mutable: FLS, custom fields)."""
    person_address = [
        _f("MailingStreet", "textarea", length=255),
        _f("MailingCity", "string", length=40),
        _f("MailingState", "string", length=80),
        _f("MailingPostalCode", "string", length=20),
        _f("MailingCountry", "string", length=80),
        _f("MailingLatitude", "double"),
        _f("MailingLongitude", "double"),
    ]
    contact = _object(
        "Contact",
        "003",
        [
            _ref("AccountId", "Account"),
            _f("FirstName", "string", length=40),
            _f("LastName", "string", length=80, required=True),
            _readonly("Name", "string", length=121),
            _f("Email", "email", length=80),
            _f("Title", "string", length=128),
            _f("Phone", "phone", length=40),
            *person_address,
            _f("HasOptedOutOfEmail", "boolean", default=False),
            _f("HasOptedOutOfFax", "boolean", default=False),
            _f("DoNotCall", "boolean", default=False),
            _f("IsEmailBounced", "boolean", default=False),
            _f("IndividualId", "string", length=18),
            _f("LeadSource", "picklist", picklist_values=list(LEAD_SOURCES)),
            _readonly("LastActivityDate", "date"),
        ],
        mergeable=True,
    )
    lead = _object(
        "Lead",
        "00Q",
        [
            _f("FirstName", "string", length=40),
            _f("LastName", "string", length=80, required=True),
            _readonly("Name", "string", length=121),
            _f("Email", "email", length=80),
            _f("Title", "string", length=128),
            _f("Company", "string", length=255, required=True),
            _f("Industry", "picklist", picklist_values=list(INDUSTRIES)),
            _f("NumberOfEmployees", "int"),
            _f("AnnualRevenue", "currency"),
            _f(
                "Status",
                "picklist",
                picklist_values=list(LEAD_STATUSES),
                default="Open - Not Contacted",
            ),
            _f("LeadSource", "picklist", picklist_values=list(LEAD_SOURCES)),
            _f("Street", "textarea", length=255),
            _f("City", "string", length=40),
            _f("State", "string", length=80),
            _f("PostalCode", "string", length=20),
            _f("Country", "string", length=80),
            _f("Latitude", "double"),
            _f("Longitude", "double"),
            _f("HasOptedOutOfEmail", "boolean", default=False),
            _f("DoNotCall", "boolean", default=False),
            _f("IndividualId", "string", length=18),
            _readonly("IsConverted", "boolean", default=False),
            _readonly(
                "ConvertedContactId",
                "reference",
                reference_to=("Contact",),
                relationship_name="ConvertedContact",
            ),
            _readonly(
                "ConvertedAccountId",
                "reference",
                reference_to=("Account",),
                relationship_name="ConvertedAccount",
            ),
            _readonly(
                "ConvertedOpportunityId",
                "reference",
                reference_to=("Opportunity",),
                relationship_name="ConvertedOpportunity",
            ),
            _readonly("ConvertedDate", "date"),
        ],
        mergeable=True,
    )
    account = _object(
        "Account",
        "001",
        [
            _f("Name", "string", length=255, required=True),
            _f("Type", "picklist", picklist_values=["Prospect", "Customer", "Partner", "Other"]),
            _f("Industry", "picklist", picklist_values=list(INDUSTRIES)),
            _f("NumberOfEmployees", "int"),
            _f("AnnualRevenue", "currency"),
            _ref("ParentId", "Account", relationship_name="Parent"),
            _f("Website", "url", length=255),
            _f("Phone", "phone", length=40),
            _f("BillingStreet", "textarea", length=255),
            _f("BillingCity", "string", length=40),
            _f("BillingState", "string", length=80),
            _f("BillingPostalCode", "string", length=20),
            _f("BillingCountry", "string", length=80),
            _f("BillingLatitude", "double"),
            _f("BillingLongitude", "double"),
        ],
        mergeable=True,
    )
    opportunity = _object(
        "Opportunity",
        "006",
        [
            _f("Name", "string", length=120, required=True),
            _ref("AccountId", "Account"),
            _ref("ContactId", "Contact"),
            _f("Amount", "currency"),
            _f("CloseDate", "date", required=True),
            _f("StageName", "picklist", required=True, picklist_values=list(OPPORTUNITY_STAGES)),
            _readonly("IsWon", "boolean", default=False),
            _readonly("IsClosed", "boolean", default=False),
            _f("Type", "picklist", picklist_values=["New Customer", "Existing Customer - Upgrade"]),
            _ref("CampaignId", "Campaign"),
            _f("LeadSource", "picklist", picklist_values=list(LEAD_SOURCES)),
        ],
    )
    contact_role = _object(
        "OpportunityContactRole",
        "00K",
        [
            _ref("OpportunityId", "Opportunity", required=True),
            _ref("ContactId", "Contact", required=True),
            _f(
                "Role",
                "picklist",
                picklist_values=["Decision Maker", "Economic Buyer", "Influencer", "Other"],
            ),
            _f("IsPrimary", "boolean", default=False),
        ],
        label="Opportunity Contact Role",
    )
    activity_common = [
        _ref("WhoId", "Contact", "Lead", relationship_name="Who"),
        _ref("WhatId", "Account", "Opportunity", "Campaign", relationship_name="What"),
        _ref("AccountId", "Account"),
        _f("Subject", "string", length=255),
        _f("Type", "picklist", picklist_values=["Call", "Email", "Meeting", "Other"]),
    ]
    task = _object(
        "Task",
        "00T",
        [
            *activity_common,
            _f("ActivityDate", "date"),
            _f("Status", "picklist", picklist_values=list(TASK_STATUSES), default="Not Started"),
            _readonly("IsClosed", "boolean", default=False),
            _f("Priority", "picklist", picklist_values=["High", "Normal", "Low"], default="Normal"),
            _f(
                "TaskSubtype",
                "picklist",
                updateable=False,
                picklist_values=["Task", "Email", "ListEmail", "Cadence", "Call", "LinkedIn"],
                default="Task",
            ),
            _f("CallType", "picklist", picklist_values=["Internal", "Inbound", "Outbound"]),
            _readonly("CompletedDateTime", "datetime"),
        ],
    )
    event = _object(
        "Event",
        "00U",
        [
            *activity_common,
            _f("ActivityDateTime", "datetime"),
            _readonly("ActivityDate", "date"),
            _readonly("StartDateTime", "datetime"),
            _f("EndDateTime", "datetime"),
            _f("DurationInMinutes", "int"),
            _f(
                "EventSubtype",
                "picklist",
                updateable=False,
                picklist_values=["Event"],
                default="Event",
            ),
        ],
    )
    campaign = _object(
        "Campaign",
        "701",
        [
            _f("Name", "string", length=80, required=True),
            _f("IsActive", "boolean", default=False),
            _f(
                "Type",
                "picklist",
                picklist_values=[
                    "Advertisement",
                    "Email",
                    "Webinar",
                    "Conference",
                    "Direct Mail",
                    "Other",
                ],
            ),
            _f(
                "Status",
                "picklist",
                picklist_values=["Planned", "In Progress", "Completed", "Aborted"],
                default="Planned",
            ),
            _f("StartDate", "date"),
            _f("EndDate", "date"),
            _f("Description", "textarea", length=32000),
            _ref("ParentId", "Campaign", relationship_name="Parent"),
            _readonly("NumberOfContacts", "int", default=0),
            _readonly("NumberOfLeads", "int", default=0),
        ],
    )
    member = _object(
        "CampaignMember",
        "00v",
        [
            _ref("CampaignId", "Campaign", required=True, updateable=False),
            _ref("ContactId", "Contact", updateable=False),
            _ref("LeadId", "Lead", updateable=False),
            _readonly(
                "LeadOrContactId",
                "reference",
                reference_to=("Contact", "Lead"),
                relationship_name="LeadOrContact",
            ),
            _f("Status", "picklist", picklist_values=["Sent", "Responded"], default="Sent"),
            _readonly("HasResponded", "boolean", default=False),
            _readonly("FirstRespondedDate", "date"),
        ],
        label="Campaign Member",
    )
    email_message = _object(
        "EmailMessage",
        "02s",
        [
            # The logged Task of this email (Salesforce creates it; its TaskSubtype is Email).
            _ref("ActivityId", "Task", relationship_name="Activity"),
            _ref("RelatedToId", "Account", "Opportunity", "Campaign", relationship_name="RelatedTo"),
            _f("Subject", "string", length=3000),
            _f("FromAddress", "email", length=1000),
            _f("FromName", "string", length=1000),
            _f("ToAddress", "string", length=4000),
            _f("CcAddress", "string", length=4000),
            _f("BccAddress", "string", length=4000),
            _f("TextBody", "textarea", length=32000),
            _f("MessageDate", "datetime"),
            _f("Incoming", "boolean", default=False, updateable=False),
            _f(
                "Status",
                "picklist",
                # 0 New, 1 Read, 2 Replied, 3 Sent, 4 Forwarded, 5 Draft
                picklist_values=["0", "1", "2", "3", "4", "5"],
                default="3",
            ),
        ],
        label="Email Message",
    )
    email_relation = _object(
        "EmailMessageRelation",
        "0Ed",
        [
            _ref(
                "EmailMessageId",
                "EmailMessage",
                required=True,
                updateable=False,
                relationship_name="EmailMessage",
            ),
            _ref("RelationId", "Contact", "Lead", "User", relationship_name="Relation"),
            _f(
                "RelationType",
                "picklist",
                required=True,
                restricted=True,
                picklist_values=["FromAddress", "ToAddress", "CcAddress", "BccAddress"],
            ),
            _f("RelationAddress", "string", length=255),
            _readonly("RelationObjectType", "string", length=50),
        ],
        label="Email Message Relation",
    )
    user = _object(
        "User",
        "005",
        [
            _f("Username", "string", length=80, required=True),
            _f("LastName", "string", length=80),
            _f("IsActive", "boolean", default=True),
            _f("UserPermissionsMarketingUser", "boolean", default=True),
        ],
    )
    objects = [
        contact,
        lead,
        account,
        opportunity,
        contact_role,
        task,
        event,
        campaign,
        member,
        email_message,
        email_relation,
        user,
    ]
    return {o.name: o for o in objects}


def lookup_object(objects: Mapping[str, ObjectDef], name: str) -> ObjectDef | None:
    """Case-insensitive sObject lookup."""
    direct = objects.get(name)
    if direct is not None:
        return direct
    lowered = name.lower()
    for candidate in objects.values():
        if candidate.name.lower() == lowered:
            return candidate
    return None


def object_for_id(objects: Mapping[str, ObjectDef], record_id: str) -> ObjectDef | None:
    for candidate in objects.values():
        if record_id.startswith(candidate.key_prefix):
            return candidate
    return None
