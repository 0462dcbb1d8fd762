"""Pulling the four streams: contacts (Contact + Lead), companies, purchases, activities.

Incremental state
-----------------
The engine keeps one watermark string per stream; here it is a small JSON document with
one entry per Salesforce object, because objects move independently (a new
OpportunityContactRole does not touch its Opportunity's SystemModstamp)::

    {"v": 1, "Contact": {"from": "2025-06-02T08:55:00+00:00", "checked": "2025-06-02T09:00:00+00:00"},
             "Lead":    {...}}

``from`` is where the next read of the object starts (``SystemModstamp >= from``), already
including the overlap. A read that completes sets it to *server time when the read began*
minus ``OVERLAP_SECONDS`` (server time comes from the response ``Date`` header): records
stamped before that were committed and seen; the overlap absorbs transactions that commit
after being stamped, and records read twice are simply upserted again. So each run
re-reads only what changed in the few minutes before the previous run, however old the
last change is. While a read is under way, each page of the (SystemModstamp, Id)-ordered
result moves ``from`` to that page's newest stamp minus the overlap, so a run killed
between pages resumes where it stopped.

``checked`` is the server time at which the last complete read began. Deleted records stay
visible in the recycle bin for 15 days only, so when ``checked`` is older than
``DELETE_WINDOW_DAYS`` the stream is pulled in full, and its last page carries
``present_ids`` (the full id reconcile).

Contacts and leads share the engine's ``contacts`` stream: Contacts are read first, then
Leads. Every page's watermark holds both objects' entries (the one in flight and the
other's last known one), so a run killed at any page resumes each object where it stopped
and neither object's progress can hide the other's changes.

Deletes and merges come from the incremental query itself: it runs on ``queryAll`` and
selects ``IsDeleted`` (and ``MasterRecordId`` on mergeable objects), so recycle-bin rows
cost no extra call. Merge losers become ``Page.merged`` (loser -> survivor); converted
leads become ``Page.merged`` (lead -> ConvertedContactId), so their history follows the
person; other deleted rows become ``Page.deleted``.

A first (full) pull reads the first REST page; when its ``totalSize`` shows that a Bulk
API 2.0 job needs fewer calls for the rest and the object is above ``bulk_threshold``,
the whole object is read through one Bulk query job instead (unordered, so its progress
only counts once the job's last page is stored).

Activities
----------
Tasks and Events become ``call`` / ``email_sent`` / ``meeting`` / ``task`` rows for their
``WhoId``. Incoming email (Enhanced Email) is ``email_received``: an ``EmailMessage`` with
``Incoming = true`` yields one row per Contact/Lead among its ``EmailMessageRelation``
rows of ``RelationType = 'FromAddress'`` (``RelationId``), at ``MessageDate``, whether or not
a Task was logged for it. The Task Salesforce links from such a message
(``EmailMessage.ActivityId``) is the same email, so it must count once: every page of
Email Tasks asks which of them an incoming message links (one extra query per 200 Email
Tasks) and leaves those out, and every page of messages lists their Tasks in
``Page.deleted`` (a Task may have been stored as email_sent before its message was
linked). EmailMessage and EmailMessageRelation have their own marks (each has its own
SystemModstamp): changed messages are read with their complete sender set; changed
sender relations (deletions included, via queryAll) make their messages be re-read, so a
message's rows are always replaced as a whole. The first read of the email objects is a
full read bounded by the activity look-back on ``MessageDate``. An org without Enhanced
Email (``INVALID_TYPE``, or fields hidden: ``INVALID_FIELD``) is read without it, with one
warning per pull.
"""

from __future__ import annotations

import datetime as dt
import functools
import itertools
import json
import logging
import math
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, cast

import pandas as pd
from simple_salesforce.format import format_soql

from connectors.base import Page, PullRequest
from connectors.errors import ConnectorError, CrmDataError, RetriableAPIError
from connectors.frames import empty_frame
from connectors.salesforce import soql
from connectors.salesforce.client import SalesforceClient, aware
from connectors.salesforce.mapping import (
    EventRow,
    activity_kind,
    companies_frame,
    contacts_frame,
    csv_frame,
    day_start,
    events_frame,
    naive_utc,
    parse_timestamp,
    records_frame,
)
from connectors.salesforce.settings import (
    DELETE_WINDOW_DAYS,
    OVERLAP_SECONDS,
    QUERY_PAGE,
    SOQL_IDS_PER_QUERY,
    SalesforceSettings,
)

__all__ = ["EMAIL_OBJECTS", "Marks", "ObjectMark", "StreamReader", "bulk_calls", "use_bulk"]

log = logging.getLogger("segsync.salesforce")

