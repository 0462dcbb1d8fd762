"""Pure translation between HubSpot JSON and segsync's canonical frames and request bodies.

Nothing here sends a request. Request bodies follow the schemas carried by
hubspot-api-client's model classes (fact sheet §13a: every spec-required key is sent,
ids are strings); the tests build each one through those classes. Every answer the
connector reads is parsed here too (search pages, archived sweeps, pipelines, lists,
properties, memberships, batch outcomes), so the modules that send requests
(``streams``, ``lists``, ``property``) only decide what to ask next.

Engagement kinds: sales emails (the CRM ``emails`` object) are split by
``hs_email_direction``: ``INCOMING_EMAIL`` is the contact writing to us
(``incoming_emails``, default ``email_received`` -- a customer who wrote last week is not
inactive), ``EMAIL`` and ``FORWARDED_EMAIL`` are ours (``emails``, ``email_sent``; dropped
unless actually sent, :func:`engagement_kind`).
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from connectors.base import BatchResult
from connectors.errors import CrmDataError
from connectors.hubspot.paging import id_key

__all__ = [
    "EMAIL_NOT_SENT",
    "EMAIL_RECEIVED",
    "EVENT_COLUMNS",
    "SEARCH_PAGE",
    "BatchError",
    "Cursor",
    "ListInfo",
    "Outcomes",
    "PropertyInfo",
    "activity_frame",
    "archived_ids",
    "association_inputs",
    "association_targets",
    "batch_errors",
    "batch_failures",
    "batch_update_body",
    "closed_won",
    "companies_frame",
    "contacts_frame",
    "decode_watermark",
    "encode_watermark",
    "engagement_kind",
    "eq",
    "from_ms",
    "group_create_body",
    "gte",
    "id_after",
    "list_create_body",
    "list_info",
    "member_ids",
    "membership_change_body",
    "membership_change_outcomes",
    "membership_outcome",
    "membership_read_body",
    "merged_ids",
    "naive_utc",
    "one_of",
    "option_value",
    "options_body",
    "parse_iso_ms",
    "primary_company",
    "property_create_body",
    "property_info",
    "purchases_frame",
    "record_memberships",
    "search_body",
    "search_results",
    "target_ids",
    "timestamps",
    "to_ms",
    "update_outcomes",
    "won_stage_ids",
]

JsonObject = Mapping[str, Any]
EVENT_COLUMNS = ["_crm_id", "_contact_id", "type", "ts", "amount", "_modified_at"]
#: contact -> company association type id that marks the primary company (HUBSPOT_DEFINED).
PRIMARY_COMPANY_TYPE_ID = 1
SEARCH_PAGE = 200
CONTACT_TYPE_ID = "0-1"
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


# --------------------------------------------------------------------------- time


def to_ms(value: dt.datetime) -> int:
    """Epoch milliseconds of a datetime (naive values are UTC), HubSpot's filter format."""
    aware = value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)
    return (aware - _EPOCH) // dt.timedelta(milliseconds=1)  # exact: no float rounding


def from_ms(value: int) -> dt.datetime:
    return _EPOCH + dt.timedelta(milliseconds=value)


def _iso(ms: int) -> str:
    moment = from_ms(ms)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_iso_ms(text: str) -> int | None:
    try:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return to_ms(moment)


def naive_utc(value: dt.datetime | None) -> dt.datetime | None:
    """The store's convention: naive datetimes are UTC."""
    if value is None or value.tzinfo is None:
        return value
    return value.astimezone(dt.UTC).replace(tzinfo=None)


def timestamps(values: Sequence[object], ids: Sequence[str], what: str) -> pd.Series:
    """Naive-UTC ``datetime64`` from HubSpot values (ISO 8601, ``YYYY-MM-DD`` or ms epoch).

    Missing values stay NaT; an unreadable one raises a CrmDataError naming the records.
    """
    raw = pd.Series([None if v in (None, "") else str(v) for v in values], dtype=object)
    present = raw.notna()
    numeric = present & raw.map(lambda v: isinstance(v, str) and v.lstrip("-").isdigit())
    from_ms = pd.to_datetime(pd.to_numeric(raw.where(numeric), errors="coerce"),
                             unit="ms", utc=True)
    from_text = pd.to_datetime(raw.where(present & ~numeric), utc=True, errors="coerce",
                               format="ISO8601")
    parsed = from_text.where(~numeric, from_ms)
    bad = parsed.isna() & raw.notna()
    if bad.any():
        where = [f"{ids[i]} ({raw[i]!r})" for i in bad[bad].index[:3]]
        raise CrmDataError(f"HubSpot {what} is not a date for record(s) {', '.join(where)}")
    result: pd.Series = parsed.dt.tz_localize(None).astype("datetime64[ns]")
    return result


