"""Data model, constants and small helpers shared by the HubSpot emulator modules.

Nothing in here talks HTTP; see ``hubspot.py`` for the overview of what is emulated.
"""

from __future__ import annotations

import base64
import binascii
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

Json = Any

# --------------------------------------------------------------------------- object types

#: CRM object names accepted in paths, with their object type ids (fact sheet §4, §6, §7).
OBJECT_TYPE_IDS: dict[str, str] = {
    "contacts": "0-1",
    "companies": "0-2",
    "deals": "0-3",
    "calls": "0-48",
    "emails": "0-49",
    "meetings": "0-47",
    "notes": "0-46",
    "tasks": "0-27",
}
TYPE_ID_TO_NAME: dict[str, str] = {v: k for k, v in OBJECT_TYPE_IDS.items()}
ENGAGEMENT_TYPES: tuple[str, ...] = ("calls", "emails", "meetings", "notes", "tasks")
SINGULAR: dict[str, str] = {
    "contacts": "contact",
    "companies": "company",
    "deals": "deal",
    "calls": "call",
    "emails": "email",
    "meetings": "meeting",
    "notes": "note",
    "tasks": "task",
}
_SINGULAR_TO_PLURAL = {v: k for k, v in SINGULAR.items()}


def normalize_object_type(raw: str) -> str | None:
    """Map ``contacts`` / ``contact`` / ``CONTACTS`` / ``0-1`` to ``contacts``; None if unknown."""
    lowered = raw.lower()
    if lowered in OBJECT_TYPE_IDS:
        return lowered
    if lowered in _SINGULAR_TO_PLURAL:
        return _SINGULAR_TO_PLURAL[lowered]
    return TYPE_ID_TO_NAME.get(raw)


def modified_property(object_type: str) -> str:
    """Incremental-sync timestamp property (fact sheet §5: contacts differ from the rest)."""
    return "lastmodifieddate" if object_type == "contacts" else "hs_lastmodifieddate"


def created_property(object_type: str) -> str:
    return "hs_createdate" if object_type in ENGAGEMENT_TYPES else "createdate"


#: HUBSPOT_DEFINED default association type ids (hubspot.crm.association_type.AssociationType).
DEFAULT_ASSOCIATION_TYPES: dict[tuple[str, str], int] = {
    ("contacts", "companies"): 279,
    ("companies", "contacts"): 280,
    ("contacts", "deals"): 4,
    ("deals", "contacts"): 3,
    ("deals", "companies"): 341,
    ("companies", "deals"): 342,
    ("contacts", "calls"): 193,
    ("calls", "contacts"): 194,
    ("contacts", "emails"): 197,
    ("emails", "contacts"): 198,
    ("contacts", "meetings"): 199,
    ("meetings", "contacts"): 200,
    ("contacts", "notes"): 201,
    ("notes", "contacts"): 202,
    ("contacts", "tasks"): 203,
    ("tasks", "contacts"): 204,
    ("companies", "calls"): 181,
    ("calls", "companies"): 182,
    ("companies", "emails"): 185,
    ("emails", "companies"): 186,
    ("companies", "meetings"): 187,
    ("meetings", "companies"): 188,
    ("companies", "notes"): 189,
    ("notes", "companies"): 190,
    ("companies", "tasks"): 191,
    ("tasks", "companies"): 192,
    ("deals", "calls"): 205,
    ("calls", "deals"): 206,
    ("deals", "emails"): 209,
    ("emails", "deals"): 210,
    ("deals", "meetings"): 211,
    ("meetings", "deals"): 212,
    ("deals", "notes"): 213,
    ("notes", "deals"): 214,
    ("deals", "tasks"): 215,
    ("tasks", "deals"): 216,
}

# --------------------------------------------------------------------------- time


class Clock:
    """Injectable UTC wall clock for record timestamps.

    Real time by default; ``set()`` freezes it at a given instant, ``advance()`` moves a frozen
    clock forward (freezing it at ``now + delta`` first if it was running).
    """

    def __init__(self, start: datetime | None = None) -> None:
        self._lock = threading.Lock()
        self._frozen: datetime | None = as_utc(start) if start is not None else None

    def now(self) -> datetime:
        with self._lock:
            return self._frozen if self._frozen is not None else datetime.now(UTC)

    __call__ = now

    def set(self, when: datetime) -> None:
        with self._lock:
            self._frozen = as_utc(when)

    def advance(self, delta: timedelta | None = None, **kwargs: float) -> datetime:
        step = (delta or timedelta()) + timedelta(**kwargs)
        with self._lock:
            base = self._frozen if self._frozen is not None else datetime.now(UTC)
            self._frozen = base + step
            return self._frozen

    def unfreeze(self) -> None:
        with self._lock:
            self._frozen = None

    @property
    def frozen(self) -> bool:
        return self._frozen is not None