ServerNow = Callable[[], dt.datetime]
Sleep = Callable[[float], None]
#: Rows per Bulk 2.0 results download (one API call each).
BULK_RESULT_ROWS = 100_000
#: Give up on a Bulk query job that is not done after this many seconds of polling.
BULK_MAX_WAIT = 3600.0
OVERLAP = dt.timedelta(seconds=OVERLAP_SECONDS)
#: Objects whose deleted rows may carry MasterRecordId (the mergeable ones).
MERGEABLE = frozenset({"Account", "Contact", "Lead"})


# --- watermarks (pure) ----------------------------------------------------------------------


@dataclass(frozen=True)
class ObjectMark:
    """One object's progress: where the next read starts, and when a complete read began."""

    since: dt.datetime | None = None
    checked: dt.datetime | None = None


@dataclass
class Marks:
    """The watermark of one stream: an :class:`ObjectMark` per Salesforce object."""

    objects: dict[str, ObjectMark] = field(default_factory=dict)

    @classmethod
    def decode(cls, text: str | None) -> Marks:
        if not text:
            return cls()
        try:
            data = json.loads(text)
            if not isinstance(data, dict) or data.get("v") != 1:
                raise ValueError("not a segsync Salesforce watermark")
            objects = {}
            for name, raw in data.items():
                if name == "v":
                    continue
                since, checked = raw.get("from"), raw.get("checked")
                objects[name] = ObjectMark(
                    dt.datetime.fromisoformat(since) if since else None,
                    dt.datetime.fromisoformat(checked) if checked else None,
                )
        except (ValueError, TypeError, AttributeError):
            log.warning("ignoring an unreadable Salesforce watermark; pulling in full")
            return cls()
        return cls(objects)

    def encode(self) -> str:
        data: dict[str, Any] = {"v": 1}
        for name in sorted(self.objects):
            mark = self.objects[name]
            data[name] = {
                "from": mark.since.isoformat() if mark.since else None,
                "checked": mark.checked.isoformat() if mark.checked else None,
            }
        return json.dumps(data, sort_keys=True)

    def get(self, name: str) -> ObjectMark:
        return self.objects.get(name, ObjectMark())

    def advanced(self, name: str, since: dt.datetime | None,
                 checked: dt.datetime | None = None) -> Marks:
        """A copy with ``name`` moved forward (never back) to ``since``."""
        old = self.get(name)
        newest = old.since
        if since is not None and (newest is None or since > newest):
            newest = since
        return Marks({**self.objects, name: ObjectMark(newest, checked or old.checked)})

    def stale(self, names: Sequence[str], now: dt.datetime) -> bool:
        """True when some object's deletions may have left the recycle bin unseen."""
        limit = dt.timedelta(days=DELETE_WINDOW_DAYS)
        for name in names:
            checked = self.get(name).checked
            if checked is None or now - checked > limit:
                return True
        return False


def bulk_calls(total: int) -> int:
    """API calls a Bulk 2.0 query of ``total`` rows costs: create, one poll, downloads."""
    return 2 + max(1, math.ceil(total / BULK_RESULT_ROWS))


def use_bulk(total: int, already: int, threshold: int, page_rows: int = QUERY_PAGE) -> bool:
    """Switch a first pull to Bulk 2.0 only when the object is big and it saves calls.

    ``page_rows`` is the size of the first REST page (Salesforce may send fewer than the
    2,000 asked for), so the REST estimate is the pages still to come at that size.
    """
    if threshold <= 0 or total <= threshold:
        return False
    rest_pages = math.ceil(max(0, total - already) / max(1, page_rows))
    return rest_pages > bulk_calls(total)


# --- reading --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Chunk:
    """Rows of one object (Salesforce columns) and how far the object has been read.

    ``since`` is the object's next starting point once these rows are stored (None while
    an unordered Bulk read is still under way); ``checked`` is set on the last chunk of a
    complete read.
    """

    frame: pd.DataFrame
    since: dt.datetime | None
    checked: dt.datetime | None = None


