"""Pulling the four streams: one pull skeleton, driven by one spec per HubSpot object type.

Every stream is read the same way, so the way lives here once (:meth:`StreamReader.
pull_objects`) and what differs per object type is data (:class:`ObjectSpec`):

* contacts: requested properties + email, ``lastmodifieddate``, opt-out flags,
  coordinates and ``hs_merged_object_ids``; ``_company_id`` from the contact->company
  associations (v4 batch read, 1,000 contacts a call, primary company first).
* companies: every company modified since the watermark. This is cheaper than reading
  the companies of the pulled contacts: the contact->company ids come for free with the
  association call we make anyway, but reading those companies would take a batch read
  per 100 ids, while search returns 200 modified companies a call and, incrementally,
  usually a single call. No association is read, so each search page is a page.
* purchases: closed-won deals (stages flagged closed + probability 1.0 by the pipelines
  API, or ``hs_is_closed_won``) with their contacts, one row per (deal, contact).
* activities: calls, meetings, sales emails, notes and tasks with their contacts, one
  spec each, read one after the other (emails split by direction:
  :func:`~connectors.hubspot.mapping.engagement_kind`).

Search: 200 records a call, sorted by ``hs_object_id`` and re-anchored on the last id --
never paged past the 10,000-result wall. Another page is fetched exactly while HubSpot's
answer carries ``paging.next.after``: HubSpot may answer a short page while more records
match, so a short page never ends a pull (an empty page with a cursor is followed on the
same anchor; a repeated cursor stops with an error). Search pages are grouped so one
association call covers up to 1,000 records.

Incremental pulls filter on the spec's modified-date property (``lastmodifieddate`` for
contacts, ``hs_lastmodifieddate`` for the others) from the watermark minus
``overlap_seconds``; a full pull applies the spec's own bounds instead (won stages and
the look-back on ``closedate``, the look-back on ``hs_timestamp``). Each page carries a
watermark that is safe to commit with it: while a pull runs it records the window, the
object type being read (``part``, fixed per engagement type so enabling one does not
shift the others) and the last stored id (:class:`~connectors.hubspot.mapping.Cursor`),
so a pull stopped half-way resumes there; the final page carries the pull's start time.

The final page also says what left: an incremental pull sweeps the archived
(soft-deleted) records of each object type (``GET ?archived=true``) into
``Page.deleted``; a full pull that started at the beginning instead reports every id it
stored as ``Page.present_ids``, which also removes what was deleted. Merges:
``hs_merged_object_ids`` folds absorbed contacts into their survivor (``Page.merged``,
so their history follows the person); absorbed companies, deals and engagements are
deleted (the survivor is read anyway).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import pandas as pd

from connectors.base import Page, PullRequest, Stream
from connectors.errors import ConnectorError
from connectors.hubspot import mapping as m
from connectors.hubspot.api import HubSpotApi, HubSpotError
from connectors.hubspot.paging import AfterCursor, IdWindow, UnsortedPage, next_after
from connectors.hubspot.settings import HubSpotSettings

__all__ = ["ASSOCIATION_BATCH", "ENGAGEMENTS", "ObjectSpec", "StreamReader"]

log = logging.getLogger(__name__)

JsonObject = Mapping[str, Any]
Filter = Mapping[str, Any]
#: (the records of one chunk, association targets per record id) -> (frame, ids to delete).
RowBuilder = Callable[
    [Sequence[JsonObject], Mapping[str, Sequence[JsonObject]]], tuple[pd.DataFrame, list[str]]
]

#: Records handed to one association call (the v4 batch-read maximum).
ASSOCIATION_BATCH = 1_000
#: Engagement objects, in pull order, and the setting keys that enable them; the index is
#: the object's ``part`` in a watermark, so it must never change for an existing object.
ENGAGEMENTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("calls", ("calls",)),
    ("meetings", ("meetings",)),
    ("emails", ("emails", "incoming_emails")),
    ("notes", ("notes",)),
    ("tasks", ("tasks",)),
)
DEAL_PROPERTIES = frozenset({"amount", "closedate", "dealstage", "hs_is_closed_won"})
ENGAGEMENT_PROPERTIES = frozenset({"hs_timestamp"})
EMAIL_PROPERTIES = frozenset({"hs_email_direction", "hs_email_status"})


def _no_filters() -> Sequence[Filter]:
    return ()


@dataclass(frozen=True)
class ObjectSpec:
    """How one HubSpot object type is pulled: what to search, what to read, what to yield.

    ``properties`` are requested besides ``modified`` (the modified-date property that
    incremental searches filter on) and ``hs_merged_object_ids``. ``association`` is the
    object type whose associated ids each record needs (read in batches of
    :data:`ASSOCIATION_BATCH` records; None: no association read, one page per search
    page), and ``rows`` builds a page's frame from the records and those targets, with
    the ids of records that no longer qualify (deleted). ``full_filters`` bound a full
    pull only (called then, and only then: it may cost a call). ``merges`` says what
    becomes of ids a record absorbed: "fold" into the survivor (``Page.merged``) or
    "delete" (``Page.deleted``, as archived ids are, with ``id_prefix``). ``part`` is the
    object type's place in its stream's watermark.

    Every spec's frame ids (``_crm_id``) are what a full pull reports as present.
    """

    object_type: str
    modified: str
    properties: frozenset[str]
    rows: RowBuilder
    association: str | None = None
    full_filters: Callable[[], Sequence[Filter]] = _no_filters
    merges: Literal["fold", "delete"] = "delete"
    id_prefix: str = ""
    part: int = 0

    def requested(self) -> set[str]:
        return {*self.properties, self.modified, "hs_merged_object_ids"}


def _contact_ids(
    targets: Mapping[str, Sequence[JsonObject]],
) -> dict[str, list[str]]:
    return {source: m.target_ids(found) for source, found in targets.items()}


def _no_kind(props: Mapping[str, Any]) -> str | None:
    return None


class StreamReader:
    """Turns :class:`~connectors.base.PullRequest` objects into pages, one stream at a time."""

    def __init__(
        self, api: HubSpotApi, settings: HubSpotSettings, now: Callable[[], dt.datetime]
    ) -> None:
        self.api = api
        self.settings = settings
        self.now = now
        #: ``sorts`` syntax: the spec's string form first; the documented object form if
        #: HubSpot rejects or ignores it (unverified either way, fact sheet pitfall 3).
        self._sort_style = "string"
        self._sort_confirmed = False
        self._won_stages: frozenset[str] | None = None
        self._specs: Mapping[Stream, Callable[[PullRequest], tuple[ObjectSpec, ...]]] = {
            "contacts": self._contacts,
            "companies": self._companies,
            "purchases": self._deals,
            "activities": self._engagements,
        }

    # -- the object-spec table -------------------------------------------------------------

    def specs(self, request: PullRequest) -> tuple[ObjectSpec, ...]:
        """The object types ``request.stream`` is read from, in pull order."""
        return self._specs[request.stream](request)

    def _contacts(self, request: PullRequest) -> tuple[ObjectSpec, ...]:
        settings = self.settings
        columns = {f: settings.contact_property(f) for f in request.fields | {"email"}}
        lat, lon = settings.fields.get("latitude", ""), settings.fields.get("longitude", "")

        def rows(records: Sequence[JsonObject],
                 links: Mapping[str, Sequence[JsonObject]]) -> tuple[pd.DataFrame, list[str]]:
            ids = [str(r["id"]) for r in records]
            companies = {i: m.primary_company(links.get(i, [])) for i in ids}
            return m.contacts_frame(records, columns, companies, latitude=lat, longitude=lon,
                                    opt_out=settings.opt_out_properties), []

        properties = {*columns.values(), "email", *settings.opt_out_properties, lat, lon}
        return (ObjectSpec("contacts", "lastmodifieddate", frozenset(properties), rows,
                           association="companies", merges="fold"),)

    def _companies(self, request: PullRequest) -> tuple[ObjectSpec, ...]:
        settings = self.settings
        columns = {f: settings.company_property(f) for f in request.fields}
        lat = settings.company_fields.get("latitude", "")
        lon = settings.company_fields.get("longitude", "")

        def rows(records: Sequence[JsonObject],
                 links: Mapping[str, Sequence[JsonObject]]) -> tuple[pd.DataFrame, list[str]]:
            return m.companies_frame(records, columns, latitude=lat, longitude=lon), []

        properties = {*columns.values(), lat, lon}
        return (ObjectSpec("companies", "hs_lastmodifieddate", frozenset(properties), rows),)

    def _deals(self, request: PullRequest) -> tuple[ObjectSpec, ...]:
        since = request.events_since

        def won(props: Mapping[str, Any]) -> bool:
            return m.closed_won(props, self.won_stages)

        def rows(records: Sequence[JsonObject],
                 links: Mapping[str, Sequence[JsonObject]]) -> tuple[pd.DataFrame, list[str]]:
            return m.purchases_frame(records, _contact_ids(links), won, since)

        def full_filters() -> Sequence[Filter]:
            stages = self.won_stages()
            filters: list[Filter] = [m.one_of("dealstage", stages) if stages
                                     else m.eq("hs_is_closed_won", "true")]
            if since is not None:
                filters.append(m.gte("closedate", m.to_ms(since)))
            return filters

        return (ObjectSpec("deals", "hs_lastmodifieddate", DEAL_PROPERTIES, rows,
                           association="contacts", full_filters=full_filters),)

    def _engagements(self, request: PullRequest) -> tuple[ObjectSpec, ...]:
        """Enabled engagement objects with their fixed part number (stable across configs)."""
        kinds = self.settings.activity_types
        return tuple(self._engagement(part, object_type, request)
                     for part, (object_type, keys) in enumerate(ENGAGEMENTS)
                     if any(kinds.get(k) for k in keys))

    def _engagement(self, part: int, object_type: str, request: PullRequest) -> ObjectSpec:
        since = request.events_since
        kind_of = m.engagement_kind(object_type, self.settings.activity_types)

        def rows(records: Sequence[JsonObject],
                 links: Mapping[str, Sequence[JsonObject]]) -> tuple[pd.DataFrame, list[str]]:
            return m.activity_frame(object_type, records, _contact_ids(links), kind_of, since)

        def full_filters() -> Sequence[Filter]:
            return [m.gte("hs_timestamp", m.to_ms(since))] if since is not None else []

        properties = ENGAGEMENT_PROPERTIES | (EMAIL_PROPERTIES if object_type == "emails"
                                              else frozenset())
        return ObjectSpec(object_type, "hs_lastmodifieddate", properties, rows,
                          association="contacts", full_filters=full_filters,
                          id_prefix=f"{object_type}:", part=part)

    def won_stages(self) -> frozenset[str]:
        """Deal stage ids that mean closed-won: closed with probability 1.0 (pipelines API)."""
        if self._won_stages is None:
            self._won_stages = m.won_stage_ids(self.api.pipelines("deals"))
        return self._won_stages

    # -- pulling ---------------------------------------------------------------------------

    def pull(self, request: PullRequest) -> Iterator[Page]:
        """Every object type of the stream in turn, then one final page (see the module)."""
        specs = self.specs(request)
        cursor = self._cursor(request.since)
        present: set[str] | None = set() if self._full(cursor) else None
        for spec in specs:
            if spec.part < cursor.part:  # done before the previous pull stopped
                continue
            after = cursor.after if spec.part == cursor.part else None
            cursor = replace(cursor, part=spec.part, after=after)
            cursor = yield from self.pull_objects(spec, cursor, present)
        deleted = [] if present is not None else [
            spec.id_prefix + object_id
            for spec in specs for object_id in self._archived(spec.object_type, cursor)
        ]
        empty = (specs[0].rows([], {}) if specs else
                 m.activity_frame("none", [], {}, _no_kind, None))[0]
        yield Page(empty, m.encode_watermark(m.Cursor(cursor.at)), deleted=tuple(deleted),
                   present_ids=frozenset(present) if present is not None else None)

    def pull_objects(
        self, spec: ObjectSpec, cursor: m.Cursor, present: set[str] | None = None
    ) -> Generator[Page, None, m.Cursor]:
        """Pages of one object type from ``cursor``; returns the cursor after its last record.

        Search pages (grouped per association call when the spec reads one) become one
        page each, with a watermark that resumes after its last record; the ids of every
        frame are added to ``present`` when it is given.
        """
        filters = ([m.gte(spec.modified, cursor.since)] if cursor.since is not None
                   else spec.full_filters())
        pages = self._search_pages(spec.object_type, filters, spec.requested(), cursor.after)
        for chunk in self._chunks(pages) if spec.association else pages:
            ids = [str(r["id"]) for r in chunk]
            links = (self._associated(spec.object_type, spec.association, ids)
                     if spec.association else {})
            frame, dropped = spec.rows(chunk, links)
            if present is not None:
                present.update(frame["_crm_id"])
            cursor = replace(cursor, after=ids[-1])
            merged = m.merged_ids(chunk)
            if spec.merges == "fold":
                yield Page(frame, m.encode_watermark(cursor), deleted=tuple(dropped),
                           merged=merged)
            else:
                yield Page(frame, m.encode_watermark(cursor),
                           deleted=(*dropped, *(spec.id_prefix + i for i in merged)))
        return cursor

    # -- watermarks ------------------------------------------------------------------------

    def _cursor(self, since: str | None) -> m.Cursor:
        now = m.to_ms(self.now())
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

    # -- search, associations, archived sweeps ---------------------------------------------

    def _search_pages(
        self, object_type: str, filters: Sequence[Filter], properties: Iterable[str],
        last_id: str | None,
    ) -> Iterator[list[JsonObject]]:
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
            results = m.search_results(data)
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
        pages: Iterable[list[JsonObject]], size: int = ASSOCIATION_BATCH
    ) -> Iterator[list[JsonObject]]:
        """Group search pages so one association call covers up to ``size`` records."""
        chunk: list[JsonObject] = []
        for page in pages:
            if chunk and len(chunk) + len(page) > size:
                yield chunk
                chunk = []
            chunk.extend(page)
        if chunk:
            yield chunk

    def _associated(
        self, from_type: str, to_type: str, ids: Sequence[str]
    ) -> dict[str, list[JsonObject]]:
        """Association targets for ``ids`` (v4 batch read, following per-id paging)."""
        found: dict[str, list[JsonObject]] = {}
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

    def _archived(self, object_type: str, cursor: m.Cursor) -> list[str]:
        """Ids archived (soft-deleted) since this pull's window began; all of them if full."""
        pager = AfterCursor(f"archived {object_type}")
        ids: list[str] = []
        while True:
            data = self.api.list_archived(object_type, pager.after)
            ids += m.archived_ids(data, cursor.since)
            if not pager.advance(data):
                return ids
