"""Write-back to lists: one MANUAL contact list per segment (Lists v3).

Targets: a segment's list is created with the segment's name, renamed when the name
changes, and never taken over from someone else -- a name clash is a
:class:`~connectors.errors.TargetConflict`. Two exceptions prove the list is segsync's
own: the engine recorded that it was creating the list and was stopped before it could
record the id (``adopt``), or a create whose first attempt's answer was lost met its own
list on the retry (a MANUAL contact list with the exact name, created after the call
began less ``overlap_seconds`` of clock skew).

Memberships change through ``add-and-remove``, removes first, in chunks of at most
``membership_batch_size`` ids; an answer saying a call carried too many ids (413, or a
400 saying so) halves the chunk for the rest of the run and the same ids are sent again.
Each id is reported only as HubSpot's answer proves it (segsync issue "exact CRM
state"; fact sheet 2026-12 update, 8):

* an add in ``recordsIdsAdded`` (sic) / a remove in ``recordIdsRemoved`` is done; an id
  in ``recordIdsMissing`` is ``gone``; an id an error names is ``failed`` (``gone`` for
  a NOT_FOUND error); an id in none of them is done (already in / already out) only
  while the answer carries no error -- with a 207 or any ``errors`` entry it is
  ``unknown``, because an error whose ``context.ids`` is empty or ``[""]`` may be about it
  (:func:`~connectors.hubspot.mapping.membership_change_outcomes`).
* an answer that arrived but cannot be read (truncated or malformed JSON, an HTML page
  with 200, JSON that is not an object) makes every id of that call ``unknown``; an
  answer that never came raises ``RetriesExhausted`` and the engine keeps the batch
  unknown. Auth, quota and other refusals still raise: nothing was done. A deleted list
  raises, saying how to restore it.

Unknown pairs are settled by the engine, by writing them again or by
:meth:`ListWriter.read_memberships` (``POST /crm/v3/lists/records/memberships/batch/
read``, 100 records a call, every list at once).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterator, Sequence

from connectors.base import Batch, MembershipRead, TargetRef, TargetSpec
from connectors.errors import ConnectorError, TargetConflict
from connectors.hubspot import mapping as m
from connectors.hubspot.api import Conflict, HubSpotApi, HubSpotError, NotFound
from connectors.hubspot.paging import AfterCursor
from connectors.hubspot.settings import HubSpotSettings

__all__ = ["RECORD_READ_BATCH", "ListWriter"]

log = logging.getLogger(__name__)

#: Records one memberships batch read covers (the endpoint's input maximum).
RECORD_READ_BATCH = 100


class ListWriter:
    """Contact lists as write-back targets: create, rename, add and remove, read back."""

    def __init__(
        self, api: HubSpotApi, settings: HubSpotSettings, now: Callable[[], dt.datetime]
    ) -> None:
        self.api = api
        self.settings = settings
        self.now = now
        #: Most ids one add-and-remove call carries: ``membership_batch_size``, halved for
        #: the rest of the run each time HubSpot answers that a call carried too many.
        self.chunk_size = settings.membership_batch_size

    def _attempts(self) -> int:
        return self.api.session.attempts

    def require(self) -> None:
        """Raise unless ``write_mode`` writes lists."""
        if not self.settings.writes_lists:
            raise ConnectorError(
                f'[crm].write_mode = "{self.settings.write_mode}" writes no lists; '
                "list targets are not available"
            )

    # -- targets -----------------------------------------------------------------------------

    def ensure_target(self, spec: TargetSpec, current: TargetRef | None, adopt: bool) -> TargetRef:
        self.require()
        if current is not None:
            if current.name == spec.name:
                return current
            return self._rename(spec, current)
        if adopt:
            found = self.api.find_list(spec.name)
            if found is not None:
                return self._adopt(spec, m.list_info(found))
        started, attempts = self.now(), self._attempts()
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
        list_id = m.list_info(created).list_id
        if list_id is None:
            raise ConnectorError(f"HubSpot created list {spec.name!r} but returned no listId")
        log.info("created HubSpot list %r (id %s)", spec.name, list_id)
        return TargetRef(list_id, spec.name)

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
        info = m.list_info(found) if found is not None else None
        earliest = m.to_ms(started) - self.settings.overlap_seconds * 1000
        if info is None or info.created_ms is None or info.created_ms < earliest:
            return None
        log.warning("HubSpot list %r was created by an attempt whose answer was lost; "
                    "using it", spec.name)
        return self._adopt(spec, info)

    def _adopt(self, spec: TargetSpec, found: m.ListInfo) -> TargetRef:
        """Take over the list a killed run created (exact name, MANUAL, contacts)."""
        if found.name != spec.name or not found.manual_contacts or found.list_id is None:
            raise self._conflict(spec.name)
        log.info("adopting HubSpot list %r (id %s) created by an interrupted run",
                 spec.name, found.list_id)
        return TargetRef(found.list_id, spec.name)

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

    def delete_target(self, target: TargetRef) -> None:
        """``segsync prune``: delete a list segsync created (gone already = deleted)."""
        self.api.delete_list(target.target_id)

    # -- memberships -------------------------------------------------------------------------

    def apply(self, target: TargetRef, batch: Batch) -> m.Outcomes:
        """Add and remove members; each id as HubSpot's answer proves it (module docstring).

        Raises when nothing was done (the list is gone, auth, quota, a refusal) or when
        no answer came (``RetriesExhausted``).
        """
        self.require()
        outcomes = m.Outcomes()
        if batch.adds or batch.removes:
            self._change(target, list(batch.adds), list(batch.removes), outcomes)
        return outcomes

    def _change(self, target: TargetRef, adds: list[str], removes: list[str],
                outcomes: m.Outcomes) -> None:
        size = len(adds) + len(removes)
        if size > self.chunk_size:  # keep every call within the cap (removes first)
            ops = [(False, i) for i in removes] + [(True, i) for i in adds]
            for start in range(0, size, self.chunk_size):
                part = ops[start:start + self.chunk_size]
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
                self.chunk_size = max(1, size // 2)
                self._change(target, adds, removes, outcomes)
                return
            raise
        if answer.body is None:
            log.warning("%s (%s); %d record(s) left unknown", answer.problem,
                        f"list {target.target_id}", size)
            outcomes.unreadable([*adds, *removes], answer.problem)
            return
        m.membership_change_outcomes(answer.status, answer.body, adds, removes, outcomes)

    def members(self, target: TargetRef) -> Iterator[str]:
        """The list's member ids, 250 a call."""
        self.require()
        pager = AfterCursor(f"members of list {target.target_id}")
        while True:
            try:
                data = self.api.memberships(target.target_id, pager.after)
            except NotFound:
                raise self._gone(target) from None
            yield from m.member_ids(data)
            if not pager.advance(data):
                return

    def read_memberships(
        self, targets: Sequence[TargetRef], record_ids: Sequence[str]
    ) -> MembershipRead:
        """Which of ``record_ids`` are in which of ``targets``, 100 records a call.

        One ``POST /crm/v3/lists/records/memberships/batch/read`` answers every list a
        record is in, so a record HubSpot lists is known in all asked targets at once; a
        record an OBJECT_NOT_FOUND error names is gone. Records an answer leaves out, and
        every record of a call whose answer cannot be read, stay unknown for a later
        run. Refusals (auth, quota, 4xx) raise, as does an answer that never came.
        ``api_calls`` is left for the caller to count.
        """
        self.require()
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
        return MembershipRead(frozenset(present), frozenset(known), frozenset(gone))


def _too_many(exc: HubSpotError) -> bool:
    """HubSpot refusing a chunk for its size (413, or a 400 saying so)."""
    text = str(exc).lower()
    return exc.status == 413 or (
        exc.status == 400 and any(w in text for w in ("too many", "maximum", "exceed"))
    )