# --------------------------------------------------------------------------- watermarks


@dataclass(frozen=True)
class Cursor:
    """Where a pull is: the window it reads and how far it got.

    ``at`` is when the pull started (ms); once every part is read, ``at`` is the next
    pull's watermark. ``since`` is this pull's lower bound (None: a full pull). ``part``
    and ``after`` locate the last stored record (sub-query index, last id) so a pull
    stopped half-way resumes there instead of starting over.
    """

    at: int
    since: int | None = None
    part: int = 0
    after: str | None = None

    @property
    def in_progress(self) -> bool:
        return self.part > 0 or self.after is not None


def encode_watermark(cursor: Cursor) -> str:
    """A finished pull is a plain ISO timestamp; one in progress is a small JSON object."""
    if not cursor.in_progress:
        return _iso(cursor.at)
    return json.dumps(
        {
            "at": _iso(cursor.at),
            "since": None if cursor.since is None else _iso(cursor.since),
            "part": cursor.part,
            "after": cursor.after,
        },
        separators=(",", ":"),
    )


def decode_watermark(text: str) -> Cursor:
    """Inverse of :func:`encode_watermark`; raises ValueError on anything else."""
    text = text.strip()
    if not text.startswith("{"):
        at = parse_iso_ms(text)
        if at is None:
            raise ValueError(f"not a segsync HubSpot watermark: {text!r}")
        return Cursor(at)
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError("watermark must be a JSON object")
    at = parse_iso_ms(str(data.get("at")))
    since_raw = data.get("since")
    since = None if since_raw is None else parse_iso_ms(str(since_raw))
    part = data.get("part", 0)
    after = data.get("after")
    if at is None or (since_raw is not None and since is None) or not isinstance(part, int):
        raise ValueError(f"not a segsync HubSpot watermark: {text!r}")
    return Cursor(at, since, part, None if after is None else str(after))


# --------------------------------------------------------------------------- request bodies


def search_body(
    filters: Sequence[JsonObject],
    properties: Iterable[str],
    *,
    sort_style: str = "string",
    limit: int = SEARCH_PAGE,
    after: str = "0",
) -> dict[str, Any]:
    """A ``PublicObjectSearchRequest`` sorted by ``hs_object_id`` ascending.

    ``after`` stays "0" while paging re-anchors on ``hs_object_id`` (10k wall); only an
    empty page that still carries ``paging.next`` makes the next request send HubSpot's
    cursor (:class:`~connectors.hubspot.paging.IdWindow`). ``sort_style`` "string" is the
    spec's ``list[str]`` (what the SDK models accept); "object" is the form HubSpot's
    guides show.
    """
    sort: Any = (
        {"propertyName": "hs_object_id", "direction": "ASCENDING"}
        if sort_style == "object"
        else "hs_object_id"
    )
    return {
        "filterGroups": [{"filters": [dict(f) for f in filters]}] if filters else [],
        "sorts": [sort],
        "properties": sorted(set(properties)),
        "limit": limit,
        "after": after,
    }


def gte(prop: str, when_ms: int) -> dict[str, str]:
    return {"propertyName": prop, "operator": "GTE", "value": str(when_ms)}


def eq(prop: str, value: str) -> dict[str, str]:
    return {"propertyName": prop, "operator": "EQ", "value": value}


def id_after(last_id: str) -> dict[str, str]:
    return {"propertyName": "hs_object_id", "operator": "GT", "value": last_id}


def one_of(prop: str, values: Iterable[str]) -> dict[str, Any]:
    return {"propertyName": prop, "operator": "IN", "values": sorted(values)}


def association_inputs(requests: Iterable[tuple[str, str | None]]) -> dict[str, Any]:
    """``BatchInputPublicFetchAssociationsBatchRequest``: ids (and per-id ``after``)."""
    inputs: list[dict[str, str]] = []
    for object_id, after in requests:
        item = {"id": object_id}
        if after is not None:
            item["after"] = after
        inputs.append(item)
    return {"inputs": inputs}


def list_create_body(name: str) -> dict[str, Any]:
    """``ListCreateRequest`` for a static contact list."""
    return {"name": name, "objectTypeId": "0-1", "processingType": "MANUAL"}


def membership_change_body(adds: Sequence[str], removes: Sequence[str]) -> dict[str, Any]:
    """``MembershipChangeRequest``: both keys are required, ids are strings."""
    return {"recordIdsToAdd": [str(i) for i in adds],
            "recordIdsToRemove": [str(i) for i in removes]}


