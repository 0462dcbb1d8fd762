"""Stateful in-process HubSpot emulator for segsync's end-to-end tests.

Usage::

    with HubSpotEmulator(token="pat-test-123") as hs:
        cid = hs.add_contact(email="a@example.com", lifecyclestage="customer")
        requests.get(f"{hs.base_url}/crm/v3/objects/contacts",
                     headers={"Authorization": "Bearer pat-test-123"})
        assert hs.count(method="GET") == 1

A stdlib ``ThreadingHTTPServer`` bound to 127.0.0.1 on an ephemeral port, served from a daemon
thread; all state sits behind one re-entrant lock. Shapes follow /work/shared/research/hubspot.md
and the model classes of hubspot-api-client 12 (request bodies are checked against the spec's
required fields unless ``strict_schema=False``).

Emulated (current APIs only; the sunset v1 lists/contacts endpoints answer 404):

* Auth: ``Authorization: Bearer`` private-app tokens; 401 ``INVALID_AUTHENTICATION`` /
  ``EXPIRED_AUTHENTICATION``. OAuth ``POST /oauth/v1/token`` (form-encoded ``refresh_token`` and
  ``authorization_code`` grants, 30-min access tokens on ``hs.clock``, ``hs.expire_tokens()``),
  introspection ``GET /oauth/v1/access-tokens/{token}`` and, for private apps,
  ``POST /oauth/v2/private-apps/get/access-token-info`` (HubSpot docs; not in the fact sheet).
  Scopes are enforced per endpoint (403 ``MISSING_SCOPES``) and configurable.
* CRM objects v3 (contacts, companies, deals, calls, emails, meetings, notes, tasks; names or
  ``0-x`` ids): ``GET /crm/v3/objects/{t}`` (limit<=100, opaque ``after``, ``properties``,
  ``propertiesWithHistory``, ``associations``, ``archived=true`` = archived only),
  ``GET .../{id}`` (``idProperty``), ``POST .../batch/read`` (100), ``POST .../batch/update``
  (100; 200, or 207 with ``OBJECT_NOT_FOUND`` errors; invalid values fail the batch with 400),
  ``POST .../search`` (filterGroups with EQ NEQ LT LTE GT GTE BETWEEN IN NOT_IN HAS_PROPERTY
  NOT_HAS_PROPERTY CONTAINS_TOKEN NOT_CONTAINS_TOKEN and ``associations.<type>``; object or
  string ``sorts``; ``query``; limit<=200; group/filter caps 5/10/25; ``after`` = stringified
  offset; ``after`` >= 10,000 answers 400; dates compared as epoch ms).
* Associations v4: ``POST /crm/v4/associations/{from}/{to}/batch/read`` (1,000 inputs, per-input
  ``after`` paging, inputs without associations come back as 207 errors),
  ``GET /crm/v4/objects/{from}/{id}/associations/{to}`` (limit<=500), ``GET .../labels``.
* Lists v3: create (MANUAL/SNAPSHOT/DYNAMIC, case-insensitive unique name -> 409), get by id /
  ids / name, search (offset paging), rename, delete/restore, memberships add / remove /
  add-and-remove (``recordsIdsAdded`` sic, ``recordIdsRemoved``, ``recordIdsMissing``; DYNAMIC
  lists refused; configurable per-call id cap), clear, paged reads (limit<=250, after/before),
  join-order reads, a record's lists, and ``POST /crm/v3/lists/records/memberships/batch/read``
  (scope ``crm.lists.read``; ``{"inputs": [{"objectTypeId", "recordId"}]}`` validated as the
  Lists v3 spec's ``BatchInputRecordIdInput``, at most 100 inputs -> 400 above; answers
  ``BatchResponseRecordIdWithMemberships`` with ``firstAddedTimestamp`` /
  ``lastAddedTimestamp`` per list, 207 with an OBJECT_NOT_FOUND error for unknown ids).
* Properties v3 (any object type): list/get/create/PATCH (options list replaced)/archive,
  property groups list/get/create; enumeration values validated on write (``;``-joined for
  checkboxes). Deal pipelines: ``GET /crm/v3/pipelines/deals`` (default stages).
* Limits: rolling 100 requests / 10 s, search 5 / s, optional daily cap, answered with 429 and
  HubSpot's body (``policyName`` TEN_SECONDLY_ROLLING / SECONDLY / DAILY), optional Retry-After,
  ``X-HubSpot-RateLimit-*`` headers on non-search responses; windows scale with ``time_scale``.
* Faults (``hs.inject(Fault(...))``): status codes, 429 by policy, expired token, delay, cut
  connection, malformed JSON, HTML error page, partial failures (batch 207 / missing list ids),
  empty results (a permission change hiding every record). Post-commit loss on any endpoint
  -- the request is processed, then its answer is lost: ``status`` / ``html`` /
  ``malformed_json`` with ``reach=True`` (a 502/503/504 or a truncated body after the
  commit), ``delay`` (late answer; ``hold=`` an Event instead of real seconds),
  ``disconnect`` (cut mid-body; ``abort=True`` resets the connection before any byte).
  ``Fault.reached`` is set once a request it fired on was processed, and every recorded
  request says whether it was ``processed``. ``unattributed``: batch update / list
  memberships answer 207 with an error whose ``context.ids`` is ``[""]`` or ``[]``
  (``context_ids=``) while the affected ids (``ids=``, default all) are written or not
  (``applied=``) and left out of ``results[]`` / all three membership arrays.
  ``short_page``: a search page with fewer results than ``limit`` (``keep=``) that still
  carries ``paging.next.after`` while more records match (fact sheet 2026-12 update, 8).
* Merges (seeding API ``merge_objects`` / ``merge_contacts``): the primary keeps its id, gains
  ``hs_merged_object_ids``, a new modified date and the absorbed record's associations
  (hence its activity); the absorbed id is no record any more (reads redirect, list writes
  and the memberships batch read call it missing). Its static list memberships move to the
  primary or are dropped -- unverified in HubSpot (fact sheet 2026-12 update, 7), so both
  are emulated: ``HubSpotEmulator(merge_memberships="move"|"drop")`` or per merge.
* Observability: every request recorded; ``count``, ``write_requests``, ``requests_to``,
  ``foreign_writes`` (writes touching lists/properties seeded as not segsync's), rate stats.

Deliberately not emulated: search-index lag (writes are immediately searchable), create /
upsert / archive / merge / GDPR-delete over HTTP (use the seeding API; segsync never
merges or deletes records), date-versioned
(``/crm/objects/2026-03``) paths, OAuth v3, custom objects, ticket/product/line-item types,
list filters evaluation (DYNAMIC lists never change), the list-count caps per tier, daily quota
reset at midnight, webhooks, exports/imports, v4 association writes, ``hs_lastmodifieddate`` on
contacts (not maintained: only ``lastmodifieddate`` moves, modelling fact-sheet pitfall 2).
Assumptions marked in the code as such (e.g. NEQ matching records without a value, 423/5xx body
text, associations ``toObjectId`` rendered as a string like the fact sheet) are unverified.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from types import TracebackType
from typing import Any, Self

from tests.emulators.hubspot_control import (
    Fault,
    FaultBook,
    FaultKind,
    RateLimitConfig,
    RateLimiter,
    RateStats,
    RecordedRequest,
)
from tests.emulators.hubspot_model import OBJECT_TYPE_IDS, Clock, ForeignWrite, PropertyGroup
from tests.emulators.hubspot_routes import ApiLimits
from tests.emulators.hubspot_search import SearchLimits
from tests.emulators.hubspot_server import DEFAULT_SCOPES, AuthStore, HttpFrontend, HubSpotApp
from tests.emulators.hubspot_state import MERGE_MEMBERSHIPS, HubSpotState

__all__ = [
    "DEFAULT_SCOPES",
    "ApiLimits",
    "Clock",
    "Fault",
    "FaultKind",
    "ForeignWrite",
    "HubSpotEmulator",
    "RateLimitConfig",
    "RateStats",
    "RecordedRequest",
    "SearchLimits",
]

PropValue = str | int | float | bool | datetime | None


class HubSpotEmulator:
    """In-process HubSpot portal with an HTTP front end; see the module docstring."""

    def __init__(
        self,
        token: str = "pat-test-123",
        *,
        scopes: Iterable[str] | None = None,
        clock: Clock | None = None,
        rate_limits: RateLimitConfig | None = None,
        limits: ApiLimits | None = None,
        strict_schema: bool = True,
        oauth_client_id: str = "test-client-id",
        oauth_client_secret: str = "test-client-secret",
        refresh_token: str = "test-refresh-token",
        access_token_ttl: int = 1800,
        portal_id: int = 123456,
        app_id: int = 987654,
        monotonic: Callable[[], float] = time.monotonic,
        merge_memberships: str = "move",
    ) -> None:
        """``merge_memberships``: what a merge does with the absorbed record's static list
        memberships, "move" (to the primary) or "drop" (unverified in HubSpot)."""
        grant = frozenset(scopes) if scopes is not None else DEFAULT_SCOPES
        self.token = token
        self.state = HubSpotState(clock or Clock())
        if merge_memberships not in MERGE_MEMBERSHIPS:
            raise ValueError(
                f"merge_memberships must be one of {MERGE_MEMBERSHIPS}, got {merge_memberships!r}"
            )
        self.state.merge_memberships = merge_memberships
        self.auth = AuthStore(
            private_tokens={token: grant},
            client_id=oauth_client_id,
            client_secret=oauth_client_secret,
            refresh_tokens={refresh_token: grant},
            access_token_ttl=access_token_ttl,
        )
        self.rate_limits = rate_limits or RateLimitConfig()
        self.limiter = RateLimiter(self.rate_limits, monotonic)
        self.faults = FaultBook()
        self.app = HubSpotApp(
            self.state,
            self.auth,
            self.limiter,
            self.faults,
            limits=limits or ApiLimits(),
            strict=strict_schema,
            portal_id=portal_id,
            app_id=app_id,
        )
        self._frontend = HttpFrontend(self.app)
        self.base_url = ""

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> Self:
        if not self.base_url:
            self.base_url = self._frontend.start()
            self.app.base_url = self.base_url
        return self

    def stop(self) -> None:
        self._frontend.stop()
        self.base_url = ""

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def clock(self) -> Clock:
        return self.state.clock

    @clock.setter
    def clock(self, value: Clock) -> None:
        with self.state.lock:
            self.state.clock = value

    # ------------------------------------------------------------------ seeding: records

    def add_object(
        self,
        object_type: str,
        properties: Mapping[str, PropValue] | None = None,
        *,
        object_id: str | None = None,
        created_at: datetime | None = None,
        **props: PropValue,
    ) -> str:
        """Create a record (bypassing API validation); returns its id."""
        with self.state.lock:
            record = self.state.create_record(
                _check_type(object_type),
                {**(properties or {}), **props},
                object_id=object_id,
                created_at=created_at,
            )
            return record.object_id

    def add_contact(
        self,
        properties: Mapping[str, PropValue] | None = None,
        *,
        object_id: str | None = None,
        created_at: datetime | None = None,
        **props: PropValue,
    ) -> str:
        return self.add_object(
            "contacts", properties, object_id=object_id, created_at=created_at, **props
        )

    def add_company(
        self,
        properties: Mapping[str, PropValue] | None = None,
        *,
        object_id: str | None = None,
        created_at: datetime | None = None,
        **props: PropValue,
    ) -> str:
        return self.add_object(
            "companies", properties, object_id=object_id, created_at=created_at, **props
        )

    def add_deal(
        self,
        properties: Mapping[str, PropValue] | None = None,
        *,
        object_id: str | None = None,
        created_at: datetime | None = None,
        **props: PropValue,
    ) -> str:
        """Deals get ``hs_is_closed_won`` / ``hs_is_closed`` derived from ``dealstage``."""
        return self.add_object(
            "deals", properties, object_id=object_id, created_at=created_at, **props
        )

    def add_engagement(
        self,
        kind: str,
        properties: Mapping[str, PropValue] | None = None,
        *,
        object_id: str | None = None,
        created_at: datetime | None = None,
        **props: PropValue,
    ) -> str:
        """``kind`` is calls / emails / meetings / notes / tasks (``hs_timestamp`` etc. in props)."""
        return self.add_object(
            kind, properties, object_id=object_id, created_at=created_at, **props
        )

    def update_object(
        self,
        object_type: str,
        object_id: str,
        properties: Mapping[str, PropValue] | None = None,
        **props: PropValue,
    ) -> None:
        """Set properties ("" clears) and bump the modified timestamp from ``hs.clock``."""
        with self.state.lock:
            record = self.state.require_record(_check_type(object_type), object_id)
            self.state.update_record(record, {**(properties or {}), **props})

    def update_contact(
        self, object_id: str, properties: Mapping[str, PropValue] | None = None, **props: PropValue
    ) -> None:
        self.update_object("contacts", object_id, properties, **props)

    def archive_object(self, object_type: str, object_id: str) -> None:
        """Archive (soft-delete): modified date untouched, list memberships dropped."""
        with self.state.lock:
            self.state.archive(self.state.require_record(_check_type(object_type), object_id))

    def archive_contact(self, object_id: str) -> None:
        self.archive_object("contacts", object_id)

    def restore_object(self, object_type: str, object_id: str) -> None:
        with self.state.lock:
            self.state.restore(self.state.require_record(_check_type(object_type), object_id))

    def merge_objects(
        self,
        object_type: str,
        primary_id: str,
        absorbed_id: str,
        *,
        memberships: str | None = None,
    ) -> None:
        """Survivor gains ``hs_merged_object_ids``, a new modified date and the absorbed
        record's associations; the absorbed id vanishes (no archive entry) and reads of it
        redirect to the survivor. Its list memberships move to the survivor or are dropped
        (``memberships`` "move"/"drop", default the emulator's ``merge_memberships``)."""
        with self.state.lock:
            self.state.merge(
                _check_type(object_type), primary_id, absorbed_id, memberships=memberships
            )

    def merge_contacts(
        self, primary_id: str, absorbed_id: str, *, memberships: str | None = None
    ) -> None:
        self.merge_objects("contacts", primary_id, absorbed_id, memberships=memberships)

    def associate(
        self,
        from_type: str,
        from_id: str,
        to_type: str,
        to_id: str,
        *,
        type_id: int | None = None,
        reverse_type_id: int | None = None,
        label: str | None = None,
        category: str = "HUBSPOT_DEFINED",
    ) -> None:
        """Associate both directions (default HUBSPOT_DEFINED type ids unless given)."""
        with self.state.lock:
            self.state.associate(
                _check_type(from_type),
                from_id,
                _check_type(to_type),
                to_id,
                type_id=type_id,
                reverse_type_id=reverse_type_id,
                label=label,
                category=category,
            )

    # ------------------------------------------------------------------ seeding: lists, properties

    def add_list(
        self,
        name: str,
        *,
        members: Iterable[str] = (),
        processing_type: str = "MANUAL",
        object_type_id: str = "0-1",
        foreign: bool = True,
        list_id: str | None = None,
    ) -> str:
        """Seed an existing list. ``foreign=True`` marks it as not created by segsync: any write
        request touching it is recorded in ``foreign_writes()``."""
        with self.state.lock:
            lst = self.state.create_list(
                name,
                object_type_id=object_type_id,
                processing_type=processing_type,
                foreign=foreign,
                members=members,
                list_id=list_id,
            )
            return lst.list_id

    def define_property(
        self,
        name: str,
        *,
        object_type: str = "contacts",
        label: str | None = None,
        type: str = "string",
        field_type: str = "text",
        group_name: str | None = None,
        options: Iterable[Mapping[str, Any]] | None = None,
        description: str = "",
        foreign: bool = True,
    ) -> None:
        """Seed a property definition, e.g. a pre-existing multi-checkbox
        (``type="enumeration", field_type="checkbox", options=[{"label":..,"value":..}]``)."""
        with self.state.lock:
            self.state.define_property(
                _check_type(object_type),
                name,
                label=label,
                type=type,
                field_type=field_type,
                group_name=group_name,
                options=options,
                description=description,
                foreign=foreign,
            )

    def add_property_group(
        self, name: str, label: str | None = None, *, object_type: str = "contacts"
    ) -> None:
        with self.state.lock:
            self.state.groups[_check_type(object_type)][name] = PropertyGroup(name, label or name)

    # ------------------------------------------------------------------ inspection

    def get_object(
        self, object_type: str, object_id: str, *, include_archived: bool = True
    ) -> dict[str, Any] | None:
        """Snapshot of a record (follows merge redirects) or None."""
        with self.state.lock:
            record = self.state.get_record(
                _check_type(object_type), object_id, archived=None if include_archived else False
            )
            return record.snapshot() if record is not None else None

    def contact(self, object_id: str) -> dict[str, Any] | None:
        return self.get_object("contacts", object_id)

    def objects(self, object_type: str, *, archived: bool = False) -> list[dict[str, Any]]:
        with self.state.lock:
            ot = _check_type(object_type)
            records = self.state.archived_records(ot) if archived else self.state.live_records(ot)
            return [r.snapshot() for r in records]

    def list_members(self, list_id: str) -> list[str]:
        """Member ids in join order."""
        with self.state.lock:
            return list(self.state.lists[list_id].members)

    def get_list(self, list_id: str) -> dict[str, Any] | None:
        """List JSON (plus ``foreign``), including deleted lists (``deletedAt`` set)."""
        with self.state.lock:
            lst = self.state.lists.get(list_id)
            return None if lst is None else {**lst.to_json(), "foreign": lst.foreign}

    def find_list(self, name: str, object_type_id: str = "0-1") -> dict[str, Any] | None:
        with self.state.lock:
            lst = self.state.find_list_by_name(name, object_type_id)
            return None if lst is None else {**lst.to_json(), "foreign": lst.foreign}

    def lists(self, *, include_deleted: bool = False) -> list[dict[str, Any]]:
        with self.state.lock:
            return [
                {**lst.to_json(), "foreign": lst.foreign}
                for lst in self.state.lists.values()
                if include_deleted or lst.deleted_at is None
            ]

    def get_property(self, name: str, object_type: str = "contacts") -> dict[str, Any] | None:
        with self.state.lock:
            prop = self.state.properties[_check_type(object_type)].get(name)
            return None if prop is None else prop.snapshot()

    # ------------------------------------------------------------------ auth controls

    def set_scopes(self, scopes: Iterable[str], *, token: str | None = None) -> None:
        """Replace the scopes of a private token (default: the main one)."""
        with self.state.lock:
            self.auth.private_tokens[token or self.token] = frozenset(scopes)

    def add_private_token(self, token: str, scopes: Iterable[str] | None = None) -> None:
        with self.state.lock:
            self.auth.private_tokens[token] = (
                frozenset(scopes) if scopes is not None else DEFAULT_SCOPES
            )

    def revoke_private_token(self, token: str) -> None:
        with self.state.lock:
            self.auth.private_tokens.pop(token, None)

    def add_refresh_token(self, refresh_token: str, scopes: Iterable[str] | None = None) -> None:
        with self.state.lock:
            self.auth.refresh_tokens[refresh_token] = (
                frozenset(scopes) if scopes is not None else DEFAULT_SCOPES
            )

    def add_auth_code(self, code: str, scopes: Iterable[str] | None = None) -> None:
        with self.state.lock:
            self.auth.auth_codes[code] = frozenset(scopes) if scopes is not None else DEFAULT_SCOPES

    def expire_tokens(self) -> int:
        """Expire every issued OAuth access token now (per ``hs.clock``); returns how many."""
        with self.state.lock:
            past = self.state.clock.now()
            for info in self.auth.oauth_tokens.values():
                info.expires_at = min(info.expires_at, past)
            return len(self.auth.oauth_tokens)

    def oauth_access_tokens(self) -> list[str]:
        with self.state.lock:
            return list(self.auth.oauth_tokens)

    # ------------------------------------------------------------------ faults & limits

    def inject(self, fault: Fault) -> Fault:
        """Add a fault rule (first matching eligible rule fires); returns it (see ``.fired``)."""
        with self.state.lock:
            return self.faults.add(fault)

    def clear_faults(self) -> None:
        with self.state.lock:
            self.faults.clear()

    @property
    def rate_stats(self) -> RateStats:
        return self.limiter.stats

    def count_429(self) -> int:
        """All 429s served (limiter + injected)."""
        return self.count(status=429)

    # ------------------------------------------------------------------ request log

    @property
    def requests(self) -> list[RecordedRequest]:
        with self.state.lock:
            return list(self.app.log)

    def count(
        self, method: str | None = None, path_prefix: str | None = None, status: int | None = None
    ) -> int:
        return len(
            [
                r
                for r in self.requests
                if (method is None or r.method == method.upper())
                and (path_prefix is None or r.path.startswith(path_prefix))
                and (status is None or r.status == status)
            ]
        )

    def write_requests(self) -> list[RecordedRequest]:
        """PUT/PATCH/DELETE and POSTs other than search / batch read / OAuth."""
        return [r for r in self.requests if r.is_write]

    def requests_to(self, list_id: str) -> list[RecordedRequest]:
        """Requests addressed to one list (``/crm/v3/lists/{list_id}`` and below)."""
        prefix = f"/crm/v3/lists/{list_id}"
        return [r for r in self.requests if r.path == prefix or r.path.startswith(prefix + "/")]

    def foreign_writes(self, kind: str | None = None) -> list[ForeignWrite]:
        """Writes touching lists/properties seeded as foreign (segsync must leave these at zero)."""
        with self.state.lock:
            return [w for w in self.state.foreign_writes if kind is None or w.kind == kind]

    @property
    def internal_errors(self) -> list[str]:
        """Tracebacks of emulator bugs (answered as 500); tests should assert this is empty."""
        with self.state.lock:
            return list(self.app.internal_errors)

    def reset_requests(self) -> None:
        with self.state.lock:
            self.app.log.clear()


def _check_type(object_type: str) -> str:
    if object_type not in OBJECT_TYPE_IDS:
        raise ValueError(
            f"unknown object type {object_type!r}; use one of {sorted(OBJECT_TYPE_IDS)}"
        )
    return object_type
