"""Portal state of the HubSpot emulator: CRM records, associations, lists, property definitions.

All methods expect the caller to hold ``state.lock`` (the HTTP server and the public seeding API
both take it); the lock is re-entrant so seeding helpers may nest.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from collections.abc import Set as AbstractSet
from datetime import datetime

from tests.emulators.hubspot_model import (
    DEFAULT_ASSOCIATION_TYPES,
    OBJECT_TYPE_IDS,
    TYPE_ID_TO_NAME,
    ApiError,
    AssociationEdge,
    Clock,
    CrmRecord,
    ForeignWrite,
    HsList,
    PropertyChange,
    PropertyDef,
    PropertyGroup,
    created_property,
    from_epoch_ms,
    id_key,
    iso_ms,
    modified_property,
    normalize_options,
    parse_hs_time,
    to_hs_string,
    validation_error,
)

DATETIME_TYPES = frozenset({"datetime", "date"})
#: What a merge does with the absorbed record's static list memberships (unverified).
MERGE_MEMBERSHIPS = ("move", "drop")

_LIFECYCLE = [
    "subscriber",
    "lead",
    "marketingqualifiedlead",
    "salesqualifiedlead",
    "opportunity",
    "customer",
    "evangelist",
    "other",
]
DEAL_STAGES: list[tuple[str, str, bool, str]] = [
    ("appointmentscheduled", "Appointment Scheduled", False, "0.2"),
    ("qualifiedtobuy", "Qualified To Buy", False, "0.4"),
    ("presentationscheduled", "Presentation Scheduled", False, "0.6"),
    ("decisionmakerboughtin", "Decision Maker Bought-In", False, "0.8"),
    ("contractsent", "Contract Sent", False, "0.9"),
    ("closedwon", "Closed Won", True, "1.0"),
    ("closedlost", "Closed Lost", True, "0.0"),
]

# (name, type, fieldType, options-or-None, read-only-value)
_Builtin = tuple[str, str, str, list[str] | None, bool]
_COMMON: list[_Builtin] = [
    ("hs_object_id", "number", "number", None, True),
    ("hs_lastmodifieddate", "datetime", "date", None, True),
    ("hubspot_owner_id", "enumeration", "select", None, False),
]
_DT = ("datetime", "date", None, False)
_NUM = ("number", "number", None, False)
_TXT = ("string", "text", None, False)
_BOOL = ("bool", "booleancheckbox", ["true", "false"], False)


def _b(name: str, spec: tuple[str, str, list[str] | None, bool]) -> _Builtin:
    return (name, *spec)


BUILTIN_PROPERTIES: dict[str, list[_Builtin]] = {
    "contacts": [
        *_COMMON,
        ("createdate", "datetime", "date", None, False),
        ("lastmodifieddate", "datetime", "date", None, True),
        ("hs_merged_object_ids", "string", "text", None, True),
        ("lifecyclestage", "enumeration", "radio", _LIFECYCLE, False),
        (
            "hs_lead_status",
            "enumeration",
            "radio",
            ["NEW", "OPEN", "IN_PROGRESS", "OPEN_DEAL", "UNQUALIFIED", "ATTEMPTED_TO_CONTACT"],
            False,
        ),
        *(
            _b(n, _TXT)
            for n in (
                "email",
                "firstname",
                "lastname",
                "phone",
                "company",
                "city",
                "country",
                "jobtitle",
                "recent_conversion_event_name",
            )
        ),
        *(
            _b(n, _NUM)
            for n in (
                "associatedcompanyid",
                "num_associated_deals",
                "hs_email_open",
                "hs_email_click",
                "hs_email_delivered",
                "num_conversion_events",
            )
        ),
        *(
            _b(n, _DT)
            for n in (
                "notes_last_contacted",
                "hs_last_sales_activity_timestamp",
                "hs_email_last_open_date",
                "hs_email_last_click_date",
                "first_conversion_date",
                "recent_conversion_date",
            )
        ),
        *(_b(n, _BOOL) for n in ("hs_email_optout", "hs_marketable_status")),
    ],
    "companies": [
        *_COMMON,
        ("createdate", "datetime", "date", None, False),
        ("hs_merged_object_ids", "string", "text", None, True),
        ("lifecyclestage", "enumeration", "radio", _LIFECYCLE, False),
        *(_b(n, _TXT) for n in ("name", "domain", "industry", "city", "country")),
        *(_b(n, _NUM) for n in ("numberofemployees", "annualrevenue")),
    ],
    "deals": [
        *_COMMON,
        ("createdate", "datetime", "date", None, False),
        ("dealstage", "enumeration", "radio", [s[0] for s in DEAL_STAGES], False),
        ("pipeline", "enumeration", "select", ["default"], False),
        ("hs_is_closed_won", "bool", "booleancheckbox", ["true", "false"], True),
        ("hs_is_closed", "bool", "booleancheckbox", ["true", "false"], True),
        _b("dealname", _TXT),
        _b("deal_currency_code", _TXT),
        _b("amount", _NUM),
        _b("hs_closed_amount", _NUM),
        _b("closedate", _DT),
    ],
}
_ENGAGEMENT_EXTRA: dict[str, list[str]] = {
    "calls": [
        "hs_call_title",
        "hs_call_body",
        "hs_call_direction",
        "hs_call_status",
        "hs_call_disposition",
    ],
    "emails": [
        "hs_email_direction",
        "hs_email_status",
        "hs_email_subject",
        "hs_email_text",
        "hs_email_headers",
    ],
    "meetings": [
        "hs_meeting_title",
        "hs_meeting_outcome",
        "hs_meeting_location",
        "hs_internal_meeting_notes",
    ],
    "notes": ["hs_note_body", "hs_attachment_ids"],
    "tasks": [
        "hs_task_subject",
        "hs_task_body",
        "hs_task_status",
        "hs_task_priority",
        "hs_task_type",
    ],
}
for _kind, _extra in _ENGAGEMENT_EXTRA.items():
    BUILTIN_PROPERTIES[_kind] = [
        *_COMMON,
        ("hs_createdate", "datetime", "date", None, False),
        _b("hs_timestamp", _DT),
        *(_b(n, _TXT) for n in _extra),
    ]
BUILTIN_PROPERTIES["calls"].append(_b("hs_call_duration", _NUM))
BUILTIN_PROPERTIES["meetings"] += [
    _b("hs_meeting_start_time", _DT),
    _b("hs_meeting_end_time", _DT),
]

DEFAULT_GROUPS = {
    "contacts": "contactinformation",
    "companies": "companyinformation",
    "deals": "dealinformation",
}


class HubSpotState:
    """In-memory portal. Ids come from deterministic counters."""

    def __init__(self, clock: Clock, *, first_object_id: int = 101) -> None:
        self.lock = threading.RLock()
        self.clock = clock
        self.records: dict[str, dict[str, CrmRecord]] = {t: {} for t in OBJECT_TYPE_IDS}
        self.redirects: dict[str, dict[str, str]] = {t: {} for t in OBJECT_TYPE_IDS}
        # (from_type, from_id, to_type) -> {to_id: [edges]}
        self.associations: dict[tuple[str, str, str], dict[str, list[AssociationEdge]]] = {}
        self.lists: dict[str, HsList] = {}
        self.groups: dict[str, dict[str, PropertyGroup]] = {t: {} for t in OBJECT_TYPE_IDS}
        self.properties: dict[str, dict[str, PropertyDef]] = {t: {} for t in OBJECT_TYPE_IDS}
        self.foreign_writes: list[ForeignWrite] = []
        self._next_object_id = first_object_id
        self._next_list_id = 1
        #: Default of :meth:`merge`'s ``memberships`` ("move" or "drop").
        self.merge_memberships = "move"
        #: Bumped by every change a search could see (records, associations, property
        #: definitions); ``search_cache`` entries of an older version are stale.
        self.version = 0
        self.search_cache: dict[object, object] = {}
        self._install_builtins()

    def touch(self) -> None:
        """Note a change that searches may see (drops the cached search matches)."""
        self.version += 1
        self.search_cache.clear()

    # ------------------------------------------------------------------ properties

    def _install_builtins(self) -> None:
        now = self.clock.now()
        for object_type in OBJECT_TYPE_IDS:
            group = DEFAULT_GROUPS.get(object_type, "engagement")
            self.groups[object_type][group] = PropertyGroup(group, group.title(), 0)
            for name, ptype, field_type, options, read_only in BUILTIN_PROPERTIES[object_type]:
                self.properties[object_type][name] = PropertyDef(
                    name=name,
                    label=name,
                    type=ptype,
                    field_type=field_type,
                    group_name=group,
                    created_at=now,
                    updated_at=now,
                    options=normalize_options({"label": o, "value": o} for o in options or []),
                    hubspot_defined=True,
                    read_only_value=read_only,
                    calculated=name in {"hs_is_closed_won", "hs_is_closed"},
                    has_unique_value=name == "hs_object_id",
                    foreign=True,
                )

    def property_def(self, object_type: str, name: str) -> PropertyDef | None:
        prop = self.properties[object_type].get(name)
        return prop if prop is not None and prop.archived_at is None else None

    def property_type(self, object_type: str, name: str) -> str:
        prop = self.properties[object_type].get(name)
        return prop.type if prop is not None else "string"

    def define_property(
        self,
        object_type: str,
        name: str,
        *,
        label: str | None = None,
        type: str = "string",
        field_type: str = "text",
        group_name: str | None = None,
        options: Iterable[Mapping[str, object]] | None = None,
        description: str = "",
        foreign: bool = True,
        hubspot_defined: bool = False,
    ) -> PropertyDef:
        now = self.clock.now()
        group = group_name or DEFAULT_GROUPS.get(object_type, "engagement")
        if group not in self.groups[object_type]:
            self.groups[object_type][group] = PropertyGroup(group, group, -1)
        prop = PropertyDef(
            name=name,
            label=label or name,
            type=type,
            field_type=field_type,
            group_name=group,
            created_at=now,
            updated_at=now,
            options=normalize_options(dict(o) for o in options or []),
            description=description,
            hubspot_defined=hubspot_defined,
            foreign=foreign,
        )
        self.properties[object_type][name] = prop
        self.touch()
        return prop

    def _seed_format(self, object_type: str, value: str, name: str) -> str:
        """Render parseable date/datetime values the way HubSpot returns them."""
        ptype = self.property_type(object_type, name)
        ms = parse_hs_time(value) if ptype in DATETIME_TYPES and value else None
        if ms is None:
            return value
        moment = from_epoch_ms(ms)
        return moment.date().isoformat() if ptype == "date" else iso_ms(moment)

    def _auto_define(self, object_type: str, name: str) -> None:
        """Seeded values for unknown properties get a plain string definition."""
        if name not in self.properties[object_type]:
            self.define_property(object_type, name, hubspot_defined=True)

    def validate_value(self, object_type: str, name: str, value: str) -> str:
        """Validate/normalise a value written over the API; raise ApiError 400 when invalid."""
        prop = self.property_def(object_type, name)
        if prop is None:
            raise validation_error(
                f'Property "{name}" does not exist',
                errors=[
                    {
                        "message": f'Property "{name}" does not exist',
                        "code": "PROPERTY_DOESNT_EXIST",
                        "context": {"propertyName": [name]},
                    }
                ],
            )
        if prop.read_only_value or prop.calculated:
            raise _invalid(name, value, "READ_ONLY_VALUE", f"{name} is a read only property")
        if value == "":
            return value
        if prop.type == "enumeration" and prop.options:
            tokens = value.split(";") if prop.multi_valued else [value]
            allowed = prop.option_values()
            for token in tokens:
                if token not in allowed:
                    raise _invalid(
                        name,
                        value,
                        "INVALID_OPTION",
                        f"{token} was not one of the allowed options: {sorted(allowed)}",
                    )
        elif prop.type == "number":
            try:
                float(value)
            except ValueError:
                raise _invalid(name, value, "INVALID_INTEGER", f"{value} is not a number") from None
        elif prop.type == "bool":
            if value.lower() not in {"true", "false"}:
                raise _invalid(name, value, "INVALID_BOOLEAN", f"{value} is not a boolean")
            return value.lower()
        elif prop.type in DATETIME_TYPES:
            ms = parse_hs_time(value)
            if ms is None:
                raise _invalid(name, value, "INVALID_DATE", f"{value} is not a valid date")
            moment = from_epoch_ms(ms)
            if prop.type == "date":
                if ms % 86_400_000:
                    raise _invalid(name, value, "INVALID_DATE", "date values must be midnight UTC")
                return moment.date().isoformat()
            return iso_ms(moment)
        return value

    # ------------------------------------------------------------------ records

    def new_object_id(self, requested: str | None = None) -> str:
        if requested is None:
            value = str(self._next_object_id)
            self._next_object_id += 1
            return value
        if requested.isdigit():
            self._next_object_id = max(self._next_object_id, int(requested) + 1)
        return requested

    def create_record(
        self,
        object_type: str,
        properties: Mapping[str, object],
        *,
        object_id: str | None = None,
        created_at: datetime | None = None,
        source: str = "CRM_UI",
    ) -> CrmRecord:
        now = self.clock.now()
        props = {k: to_hs_string(v) for k, v in properties.items()}
        new_id = self.new_object_id(object_id or props.get("hs_object_id"))
        if new_id in self.records[object_type]:
            raise ValueError(f"{object_type} {new_id} already exists")
        created_prop, modified_prop = created_property(object_type), modified_property(object_type)
        created = created_at or _parse_dt(props.get(created_prop)) or now
        modified = _parse_dt(props.get(modified_prop)) or now
        props[created_prop] = iso_ms(created)
        props[modified_prop] = iso_ms(modified)
        props["hs_object_id"] = new_id
        record = CrmRecord(object_type, new_id, {}, created, modified)
        for name, value in props.items():
            self._auto_define(object_type, name)
            self._set_value(record, name, self._seed_format(object_type, value, name), now, source)
        self._derive(record)
        self.records[object_type][new_id] = record
        self.touch()
        return record

    def update_record(
        self,
        record: CrmRecord,
        properties: Mapping[str, object],
        *,
        source: str = "CRM_UI",
        bump: bool = True,
    ) -> None:
        self.touch()
        now = self.clock.now()
        modified_prop = modified_property(record.object_type)
        explicit_modified = modified_prop in properties
        for name, raw in properties.items():
            self._auto_define(record.object_type, name)
            value = self._seed_format(record.object_type, to_hs_string(raw), name)
            self._set_value(record, name, value, now, source)
        self._derive(record)
        if bump and not explicit_modified:
            record.properties[modified_prop] = iso_ms(now)
            record.updated_at = now
        elif explicit_modified:
            record.updated_at = _parse_dt(record.properties.get(modified_prop)) or now

    def _set_value(
        self, record: CrmRecord, name: str, value: str, now: datetime, source: str
    ) -> None:
        if value == "":
            record.properties.pop(name, None)
        else:
            record.properties[name] = value
        record.history.setdefault(name, []).append(PropertyChange(value, now, source))

    def _derive(self, record: CrmRecord) -> None:
        """Calculated deal flags from dealstage."""
        if record.object_type != "deals" or "dealstage" not in record.properties:
            return
        stage = record.properties["dealstage"]
        record.properties["hs_is_closed_won"] = "true" if stage == "closedwon" else "false"
        record.properties["hs_is_closed"] = (
            "true" if stage in {"closedwon", "closedlost"} else "false"
        )

    def get_record(
        self, object_type: str, object_id: str, *, archived: bool | None = False
    ) -> CrmRecord | None:
        """Look up a record, following merge redirects.

        ``archived=False`` only live records, ``True`` only archived ones, ``None`` either.
        """
        object_id = self.redirects[object_type].get(object_id, object_id)
        record = self.records[object_type].get(object_id)
        if record is None or (archived is not None and record.archived != archived):
            return None
        return record

    def require_record(self, object_type: str, object_id: str) -> CrmRecord:
        record = self.get_record(object_type, object_id, archived=None)
        if record is None:
            raise KeyError(f"no {object_type} with id {object_id}")
        return record

    def find_by_property(self, object_type: str, name: str, value: str) -> CrmRecord | None:
        for record in self.records[object_type].values():
            if not record.archived and record.properties.get(name, "").lower() == value.lower():
                return record
        return None

    def live_records(self, object_type: str) -> list[CrmRecord]:
        return sorted(
            (r for r in self.records[object_type].values() if not r.archived),
            key=lambda r: id_key(r.object_id),
        )

    def archived_records(self, object_type: str) -> list[CrmRecord]:
        return sorted(
            (r for r in self.records[object_type].values() if r.archived),
            key=lambda r: id_key(r.object_id),
        )

    def archive(self, record: CrmRecord) -> None:
        """Archive without bumping the modified date (fact sheet §5.4); drop list memberships."""
        record.archived_at = self.clock.now()
        self.touch()
        for lst in self.lists.values():
            if lst.object_type_id == OBJECT_TYPE_IDS[record.object_type]:
                lst.members.pop(record.object_id, None)

    def restore(self, record: CrmRecord) -> None:
        record.archived_at = None
        self.touch()
        self.update_record(record, {})

    def merge(
        self,
        object_type: str,
        primary_id: str,
        absorbed_id: str,
        *,
        memberships: str | None = None,
    ) -> CrmRecord:
        """Merge ``absorbed`` into ``primary`` the way HubSpot reports it (fact sheet §5.5).

        The primary keeps its id, gains the absorbed id in ``hs_merged_object_ids``, the
        absorbed record's unset properties and associations (so its activity), and a new
        modified date; the absorbed id stops being a record (no archive entry; reads of
        it redirect to the primary). What happens to the absorbed record's static list
        memberships is unverified (fact sheet 2026-12 update, 7): ``memberships`` "move"
        gives them to the primary (keeping the earlier join), "drop" loses them; default
        ``self.merge_memberships``.
        """
        mode = memberships or self.merge_memberships
        if mode not in MERGE_MEMBERSHIPS:
            raise ValueError(f"memberships must be one of {MERGE_MEMBERSHIPS}, got {mode!r}")
        primary = self.require_record(object_type, primary_id)
        absorbed = self.require_record(object_type, absorbed_id)
        if primary is absorbed:
            raise ValueError("cannot merge a record into itself")
        skip = {"hs_object_id", "hs_merged_object_ids", created_property(object_type)}
        fill = {
            k: v
            for k, v in absorbed.properties.items()
            if k not in skip and k not in primary.properties and k != modified_property(object_type)
        }
        merged_ids = set(
            filter(None, primary.properties.get("hs_merged_object_ids", "").split(";"))
        )
        merged_ids |= set(
            filter(None, absorbed.properties.get("hs_merged_object_ids", "").split(";"))
        )
        merged_ids.add(absorbed.object_id)
        fill["hs_merged_object_ids"] = ";".join(sorted(merged_ids, key=id_key))
        self.update_record(primary, fill, source="MERGE")
        # The absorbed id disappears (no archive record); old ids redirect to the survivor.
        del self.records[object_type][absorbed.object_id]
        self.touch()
        redirects = self.redirects[object_type]
        for old, target in list(redirects.items()):
            if target == absorbed.object_id:
                redirects[old] = primary.object_id
        redirects[absorbed.object_id] = primary.object_id
        self._move_associations(object_type, absorbed.object_id, primary.object_id)
        type_id = OBJECT_TYPE_IDS[object_type]
        for lst in self.lists.values():
            if lst.object_type_id == type_id and absorbed.object_id in lst.members:
                joined = lst.members.pop(absorbed.object_id)
                first = lst.first_added.pop(absorbed.object_id, joined)
                if mode == "move" and primary.object_id not in lst.members:
                    lst.members[primary.object_id] = joined
                    lst.first_added[primary.object_id] = min(
                        first, lst.first_added.get(primary.object_id, first)
                    )
        return primary

    # ------------------------------------------------------------------ associations

    def associate(
        self,
        from_type: str,
        from_id: str,
        to_type: str,
        to_id: str,
        *,
        type_id: int | None = None,
        label: str | None = None,
        category: str = "HUBSPOT_DEFINED",
        reverse_type_id: int | None = None,
    ) -> None:
        forward = (
            type_id if type_id is not None else DEFAULT_ASSOCIATION_TYPES.get((from_type, to_type))
        )
        backward = (
            reverse_type_id
            if reverse_type_id is not None
            else DEFAULT_ASSOCIATION_TYPES.get((to_type, from_type))
        )
        if forward is None or backward is None:
            raise ValueError(
                f"no default association type for {from_type}<->{to_type}; pass type ids"
            )
        self._add_edge(
            from_type, from_id, to_type, AssociationEdge(to_id, category, forward, label)
        )
        self._add_edge(
            to_type, to_id, from_type, AssociationEdge(from_id, category, backward, label)
        )

    def _add_edge(self, from_type: str, from_id: str, to_type: str, edge: AssociationEdge) -> None:
        self.touch()
        edges = self.associations.setdefault((from_type, from_id, to_type), {}).setdefault(
            edge.to_id, []
        )
        if edge not in edges:
            edges.append(edge)

    def _move_associations(self, object_type: str, old_id: str, new_id: str) -> None:
        self.touch()
        for (from_type, from_id, to_type), targets in list(self.associations.items()):
            if from_type == object_type and from_id == old_id:
                del self.associations[(from_type, from_id, to_type)]
                for to_id, edges in targets.items():
                    for edge in edges:
                        if not (to_type == object_type and to_id == new_id):
                            self._add_edge(object_type, new_id, to_type, edge)
            elif to_type == object_type and old_id in targets:
                edges = targets.pop(old_id)
                if not (from_type == object_type and from_id == new_id):
                    for edge in edges:
                        self._add_edge(
                            from_type,
                            from_id,
                            to_type,
                            AssociationEdge(new_id, edge.category, edge.type_id, edge.label),
                        )

    def associated(
        self, from_type: str, from_id: str, to_type: str
    ) -> list[tuple[str, list[AssociationEdge]]]:
        """Live targets of one record, ascending by id."""
        targets = self.associations.get((from_type, from_id, to_type), {})
        out = [
            (to_id, edges)
            for to_id, edges in targets.items()
            if self.get_record(to_type, to_id) is not None
        ]
        return sorted(out, key=lambda item: id_key(item[0]))

    # ------------------------------------------------------------------ lists

    def create_list(
        self,
        name: str,
        *,
        object_type_id: str = "0-1",
        processing_type: str = "MANUAL",
        foreign: bool,
        members: Iterable[str] = (),
        filter_branch: dict[str, object] | None = None,
        list_id: str | None = None,
    ) -> HsList:
        if self.find_list_by_name(name, object_type_id) is not None:
            raise ApiError(
                409,
                f"A list named '{name}' already exists.",
                "CONFLICT",
                sub_category="ILS_LIST_NAME_ALREADY_EXISTS",
            )
        now = self.clock.now()
        if list_id is None:
            list_id = str(self._next_list_id)
            self._next_list_id += 1
        elif list_id.isdigit():
            self._next_list_id = max(self._next_list_id, int(list_id) + 1)
        lst = HsList(
            list_id=list_id,
            name=name,
            object_type_id=object_type_id,
            processing_type=processing_type,
            created_at=now,
            updated_at=now,
            foreign=foreign,
            filter_branch=filter_branch,
        )
        for member in members:
            lst.members[member] = now
            lst.first_added[member] = now
        self.lists[list_id] = lst
        return lst

    def live_list(self, list_id: str) -> HsList | None:
        lst = self.lists.get(list_id)
        return lst if lst is not None and lst.deleted_at is None else None

    def find_list_by_name(self, name: str, object_type_id: str) -> HsList | None:
        for lst in self.lists.values():
            if (
                lst.deleted_at is None
                and lst.object_type_id == object_type_id
                and lst.name.casefold() == name.casefold()
            ):
                return lst
        return None

    def record_exists(self, object_type_id: str, record_id: str) -> bool:
        """A live record with exactly this id (merge redirects are not followed)."""
        object_type = TYPE_ID_TO_NAME.get(object_type_id)
        if object_type is None:
            return False
        record = self.records[object_type].get(record_id)
        return record is not None and not record.archived

    def list_record_exists(self, lst: HsList, record_id: str) -> bool:
        return self.record_exists(lst.object_type_id, record_id)

    def add_members(
        self,
        lst: HsList,
        record_ids: Iterable[str],
        *,
        force_missing: AbstractSet[str] = frozenset(),
    ) -> tuple[list[str], list[str]]:
        """Add ids; returns (added, missing). Existing members are silently ignored."""
        added: list[str] = []
        missing: list[str] = []
        now = self.clock.now()
        for record_id in record_ids:
            if record_id in force_missing or not self.list_record_exists(lst, record_id):
                if record_id not in missing:
                    missing.append(record_id)
            elif record_id not in lst.members:
                lst.members[record_id] = now
                lst.first_added.setdefault(record_id, now)
                added.append(record_id)
        return added, missing

    def remove_members(
        self,
        lst: HsList,
        record_ids: Iterable[str],
        *,
        force_missing: AbstractSet[str] = frozenset(),
    ) -> tuple[list[str], list[str]]:
        removed: list[str] = []
        missing: list[str] = []
        for record_id in record_ids:
            if record_id in force_missing or (
                record_id not in lst.members and not self.list_record_exists(lst, record_id)
            ):
                if record_id not in missing:
                    missing.append(record_id)
            elif record_id in lst.members:
                del lst.members[record_id]
                removed.append(record_id)
        return removed, missing


def _invalid(name: str, value: str, code: str, message: str) -> ApiError:
    detail = f'Property values were not valid: [{{"isValid":false,"message":"{message}","error":"{code}","name":"{name}"}}]'
    return validation_error(
        detail,
        errors=[
            {
                "message": message,
                "code": code,
                "context": {"propertyName": [name], "value": [value]},
            }
        ],
    )


def _parse_dt(value: str | None) -> datetime | None:
    if not value:
        return None
    ms = parse_hs_time(value)
    return None if ms is None else from_epoch_ms(ms)