def membership_read_body(record_ids: Sequence[str]) -> dict[str, Any]:
    """``BatchInputRecordIdInput`` for ``POST /crm/v3/lists/records/memberships/batch/read``.

    The spec requires ``objectTypeId`` and ``recordId`` (strings) on every input; segsync
    only writes contact lists, so every input is a contact (``0-1``).
    """
    return {"inputs": [{"objectTypeId": CONTACT_TYPE_ID, "recordId": str(i)}
                       for i in record_ids]}


def option_value(name: str) -> str:
    """The checkbox option value for a segment name (``;`` separates values on write)."""
    return name.replace(";", ",").strip()


def options_body(names: Sequence[str]) -> list[dict[str, Any]]:
    """``OptionInput`` list, in the given order; the full set is always sent."""
    return [
        {"label": name, "value": option_value(name), "displayOrder": order, "hidden": False}
        for order, name in enumerate(names)
    ]


def group_create_body(name: str, label: str) -> dict[str, Any]:
    return {"name": name, "label": label, "displayOrder": -1}


def property_create_body(
    name: str, label: str, group: str, options: Sequence[str]
) -> dict[str, Any]:
    """``PropertyCreate`` for a multi-checkbox contact property."""
    return {
        "name": name,
        "label": label,
        "type": "enumeration",
        "fieldType": "checkbox",
        "groupName": group,
        "description": "Segments computed by segsync. Managed by segsync: edits are overwritten.",
        "formField": False,
        "options": options_body(options),
    }


def batch_update_body(prop: str, updates: Mapping[str, Sequence[str]]) -> dict[str, Any]:
    """``BatchInputSimplePublicObjectBatchInput``; an empty set clears the property."""
    return {
        "inputs": [
            {"id": str(contact), "properties": {prop: ";".join(option_value(n) for n in names)}}
            for contact, names in updates.items()
        ]
    }


# --------------------------------------------------------------------------- responses


def _props(record: JsonObject) -> Mapping[str, Any]:
    props = record.get("properties")
    return props if isinstance(props, Mapping) else {}


def _text(value: object) -> str | None:
    if value is None:
        return None
    text = str(value)
    return text if text != "" else None


def _ids(records: Sequence[JsonObject]) -> list[str]:
    return [str(r.get("id")) for r in records]


def search_results(body: JsonObject) -> list[JsonObject]:
    """The records of one search or object-list page (entries that are not objects skipped)."""
    raw = body.get("results")
    return [r for r in raw if isinstance(r, Mapping)] if isinstance(raw, list) else []


def archived_ids(body: JsonObject, since_ms: int | None) -> list[str]:
    """Ids on one ``?archived=true`` page archived since ``since_ms`` (None: all of them).

    A record whose ``archivedAt`` is missing or unreadable counts as archived in the window.
    """
    ids: list[str] = []
    for record in search_results(body):
        if record.get("id") is None:
            continue
        archived_at = record.get("archivedAt")
        if since_ms is not None and isinstance(archived_at, str):
            parsed = parse_iso_ms(archived_at)
            if parsed is not None and parsed < since_ms:
                continue
        ids.append(str(record["id"]))
    return ids


def won_stage_ids(body: JsonObject) -> frozenset[str]:
    """Deal stage ids a pipelines answer marks closed-won: closed with probability 1.0."""
    stages: set[str] = set()
    pipelines = body.get("results")
    for pipeline in pipelines if isinstance(pipelines, list) else []:
        raw = pipeline.get("stages") if isinstance(pipeline, Mapping) else None
        for stage in raw if isinstance(raw, list) else []:
            meta = stage.get("metadata") if isinstance(stage, Mapping) else None
            if not isinstance(meta, Mapping) or str(meta.get("isClosed")) != "true":
                continue
            try:
                probability = float(str(meta.get("probability")))
            except ValueError:
                continue
            if probability >= 1.0 and stage.get("id") is not None:
                stages.add(str(stage["id"]))
    return frozenset(stages)


def closed_won(props: Mapping[str, Any], stages: Callable[[], Collection[str]]) -> bool:
    """Whether a deal is closed-won.

    HubSpot's calculated ``hs_is_closed_won`` decides when the deal carries it; otherwise
    its ``dealstage`` must be one of ``stages()`` (:func:`won_stage_ids`), asked only then
    because reading the pipelines costs a call.
    """
    flag = props.get("hs_is_closed_won")
    if flag in ("true", "false"):
        return bool(flag == "true")
    return str(props.get("dealstage")) in stages()