def as_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def iso_ms(value: datetime) -> str:
    """HubSpot's datetime rendering: ``2024-05-01T10:00:00.123Z``."""
    value = as_utc(value)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def epoch_ms(value: datetime) -> int:
    return int(as_utc(value).timestamp() * 1000)


def from_epoch_ms(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1000, tz=UTC)


_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def parse_hs_time(value: str) -> int | None:
    """Epoch ms from an ms-epoch string, an ISO-8601 datetime or a ``YYYY-MM-DD`` date."""
    text = value.strip()
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    try:
        if _DATE_RE.match(text):
            return epoch_ms(datetime.combine(date.fromisoformat(text), datetime.min.time()))
        return epoch_ms(datetime.fromisoformat(text.replace("Z", "+00:00")))
    except ValueError:
        return None


def to_hs_string(value: object) -> str:
    """Render a Python value the way HubSpot stores property values (always strings)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return iso_ms(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, list | tuple | set | frozenset):
        return ";".join(to_hs_string(v) for v in value)
    if value is None:
        return ""
    return str(value)


# --------------------------------------------------------------------------- ids & cursors


def id_key(object_id: str) -> tuple[int, int, str]:
    """Sort key putting numeric ids in numeric order, then any non-numeric ids."""
    return (0, int(object_id), "") if object_id.isdigit() else (1, 0, object_id)


def encode_cursor(value: str | int) -> str:
    """Opaque ``after`` cursor (base64, like HubSpot's ``NTI1Cg==``)."""
    return base64.b64encode(str(value).encode()).decode()


def decode_cursor(cursor: str) -> str:
    try:
        return base64.b64decode(cursor.encode(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise ApiError(400, f"Invalid paging cursor: {cursor!r}", "VALIDATION_ERROR") from exc


# --------------------------------------------------------------------------- errors


class ApiError(Exception):
    """An error answered with HubSpot's error JSON (``Error`` schema)."""

    def __init__(
        self,
        status: int,
        message: str,
        category: str | None,
        *,
        sub_category: str | None = None,
        context: dict[str, list[str]] | None = None,
        errors: list[dict[str, Json]] | None = None,
        extra: dict[str, Json] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.category = category
        self.sub_category = sub_category
        self.context = context
        self.errors = errors
        self.extra = extra or {}
        self.headers = headers or {}

    def body(self, correlation_id: str) -> dict[str, Json]:
        out: dict[str, Json] = {"status": "error", "message": self.message}
        out["correlationId"] = correlation_id
        if self.category is not None:
            out["category"] = self.category
        if self.sub_category is not None:
            out["subCategory"] = self.sub_category
        if self.context is not None:
            out["context"] = self.context
        if self.errors is not None:
            out["errors"] = self.errors
        out.update(self.extra)
        return out


def validation_error(message: str, **kwargs: Any) -> ApiError:
    return ApiError(400, message, "VALIDATION_ERROR", **kwargs)


def not_found(message: str, **kwargs: Any) -> ApiError:
    return ApiError(404, message, "OBJECT_NOT_FOUND", **kwargs)


# --------------------------------------------------------------------------- records


@dataclass
class PropertyChange:
    value: str
    timestamp: datetime
    source_type: str


@dataclass
class CrmRecord:
    object_type: str
    object_id: str
    properties: dict[str, str]
    created_at: datetime
    updated_at: datetime
    history: dict[str, list[PropertyChange]] = field(default_factory=dict)
    archived_at: datetime | None = None

    @property
    def archived(self) -> bool:
        return self.archived_at is not None

    def snapshot(self) -> dict[str, Json]:
        """Plain-dict copy for test assertions."""
        return {
            "id": self.object_id,
            "objectType": self.object_type,
            "properties": dict(self.properties),
            "createdAt": self.created_at,
            "updatedAt": self.updated_at,
            "archived": self.archived,
            "archivedAt": self.archived_at,
        }


@dataclass(frozen=True)
class AssociationEdge:
    to_id: str
    category: str
    type_id: int
    label: str | None

    def to_json(self) -> dict[str, Json]:
        return {"category": self.category, "typeId": self.type_id, "label": self.label}


@dataclass
class HsList:
    list_id: str
    name: str
    object_type_id: str
    processing_type: str
    created_at: datetime
    updated_at: datetime
    foreign: bool
    members: dict[str, datetime] = field(default_factory=dict)  # insertion order = join order
    #: When each record first joined (kept across removals; a merge moves it with the member).
    first_added: dict[str, datetime] = field(default_factory=dict)
    list_version: int = 1
    deleted_at: datetime | None = None
    filter_branch: dict[str, Json] | None = None

    def to_json(self, *, include_filters: bool = False) -> dict[str, Json]:
        out: dict[str, Json] = {
            "listId": self.list_id,
            "listVersion": self.list_version,
            "name": self.name,
            "objectTypeId": self.object_type_id,
            "processingType": self.processing_type,
            "processingStatus": "COMPLETE",
            "createdAt": iso_ms(self.created_at),
            "updatedAt": iso_ms(self.updated_at),
            "filtersUpdatedAt": iso_ms(self.created_at),
            "createdById": "1",
            "updatedById": "1",
            "size": len(self.members),
        }
        if self.deleted_at is not None:
            out["deletedAt"] = iso_ms(self.deleted_at)
        if include_filters and self.filter_branch is not None:
            out["filterBranch"] = self.filter_branch
        return out


@dataclass
class PropertyGroup:
    name: str
    label: str
    display_order: int = -1
    archived: bool = False

    def to_json(self) -> dict[str, Json]:
        return {
            "name": self.name,
            "label": self.label,
            "displayOrder": self.display_order,
            "archived": self.archived,
        }


@dataclass
class PropertyDef:
    name: str
    label: str
    type: str
    field_type: str
    group_name: str
    created_at: datetime
    updated_at: datetime
    options: list[dict[str, Json]] = field(default_factory=list)
    description: str = ""
    display_order: int = -1
    hidden: bool = False
    form_field: bool = False
    hubspot_defined: bool = False
    read_only_value: bool = False
    calculated: bool = False
    has_unique_value: bool = False
    foreign: bool = True
    archived_at: datetime | None = None

    @property
    def multi_valued(self) -> bool:
        return self.type == "enumeration" and self.field_type == "checkbox"

    def option_values(self) -> set[str]:
        return {str(o["value"]) for o in self.options}

    def to_json(self) -> dict[str, Json]:
        out: dict[str, Json] = {
            "name": self.name,
            "label": self.label,
            "type": self.type,
            "fieldType": self.field_type,
            "description": self.description,
            "groupName": self.group_name,
            "options": [dict(o) for o in self.options],
            "displayOrder": self.display_order,
            "calculated": self.calculated,
            "externalOptions": False,
            "hasUniqueValue": self.has_unique_value,
            "hidden": self.hidden,
            "hubspotDefined": self.hubspot_defined,
            "modificationMetadata": {
                "archivable": not self.hubspot_defined,
                "readOnlyDefinition": self.hubspot_defined,
                "readOnlyValue": self.read_only_value,
            },
            "formField": self.form_field,
            "createdAt": iso_ms(self.created_at),
            "updatedAt": iso_ms(self.updated_at),
            "archived": self.archived_at is not None,
        }
        if self.archived_at is not None:
            out["archivedAt"] = iso_ms(self.archived_at)
        return out

    def snapshot(self) -> dict[str, Json]:
        out = self.to_json()
        out["foreign"] = self.foreign
        return out


@dataclass(frozen=True)
class ForeignWrite:
    """A write that touched a list/property seeded as not created by segsync."""

    kind: str  # "list" | "list_membership" | "property_definition" | "property_value"
    target: str  # list id or property name
    method: str
    path: str
    detail: str = ""


def normalize_options(options: Iterable[dict[str, Json]]) -> list[dict[str, Json]]:
    """Fill HubSpot's Option defaults (displayOrder, hidden, description)."""
    out: list[dict[str, Json]] = []
    for index, option in enumerate(options):
        out.append(
            {
                "label": str(option.get("label", option.get("value", ""))),
                "value": str(option.get("value", "")),
                "displayOrder": int(option.get("displayOrder", index)),
                "hidden": bool(option.get("hidden", False)),
                "description": str(option.get("description", "")),
            }
        )
    return out
