"""HubSpotConnector: :class:`connectors.base.Connector`, :class:`~connectors.base.FieldWriter`
and :class:`~connectors.base.MembershipReader`.

Pull (all through the search API, 200 records a call, sorted by ``hs_object_id`` and
re-anchored on the last id -- never paged past the 10,000-result wall). Another page is
fetched exactly while HubSpot's answer carries ``paging.next.after``: HubSpot may answer
a short page while more records match, so a short page never ends a pull (an empty page
with a cursor is followed on the same anchor; a repeated cursor stops with an error):

* contacts: requested properties + email, ``lastmodifieddate``, opt-out flags,
  coordinates and ``hs_merged_object_ids``; ``_company_id`` from the contact->company
  associations (v4 batch read, 1,000 contacts a call, primary company first).
* companies: every company modified since the watermark. This is cheaper than reading
  the companies of the pulled contacts: the contact->company ids come for free with the
  association call we make anyway, but reading those companies would take a batch read
  per 100 ids, while search returns 200 modified companies a call and, incrementally,
  usually a single call.
* purchases: closed-won deals (stages flagged closed + probability 1.0 by the pipelines
  API, or ``hs_is_closed_won``) with their contacts, one row per (deal, contact).
* activities: calls, meetings, sales emails, notes and tasks with their contacts. Emails
  are split by ``hs_email_direction``: ``INCOMING_EMAIL`` is the contact writing to us
  (``incoming_emails``, default ``email_received`` -- a customer who wrote last week is
  not inactive), ``EMAIL`` and ``FORWARDED_EMAIL`` are ours (``emails``, ``email_sent``;
  dropped unless actually sent).

Incremental pulls filter on ``lastmodifieddate`` (contacts) / ``hs_lastmodifieddate``
(others) from the watermark minus ``overlap_seconds``. Each page carries a watermark
that is safe to commit with it: while a pull runs it records the window and the last
stored id (:class:`~connectors.hubspot.mapping.Cursor`), so a pull stopped half-way
resumes there; the final page carries the pull's start time. Archived records are swept
(``GET ?archived=true``) into ``Page.deleted``; ``hs_merged_object_ids`` folds absorbed
contacts into their survivor (``Page.merged``).

Write-back: one MANUAL contact list per segment (Lists v3, add-and-remove in chunks of
``membership_batch_size``), and/or the multi-checkbox property (contacts batch update,
100 a call). Each id is reported only as HubSpot's answer proves it (segsync issue
"exact CRM state"; fact sheet 2026-12 update, 8):

* add-and-remove: an add in ``recordsIdsAdded`` (sic) / a remove in ``recordIdsRemoved``
  is done; an id in ``recordIdsMissing`` is ``gone``; an id an error names is ``failed``
  (``gone`` for a NOT_FOUND error); an id in none of them is done (already in / already
  out) only while the answer carries no error -- with a 207 or any ``errors`` entry it is
  ``unknown``, because an error whose ``context.ids`` is empty or ``[""]`` may be about it.
* batch update: only ids in ``results[]`` are done; ids an error names are ``failed``
  (OBJECT_NOT_FOUND: ``gone``); all others ``unknown``. A 400 refusing the whole chunk
  fails the chunk.
* an answer that arrived but cannot be read (truncated or malformed JSON, an HTML page
  with 200, JSON that is not an object) makes every id of that call ``unknown``; an
  answer that never came raises ``RetriesExhausted`` and the engine keeps the batch
  unknown. Auth, quota and other refusals still raise: nothing was done.

Unknown pairs are settled by the engine, by writing them again or by
:meth:`HubSpotConnector.read_memberships` (``POST /crm/v3/lists/records/memberships/
batch/read``, 100 records a call, every list at once).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Any

import pandas as pd

from connectors.base import (
    Batch,
    BatchResult,
    Capabilities,
    MembershipRead,
    Page,
    PullRequest,
    TargetRef,
    TargetSpec,
)
from connectors.errors import AuthError, ConnectorError, TargetConflict
from connectors.hubspot import mapping as m
from connectors.hubspot.api import Answer, Conflict, HubSpotApi, HubSpotError, NotFound
from connectors.hubspot.paging import AfterCursor, IdWindow, UnsortedPage, next_after
from connectors.hubspot.settings import HubSpotSettings

__all__ = ["PROPERTY_GROUP", "HubSpotConnector"]

log = logging.getLogger(__name__)

#: Records handed to one association call (the v4 batch-read maximum).
ASSOCIATION_BATCH = 1_000
CONTACT_UPDATE_BATCH = 100
#: Records one memberships batch read covers (the endpoint's input maximum).
RECORD_READ_BATCH = 100
#: Property group segsync creates its checkbox property in (and recognises it by).
PROPERTY_GROUP = "segsync"
PROPERTY_GROUP_LABEL = "Segsync"
#: Engagement objects, in pull order, and the setting keys that enable them.
ENGAGEMENTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("calls", ("calls",)),
    ("meetings", ("meetings",)),
    ("emails", ("emails", "incoming_emails")),
    ("notes", ("notes",)),
    ("tasks", ("tasks",)),
)
_EMAIL_NOT_SENT = {"FAILED", "BOUNCED", "SCHEDULED", "SENDING"}
#: ``hs_email_direction`` values of emails the contact sent us (fact sheet §7 and 2026-12
#: update, 6); every other direction (EMAIL, FORWARDED_EMAIL, none) is ours.
_EMAIL_RECEIVED = {"INCOMING_EMAIL"}

READ_SCOPES = ("crm.objects.contacts.read", "crm.objects.companies.read",
               "crm.objects.deals.read")
LIST_SCOPES = ("crm.lists.read", "crm.lists.write")
PROPERTY_SCOPES = ("crm.schemas.contacts.read", "crm.schemas.contacts.write",
                   "crm.objects.contacts.write")


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class HubSpotConnector:
    """Pulls contacts/companies/deals/engagements and writes segments back to HubSpot."""


    def __init__(
        self,
        settings: HubSpotSettings,
        *,
        clock: Callable[[], dt.datetime] = _utc_now,
        sleep: Callable[[float], None] | None = None,
        monotonic: Callable[[], float] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        """``sleep``/``monotonic`` default to the ``time`` module's, looked up when built."""
        self.settings = settings
        self.clock = clock
        self.api = HubSpotApi(settings, clock=clock, sleep=sleep or time.sleep,
                              monotonic=monotonic or time.monotonic, rng=rng)
        self.max_batch = settings.membership_batch_size
        #: ``sorts`` syntax: the spec's string form first; the documented object form if
        #: HubSpot rejects or ignores it (unverified either way, fact sheet pitfall 3).
        self._sort_style = "string"
        self._sort_confirmed = False
        self._won_stages: frozenset[str] | None = None

    # -- Connector: bookkeeping ---------------------------------------------------------

    def capabilities(self) -> Capabilities:
        """Lists and/or the checkbox property (``write_mode``); reads and deletes lists."""
        settings = self.settings
        return Capabilities(
            max_batch=settings.membership_batch_size, lists=settings.writes_lists,
            field=settings.writes_property, max_field_batch=CONTACT_UPDATE_BATCH,
            read_memberships=True, max_read_batch=RECORD_READ_BATCH, delete_targets=True)

    def api_usage(self) -> dict[str, int]:
        return dict(sorted(self.api.calls.items()))

    def finish(self) -> None:
        """Nothing is buffered: every batch is sent when ``apply`` is called."""

    def _attempts(self) -> int:
        return self.api.session.attempts

    # -- Connector: check --------------------------------------------------------------

    def check(self) -> list[str]:
        settings = self.settings
        self.api.probe()
        lines = [f"HubSpot at {settings.base_url} accepted the {settings.auth} credentials"]
        needed = list(READ_SCOPES)
        if settings.writes_lists:
            needed += LIST_SCOPES
        if settings.writes_property:
            needed += PROPERTY_SCOPES
        granted = self.api.token_scopes()
        if granted is None:
            lines.append("HubSpot did not list the token's scopes; a missing scope will be "
                         "named by the first call that needs it")
        else:
            missing = [s for s in dict.fromkeys(needed) if s not in granted]
            if missing:
                raise AuthError(
                    f"the HubSpot token lacks the scope(s) {', '.join(missing)} that segsync "
                    f"needs (write_mode = {settings.write_mode!r}); add them to the private "
                    "app / service key (or re-authorize the OAuth app) and run `segsync check`"
                )
            lines.append(f"token has the scopes segsync needs: {', '.join(dict.fromkeys(needed))}")
            if self._emails_enabled() and "sales-email-read" not in granted:
                lines.append("note: without sales-email-read HubSpot may refuse to list "
                             "email engagements")
        lines.append(f"client-side limits: {settings.requests_per_10s} requests / 10 s "
                     f"({settings.tier}), search {settings.search_per_second} / s")
        return lines

    # -- Connector: pull ---------------------------------------------------------------

    def pull(self, request: PullRequest) -> Iterator[Page]:
        cursor = self._cursor(request.since)
        if request.stream == "contacts":
            yield from self._pull_contacts(request, cursor)
        elif request.stream == "companies":
            yield from self._pull_companies(request, cursor)
        elif request.stream == "purchases":
            yield from self._pull_purchases(request, cursor)
        else:
            yield from self._pull_activities(request, cursor)

    def _cursor(self, since: str | None) -> m.Cursor:
        now = m.to_ms(self.clock())
        if since is None:
            return m.Cursor(now)
        try:
            previous = m.decode_watermark(since)
        except ValueError:
            log.warning("unreadable HubSpot watermark %r: pulling everything", since)
            return m.Cursor(now)
        if previous.in_progress:
            return previous
        return m.Cursor(now, previous.at - self.settings.overlap_seconds * 1000)

    @staticmethod
    def _full(cursor: m.Cursor) -> bool:
        """A full pull that starts at the beginning can report every id it saw."""
        return cursor.since is None and not cursor.in_progress

    def _search_pages(
        self, object_type: str, filters: Sequence[Mapping[str, Any]],
        properties: Iterable[str], last_id: str | None,
    ) -> Iterator[list[Mapping[str, Any]]]:
        """Search pages of 200, re-anchored on ``hs_object_id`` (never past 10,000).

        The pull goes on while an answer carries ``paging.next.after`` and ends when one
        does not -- never on a short page or on ``total``, which HubSpot may answer while
        more records match (see :class:`~connectors.hubspot.paging.IdWindow`).
        """
        props = sorted(set(properties) - {""})
        window = IdWindow(object_type, last_id)
        while True:
            anchor = [m.id_after(window.last_id)] if window.last_id is not None else []
            body = m.search_body([*filters, *anchor], props, sort_style=self._sort_style,
                                 after=window.after)
            try:
                data = self.api.search(object_type, body)
            except HubSpotError as exc:
                if exc.status == 400 and self._switch_sort("rejected"):
                    continue
                raise
            raw = data.get("results")
            results = [r for r in raw if isinstance(r, Mapping)] if isinstance(raw, list) else []
            try:
                more = window.advance(results, next_after(data))
            except UnsortedPage:
                if self._switch_sort("ignored"):
                    continue
                raise
            if len(results) > 1:
                self._sort_confirmed = True
            if results:
                yield results
            if not more:
                return

    def _switch_sort(self, what: str) -> bool:
        """Fall back to the object ``sorts`` form once, before any sort was seen to work."""
        if self._sort_confirmed or self._sort_style != "string":
            return False
        log.warning("HubSpot %s the string-form search sort; using the object form", what)
        self._sort_style = "object"
        return True

    @staticmethod
    def _chunks(
        pages: Iterable[list[Mapping[str, Any]]], size: int = ASSOCIATION_BATCH
    ) -> Iterator[list[Mapping[str, Any]]]:
        """Group search pages so one association call covers up to ``size`` records."""
        chunk: list[Mapping[str, Any]] = []
        for page in pages:
            if chunk and len(chunk) + len(page) > size:
                yield chunk
                chunk = []
            chunk.extend(page)
        if chunk:
            yield chunk

    def _associated(
        self, from_type: str, to_type: str, ids: Sequence[str]
    ) -> dict[str, list[Mapping[str, Any]]]:
        """Association targets for ``ids`` (v4 batch read, following per-id paging)."""
        found: dict[str, list[Mapping[str, Any]]] = {}
        pending: list[tuple[str, str | None]] = [(i, None) for i in ids]
        seen: set[tuple[str, str | None]] = set()
        while pending:
            batch, pending = pending[:ASSOCIATION_BATCH], pending[ASSOCIATION_BATCH:]
            repeated = [item for item in batch if item in seen]
            if repeated:
                raise ConnectorError(
                    f"HubSpot repeated an association cursor for {from_type} {repeated[0][0]}"
                )
            seen.update(batch)
            data = self.api.associations(from_type, to_type, m.association_inputs(batch))
            targets, more = m.association_targets(data)
            for source, items in targets.items():
                found.setdefault(source, []).extend(items)
            pending.extend(more.items())
        return found

    def _contacts_of(self, from_type: str, ids: Sequence[str]) -> dict[str, list[str]]:
        return {k: m.target_ids(v) for k, v in self._associated(from_type, "contacts", ids).items()}

    def _archived(self, object_type: str, cursor: m.Cursor) -> list[str]:
        """Ids archived (soft-deleted) since this pull's window began; all of them if full."""
        pager = AfterCursor(f"archived {object_type}")
        ids: list[str] = []
        while True:
            data = self.api.list_archived(object_type, pager.after)
            raw = data.get("results")
            for record in raw if isinstance(raw, list) else []:
                if not isinstance(record, Mapping) or record.get("id") is None:
                    continue
                archived_at = record.get("archivedAt")
                if cursor.since is not None and isinstance(archived_at, str):
                    parsed = m.parse_iso_ms(archived_at)
                    if parsed is not None and parsed < cursor.since:
                        continue
                ids.append(str(record["id"]))
            if not pager.advance(data):
                return ids

    def _contact_columns(self, request: PullRequest) -> dict[str, str]:
        return {f: self.settings.contact_property(f) for f in request.fields | {"email"}}

    def _pull_contacts(self, request: PullRequest, cursor: m.Cursor) -> Iterator[Page]:
        settings = self.settings
        columns = self._contact_columns(request)
        lat, lon = settings.fields.get("latitude", ""), settings.fields.get("longitude", "")
        properties = {*columns.values(), "email", "lastmodifieddate", "hs_merged_object_ids",
                      *settings.opt_out_properties, lat, lon}
        filters = [m.gte("lastmodifieddate", cursor.since)] if cursor.since is not None else []
        present: set[str] | None = set() if self._full(cursor) else None

        def frame(records: Sequence[Mapping[str, Any]],
                  companies: Mapping[str, str | None]) -> pd.DataFrame:
            return m.contacts_frame(records, columns, companies, latitude=lat, longitude=lon,
                                    opt_out=settings.opt_out_properties)

        pages = self._search_pages("contacts", filters, properties, cursor.after)
        for chunk in self._chunks(pages):
            ids = [str(r["id"]) for r in chunk]
            links = self._associated("contacts", "companies", ids)
            companies = {i: m.primary_company(links.get(i, [])) for i in ids}
            if present is not None:
                present.update(ids)
            cursor = replace(cursor, after=ids[-1])
            yield Page(frame(chunk, companies), m.encode_watermark(cursor),
                       merged=m.merged_ids(chunk))
        deleted = self._archived("contacts", cursor) if present is None else []
        yield Page(frame([], {}), m.encode_watermark(m.Cursor(cursor.at)),
                   deleted=tuple(deleted),
                   present_ids=frozenset(present) if present is not None else None)

    def _pull_companies(self, request: PullRequest, cursor: m.Cursor) -> Iterator[Page]:
        settings = self.settings
        columns = {f: settings.company_property(f) for f in request.fields}
        lat = settings.company_fields.get("latitude", "")
        lon = settings.company_fields.get("longitude", "")
        properties = {*columns.values(), "hs_lastmodifieddate", "hs_merged_object_ids", lat, lon}
        filters = ([m.gte("hs_lastmodifieddate", cursor.since)]
                   if cursor.since is not None else [])
        present: set[str] | None = set() if self._full(cursor) else None
        for page in self._search_pages("companies", filters, properties, cursor.after):
            ids = [str(r["id"]) for r in page]
            if present is not None:
                present.update(ids)
            cursor = replace(cursor, after=ids[-1])
            yield Page(m.companies_frame(page, columns, latitude=lat, longitude=lon),
                       m.encode_watermark(cursor), deleted=tuple(m.merged_ids(page)))
        deleted = self._archived("companies", cursor) if present is None else []
        yield Page(m.companies_frame([], columns, latitude=lat, longitude=lon),
                   m.encode_watermark(m.Cursor(cursor.at)), deleted=tuple(deleted),
                   present_ids=frozenset(present) if present is not None else None)

    def won_stages(self) -> frozenset[str]:
        """Deal stage ids that mean closed-won: closed with probability 1.0 (pipelines API)."""
        if self._won_stages is None:
            data = self.api.pipelines("deals")
            stages: set[str] = set()
            pipelines = data.get("results")
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
            self._won_stages = frozenset(stages)
        return self._won_stages

    def _pull_purchases(self, request: PullRequest, cursor: m.Cursor) -> Iterator[Page]:
        def won(props: Mapping[str, Any]) -> bool:
            flag = props.get("hs_is_closed_won")
            if flag in ("true", "false"):  # HubSpot's calculated flag, when it is there
                return bool(flag == "true")
            return str(props.get("dealstage")) in self.won_stages()

        if cursor.since is not None:
            filters = [m.gte("hs_lastmodifieddate", cursor.since)]
        else:
            stages = self.won_stages()
            filters = [m.one_of("dealstage", stages) if stages else
                       {"propertyName": "hs_is_closed_won", "operator": "EQ", "value": "true"}]
            if request.events_since is not None:
                filters.append(m.gte("closedate", m.to_ms(request.events_since)))
        properties = {"amount", "closedate", "dealstage", "hs_is_closed_won",
                      "hs_lastmodifieddate", "hs_merged_object_ids"}
        present: set[str] | None = set() if self._full(cursor) else None
        pages = self._search_pages("deals", filters, properties, cursor.after)
        for chunk in self._chunks(pages):
            ids = [str(r["id"]) for r in chunk]
            contacts = self._contacts_of("deals", ids)
            frame, dropped = m.purchases_frame(chunk, contacts, won, request.events_since)
            if present is not None:
                present.update(frame["_crm_id"])
            cursor = replace(cursor, after=ids[-1])
            yield Page(frame, m.encode_watermark(cursor),
                       deleted=(*dropped, *m.merged_ids(chunk)))
        deleted = self._archived("deals", cursor) if present is None else []
        yield Page(m.purchases_frame([], {}, won, None)[0], m.encode_watermark(m.Cursor(cursor.at)),
                   deleted=tuple(deleted),
                   present_ids=frozenset(present) if present is not None else None)

    def _emails_enabled(self) -> bool:
        kinds = self.settings.activity_types
        return bool(kinds.get("emails") or kinds.get("incoming_emails"))

    def _engagements(self) -> list[tuple[int, str]]:
        """Enabled engagement objects with their fixed part number (stable across configs)."""
        kinds = self.settings.activity_types
        return [(part, obj) for part, (obj, keys) in enumerate(ENGAGEMENTS)
                if any(kinds.get(k) for k in keys)]

    def _kind_of(self, object_type: str) -> Callable[[Mapping[str, Any]], str | None]:
        kinds = self.settings.activity_types
        if object_type != "emails":
            fixed = kinds.get(object_type) or None
            return lambda props: fixed

        def email_kind(props: Mapping[str, Any]) -> str | None:
            """INCOMING_EMAIL -> ``incoming_emails``; EMAIL, FORWARDED_EMAIL -> ``emails``.

            The send-status filter applies to our own emails only: a received email was
            received whatever ``hs_email_status`` says.
            """
            if str(props.get("hs_email_direction") or "").upper() in _EMAIL_RECEIVED:
                return kinds.get("incoming_emails") or None
            if str(props.get("hs_email_status") or "").upper() in _EMAIL_NOT_SENT:
                return None
            return kinds.get("emails") or None

        return email_kind

    def _pull_activities(self, request: PullRequest, cursor: m.Cursor) -> Iterator[Page]:
        kinds = self._engagements()
        present: set[str] | None = set() if self._full(cursor) else None
        for part, object_type in kinds:
            if part < cursor.part:  # done before the previous pull stopped
                continue
            after = cursor.after if part == cursor.part else None
            cursor = replace(cursor, part=part, after=after)
            if cursor.since is not None:
                filters = [m.gte("hs_lastmodifieddate", cursor.since)]
            elif request.events_since is not None:
                filters = [m.gte("hs_timestamp", m.to_ms(request.events_since))]
            else:
                filters = []
            properties = {"hs_timestamp", "hs_lastmodifieddate", "hs_merged_object_ids"}
            if object_type == "emails":
                properties |= {"hs_email_direction", "hs_email_status"}
            kind_of = self._kind_of(object_type)
            pages = self._search_pages(object_type, filters, properties, after)
            for chunk in self._chunks(pages):
                ids = [str(r["id"]) for r in chunk]
                contacts = self._contacts_of(object_type, ids)
                frame, dropped = m.activity_frame(object_type, chunk, contacts, kind_of,
                                                  request.events_since)
                if present is not None:
                    present.update(frame["_crm_id"])
                losers = [f"{object_type}:{i}" for i in m.merged_ids(chunk)]
                cursor = replace(cursor, after=ids[-1])
                yield Page(frame, m.encode_watermark(cursor), deleted=(*dropped, *losers))
        deleted: list[str] = []
        for _, object_type in kinds if present is None else ():
            deleted += [f"{object_type}:{i}" for i in self._archived(object_type, cursor)]
        empty = m.activity_frame("none", [], {}, lambda props: None, None)[0]
        yield Page(empty, m.encode_watermark(m.Cursor(cursor.at)), deleted=tuple(deleted),
                   present_ids=frozenset(present) if present is not None else None)

    # -- Connector: lists --------------------------------------------------------------

    def _require_lists(self) -> None:
        if not self.settings.writes_lists:
            raise ConnectorError(
                f'[crm].write_mode = "{self.settings.write_mode}" writes no lists; '
                "list targets are not available"
            )

    def ensure_target(self, spec: TargetSpec, current: TargetRef | None, adopt: bool) -> TargetRef:
        self._require_lists()
        if current is not None:
            if current.name == spec.name:
                return current
            return self._rename(spec, current)
        if adopt:
            found = self.api.find_list(spec.name)
            if found is not None:
                return self._adopt(spec, found)
        started, attempts = self.clock(), self._attempts()
        try:
            created = self.api.create_list(m.list_create_body(spec.name))
        except Conflict:
            mine = self._created_by_a_lost_attempt(spec, started, attempts)
            if mine is not None:
                return mine
            raise self._conflict(spec.name) from None
        except HubSpotError as exc:
            if exc.status == 400 and self.api.find_list(spec.name) is not None:
                raise self._conflict(spec.name) from None
            raise
        list_id = created.get("listId")
        if list_id is None:
            raise ConnectorError(f"HubSpot created list {spec.name!r} but returned no listId")
        log.info("created HubSpot list %r (id %s)", spec.name, list_id)
        return TargetRef(str(list_id), spec.name)

    def _created_by_a_lost_attempt(
        self, spec: TargetSpec, started: dt.datetime, attempts_before: int
    ) -> TargetRef | None:
        """The list behind a 409 that answered a *retried* create, if this call made it.

        When the first attempt's answer is lost (timeout, cut connection) HubSpot may have
        created the list already, and the retry then meets our own list. It is taken only
        if it is a MANUAL contact list with the exact name, created after this call began
        (less ``overlap_seconds`` of clock skew): a list someone else made earlier stays
        a conflict.
        """
        if self._attempts() - attempts_before < 2:
            return None  # the first and only attempt met the name: not ours
        found = self.api.find_list(spec.name)
        created = found.get("createdAt") if found is not None else None
        created_ms = m.parse_iso_ms(created) if isinstance(created, str) else None
        earliest = m.to_ms(started) - self.settings.overlap_seconds * 1000
        if found is None or created_ms is None or created_ms < earliest:
            return None
        log.warning("HubSpot list %r was created by an attempt whose answer was lost; "
                    "using it", spec.name)
        return self._adopt(spec, found)

    def _adopt(self, spec: TargetSpec, found: Mapping[str, Any]) -> TargetRef:
        """Take over the list a killed run created (exact name, MANUAL, contacts)."""
        if (
            found.get("name") != spec.name
            or found.get("processingType") != "MANUAL"
            or str(found.get("objectTypeId")) != "0-1"
            or found.get("listId") is None
        ):
            raise self._conflict(spec.name)
        log.info("adopting HubSpot list %r (id %s) created by an interrupted run",
                 spec.name, found["listId"])
        return TargetRef(str(found["listId"]), spec.name)

    def _rename(self, spec: TargetSpec, current: TargetRef) -> TargetRef:
        try:
            self.api.rename_list(current.target_id, spec.name)
        except Conflict:
            raise self._conflict(spec.name) from None
        except NotFound:
            raise self._gone(current) from None
        except HubSpotError as exc:
            if exc.status == 400 and self.api.find_list(spec.name) is not None:
                raise self._conflict(spec.name) from None
            raise
        log.info("renamed HubSpot list %s from %r to %r", current.target_id, current.name,
                 spec.name)
        return TargetRef(current.target_id, spec.name)

    @staticmethod
    def _conflict(name: str) -> TargetConflict:
        return TargetConflict(
            f"a HubSpot contact list named {name!r} already exists and segsync did not create "
            "it; segsync never adopts lists it does not own: rename or delete that list in "
            "HubSpot, or change [crm].name_prefix / the segment's name"
        )

    @staticmethod
    def _gone(target: TargetRef) -> ConnectorError:
        return ConnectorError(
            f"segsync's HubSpot list {target.name!r} (id {target.target_id}) no longer exists; "
            "restore it in HubSpot (deleted lists can be restored for 90 days) and rerun"
        )

    def apply(self, target: TargetRef, batch: Batch) -> BatchResult:
        """Add and remove members; each id reported as HubSpot's answer proves it.

        See the module docstring for the rules. Raises when nothing was done (the list
        is gone, auth, quota, a refusal) or when no answer came (``RetriesExhausted``).
        """
        self._require_lists()
        before = self._attempts()
        outcomes = m.Outcomes()
        if batch.adds or batch.removes:
            self._change(target, list(batch.adds), list(batch.removes), outcomes)
        return _result(outcomes, self._attempts() - before)

    def _change(self, target: TargetRef, adds: list[str], removes: list[str],
                outcomes: m.Outcomes) -> None:
        size = len(adds) + len(removes)
        if size > self.max_batch:  # keep every call within the cap (removes first)
            ops = [(False, i) for i in removes] + [(True, i) for i in adds]
            for start in range(0, size, self.max_batch):
                part = ops[start:start + self.max_batch]
                self._change(target, [i for add, i in part if add],
                             [i for add, i in part if not add], outcomes)
            return
        try:
            answer = self.api.change_memberships(target.target_id,
                                                 m.membership_change_body(adds, removes))
        except NotFound:
            raise self._gone(target) from None
        except HubSpotError as exc:
            if size > 1 and _too_many(exc):
                log.warning("HubSpot refused %d ids in one call; halving the chunk", size)
                self.max_batch = max(1, size // 2)
                self._change(target, adds, removes, outcomes)
                return
            raise
        if _unreadable(answer, [*adds, *removes], outcomes, f"list {target.target_id}"):
            return
        assert answer.body is not None
        m.membership_change_outcomes(answer.status, answer.body, adds, removes, outcomes)

    def delete_target(self, target: TargetRef) -> None:
        """``segsync prune``: delete a list segsync created (gone already = deleted)."""
        self.api.delete_list(target.target_id)

    def members(self, target: TargetRef) -> Iterator[str]:
        self._require_lists()
        pager = AfterCursor(f"members of list {target.target_id}")
        while True:
            try:
                data = self.api.memberships(target.target_id, pager.after)
            except NotFound:
                raise self._gone(target) from None
            raw = data.get("results")
            for item in raw if isinstance(raw, list) else []:
                if isinstance(item, Mapping) and item.get("recordId") is not None:
                    yield str(item["recordId"])
            if not pager.advance(data):
                return

    # -- FieldWriter: the multi-checkbox property ------------------------------------------

    def ensure_field(self, options: Sequence[str]) -> None:
        name = self.settings.property_name
        prop = self.api.get_property(name)
        if prop is None:
            if self.api.get_group(PROPERTY_GROUP) is None:
                with contextlib.suppress(Conflict):
                    self.api.create_group(m.group_create_body(PROPERTY_GROUP, PROPERTY_GROUP_LABEL))
            self.api.create_property(m.property_create_body(
                name, self.settings.property_label, PROPERTY_GROUP, options))
            log.info("created HubSpot contact property %s with %d option(s)", name, len(options))
            return
        if (
            prop.get("groupName") != PROPERTY_GROUP
            or prop.get("type") != "enumeration"
            or prop.get("fieldType") != "checkbox"
        ):
            raise TargetConflict(
                f"the HubSpot contact property {name!r} exists but was not created by segsync "
                f"(group {prop.get('groupName')!r}, type {prop.get('type')!r}/"
                f"{prop.get('fieldType')!r}); choose another [crm].property_name"
            )
        raw = prop.get("options")
        current = [
            (str(o.get("label")), str(o.get("value")), bool(o.get("hidden", False)))
            for o in (raw if isinstance(raw, list) else []) if isinstance(o, Mapping)
        ]
        desired = m.options_body(options)
        if current == [(o["label"], o["value"], False) for o in desired]:
            return
        self.api.update_property(name, {"options": desired})
        log.info("updated the options of HubSpot property %s (%d)", name, len(desired))

    def write_field(self, updates: Mapping[str, tuple[str, ...]]) -> BatchResult:
        """Set the checkbox property, 100 contacts a call; only ``results[]`` proves a write.

        A 400 refuses the whole chunk (an invalid value fails the batch): every id of it
        failed. Other refusals raise; unreadable answers leave the chunk unknown.
        """
        before = self._attempts()
        outcomes = m.Outcomes()
        items = list(updates.items())
        for start in range(0, len(items), CONTACT_UPDATE_BATCH):
            chunk = dict(items[start:start + CONTACT_UPDATE_BATCH])
            body = m.batch_update_body(self.settings.property_name, chunk)
            try:
                answer = self.api.batch_update("contacts", body)
            except HubSpotError as exc:
                if exc.status != 400:
                    raise
                for contact_id in chunk:
                    outcomes.fail(contact_id, str(exc)[:500])
                continue
            if _unreadable(answer, list(chunk), outcomes, "the contacts batch update"):
                continue
            assert answer.body is not None
            m.update_outcomes(answer.status, answer.body, list(chunk), outcomes)
        return _result(outcomes, self._attempts() - before)

    # -- MembershipReader: settle unknown memberships ------------------------------------

    def read_memberships(
        self, targets: Sequence[TargetRef], record_ids: Sequence[str]
    ) -> MembershipRead:
        """Which of ``record_ids`` are in which of ``targets``, 100 records a call.

        One ``POST /crm/v3/lists/records/memberships/batch/read`` answers every list a
        record is in, so a record HubSpot lists is known in all asked targets at once; a
        record an OBJECT_NOT_FOUND error names is gone. Records an answer leaves out, and
        every record of a call whose answer cannot be read, stay unknown for a later
        run. Refusals (auth, quota, 4xx) raise, as does an answer that never came.
        """
        self._require_lists()
        before = self._attempts()
        lists = [t.target_id for t in targets]
        ids = list(dict.fromkeys(str(i) for i in record_ids))
        present: set[tuple[str, str]] = set()
        known: set[str] = set()
        gone: set[str] = set()
        for start in range(0, len(ids), RECORD_READ_BATCH):
            chunk = ids[start:start + RECORD_READ_BATCH]
            answer = self.api.read_record_memberships(m.membership_read_body(chunk))
            if answer.body is None:
                log.warning("%s; the list memberships of %d record(s) stay unknown",
                            answer.problem, len(chunk))
                continue
            found, listed, missing = m.record_memberships(answer.body, chunk, lists)
            present |= found
            known |= listed
            gone |= missing
        return MembershipRead(frozenset(present), frozenset(known), frozenset(gone),
                              api_calls=self._attempts() - before)


def _unreadable(answer: Answer, ids: Sequence[str], outcomes: m.Outcomes, what: str) -> bool:
    """Mark every id of a call unknown when its answer could not be read; True if so."""
    if answer.body is not None:
        return False
    log.warning("%s (%s); %d record(s) left unknown", answer.problem, what, len(ids))
    reason = (answer.problem or "HubSpot's answer could not be read")[:500]
    for object_id in ids:
        outcomes.unsure(object_id, reason)
    return True


def _result(outcomes: m.Outcomes, api_calls: int) -> BatchResult:
    return BatchResult(dict(outcomes.failed), api_calls=api_calls,
                       unknown=dict(outcomes.unknown), gone=frozenset(outcomes.gone))


def _too_many(exc: HubSpotError) -> bool:
    """HubSpot refusing a chunk for its size (413, or a 400 saying so)."""
    text = str(exc).lower()
    return exc.status == 413 or (
        exc.status == 400 and any(w in text for w in ("too many", "maximum", "exceed"))
    )