#: ``hs_email_status`` values of our own emails that were not sent.
EMAIL_NOT_SENT = frozenset({"FAILED", "BOUNCED", "SCHEDULED", "SENDING"})
#: ``hs_email_direction`` values of emails the contact sent us (fact sheet §7 and 2026-12
#: update, 6); every other direction (EMAIL, FORWARDED_EMAIL, none) is ours.
EMAIL_RECEIVED = frozenset({"INCOMING_EMAIL"})


def engagement_kind(
    object_type: str, kinds: Mapping[str, str]
) -> Callable[[Mapping[str, Any]], str | None]:
    """The canonical activity type of one engagement, from its properties (None: skip it).

    ``kinds`` is ``[crm.activity_types]`` (HubSpot kind -> canonical type, "" skips). Every
    object but ``emails`` has one type; emails are split by direction (module docstring).
    """
    if object_type != "emails":
        fixed = kinds.get(object_type) or None
        return lambda props: fixed

    def email_kind(props: Mapping[str, Any]) -> str | None:
        """INCOMING_EMAIL -> ``incoming_emails``; EMAIL, FORWARDED_EMAIL -> ``emails``.

        The send-status filter applies to our own emails only: a received email was
        received whatever ``hs_email_status`` says.
        """
        if str(props.get("hs_email_direction") or "").upper() in EMAIL_RECEIVED:
            return kinds.get("incoming_emails") or None
        if str(props.get("hs_email_status") or "").upper() in EMAIL_NOT_SENT:
            return None
        return kinds.get("emails") or None

    return email_kind


@dataclass(frozen=True)
class ListInfo:
    """What segsync reads of a Lists v3 list: its id, name, kind and creation time.

    ``manual_contacts`` is true for a MANUAL (static) list of contacts (``0-1``), the only
    kind segsync creates and so the only kind it may take over.
    """

    list_id: str | None
    name: object
    manual_contacts: bool
    created_ms: int | None


def list_info(body: JsonObject) -> ListInfo:
    list_id = body.get("listId")
    created = body.get("createdAt")
    return ListInfo(
        None if list_id is None else str(list_id),
        body.get("name"),
        body.get("processingType") == "MANUAL"
        and str(body.get("objectTypeId")) == CONTACT_TYPE_ID,
        parse_iso_ms(created) if isinstance(created, str) else None,
    )


def member_ids(body: JsonObject) -> list[str]:
    """Record ids on one page of a list's memberships."""
    raw = body.get("results")
    return [str(item["recordId"]) for item in (raw if isinstance(raw, list) else [])
            if isinstance(item, Mapping) and item.get("recordId") is not None]


@dataclass(frozen=True)
class PropertyInfo:
    """What segsync reads of a contact property: its group, type and options.

    ``group``, ``type`` and ``field_type`` are HubSpot's values as sent (messages quote
    them); ``options`` are (label, value, hidden) in HubSpot's order.
    """

    group: object
    type: object
    field_type: object
    options: tuple[tuple[str, str, bool], ...]


def property_info(body: JsonObject) -> PropertyInfo:
    raw = body.get("options")
    options = tuple(
        (str(o.get("label")), str(o.get("value")), bool(o.get("hidden", False)))
        for o in (raw if isinstance(raw, list) else []) if isinstance(o, Mapping)
    )
    return PropertyInfo(body.get("groupName"), body.get("type"), body.get("fieldType"), options)


#: ``context`` keys of a batch error whose values are record ids (StandardError.context
#: maps a key to a list of strings; HubSpot uses ``ids`` on object batches).
ERROR_ID_KEYS = ("ids", "id", "objectId", "objectIds", "recordId", "recordIds", "fromObjectId")


@dataclass(frozen=True)
class BatchError:
    """One entry of a batch answer's ``errors``: its reason and the record ids it names.

    ``ids`` may be empty: HubSpot sends errors whose ``context.ids`` is ``[]`` or
    ``[""]`` (fact sheet 2026-12 update, 8), and such an error proves nothing about any
    particular record.
    """

    reason: str
    ids: tuple[str, ...]
    not_found: bool


def _error_ids(context: object) -> list[str]:
    if not isinstance(context, Mapping):
        return []
    found: list[str] = []
    for key in ERROR_ID_KEYS:
        value = context.get(key)
        values = value if isinstance(value, list) else [value] if isinstance(value, str) else []
        found.extend(str(v) for v in values if v not in (None, ""))
    return found