class StreamReader:
    """Turns :class:`PullRequest` objects into pages, one stream at a time."""

    def __init__(
        self, client: SalesforceClient, settings: SalesforceSettings, server_now: ServerNow,
        sleep: Sleep,
    ) -> None:
        self.client = client
        self.settings = settings
        self.server_now = server_now
        self.sleep = sleep
        #: Fields found missing (or hidden) per object, learned from describe on INVALID_FIELD.
        self.missing: dict[str, set[str]] = {}
        #: Bulk 2.0 query jobs run (for reports and tests).
        self.bulk_jobs = 0

    def pull(self, request: PullRequest) -> Iterator[Page]:
        if request.stream == "contacts":
            return self._contacts(request)
        if request.stream == "companies":
            return self._companies(request)
        if request.stream == "purchases":
            return self._purchases(request)
        return self._activities(request)

    # -- shared machinery ----------------------------------------------------------------

    def _start(self, request: PullRequest, names: Sequence[str]) -> tuple[Marks, bool]:
        """The stream's marks, and whether it must be read in full (first pull, or stale)."""
        marks = Marks.decode(request.since)
        if request.since is None or not marks.objects:
            return Marks(), True
        if marks.stale(names, self.server_now()):
            log.info("the last complete read of %s began more than %d days ago: reading it "
                     "in full to reconcile deletions", "/".join(names), DELETE_WINDOW_DAYS)
            return Marks(), True
        return marks, False

    def _changes(
        self,
        sobject: str,
        select: Sequence[str],
        mark: ObjectMark,
        full: bool,
        full_conditions: Sequence[str] = (),
        *,
        archived: bool = False,
        filters: Sequence[str] = (),
    ) -> Iterator[Chunk]:
        """Rows of one object changed since ``mark`` (all live rows when ``full``).

        Incremental reads run on queryAll and add IsDeleted (and MasterRecordId), so the
        caller sees deletions and merges. ``full_conditions`` bound only a full read (a
        record leaving that window must still be seen as changed); ``filters`` apply to
        both (``Incoming = true``). The last chunk is empty and completes the read.
        """
        columns = list(select)
        if full:
            conditions = [*filters, *full_conditions]
            if archived:  # queryAll also returns archived activities; keep out the deleted
                conditions.insert(0, "IsDeleted = false")
            since = None
        else:
            conditions = list(filters)
            columns.append("IsDeleted")
            if sobject in MERGEABLE:
                columns.append("MasterRecordId")
            since = aware(mark.since) if mark.since else None
        query = soql.changed(sobject, columns, since, conditions)
        include_deleted = archived or not full
        pages = self.client.query_pages(query, include_deleted=include_deleted,
                                        what=f"query {sobject}")
        assert isinstance(pages, Generator)
        began: dt.datetime | None = None
        newest: dt.datetime | None = None
        read = 0
        for page in pages:
            began = began or page.server_time
            read += len(page.records)
            frame = records_frame(page.records, columns)
            stamp = _newest(frame)
            newest = max(filter(None, (newest, stamp)), default=None)
            yield Chunk(frame, stamp - OVERLAP if stamp else None)
            if full and read < page.total_size and use_bulk(
                    page.total_size, read, self.settings.bulk_threshold, len(page.records)):
                log.info("%s: %d rows; reading them through Bulk API 2.0", sobject,
                         page.total_size)
                pages.close()
                unordered = soql.changed(sobject, columns, None, conditions, ordered=False)
                for bulk_frame in self._bulk(unordered, columns, include_deleted):
                    stamp = _newest(bulk_frame)
                    newest = max(filter(None, (newest, stamp)), default=None)
                    yield Chunk(bulk_frame, None)
                break
        if began is not None:
            final: dt.datetime | None = began - OVERLAP
        else:
            final = newest - OVERLAP if newest else None
        checked = began or self.server_now()
        yield Chunk(records_frame([], columns), final, checked=checked)

    def _fields_on(self, sobject: str, fields: frozenset[str]) -> dict[str, str]:
        """Rule field -> Salesforce field on ``sobject`` ("" when it has none)."""
        hidden = self.missing.get(sobject, set())
        props = {}
        for name in fields:
            target = self.settings.sf_field(sobject, name)
            props[name] = "" if target in hidden else target
        return props

    def _with_field_check(
        self, sobject: str, fields: frozenset[str],
        read: Callable[[dict[str, str]], Iterator[Page]], *, strict: bool,
    ) -> Iterator[Page]:
        """Run ``read``; on INVALID_FIELD, learn which fields ``sobject`` lacks (one describe).

        ``strict`` objects (Contact, Account) fail with a clear message; on Lead a field
        the rules read from Contacts but Leads lack is left empty, with a warning.
        """
        props = self._fields_on(sobject, fields)
        started = False
        try:
            for page in read(props):
                started = True
                yield page
            return
        except ConnectorError:
            if started or self.client.last_error_code != "INVALID_FIELD":
                raise
        described = self.client.rest("GET", f"sobjects/{sobject}/describe") or {}
        available = {str(f.get("name", "")).lower() for f in described.get("fields", [])}
        lacking = sorted({t for t in props.values() if t and t.lower() not in available})
        if not lacking:
            raise ConnectorError(f"{sobject}: Salesforce rejected a field segsync asked for, "
                                 "but describe lists them all; run `segsync check`")
        explicit = [n for n in props if self.settings.explicitly_mapped(sobject, n)
                    and self.settings.sf_field(sobject, n) in lacking]
        if strict or explicit:
            table = {"Contact": "contact_fields", "Lead": "lead_fields",
                     "Account": "company_fields"}[sobject]
            raise ConnectorError(
                f"{sobject} has no field {', '.join(lacking)} that the API user can read: "
                f"check the name (map rule fields with [crm.{table}]) and the field-level "
                "security of the integration user's profile or permission set"
            )
        log.warning("%s has no field %s (or the API user cannot see it): those values are "
                    'empty for %ss; map them with [crm.lead_fields] (or "") to silence this',
                    sobject, ", ".join(lacking), sobject.lower())
        self.missing.setdefault(sobject, set()).update(lacking)
        yield from read(self._fields_on(sobject, fields))

    def bulk_query(self, query: str, columns: Sequence[str]) -> Iterator[pd.DataFrame]:
        """Live rows of ``query`` through one Bulk API 2.0 job, as frames of ``columns``."""
        return self._bulk(query, columns, include_deleted=False)

    def _bulk(self, query: str, columns: Sequence[str], include_deleted: bool
              ) -> Iterator[pd.DataFrame]:
        job = self.client.rest("POST", "jobs/query", json={
            "operation": "queryAll" if include_deleted else "query",
            "query": query,
            "contentType": "CSV",
            "columnDelimiter": "COMMA",
            "lineEnding": "LF",
        })
        job_id = str((job or {}).get("id") or "")
        if not job_id:
            raise CrmDataError("Salesforce created a Bulk query job without an id")
        self.bulk_jobs += 1
        waited, delay = 0.0, 0.5
        while True:
            info = self.client.rest("GET", f"jobs/query/{job_id}") or {}
            state = info.get("state")
            if state == "JobComplete":
                break
            if state in ("Failed", "Aborted"):
                raise ConnectorError(f"Bulk query job {job_id} ended {state}: "
                                     f"{info.get('errorMessage', 'no reason given')}")
            if waited >= BULK_MAX_WAIT:
                raise RetriableAPIError(f"Bulk query job {job_id} was not done after "
                                        f"{waited:.0f} s; the next run starts again")
            self.sleep(delay)
            waited += delay
            delay = min(delay * 2, 10.0)
        locator = ""
        seen: set[str] = set()
        while True:
            params = {"maxRecords": str(BULK_RESULT_ROWS)}
            if locator:
                params["locator"] = locator
            response = self.client.download(f"jobs/query/{job_id}/results", params)
            yield csv_frame(response.text, columns)
            locator = response.headers.get("Sforce-Locator", "null")
            if not locator or locator == "null":
                return
            if locator in seen:
                raise CrmDataError(f"Bulk query job {job_id} repeated the locator {locator!r}")
            seen.add(locator)

    # -- contacts (Contact + Lead) -------------------------------------------------------

    def _contacts(self, request: PullRequest) -> Iterator[Page]:
        objects = self.settings.objects
        marks, full = self._start(request, objects)
        present: set[str] | None = set() if full else None
        fields = frozenset(request.fields | {"email"})
        for sobject in objects:
            strict = sobject == "Contact" or len(objects) == 1
            read = functools.partial(self._person_pages, sobject, marks=marks, full=full,
                                     present=present)
            for page in self._with_field_check(sobject, fields, read, strict=strict):
                if page.watermark:
                    marks = Marks.decode(page.watermark)
                yield page
        if present is not None:
            yield Page(empty_frame("contacts", fields), marks.encode(),
                       present_ids=frozenset(present))

    def _person_pages(
        self, sobject: str, props: dict[str, str], *, marks: Marks, full: bool,
        present: set[str] | None,
    ) -> Iterator[Page]:
        s = self.settings
        lat, lon = s.sf_field(sobject, "latitude"), s.sf_field(sobject, "longitude")
        opt_outs = [s.sf_field(sobject, "email_opt_out"), s.sf_field(sobject, "do_not_call")]
        select = ["Id", "SystemModstamp", *opt_outs, lat, lon, *props.values()]
        company = None
        conditions: list[str] = []
        if sobject == "Contact":
            company = "AccountId"
            select.insert(2, company)
        else:
            select += ["IsConverted", "ConvertedContactId"]
            conditions.append("IsConverted = false")
        select = [c for c in dict.fromkeys(select) if c]
        kind: Literal["contact", "lead"] = "contact" if sobject == "Contact" else "lead"
        for chunk in self._changes(sobject, select, marks.get(sobject), full, conditions):
            deleted, merged, live = _split_deleted(chunk.frame)
            if sobject == "Lead" and not live.empty:
                converted = live["IsConverted"].map(_truthy).astype(bool)
                for lead, contact in zip(live.loc[converted, "Id"],
                                         live.loc[converted, "ConvertedContactId"], strict=True):
                    if contact:
                        merged[str(lead)] = str(contact)
                    else:
                        deleted.append(str(lead))
                live = live[~converted]
            if present is not None:
                present.update(str(i) for i in live["Id"])
            records = contacts_frame(live, kind, props, lat=lat, lon=lon, company=company,
                                     opt_outs=opt_outs)
            watermark = None
            if chunk.since or chunk.checked:
                marks = marks.advanced(sobject, chunk.since, chunk.checked)
                watermark = marks.encode()
            yield Page(records, watermark, deleted=tuple(deleted), merged=merged)

    # -- companies (Account) -------------------------------------------------------------

    def _companies(self, request: PullRequest) -> Iterator[Page]:
        marks, full = self._start(request, ("Account",))
        present: set[str] | None = set() if full else None
        read = functools.partial(self._account_pages, marks=marks, full=full, present=present)
        last = marks
        for page in self._with_field_check("Account", request.fields, read, strict=True):
            if page.watermark:
                last = Marks.decode(page.watermark)
            yield page
        if present is not None:
            yield Page(empty_frame("companies", request.fields), last.encode(),
                       present_ids=frozenset(present))

    def _account_pages(self, props: dict[str, str], *, marks: Marks, full: bool,
                       present: set[str] | None) -> Iterator[Page]:
        s = self.settings
        lat, lon = s.sf_field("Account", "latitude"), s.sf_field("Account", "longitude")
        select = [c for c in dict.fromkeys(["Id", "SystemModstamp", lat, lon, *props.values()])
                  if c]
        for chunk in self._changes("Account", select, marks.get("Account"), full):
            deleted, merged, live = _split_deleted(chunk.frame)
            if present is not None:
                present.update(str(i) for i in live["Id"])
            records = companies_frame(live, props, lat=lat, lon=lon)
            watermark = None
            if chunk.since or chunk.checked:
                marks = marks.advanced("Account", chunk.since, chunk.checked)
                watermark = marks.encode()
            # The store folds only merged *contacts*; a losing account is simply deleted
            # (its contacts were re-parented, which moved their own SystemModstamp).
            yield Page(records, watermark, deleted=(*deleted, *merged))

    # -- purchases (won Opportunities, one row per person) -------------------------------

    def _purchases(self, request: PullRequest) -> Iterator[Page]:
        names = ("Opportunity", "OpportunityContactRole")
        marks, full = self._start(request, names)
        close_from = request.events_since.date() if request.events_since else None
        if full:
            yield from self._purchases_full(close_from)
            return
        opps: dict[str, dict[str, Any]] = {}
        gone: set[str] = set()
        for chunk in self._changes("Opportunity", _OPP_FIELDS, marks.get("Opportunity"), False):
            marks = marks.advanced("Opportunity", chunk.since, chunk.checked)
            deleted, _, live = _split_deleted(chunk.frame)
            gone.update(deleted)
            for row in _rows(live):
                opps[str(row["Id"])] = row
        touched: set[str] = set()
        for chunk in self._changes("OpportunityContactRole", _ROLE_FIELDS,
                                   marks.get("OpportunityContactRole"), False):
            marks = marks.advanced("OpportunityContactRole", chunk.since, chunk.checked)
            touched.update(str(i) for i in chunk.frame["OpportunityId"] if i)
        missing = sorted(touched - set(opps) - gone)
        for ids in _chunks(missing, SOQL_IDS_PER_QUERY):
            query = soql.by_ids("Opportunity", _OPP_FIELDS, ids)
            for page in self.client.query_pages(query, what="query Opportunity"):
                for row in _rows(records_frame(page.records, _OPP_FIELDS)):
                    opps[str(row["Id"])] = row
        won = {i: r for i, r in opps.items() if _won_in_window(r, close_from)}
        gone.update(i for i in opps if i not in won)
        gone.update(i for i in missing if i not in opps)  # deleted since the role changed
        people = self._roles(won)
        rows = [row for opp_id, record in won.items()
                for row in _purchase_rows(opp_id, record, people[opp_id])]
        yield Page(events_frame(rows), marks.encode(), deleted=tuple(sorted(gone)))

    def _roles(self, won: Mapping[str, Mapping[str, Any]]) -> dict[str, set[str]]:
        """Everyone linked to each won opportunity: its ContactId and its contact roles."""
        people = {i: {str(r["ContactId"])} if r.get("ContactId") else set()
                  for i, r in won.items()}
        for ids in _chunks(sorted(won), SOQL_IDS_PER_QUERY):
            for page in self.client.query_pages(soql.roles_of_opportunities(ids),
                                                what="query OpportunityContactRole"):
                for role in page.records:
                    if role.get("ContactId"):
                        people[str(role["OpportunityId"])].add(str(role["ContactId"]))
        return people

    def _purchases_full(self, close_from: dt.date | None) -> Iterator[Page]:
        """Every won deal in the window: roles first (kept in memory, they are few), then
        the opportunities page by page, so one deal's rows always share a page."""
        marks = Marks()
        role_fields = ["Id", "SystemModstamp", "OpportunityId", "ContactId",
                       "Opportunity.Amount", "Opportunity.CloseDate",
                       "Opportunity.SystemModstamp"]
        roles: dict[str, dict[str, Any]] = {}
        began = None
        for page in self.client.query_pages(soql.won_roles(role_fields, close_from),
                                            what="query OpportunityContactRole"):
            began = began or page.server_time
            for row in _rows(records_frame(page.records, role_fields)):
                entry = roles.setdefault(str(row["OpportunityId"]), {
                    "Amount": row["Opportunity.Amount"], "CloseDate": row["Opportunity.CloseDate"],
                    "SystemModstamp": row["Opportunity.SystemModstamp"], "people": set()})
                if row.get("ContactId"):
                    entry["people"].add(str(row["ContactId"]))
        checked = began or self.server_now()
        marks = marks.advanced("OpportunityContactRole", checked - OVERLAP, checked)
        conditions = ["IsWon = true"]
        if close_from is not None:
            conditions.append(format_soql("CloseDate >= {}", close_from))
        present: set[str] = set()
        for chunk in self._changes("Opportunity", _OPP_FIELDS, ObjectMark(), True, conditions):
            rows: list[EventRow] = []
            for record in _rows(chunk.frame):
                opp_id = str(record["Id"])
                extra = roles.pop(opp_id, {}).get("people", set())
                people = ({str(record["ContactId"])} if record.get("ContactId") else set()) | extra
                rows.extend(_purchase_rows(opp_id, record, people))
                present.add(opp_id)
            if chunk.checked is None:
                yield Page(events_frame(rows))
                continue
            marks = marks.advanced("Opportunity", chunk.since, chunk.checked)
            for opp_id, entry in roles.items():  # won deals reachable only through roles
                rows.extend(_purchase_rows(opp_id, entry, entry["people"]))
                present.add(opp_id)
            yield Page(events_frame(rows), marks.encode(), present_ids=frozenset(present))

    # -- activities (Task, Event, incoming EmailMessage) ------------------------------------

    def _activities(self, request: PullRequest) -> Iterator[Page]:
        """Tasks, Events and incoming emails.

        The Task Salesforce logs for an incoming email is that email: it counts once,
        through its EmailMessage, as email_received. A full read reads the emails first and
        so knows every linked Task before it meets it; an incremental read asks, per page
        of changed Email Tasks, which of them an incoming message links (the message itself
        may not have changed).
        """
        names = ("Task", "Event")
        marks, full = self._start(request, names)
        since = naive_utc(request.events_since) if request.events_since else None
        present: set[str] = set()
        email = EmailAccess()
        if full:
            for page in self._emails(marks, full, since, present, email):
                if page.watermark:
                    marks = Marks.decode(page.watermark)
                yield page
        for sobject in names:
            conditions = ["WhoId != null"]
            if since is not None and full:
                conditions.append(format_soql(
                    "(ActivityDate >= {} OR CreatedDate >= {})", since.date(), aware(since)))
            for chunk in self._changes(sobject, _ACTIVITY_FIELDS[sobject], marks.get(sobject),
                                       full, conditions, archived=full):
                deleted, _, live = _split_deleted(chunk.frame)
                rows: list[EventRow] = []
                gone = list(deleted)
                for record in _rows(live):
                    row = _activity_row(sobject, record)
                    if row is None or (since is not None and row.ts < since):
                        gone.append(str(record["Id"]))
                        continue
                    rows.append(row)
                if sobject == "Task":
                    linked = email.linked if full else self._incoming_tasks(
                        [r.record_id for r in rows if r.kind == "email_sent"], email)
                    gone.extend(sorted(linked & {r.record_id for r in rows}))
                    rows = [r for r in rows if r.record_id not in linked]
                present.update(r.record_id for r in rows)
                watermark = None
                if chunk.since or chunk.checked:
                    marks = marks.advanced(sobject, chunk.since, chunk.checked)
                    watermark = marks.encode()
                yield Page(events_frame(rows), watermark, deleted=tuple(gone))
        if not full:
            for page in self._emails(marks, full, since, present, email):
                if page.watermark:
                    marks = Marks.decode(page.watermark)
                yield page
        if full:
            yield Page(events_frame([]), marks.encode(), present_ids=frozenset(present))

    def _email_refused(self, email: EmailAccess) -> bool:
        """After a failed email query: is it the org refusing Enhanced Email objects? Then
        warn (once per pull) and let the pull go on without email_received."""
        code = self.client.last_error_code
        if code not in _EMAIL_REFUSALS:
            return False
        if email.available:
            email.available = False
            log.warning("Salesforce refused to read EmailMessage (%s): Enhanced Email is off "
                        "or hidden from the API user, so incoming email (email_received) is "
                        "skipped; Email Tasks still count as email_sent. `segsync check` "
                        "says what the org supplies.", code)
        return True

    def _incoming_tasks(self, task_ids: Sequence[str], email: EmailAccess) -> set[str]:
        """Which of these Email Tasks an incoming EmailMessage links (``ActivityId``)."""
        linked: set[str] = set()
        if not task_ids or not email.available:
            return linked
        for ids in _chunks(sorted(set(task_ids)), SOQL_IDS_PER_QUERY):
            try:
                for page in self.client.query_pages(soql.incoming_tasks(ids),
                                                    what="query EmailMessage"):
                    linked.update(str(r["ActivityId"]) for r in page.records
                                  if r.get("ActivityId"))
            except ConnectorError:
                if self._email_refused(email):
                    return set()
                raise
        return linked

    def _emails(self, marks: Marks, full: bool, since: dt.datetime | None, present: set[str],
                email: EmailAccess) -> Iterator[Page]:
        """email_received events: incoming EmailMessages x their FromAddress Contacts/Leads.

        Each message's rows are emitted together (the store replaces a record's rows), so
        both the message read and the relation read fetch the message's complete sender
        set. A message's linked Task goes into ``deleted`` (it may have been stored as
        email_sent before the message was linked). The first read of the email objects
        (or one after a gap past the recycle bin) is a full read bounded by the look-back
        on MessageDate; the relations' own watermark then starts when it began.
        """
        if not email.available:
            return
        first = full or marks.stale(EMAIL_OBJECTS, self.server_now())
        window = [format_soql("MessageDate >= {}", aware(since))] if since else []
        chunks = self._changes("EmailMessage", _MESSAGE_FIELDS, marks.get("EmailMessage"),
                               first, window, filters=[_INCOMING])
        try:
            head = next(chunks)
        except ConnectorError:
            if self._email_refused(email):
                return
            raise
        handled: set[str] = set()
        for chunk in itertools.chain([head], chunks):
            deleted, _, live = _split_deleted(chunk.frame)
            messages = {str(r["Id"]): r for r in _rows(live)}
            rows, gone = self._message_rows(messages, since)
            handled.update(messages)
            handled.update(deleted)
            email.linked.update(_activities_of(messages))
            if full:
                present.update(r.record_id for r in rows)
            watermark = None
            if chunk.since or chunk.checked:
                marks = marks.advanced("EmailMessage", chunk.since, chunk.checked)
                if first and chunk.checked:  # relations changed after the read began
                    marks = marks.advanced("EmailMessageRelation", chunk.since, chunk.checked)
                watermark = marks.encode()
            yield Page(events_frame(rows), watermark,
                       deleted=_unique(deleted, gone, _activities_of(messages)))
        if first:
            return
        for chunk in self._changes("EmailMessageRelation", _RELATION_FIELDS,
                                   marks.get("EmailMessageRelation"), False, filters=[_FROM]):
            touched = {str(i) for i in chunk.frame["EmailMessageId"] if i} - handled
            messages = {}
            for ids in _chunks(sorted(touched), SOQL_IDS_PER_QUERY):
                query = soql.incoming_messages(_MESSAGE_FIELDS, ids)
                for page in self.client.query_pages(query, what="query EmailMessage"):
                    messages.update((str(r["Id"]), r) for r in
                                    _rows(records_frame(page.records, _MESSAGE_FIELDS)))
            rows, gone = self._message_rows(messages, since)
            handled.update(touched)
            watermark = None
            if chunk.since or chunk.checked:
                marks = marks.advanced("EmailMessageRelation", chunk.since, chunk.checked)
                watermark = marks.encode()
            # touched but not found: deleted, or not incoming -- no rows may stay
            yield Page(events_frame(rows), watermark,
                       deleted=_unique(sorted(touched - set(messages)), gone,
                                       _activities_of(messages)))

    def _message_rows(self, messages: Mapping[str, Mapping[str, Any]], since: dt.datetime | None
                      ) -> tuple[list[EventRow], list[str]]:
        """(rows, message ids that have none) for live incoming messages: one row per
        Contact/Lead sender, at MessageDate."""
        senders: dict[str, set[str]] = {}
        stamps: dict[str, dt.datetime] = {}
        for ids in _chunks(sorted(messages), SOQL_IDS_PER_QUERY):
            for page in self.client.query_pages(soql.from_relations(ids),
                                                what="query EmailMessageRelation"):
                for relation in page.records:
                    person = str(relation.get("RelationId") or "")
                    message = str(relation.get("EmailMessageId") or "")
                    if person[:3] not in _PERSON_PREFIXES or message not in messages:
                        continue  # a User, or an address no person record matched
                    senders.setdefault(message, set()).add(person)
                    stamp = parse_timestamp(relation.get("SystemModstamp"))
                    if stamp is not None and (message not in stamps or stamp > stamps[message]):
                        stamps[message] = stamp
        rows: list[EventRow] = []
        gone: list[str] = []
        for message_id, record in messages.items():
            ts = day_start(record.get("MessageDate"))
            stamp = parse_timestamp(record.get("SystemModstamp"))
            people = senders.get(message_id)
            if ts is None or stamp is None or not people or (since is not None and ts < since):
                gone.append(message_id)
                continue
            modified = naive_utc(max(stamp, stamps.get(message_id, stamp)))
            kind = activity_kind("EmailMessage")
            rows.extend(EventRow(message_id, person, kind, ts, None, modified)
                        for person in sorted(people))
        return rows, gone


