"""The emulated org's state: records, the recycle bin, merges, lead conversion, write audit.

`Org` is not thread-safe on its own; `SalesforceEmulator` serialises access with one lock.
Validation errors come out as two exception types, matching the two ways Salesforce reports
them: `ApiError` (the whole request fails: HTTP 4xx with an error array) and `RecordError`
(one record fails: an entry in a collections result, or a 400 for single-record calls).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from .salesforce_schema import (
    ID_TYPES,
    STRING_TYPES,
    FieldDef,
    IdFactory,
    ObjectDef,
    ValueTypeError,
    coerce_input,
    join_multipicklist,
    lookup_object,
    object_for_id,
    standard_objects,
    to18,
    to_json_value,
)

DEFAULT_START = dt.datetime(2025, 6, 2, 9, 0, 0, tzinfo=dt.UTC)


class Clock:
    """A manual clock: time only moves when a test moves it."""

    def __init__(self, start: dt.datetime = DEFAULT_START) -> None:
        if start.tzinfo is None:
            raise ValueError("Clock needs a timezone-aware datetime")
        self._now = start.astimezone(dt.UTC)

    def now(self) -> dt.datetime:
        return self._now

    def advance(self, delta: dt.timedelta | None = None, **kwargs: float) -> dt.datetime:
        """Move forward by `delta` or by timedelta keyword arguments (seconds=5, days=1)."""
        self._now += delta if delta is not None else dt.timedelta(**kwargs)
        return self._now

    def set(self, when: dt.datetime) -> None:
        if when.tzinfo is None:
            raise ValueError("Clock needs a timezone-aware datetime")
        self._now = when.astimezone(dt.UTC)


class ApiError(Exception):
    """The request as a whole fails; rendered as [{"message", "errorCode"[, "fields"]}]."""

    def __init__(
        self, status: int, code: str, message: str, fields: list[str] | None = None
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.fields = fields

    def body(self) -> list[dict[str, Any]]:
        item: dict[str, Any] = {"message": self.message, "errorCode": self.code}
        if self.fields is not None:
            item["fields"] = self.fields
        return [item]


class RecordError(Exception):
    """One record fails; rendered as {"statusCode", "message", "fields"}."""

    def __init__(self, code: str, message: str, fields: list[str] | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.fields = fields or []

    def entry(self) -> dict[str, Any]:
        return {"statusCode": self.code, "message": self.message, "fields": self.fields}


@dataclass
class Rec:
    sobject: str
    values: dict[str, Any]
    origin: str  # "seed" (Python API: not segsync's) or "api" (created over HTTP)
    deleted_at: dt.datetime | None = None
    cascade_of: str | None = None  # the record whose deletion also deleted this one

    @property
    def id(self) -> str:
        return str(self.values["Id"])


@dataclass(frozen=True)
class WriteContext:
    """Who is writing: an HTTP request (checked for FLS and audited) or the Python API."""

    via_api: bool
    method: str = ""
    path: str = ""


PYTHON_API = WriteContext(via_api=False)


@dataclass(frozen=True)
class ForeignWrite:
    """An API write that touched a record segsync did not create (tests assert there are none)."""

    method: str
    path: str
    sobject: str
    record_id: str
    fields: tuple[str, ...]
    reason: str


@dataclass(frozen=True)
class LeadConversion:
    lead_id: str
    contact_id: str
    account_id: str
    opportunity_id: str | None


# Children deleted with their parent (parent type -> (child type, field pointing at parent)).
CASCADES: dict[str, list[tuple[str, str]]] = {
    "Account": [("Contact", "AccountId"), ("Opportunity", "AccountId")],
    "Contact": [
        ("CampaignMember", "ContactId"),
        ("OpportunityContactRole", "ContactId"),
        ("Task", "WhoId"),
        ("Event", "WhoId"),
    ],
    "Lead": [("CampaignMember", "LeadId"), ("Task", "WhoId"), ("Event", "WhoId")],
    "Campaign": [("CampaignMember", "CampaignId")],
    "Opportunity": [("OpportunityContactRole", "OpportunityId")],
    "EmailMessage": [("EmailMessageRelation", "EmailMessageId")],
}
# Children moved to the survivor when records merge.
REPARENTS: dict[str, list[tuple[str, str]]] = {
    "Account": [
        ("Contact", "AccountId"),
        ("Opportunity", "AccountId"),
        ("Task", "AccountId"),
        ("Event", "AccountId"),
    ],
    "Contact": [
        ("Opportunity", "ContactId"),
        ("OpportunityContactRole", "ContactId"),
        ("Task", "WhoId"),
        ("Event", "WhoId"),
        ("CampaignMember", "ContactId"),
        ("EmailMessageRelation", "RelationId"),
    ],
    "Lead": [
        ("Task", "WhoId"),
        ("Event", "WhoId"),
        ("CampaignMember", "LeadId"),
        ("EmailMessageRelation", "RelationId"),
    ],
}
#: The objects that exist only while Enhanced Email is on.
ENHANCED_EMAIL_OBJECTS = ("EmailMessage", "EmailMessageRelation")
_SYSTEM_TIMESTAMPS = ("CreatedDate", "LastModifiedDate", "SystemModstamp")


class Org:
    """All records of the emulated org plus the settings that shape replication answers."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.objects: dict[str, ObjectDef] = standard_objects()
        # Objects switched off (e.g. Enhanced Email): unknown to the API, records kept.
        self.disabled: dict[str, ObjectDef] = {}
        self.records: dict[str, Rec] = {}
        self.ids = IdFactory()
        self.user_id = self.ids.next("005")
        self.foreign_writes: list[ForeignWrite] = []
        # (sObject, field) pairs segsync may write on records it did not create.
        self.segsync_fields: set[tuple[str, str]] = set()
        self.recycle_bin_days = 15
        self.updated_window_days = 30
        self.delete_log_purged_through: dt.datetime | None = None
        self._journal: list[Callable[[], None]] | None = None
        self._journaled: set[str] = set()
        self._members: dict[str, list[Rec]] = {}
        # (CampaignId, "ContactId"/"LeadId", person id) -> members that had that person (a
        # lookup re-checks the current values, so stale entries are harmless).
        self._member_keys: dict[tuple[str, str, str], list[Rec]] = {}

    # --- transactions (all-or-none) ---------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Journal writes so `rollback()` can undo them; an exception rolls back, a normal
        exit commits unless the body already committed or rolled back."""
        self._journal = []
        self._journaled = set()
        try:
            yield
        except BaseException:
            self.rollback()
            raise
        if self._journal is not None:
            self.commit()

    def commit(self) -> None:
        self._journal = None
        self._journaled = set()

    def rollback(self) -> None:
        journal = self._journal or []
        self._journal = None
        self._journaled = set()
        for undo in reversed(journal):
            undo()

    def _remember(self, rec: Rec) -> None:
        if self._journal is None or rec.id in self._journaled:
            return
        self._journaled.add(rec.id)
        values, deleted_at, cascade_of = dict(rec.values), rec.deleted_at, rec.cascade_of

        def undo() -> None:
            rec.values, rec.deleted_at, rec.cascade_of = values, deleted_at, cascade_of

        self._journal.append(undo)

    def _add_record(self, rec: Rec) -> None:
        self.records[rec.id] = rec
        members = None
        if rec.sobject == "CampaignMember":  # CampaignId never changes: index members by it
            members = self._members.setdefault(str(rec.values.get("CampaignId")), [])
            members.append(rec)
            self._index_member(rec)
        if self._journal is not None:
            self._journaled.add(rec.id)

            def undo() -> None:
                self.records.pop(rec.id, None)
                if members is not None and rec in members:
                    members.remove(rec)
                # _member_keys may keep it: lookups skip records no longer in self.records

            self._journal.append(undo)

    def _index_member(self, rec: Rec) -> None:
        """Make a CampaignMember findable by its current ContactId / LeadId."""
        if rec.sobject != "CampaignMember":
            return
        campaign = str(rec.values.get("CampaignId"))
        for field_name in ("ContactId", "LeadId"):
            person = rec.values.get(field_name)
            if person:
                keyed = self._member_keys.setdefault((campaign, field_name, str(person)), [])
                if not any(r is rec for r in keyed):
                    keyed.append(rec)

    def _live_member(self, campaign_id: str, field_name: str, person: str) -> bool:
        return any(
            rec.deleted_at is None
            and rec.values.get(field_name) == person
            and self.records.get(rec.id) is rec
            for rec in self._member_keys.get((campaign_id, field_name, person), ())
        )

    def campaign_members(self, campaign_id: str) -> list[Rec]:
        """Every CampaignMember row (deleted ones too) of one campaign."""
        return self._members.get(campaign_id, [])

    # --- lookups ----------------------------------------------------------------------------

    def object(self, name: str) -> ObjectDef:
        found = lookup_object(self.objects, name)
        if found is None:
            raise ApiError(
                404, "NOT_FOUND", f"The requested resource does not exist: sObject type '{name}'"
            )
        return found

    def now(self) -> dt.datetime:
        return self.clock.now()

    def deletion_horizon(self) -> dt.datetime:
        """Deleted records older than this are gone from the recycle bin and the delete log."""
        horizon = self.now() - dt.timedelta(days=self.recycle_bin_days)
        if self.delete_log_purged_through is not None and self.delete_log_purged_through > horizon:
            return self.delete_log_purged_through
        return horizon

    def purged(self, rec: Rec) -> bool:
        return rec.deleted_at is not None and rec.deleted_at <= self.deletion_horizon()

    def find(self, record_id: str) -> Rec | None:
        try:
            return self.records.get(to18(record_id))
        except ValueError:
            return None

    def live(self, record_id: str) -> tuple[str, Mapping[str, Any]] | None:
        """SOQL relationship lookup: a record that is not deleted."""
        rec = self.records.get(record_id)
        if rec is None or rec.deleted_at is not None:
            return None
        return rec.sobject, rec.values

    def rows(self, sobject: str, include_deleted: bool) -> Iterator[tuple[str, Mapping[str, Any]]]:
        for rec in self.records.values():
            if rec.sobject != sobject:
                continue
            if rec.deleted_at is not None and (not include_deleted or self.purged(rec)):
                continue
            yield rec.sobject, rec.values

    def set_enabled(self, names: tuple[str, ...], enabled: bool) -> None:
        """Switch objects on or off: off, the API answers INVALID_TYPE / NOT_FOUND for them
        (as for an org without the feature) while their records stay stored."""
        for name in names:
            if enabled and name in self.disabled:
                self.objects[name] = self.disabled.pop(name)
            elif not enabled and name in self.objects:
                self.disabled[name] = self.objects.pop(name)

    def definition(self, sobject: str) -> ObjectDef:
        """The definition of a stored record's type, switched off or not."""
        return self.objects.get(sobject) or self.disabled[sobject]

    def public(self, rec: Rec) -> dict[str, Any]:
        """A record as JSON-ready values (the shape a REST GET would give, minus attributes)."""
        definition = self.definition(rec.sobject)
        return {name: to_json_value(rec.values.get(name)) for name in definition.fields}

    # --- field reading and validation -------------------------------------------------------

    def read_fields(
        self, definition: ObjectDef, raw: Mapping[str, Any], ctx: WriteContext, *, creating: bool
    ) -> tuple[dict[str, Any], RecordError | None]:
        """Canonical, typed values from a request body. ApiError for unknown fields or bad JSON
        types (the whole call fails); a RecordError to report for this record, if any."""
        values: dict[str, Any] = {}
        not_writable: list[str] = []
        for name, value in raw.items():
            if name == "attributes":
                continue
            found = definition.field(name)
            if found is None or (ctx.via_api and not found.readable):
                raise ApiError(
                    400,
                    "INVALID_FIELD",
                    f"No such column '{name}' on sobject of type {definition.name}",
                )
            if found.name == "Id":
                continue
            try:
                values[found.name] = coerce_input(found, value)
            except ValueTypeError as exc:
                raise ApiError(400, "JSON_PARSER_ERROR", f"{exc} at [line:1, column:1]") from exc
            allowed = found.createable if creating else found.updateable
            if ctx.via_api and not allowed:
                not_writable.append(found.name)
        if not_writable:
            message = (
                f"Unable to create/update fields: {', '.join(not_writable)}. Please check the "
                "security settings of this field and verify that it is read/write for your "
                "profile or permission set."
            )
            return values, RecordError("INVALID_FIELD_FOR_INSERT_UPDATE", message, not_writable)
        return values, None

    def _check_values(self, definition: ObjectDef, values: dict[str, Any]) -> None:
        for name, value in list(values.items()):
            spec = definition.fields[name]
            if value is None:
                continue
            if spec.type in STRING_TYPES and spec.length and len(value) > spec.length:
                raise RecordError(
                    "STRING_TOO_LONG",
                    f"{spec.label}: data value too large: {value} (max length={spec.length})",
                    [name],
                )
            if spec.type == "picklist" and spec.restricted and value not in spec.picklist_values:
                raise RecordError(
                    "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                    f"{spec.label}: bad value for restricted picklist field: {value}",
                    [name],
                )
            if spec.type == "multipicklist":
                chosen = [part for part in value.split(";") if part]
                if spec.restricted:
                    bad = [part for part in chosen if part not in spec.picklist_values]
                    if bad:
                        raise RecordError(
                            "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                            f"{spec.label}: bad value for restricted picklist field: {bad[0]}",
                            [name],
                        )
                values[name] = join_multipicklist(chosen, spec) or None
            if spec.type in ID_TYPES and name not in ("Id", "CreatedById", "LastModifiedById"):
                values[name] = self._check_reference(spec, value)

    def _check_reference(self, spec: FieldDef, value: str) -> str:
        try:
            target_id = to18(value)
        except ValueError as exc:
            raise RecordError(
                "MALFORMED_ID", f"{spec.label}: id value of incorrect type: {value}", [spec.name]
            ) from exc
        target_type = object_for_id(self.objects, target_id)
        if target_type is None or target_type.name not in spec.reference_to:
            raise RecordError(
                "FIELD_INTEGRITY_EXCEPTION",
                f"{spec.label}: id value of incorrect type: {value}",
                [spec.name],
            )
        target = self.records.get(target_id)
        if target is None:
            raise RecordError(
                "INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", [spec.name]
            )
        if target.deleted_at is not None:
            raise RecordError("ENTITY_IS_DELETED", "entity is deleted", [spec.name])
        if target.sobject == "Lead" and target.values.get("IsConverted"):
            raise RecordError(
                "CANNOT_UPDATE_CONVERTED_LEAD", "cannot reference converted lead", [spec.name]
            )
        return target_id

    def _derive(self, rec: Rec, previous: Mapping[str, Any] | None) -> None:
        values = rec.values
        today = self.now().date()
        if rec.sobject in ("Contact", "Lead"):
            values["Name"] = " ".join(
                p for p in (values.get("FirstName"), values.get("LastName")) if p
            )
        elif rec.sobject == "Opportunity":
            stage = values.get("StageName")
            values["IsWon"] = stage == "Closed Won"
            values["IsClosed"] = stage in ("Closed Won", "Closed Lost")
        elif rec.sobject == "Task":
            closed = values.get("Status") == "Completed"
            was_closed = bool(previous and previous.get("IsClosed"))
            values["IsClosed"] = closed
            if closed and not was_closed and values.get("CompletedDateTime") is None:
                values["CompletedDateTime"] = self.now()
            if not closed:
                values["CompletedDateTime"] = None
        elif rec.sobject == "Event":
            start = values.get("ActivityDateTime")
            values["StartDateTime"] = start
            values["ActivityDate"] = start.date() if start is not None else None
        elif rec.sobject == "EmailMessageRelation":
            person = values.get("RelationId")
            found = self.records.get(str(person)) if person else None
            values["RelationObjectType"] = found.sobject if found is not None else None
            if found is not None and not values.get("RelationAddress"):
                values["RelationAddress"] = found.values.get("Email") or found.values.get(
                    "Username"
                )
        elif rec.sobject == "CampaignMember":
            values["LeadOrContactId"] = values.get("ContactId") or values.get("LeadId")
            responded = values.get("Status") == "Responded"
            values["HasResponded"] = responded
            if responded and values.get("FirstRespondedDate") is None:
                values["FirstRespondedDate"] = today

    def _recount(self, campaign_id: str | None) -> None:
        campaign = self.records.get(campaign_id) if campaign_id else None
        if campaign is None:
            return
        self._remember(campaign)
        contacts = leads = 0
        for rec in self.campaign_members(campaign.id):
            if rec.deleted_at is not None:
                continue
            if rec.values.get("ContactId"):
                contacts += 1
            else:
                leads += 1
        campaign.values["NumberOfContacts"] = contacts
        campaign.values["NumberOfLeads"] = leads

    def _count_member(self, rec: Rec, delta: int) -> None:
        """Move the campaign's member count by one member (a full recount is O(members))."""
        campaign_id = rec.values.get("CampaignId")
        campaign = self.records.get(campaign_id) if campaign_id else None
        if campaign is None:
            return
        name = "NumberOfContacts" if rec.values.get("ContactId") else "NumberOfLeads"
        current = campaign.values.get(name)
        if not isinstance(current, int) or current + delta < 0:
            self._recount(campaign.id)
            return
        self._remember(campaign)
        campaign.values[name] = current + delta

    def _audit(self, ctx: WriteContext, rec: Rec, fields: list[str], reason: str) -> None:
        if ctx.via_api:
            self.foreign_writes.append(
                ForeignWrite(ctx.method, ctx.path, rec.sobject, rec.id, tuple(fields), reason)
            )

    # --- writes -----------------------------------------------------------------------------

    def insert(
        self,
        sobject: str,
        values: dict[str, Any],
        ctx: WriteContext,
    ) -> str:
        """Create a record from already-read values (see `read_fields`). Returns its Id."""
        definition = self.object(sobject)
        values = dict(values)
        self._check_values(definition, values)
        missing = [
            f.name
            for f in definition.fields.values()
            if f.required and values.get(f.name) in (None, "")
        ]
        if missing:
            raise RecordError(
                "REQUIRED_FIELD_MISSING",
                f"Required fields are missing: [{', '.join(missing)}]",
                missing,
            )
        if definition.name == "CampaignMember":
            self._check_new_member(values, ctx)
        now = self.now()
        record_id = self.ids.next(definition.key_prefix)
        full: dict[str, Any] = {name: spec.default for name, spec in definition.fields.items()}
        full.update(
            {
                "Id": record_id,
                "IsDeleted": False,
                "CreatedById": self.user_id,
                "LastModifiedById": self.user_id,
                **dict.fromkeys(_SYSTEM_TIMESTAMPS, now),
            }
        )
        full.update(values)  # seeds may also set CreatedDate / SystemModstamp here
        rec = Rec(definition.name, full, "api" if ctx.via_api else "seed")
        self._derive(rec, None)
        self._add_record(rec)
        if definition.name == "CampaignMember":
            self._count_member(rec, +1)
        return record_id

    def add_user_record(self, user_id: str, username: str) -> None:
        """The User row behind a login (segsync check reads UserPermissionsMarketingUser)."""
        definition = self.objects["User"]
        now = self.now()
        values: dict[str, Any] = {name: spec.default for name, spec in definition.fields.items()}
        values.update(Id=user_id, IsDeleted=False, Username=username, LastName=username,
                      CreatedById=self.user_id, LastModifiedById=self.user_id,
                      **dict.fromkeys(_SYSTEM_TIMESTAMPS, now))
        self._add_record(Rec("User", values, "seed"))

    def _check_new_member(self, values: Mapping[str, Any], ctx: WriteContext) -> None:
        contact_id, lead_id = values.get("ContactId"), values.get("LeadId")
        if not contact_id and not lead_id:
            raise RecordError(
                "REQUIRED_FIELD_MISSING",
                "Required fields are missing: [ContactId, LeadId]",
                ["ContactId", "LeadId"],
            )
        campaign = self.records[values["CampaignId"]]
        if campaign.origin == "seed":
            self._audit(
                ctx,
                campaign,
                ["CampaignMember"],
                "member added to a campaign segsync did not create",
            )
        if (contact_id and self._live_member(campaign.id, "ContactId", str(contact_id))) or (
            lead_id and self._live_member(campaign.id, "LeadId", str(lead_id))
        ):
            raise RecordError("DUPLICATE_VALUE", "Already a campaign member.", [])

    def target(self, record_id: str, *, expected_type: str | None = None) -> Rec:
        """The record a write points at, or the RecordError Salesforce reports for it."""
        try:
            key = to18(record_id)
        except ValueError as exc:
            raise RecordError("MALFORMED_ID", f"malformed id {record_id}", []) from exc
        rec = self.records.get(key)
        if rec is None or self.purged(rec) or rec.sobject in self.disabled:
            raise RecordError("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", [])
        if expected_type is not None and rec.sobject.lower() != expected_type.lower():
            raise RecordError(
                "MALFORMED_ID",
                f"{expected_type} ID: id value of incorrect type: {record_id}",
                ["Id"],
            )
        if rec.deleted_at is not None:
            raise RecordError("ENTITY_IS_DELETED", "entity is deleted", [])
        return rec

    def update(
        self, record_id: str, values: dict[str, Any], ctx: WriteContext, *, bump: bool = True
    ) -> None:
        rec = self.target(record_id)
        definition = self.objects[rec.sobject]
        if rec.origin == "seed":
            allowed = {f for (o, f) in self.segsync_fields if o == rec.sobject}
            if not set(values) <= allowed:
                self._audit(ctx, rec, sorted(values), "update of a record segsync did not create")
        if ctx.via_api and rec.sobject == "Lead" and rec.values.get("IsConverted"):
            raise RecordError("CANNOT_UPDATE_CONVERTED_LEAD", "cannot reference converted lead", [])
        values = dict(values)
        self._check_values(definition, values)
        missing = [
            n for n, v in values.items() if definition.fields[n].required and v in (None, "")
        ]
        if missing:
            raise RecordError(
                "REQUIRED_FIELD_MISSING",
                f"Required fields are missing: [{', '.join(missing)}]",
                missing,
            )
        self._remember(rec)
        previous = dict(rec.values)
        rec.values.update(values)
        if bump:
            rec.values["LastModifiedDate"] = rec.values["SystemModstamp"] = self.now()
        self._derive(rec, previous)
        self._index_member(rec)

    def touch(self, record_id: str) -> None:
        """A system-only change: SystemModstamp moves, LastModifiedDate does not."""
        rec = self.target(record_id)
        self._remember(rec)
        rec.values["SystemModstamp"] = self.now()

    def delete(self, record_id: str, ctx: WriteContext) -> None:
        rec = self.target(record_id)
        if rec.origin == "seed" and not self._member_of_owned_campaign(rec):
            self._audit(ctx, rec, [], "delete of a record segsync did not create")
        self._delete(rec, cascade_of=None)

    def _member_of_owned_campaign(self, rec: Rec) -> bool:
        """Removing a hand-added member from a campaign segsync owns is its job (reconcile)."""
        if rec.sobject != "CampaignMember":
            return False
        campaign = self.find(str(rec.values.get("CampaignId")))
        return campaign is not None and campaign.origin != "seed"

    def _delete(self, rec: Rec, cascade_of: str | None) -> None:
        now = self.now()
        was_live = rec.deleted_at is None
        self._remember(rec)
        rec.deleted_at = now
        rec.cascade_of = cascade_of
        rec.values.update(IsDeleted=True, LastModifiedDate=now, SystemModstamp=now)
        for child_type, field_name in CASCADES.get(rec.sobject, []):
            for child in list(self.records.values()):
                if (
                    child.sobject == child_type
                    and child.deleted_at is None
                    and child.values.get(field_name) == rec.id
                ):
                    self._delete(child, cascade_of=rec.id)
        if rec.sobject == "CampaignMember":
            if was_live:
                self._count_member(rec, -1)
            else:
                self._recount(rec.values.get("CampaignId"))

    def undelete(self, record_id: str) -> None:
        rec = self.find(record_id)
        if rec is None or rec.deleted_at is None or self.purged(rec):
            raise RecordError("UNDELETE_FAILED", "Entity is not in the recycle bin", [])
        self._restore(rec)
        for child in list(self.records.values()):
            if child.cascade_of == rec.id and child.deleted_at is not None:
                self._restore(child)

    def _restore(self, rec: Rec) -> None:
        self._remember(rec)
        rec.deleted_at = None
        rec.cascade_of = None
        now = self.now()
        rec.values.update(IsDeleted=False, LastModifiedDate=now, SystemModstamp=now)
        if rec.sobject == "CampaignMember":
            self._recount(rec.values.get("CampaignId"))

    def merge(self, survivor_id: str, loser_ids: list[str]) -> None:
        survivor = self.target(survivor_id)
        definition = self.objects[survivor.sobject]
        if not definition.mergeable:
            raise RecordError("INVALID_TYPE", f"{survivor.sobject} records can't be merged", [])
        now = self.now()
        for loser_id in loser_ids:
            loser = self.target(loser_id, expected_type=survivor.sobject)
            if loser.id == survivor.id:
                raise RecordError("INVALID_ID_FIELD", "can't merge a record with itself", [])
            for child_type, field_name in REPARENTS.get(survivor.sobject, []):
                for child in list(self.records.values()):
                    if child.sobject != child_type or child.deleted_at is not None:
                        continue
                    if child.values.get(field_name) != loser.id:
                        continue
                    if child_type == "CampaignMember" and self._is_member(
                        child.values["CampaignId"], field_name, survivor.id
                    ):
                        self._delete(child, cascade_of=loser.id)
                        continue
                    self._remember(child)
                    child.values[field_name] = survivor.id
                    child.values["SystemModstamp"] = now
                    self._derive(child, child.values)
                    self._index_member(child)
            self._remember(loser)
            loser.values["MasterRecordId"] = survivor.id
            self._delete(loser, cascade_of=None)
        self._remember(survivor)
        survivor.values["LastModifiedDate"] = survivor.values["SystemModstamp"] = now

    def _is_member(self, campaign_id: str, field_name: str, person_id: str) -> bool:
        return any(
            rec.sobject == "CampaignMember"
            and rec.deleted_at is None
            and rec.values.get("CampaignId") == campaign_id
            and rec.values.get(field_name) == person_id
            for rec in self.records.values()
        )

    def convert_lead(
        self,
        lead_id: str,
        *,
        contact_id: str | None = None,
        account_id: str | None = None,
        opportunity_name: str | None = None,
    ) -> LeadConversion:
        lead = self.target(lead_id, expected_type="Lead")
        if lead.values.get("IsConverted"):
            raise RecordError("CANNOT_UPDATE_CONVERTED_LEAD", "cannot reference converted lead", [])
        v = lead.values
        if account_id is None:
            account_id = self.insert(
                "Account",
                {
                    "Name": v.get("Company") or v.get("Name"),
                    "Industry": v.get("Industry"),
                    "NumberOfEmployees": v.get("NumberOfEmployees"),
                    "AnnualRevenue": v.get("AnnualRevenue"),
                    "BillingCity": v.get("City"),
                    "BillingState": v.get("State"),
                    "BillingPostalCode": v.get("PostalCode"),
                    "BillingCountry": v.get("Country"),
                    "BillingLatitude": v.get("Latitude"),
                    "BillingLongitude": v.get("Longitude"),
                },
                PYTHON_API,
            )
        else:
            account_id = self.target(account_id, expected_type="Account").id
        if contact_id is None:
            contact_id = self.insert(
                "Contact",
                {
                    "AccountId": account_id,
                    "FirstName": v.get("FirstName"),
                    "LastName": v.get("LastName"),
                    "Email": v.get("Email"),
                    "Title": v.get("Title"),
                    "MailingCity": v.get("City"),
                    "MailingState": v.get("State"),
                    "MailingPostalCode": v.get("PostalCode"),
                    "MailingCountry": v.get("Country"),
                    "HasOptedOutOfEmail": v.get("HasOptedOutOfEmail") or False,
                    "DoNotCall": v.get("DoNotCall") or False,
                    "LeadSource": v.get("LeadSource"),
                    **{
                        name: v.get(name)
                        for name in self.objects["Contact"].fields
                        if name.endswith("__c") and name in self.objects["Lead"].fields
                    },
                },
                PYTHON_API,
            )
        else:
            contact_id = self.target(contact_id, expected_type="Contact").id
        opportunity_id = None
        if opportunity_name is not None:
            opportunity_id = self.insert(
                "Opportunity",
                {
                    "Name": opportunity_name,
                    "AccountId": account_id,
                    "ContactId": contact_id,
                    "StageName": "Prospecting",
                    "CloseDate": self.now().date() + dt.timedelta(days=30),
                },
                PYTHON_API,
            )
        now = self.now()
        self._remember(lead)
        v.update(
            IsConverted=True,
            ConvertedContactId=contact_id,
            ConvertedAccountId=account_id,
            ConvertedOpportunityId=opportunity_id,
            ConvertedDate=now.date(),
            Status="Closed - Converted",
            LastModifiedDate=now,
            SystemModstamp=now,
        )
        for rec in self.records.values():  # the lead's activities move to the contact
            if (
                rec.sobject in ("Task", "Event")
                and rec.deleted_at is None
                and rec.values.get("WhoId") == lead.id
            ):
                self._remember(rec)
                rec.values["WhoId"] = contact_id
                rec.values["SystemModstamp"] = now
        for rec in self.records.values():
            if (
                rec.sobject == "CampaignMember"
                and rec.deleted_at is None
                and rec.values.get("LeadId") == lead.id
            ):
                self._remember(rec)
                rec.values["ContactId"] = contact_id
                rec.values["SystemModstamp"] = now
                self._derive(rec, rec.values)
                self._index_member(rec)
                self._recount(rec.values.get("CampaignId"))
        return LeadConversion(lead.id, contact_id, account_id, opportunity_id)

    # --- replication (getUpdated / getDeleted) -------------------------------------------------

    def replication_window(
        self, start: dt.datetime, end: dt.datetime, max_days: int
    ) -> tuple[dt.datetime, dt.datetime]:
        """Validate a getUpdated/getDeleted range; return (start, latestDateCovered)."""
        start = start.replace(second=0, microsecond=0)
        end = end.replace(second=0, microsecond=0)
        if end - start < dt.timedelta(minutes=1):
            raise ApiError(
                400,
                "INVALID_REPLICATION_DATE",
                "startDate must chronologically precede endDate by more than one minute",
            )
        if start < self.now() - dt.timedelta(days=max_days):
            raise ApiError(
                400,
                "INVALID_REPLICATION_DATE",
                f"startDate cannot be more than {max_days} days ago",
            )
        latest = min(end, self.now().replace(second=0, microsecond=0))
        return start, latest

    def updated_ids(
        self, sobject: str, start: dt.datetime, end: dt.datetime
    ) -> tuple[list[str], dt.datetime]:
        definition = self.object(sobject)
        lo, latest = self.replication_window(start, end, self.updated_window_days)
        ids = [
            rec.id
            for rec in self.records.values()
            if rec.sobject == definition.name
            and rec.deleted_at is None
            and lo <= rec.values["SystemModstamp"] < latest
        ]
        return ids, latest

    def deleted_records(
        self, sobject: str, start: dt.datetime, end: dt.datetime
    ) -> tuple[list[tuple[str, dt.datetime]], dt.datetime, dt.datetime]:
        definition = self.object(sobject)
        lo, latest = self.replication_window(start, end, self.recycle_bin_days)
        horizon = self.deletion_horizon()
        found = sorted(
            (
                (rec.id, rec.deleted_at)
                for rec in self.records.values()
                if rec.sobject == definition.name
                and rec.deleted_at is not None
                and rec.deleted_at > horizon
                and lo <= rec.deleted_at < latest
            ),
            key=lambda item: (item[1], item[0]),
        )
        return found, horizon.replace(second=0, microsecond=0), latest