def batch_errors(body: JsonObject) -> list[BatchError]:
    """The ``errors`` of a 207 batch answer (top-level and nested detail contexts)."""
    raw = body.get("errors")
    out: list[BatchError] = []
    for error in raw if isinstance(raw, list) else []:
        if not isinstance(error, Mapping):
            out.append(BatchError(f"ERROR: {str(error)[:200]}", (), False))
            continue
        category = str(error.get("category") or "ERROR")
        reason = f"{category}: {error.get('message') or 'failed'}"[:500]
        ids = _error_ids(error.get("context"))
        details = error.get("errors")
        for detail in details if isinstance(details, list) else []:
            if isinstance(detail, Mapping):
                ids.extend(_error_ids(detail.get("context")))
        out.append(BatchError(reason, tuple(dict.fromkeys(ids)),
                              category.upper().endswith("NOT_FOUND")))
    return out


def batch_failures(body: JsonObject) -> dict[str, str]:
    """Record ids an answer's errors name: id -> "CATEGORY: message" (first error wins)."""
    failed: dict[str, str] = {}
    for error in batch_errors(body):
        for object_id in error.ids:
            failed.setdefault(object_id, error.reason)
    return failed


def membership_outcome(body: JsonObject) -> tuple[list[str], list[str], list[str]]:
    """(added, removed, missing) of a memberships answer (``recordsIdsAdded`` sic)."""

    def strings(key: str) -> list[str]:
        value = body.get(key)
        return [str(v) for v in value] if isinstance(value, list) else []

    added = strings("recordsIdsAdded") or strings("recordIdsAdded")
    return added, strings("recordIdsRemoved"), strings("recordIdsMissing")


@dataclass
class Outcomes:
    """Per-record outcomes of batch answers, in :class:`connectors.base.BatchResult` terms.

    An id in none of the three was proven done. Each id keeps the first failed / unknown /
    gone outcome recorded for it, so when a caller repeats an id across calls no later
    answer can erase an earlier one's doubt about it.
    """

    failed: dict[str, str] = field(default_factory=dict)
    unknown: dict[str, str] = field(default_factory=dict)
    gone: set[str] = field(default_factory=set)

    def _free(self, object_id: str) -> bool:
        return not (object_id in self.failed or object_id in self.unknown
                    or object_id in self.gone)

    def fail(self, object_id: str, reason: str) -> None:
        if self._free(object_id):
            self.failed[object_id] = reason

    def unsure(self, object_id: str, reason: str) -> None:
        if self._free(object_id):
            self.unknown[object_id] = reason

    def vanish(self, object_id: str) -> None:
        if self._free(object_id):
            self.gone.add(object_id)

    def unreadable(self, object_ids: Iterable[str], problem: str | None) -> None:
        """Every id of a call whose answer arrived but cannot be read: it may have committed."""
        reason = (problem or "HubSpot's answer could not be read")[:500]
        for object_id in object_ids:
            self.unsure(object_id, reason)

    def result(self, api_calls: int) -> BatchResult:
        return BatchResult(dict(self.failed), api_calls=api_calls,
                           unknown=dict(self.unknown), gone=frozenset(self.gone))


def _unproven(status: int, errors: Sequence[BatchError], where: str) -> str:
    """Why an id an answer does not mention stays unknown."""
    unattributed = next((e for e in errors if not e.ids), None)
    if unattributed is not None:
        return (f"HubSpot answered {status} with an error that names no record "
                f"({unattributed.reason})")[:500]
    if errors:
        return (f"HubSpot answered {status} with errors that name other records, and "
                f"{where} does not list this one")
    return f"HubSpot answered {status} without this record in {where}"


_CLAIMS = {"done": "proven written", "opposite": "reported changed the other way",
           "gone": "reported missing", "error": "named by an error"}


def _apply_claims(outcomes: Outcomes, object_id: str, claims: set[str],
                  errors: Mapping[str, BatchError], flagged: bool, unproven: str) -> None:
    """Turn what one answer claims about one id into its outcome (see the callers).

    ``claims`` holds "done", "opposite" (an add reported removed or the reverse),
    "gone" and "error"; more than one claim, or "opposite", is a contradiction and
    leaves the id unknown. No claim at all is done unless the answer is ``flagged``
    (it carries an error that may be about any record).
    """
    if claims == {"done"}:
        return
    if claims == {"gone"}:
        outcomes.vanish(object_id)
    elif claims == {"error"}:
        error = errors[object_id]
        if error.not_found:
            outcomes.vanish(object_id)
        else:
            outcomes.fail(object_id, error.reason)
    elif claims:
        outcomes.unsure(object_id, "HubSpot's answer contradicts itself about this record ("
                        + ", ".join(_CLAIMS[c] for c in sorted(claims)) + ")")
    elif flagged:
        outcomes.unsure(object_id, unproven)