@dataclass
class EmailAccess:
    """Whether this pull can read Enhanced Email (false after the org refused it once), and
    the Tasks its incoming messages are logged as (counted through the message)."""

    available: bool = True
    linked: set[str] = field(default_factory=set)


#: Enhanced Email objects: optional; an org without them only lacks email_received.
EMAIL_OBJECTS = ("EmailMessage", "EmailMessageRelation")
_EMAIL_REFUSALS = frozenset({"INVALID_TYPE", "INVALID_FIELD"})
_MESSAGE_FIELDS = ["Id", "SystemModstamp", "ActivityId", "MessageDate"]
_RELATION_FIELDS = ["Id", "SystemModstamp", "EmailMessageId"]
_INCOMING = "Incoming = true"
_FROM = "RelationType = 'FromAddress'"
_PERSON_PREFIXES = frozenset({"003", "00Q"})


def _activities_of(messages: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The Tasks these emails are logged as (counted through the email instead)."""
    return sorted({str(r["ActivityId"]) for r in messages.values() if r.get("ActivityId")})


def _unique(*groups: Sequence[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(i for group in groups for i in group))


_OPP_FIELDS = ["Id", "SystemModstamp", "ContactId", "Amount", "CloseDate", "IsWon"]
_ROLE_FIELDS = ["Id", "SystemModstamp", "OpportunityId"]
_ACTIVITY_FIELDS = {
    "Task": ["Id", "SystemModstamp", "WhoId", "Type", "TaskSubtype", "ActivityDate",
             "CompletedDateTime", "CreatedDate"],
    "Event": ["Id", "SystemModstamp", "WhoId", "Type", "EventSubtype", "ActivityDateTime",
              "ActivityDate", "CreatedDate"],
}


def _rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return cast(list[dict[str, Any]], frame.to_dict("records"))


def _truthy(value: object) -> bool:
    return value is True or (isinstance(value, str) and value.lower() == "true")


def _split_deleted(frame: pd.DataFrame) -> tuple[list[str], dict[str, str], pd.DataFrame]:
    """(deleted ids, merged loser -> survivor, live rows) of a queryAll page."""
    if "IsDeleted" not in frame.columns or frame.empty:
        return [], {}, frame
    dead = frame["IsDeleted"].map(_truthy).astype(bool)
    deleted: list[str] = []
    merged: dict[str, str] = {}
    masters = frame["MasterRecordId"] if "MasterRecordId" in frame.columns else None
    for index in frame.index[dead]:
        record_id = str(frame.at[index, "Id"])
        master = masters.at[index] if masters is not None else None
        if master:
            merged[record_id] = str(master)
        else:
            deleted.append(record_id)
    return deleted, merged, frame[~dead]


def _newest(frame: pd.DataFrame) -> dt.datetime | None:
    if frame.empty or "SystemModstamp" not in frame.columns:
        return None
    stamps = [parse_timestamp(v) for v in frame["SystemModstamp"] if v]
    return max((s for s in stamps if s is not None), default=None)


def _chunks(items: Sequence[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def _won_in_window(record: Mapping[str, Any], close_from: dt.date | None) -> bool:
    if not _truthy(record.get("IsWon")):
        return False
    close = day_start(record.get("CloseDate"))
    return close is not None and (close_from is None or close.date() >= close_from)


def _purchase_rows(opp_id: str, record: Mapping[str, Any], people: set[str]) -> list[EventRow]:
    close = day_start(record.get("CloseDate"))
    stamp = parse_timestamp(record.get("SystemModstamp"))
    if close is None or stamp is None:
        return []
    amount = record.get("Amount")
    value = float(amount) if amount not in (None, "") else None
    return [EventRow(opp_id, person, "purchase", close, value, naive_utc(stamp))
            for person in sorted(people)]


def _activity_row(sobject: str, record: Mapping[str, Any]) -> EventRow | None:
    who = record.get("WhoId")
    stamp = parse_timestamp(record.get("SystemModstamp"))
    if not who or stamp is None:
        return None
    if sobject == "Task":
        # When the activity happened: a logged call's ActivityDate is the day of the call,
        # while CompletedDateTime is when someone logged or closed it (a call logged today
        # about last month is last month's activity, as on HubSpot and in the CSV export).
        ts = (day_start(record.get("ActivityDate")) or day_start(record.get("CompletedDateTime"))
              or day_start(record.get("CreatedDate")))
        kind = activity_kind("Task", record.get("TaskSubtype"), record.get("Type"))
    else:
        ts = (day_start(record.get("ActivityDateTime")) or day_start(record.get("ActivityDate"))
              or day_start(record.get("CreatedDate")))
        kind = activity_kind("Event", record.get("EventSubtype"), record.get("Type"))
    if ts is None:
        return None
    return EventRow(str(record["Id"]), str(who), kind, ts, None, naive_utc(stamp))