_MEMBERSHIP_KEYS = ("recordsIdsAdded", "recordIdsAdded", "recordIdsRemoved", "recordIdsMissing")


def membership_change_outcomes(
    status: int, body: JsonObject, adds: Sequence[str], removes: Sequence[str],
    outcomes: Outcomes,
) -> None:
    """Outcomes of one ``add-and-remove`` answer (``MembershipsUpdateResponse``).

    An add in ``recordsIdsAdded`` (or ``recordIdsAdded``) or a remove in
    ``recordIdsRemoved`` is done; an id in ``recordIdsMissing`` is gone (no such record);
    an id an error names failed (gone when the error is a NOT_FOUND). An id in none of
    them is done -- already a member / already out, which HubSpot silently ignores --
    only when the answer carries no error at all: once it does (status 207, or an
    ``errors`` entry) such an id is unknown, since the error may be about it. An answer
    that carries none of the three arrays (and no error), or a non-list in one of them,
    proves nothing: every id is unknown. An id listed twice over (added and missing,
    removed though it was an add...) is unknown as well.
    """
    wrong = [k for k in _MEMBERSHIP_KEYS if k in body and not isinstance(body[k], list)]
    errors = batch_errors(body)
    flagged = status == 207 or bool(errors) or body.get("errors") not in (None, [])
    if wrong or not (flagged or any(k in body for k in _MEMBERSHIP_KEYS)):
        reason = (f"HubSpot's membership answer has a non-list {wrong[0]}" if wrong else
                  "HubSpot's membership answer carries none of recordsIdsAdded, "
                  "recordIdsRemoved, recordIdsMissing")
        for object_id in (*adds, *removes):
            outcomes.unsure(object_id, reason)
        return

    def strings(key: str) -> set[str]:
        return {str(v) for v in body.get(key) or [] if v not in (None, "")}

    added = strings("recordsIdsAdded") | strings("recordIdsAdded")
    removed, missing = strings("recordIdsRemoved"), strings("recordIdsMissing")
    named: dict[str, BatchError] = {}
    for error in errors:
        for object_id in error.ids:
            named.setdefault(object_id, error)
    unproven = _unproven(status, errors, "recordsIdsAdded/recordIdsRemoved/recordIdsMissing")
    for ids, done, opposite in ((adds, added, removed), (removes, removed, added)):
        for object_id in ids:
            claims = {tag for tag, hit in (("done", object_id in done),
                                           ("opposite", object_id in opposite),
                                           ("gone", object_id in missing),
                                           ("error", object_id in named)) if hit}
            _apply_claims(outcomes, object_id, claims, named, flagged, unproven)


def update_outcomes(status: int, body: JsonObject, ids: Sequence[str], outcomes: Outcomes) -> None:
    """Outcomes of one ``batch/update`` answer (``BatchResponseSimplePublicObject``).

    Only ids present in ``results[]`` are proven written (fact sheet 2026-12 update, 8).
    An id an error names failed -- or is gone when the error is OBJECT_NOT_FOUND. Every
    other id is unknown: a 207 error whose ``context.ids`` is empty or ``[""]`` may be
    about it, and an answer that does not list it proves nothing either way.
    """
    raw = body.get("results")
    if raw is not None and not isinstance(raw, list):
        for object_id in ids:
            outcomes.unsure(object_id, "HubSpot's batch update answer has a non-list results")
        return
    written = {str(r["id"]) for r in raw or []
               if isinstance(r, Mapping) and r.get("id") not in (None, "")}
    errors = batch_errors(body)
    named: dict[str, BatchError] = {}
    for error in errors:
        for object_id in error.ids:
            named.setdefault(object_id, error)
    unproven = _unproven(status, errors, "results[]")
    for object_id in ids:
        claims = {tag for tag, hit in (("done", object_id in written),
                                       ("error", object_id in named)) if hit}
        _apply_claims(outcomes, object_id, claims, named, True, unproven)


def record_memberships(
    body: JsonObject, asked: Sequence[str], targets: Iterable[str]
) -> tuple[set[tuple[str, str]], set[str], set[str]]:
    """(present pairs, known records, gone records) of one memberships batch-read answer.

    A record listed in ``results[]`` with a ``recordListMemberships`` array is known: the
    answer names every list it is in, so each asked target whose ``listId`` it does not
    name is a proven absence. A record named by a NOT_FOUND error does not exist. Any
    other record -- unlisted, listed without its array, or listed and also named by a
    NOT_FOUND error -- stays unknown. Answers for records or object types not asked are
    ignored.
    """
    wanted = set(asked)
    lists = set(targets)
    present: set[tuple[str, str]] = set()
    known: set[str] = set()
    raw = body.get("results")
    for entry in raw if isinstance(raw, list) else []:
        if not isinstance(entry, Mapping):
            continue
        record_id = str(entry.get("recordId"))
        type_id = entry.get("objectTypeId")
        memberships = entry.get("recordListMemberships")
        if record_id not in wanted or not isinstance(memberships, list) or (
            type_id is not None and str(type_id) != CONTACT_TYPE_ID
        ):
            continue
        known.add(record_id)
        for membership in memberships:
            list_id = membership.get("listId") if isinstance(membership, Mapping) else None
            if list_id is not None and str(list_id) in lists:
                present.add((str(list_id), record_id))
    gone = {i for e in batch_errors(body) if e.not_found for i in e.ids if i in wanted}
    doubtful = known & gone
    return ({p for p in present if p[1] not in doubtful}, known - doubtful, gone - doubtful)


def association_targets(
    body: JsonObject,
) -> tuple[dict[str, list[JsonObject]], dict[str, str]]:
    """Targets per source id, plus ``{source id: after}`` for inputs with more pages.

    Inputs without associations come back as per-input errors (207); they simply have
    no targets.
    """
    targets: dict[str, list[JsonObject]] = {}
    more: dict[str, str] = {}
    results = body.get("results")
    for entry in results if isinstance(results, list) else []:
        if not isinstance(entry, Mapping):
            continue
        source = entry.get("from")
        source_id = str(source.get("id")) if isinstance(source, Mapping) else None
        if source_id is None:
            continue
        found = entry.get("to")
        targets.setdefault(source_id, []).extend(
            t for t in (found if isinstance(found, list) else []) if isinstance(t, Mapping)
        )
        paging = entry.get("paging")
        nxt = paging.get("next") if isinstance(paging, Mapping) else None
        after = nxt.get("after") if isinstance(nxt, Mapping) else None
        if after:
            more[source_id] = str(after)
    return targets, more


def target_ids(targets: Iterable[JsonObject]) -> list[str]:
    """Distinct target ids (one pair may carry several association types)."""
    return list(dict.fromkeys(str(t.get("toObjectId")) for t in targets if t.get("toObjectId")))


def primary_company(targets: Sequence[JsonObject]) -> str | None:
    """The primary company (type id 1) or, when none is flagged, the lowest id."""
    for target in targets:
        types = target.get("associationTypes")
        for kind in types if isinstance(types, list) else []:
            if (
                isinstance(kind, Mapping)
                and kind.get("typeId") == PRIMARY_COMPANY_TYPE_ID
                and kind.get("category", "HUBSPOT_DEFINED") == "HUBSPOT_DEFINED"
            ):
                return str(target.get("toObjectId"))
    ids = target_ids(targets)
    return min(ids, key=id_key) if ids else None


def merged_ids(records: Sequence[JsonObject]) -> dict[str, str]:
    """``hs_merged_object_ids`` folded into {absorbed id: survivor id}."""
    merged: dict[str, str] = {}
    for record in records:
        survivor = str(record.get("id"))
        raw = _text(_props(record).get("hs_merged_object_ids"))
        for loser in (raw or "").split(";"):
            loser = loser.strip()
            if loser and loser != survivor:
                merged[loser] = survivor
    return merged


def _numbers(values: Sequence[object], bound: float | None = None) -> pd.Series:
    out: list[float] = []
    for value in values:
        try:
            number = float(str(value)) if value not in (None, "") else math.nan
        except ValueError:
            number = math.nan
        if bound is not None and not math.isnan(number) and abs(number) > bound:
            number = math.nan
        out.append(number)
    return pd.Series(out, dtype="float64")


def _modified(records: Sequence[JsonObject], prop: str, what: str) -> pd.Series:
    values = [_props(r).get(prop) or r.get("updatedAt") for r in records]
    return timestamps(values, _ids(records), f"{what} {prop}")


def _property_columns(
    records: Sequence[JsonObject], columns: Mapping[str, str]
) -> dict[str, list[str | None]]:
    return {
        column: [_text(_props(r).get(prop)) for r in records]
        for column, prop in sorted(columns.items())
    }


def contacts_frame(
    records: Sequence[JsonObject],
    columns: Mapping[str, str],
    company_of: Mapping[str, str | None],
    *,
    latitude: str,
    longitude: str,
    opt_out: Sequence[str],
) -> pd.DataFrame:
    """Canonical contacts frame: engine columns, then one text column per requested field."""
    ids = _ids(records)
    frame = pd.DataFrame({
        "_crm_id": pd.Series(ids, dtype=object),
        "_modified_at": _modified(records, "lastmodifieddate", "contact"),
        "_company_id": pd.Series([company_of.get(i) for i in ids], dtype=object),
        "_opted_out": pd.Series(
            [any(str(_props(r).get(p) or "").lower() == "true" for p in opt_out)
             for r in records],
            dtype=bool,
        ),
        "_lat": _numbers([_props(r).get(latitude) if latitude else None for r in records], 90),
        "_lon": _numbers([_props(r).get(longitude) if longitude else None for r in records], 180),
        "_kind": pd.Series(["contact"] * len(ids), dtype=object),
    })
    for column, values in _property_columns(records, columns).items():
        frame[column] = pd.Series(values, dtype=object)
    return frame


def companies_frame(
    records: Sequence[JsonObject],
    columns: Mapping[str, str],
    *,
    latitude: str,
    longitude: str,
) -> pd.DataFrame:
    frame = pd.DataFrame({
        "_crm_id": pd.Series(_ids(records), dtype=object),
        "_modified_at": _modified(records, "hs_lastmodifieddate", "company"),
        "_lat": _numbers([_props(r).get(latitude) if latitude else None for r in records], 90),
        "_lon": _numbers([_props(r).get(longitude) if longitude else None for r in records], 180),
    })
    for column, values in _property_columns(records, columns).items():
        frame[column] = pd.Series(values, dtype=object)
    return frame


def _event_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=EVENT_COLUMNS)
    for column in ("_crm_id", "_contact_id", "type"):
        frame[column] = frame[column].astype(object)
    frame["amount"] = frame["amount"].astype("float64")
    for column in ("ts", "_modified_at"):
        frame[column] = pd.to_datetime(frame[column]).astype("datetime64[ns]")
    return frame


def purchases_frame(
    deals: Sequence[JsonObject],
    contacts_of: Mapping[str, Sequence[str]],
    won: Callable[[Mapping[str, Any]], bool],
    events_since: dt.datetime | None,
) -> tuple[pd.DataFrame, list[str]]:
    """One row per (closed-won deal, contact); ids of deals that no longer qualify."""
    ids = _ids(deals)
    modified = _modified(deals, "hs_lastmodifieddate", "deal")
    closed = timestamps([_props(d).get("closedate") for d in deals], ids, "deal closedate")
    amounts = _numbers([_props(d).get("amount") for d in deals])
    since = naive_utc(events_since)
    cutoff = pd.Timestamp(since) if since is not None else None
    rows: list[dict[str, Any]] = []
    dropped: list[str] = []
    for i, deal in enumerate(deals):
        ts = closed[i] if not pd.isna(closed[i]) else modified[i]
        contacts = contacts_of.get(ids[i], ())
        if not won(_props(deal)) or not contacts or (cutoff is not None and ts < cutoff):
            dropped.append(ids[i])
            continue
        rows.extend(
            {"_crm_id": ids[i], "_contact_id": contact, "type": "purchase", "ts": ts,
             "amount": amounts[i], "_modified_at": modified[i]}
            for contact in contacts
        )
    return _event_frame(rows), dropped


def activity_frame(
    prefix: str,
    records: Sequence[JsonObject],
    contacts_of: Mapping[str, Sequence[str]],
    kind_of: Callable[[Mapping[str, Any]], str | None],
    events_since: dt.datetime | None,
) -> tuple[pd.DataFrame, list[str]]:
    """One row per (engagement, contact) with its canonical type and ``hs_timestamp``.

    Ids are prefixed with the engagement kind (``calls:123``) so kinds can never collide;
    the second value lists (prefixed) ids that no longer qualify.
    """
    ids = _ids(records)
    modified = _modified(records, "hs_lastmodifieddate", prefix)
    when = timestamps([_props(r).get("hs_timestamp") for r in records], ids,
                      f"{prefix} hs_timestamp")
    since = naive_utc(events_since)
    cutoff = pd.Timestamp(since) if since is not None else None
    rows: list[dict[str, Any]] = []
    dropped: list[str] = []
    for i, record in enumerate(records):
        key = f"{prefix}:{ids[i]}"
        ts = when[i] if not pd.isna(when[i]) else modified[i]
        kind = kind_of(_props(record))
        contacts = contacts_of.get(ids[i], ())
        if kind is None or not contacts or (cutoff is not None and ts < cutoff):
            dropped.append(key)
            continue
        rows.extend(
            {"_crm_id": key, "_contact_id": contact, "type": kind, "ts": ts,
             "amount": math.nan, "_modified_at": modified[i]}
            for contact in contacts
        )
    return _event_frame(rows), dropped
