"""Write-back: one Campaign per segment with CampaignMembers, and/or a multi-select picklist.

How a :class:`connectors.base.Batch` (at most 200 people) maps to calls:

* removes -> one SOQL query for those people's CampaignMember ids in this campaign
  (``ContactId IN (...) OR LeadId IN (...)``), then one ``DELETE composite/sobjects?ids=``
  per 200 member ids (normally one);
* adds -> one ``POST composite/sobjects`` with up to 200 CampaignMember records.

So a batch costs 1 call (adds only), 2 (removes only) or 3 (both). Removes run before
adds, so a lead converted into a contact (whose member row now carries both ids) is
removed and then re-added as the contact within one plan.

Only what an answer proves is reported (segsync's "exact CRM state" rule): a Salesforce
write can commit and still reach us as a reset, a 5xx or a truncated body, so a person
counts as done only when a parsed result item says so:

* done: ``success: true``; ``DUPLICATE_VALUE`` on an insert (already a member);
  ``ENTITY_IS_DELETED`` / ``INVALID_CROSS_REFERENCE_KEY`` on a member delete (already
  gone); a remove whose lookup found no member row; for the picklist, ``success: true``.
* gone (``BatchResult.gone``): the person no longer exists as such -- a PERSON_GONE code
  naming ContactId/LeadId on an insert (the Id itself on a field update), or
  ``CANNOT_UPDATE_CONVERTED_LEAD``. The next pull drops or folds them.
* failed: any other per-record error (the state is as before; the next run retries), and
  ``UNABLE_TO_LOCK_ROW`` once :data:`LOCK_RETRIES` in-run retries with exponential backoff
  and jitter are spent. A remove whose member lookup could not be read is failed too: no
  DELETE was sent, so nothing changed.
* unknown (``BatchResult.unknown``, with the reason): every person of a call whose answer
  arrived but cannot be read (invalid/truncated JSON, an HTML page with status 200, a
  result count that does not match the records sent). Earlier calls of the batch keep
  their proven outcomes; for a lock retry only the resent rows become unknown.

A call that got no answer at all (the session's retries exhausted: ``RetriableAPIError``)
raises, as do answers meaning nothing was done (auth, quota, a 4xx on the whole request)
and a deleted campaign; the engine, which recorded the batch as intended before sending
it, keeps such a batch unknown itself.

:meth:`Writer.read_memberships` reads chosen (campaign, person) pairs back, one SOQL query
per 200 people, so the engine can settle unknown pairs without reading whole campaigns.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar, cast

import pandas as pd

from connectors.base import Batch, MembershipRead, TargetRef, TargetSpec
from connectors.errors import ConnectorError, RetriableAPIError, TargetConflict
from connectors.salesforce import soql
from connectors.salesforce.client import SalesforceClient
from connectors.salesforce.mapping import (
    PERSON_FIELDS,
    PERSON_GONE,
    Outcome,
    UnreadableAnswer,
    collection_outcomes,
)
from connectors.salesforce.settings import (
    CAMPAIGN_NAME_MAX,
    COLLECTION_LIMIT,
    SOQL_IDS_PER_QUERY,
    SalesforceSettings,
)
from connectors.salesforce.streams import use_bulk

__all__ = ["LOCK_RETRIES", "Tally", "Writer", "campaign_name", "person_object"]

log = logging.getLogger("segsync.salesforce")

T = TypeVar("T")
#: In-run retries of rows that failed with UNABLE_TO_LOCK_ROW (after the first attempt).
LOCK_RETRIES = 3
LOCK_BASE_DELAY = 1.0
LOCK_JITTER = 1.0
_PREFIXES = {"003": "Contact", "00Q": "Lead"}
#: Codes on a member delete meaning the row is already gone: the goal of a remove.
ALREADY_DELETED = frozenset({"ENTITY_IS_DELETED", "INVALID_CROSS_REFERENCE_KEY"})
NOT_A_PERSON = "not a Contact (003...) or Lead (00Q...) id"


def person_object(person_id: str) -> str | None:
    """Contact or Lead, from the id's key prefix (None for anything else)."""
    return _PREFIXES.get(person_id[:3])


def campaign_name(name: str) -> str:
    """Campaign.Name holds 80 characters; longer names are cut with an ellipsis."""
    return name if len(name) <= CAMPAIGN_NAME_MAX else name[: CAMPAIGN_NAME_MAX - 1] + "…"


@dataclass
class Tally:
    """What the answers of one ``apply`` or ``write_field`` proved, per person.

    A person is in at most one of ``failed``, ``unknown`` and ``gone``; everyone else of
    the batch is done.
    """

    failed: dict[str, str] = field(default_factory=dict)
    unknown: dict[str, str] = field(default_factory=dict)
    gone: set[str] = field(default_factory=set)


@dataclass
class Sent(Generic[T]):
    """The rows of one logical write after lock retries: outcomes the answers proved, and
    the rows whose (last) answer could not be read, with the reason."""

    proven: list[tuple[T, Outcome]]
    unread: list[T] = field(default_factory=list)
    reason: str = ""


_State = Literal["done", "failed", "unknown"]
_RANK: dict[str, int] = {"done": 0, "failed": 1, "unknown": 2}


@dataclass
class FieldCheck:
    """What an admin must fix before the picklist can be written, and softer warnings."""

    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    values: set[str] = field(default_factory=set)


class Writer:
    """Campaign and picklist writes over a :class:`SalesforceClient`."""

    def __init__(
        self,
        client: SalesforceClient,
        settings: SalesforceSettings,
        *,
        sleep: Callable[[float], None],
        rng: random.Random,
        before_write: Callable[[], None],
        bulk: Callable[[str, Sequence[str]], Iterator[pd.DataFrame]] | None = None,
    ) -> None:
        self.client = client
        self.settings = settings
        self.sleep = sleep
        self.rng = rng
        self.before_write = before_write
        #: Reads a query through Bulk API 2.0 (frames of ``columns``); None: REST only.
        self.bulk = bulk
        #: People skipped because they no longer exist (for logs and tests).
        self.gone: set[str] = set()

    # -- campaigns -----------------------------------------------------------------------

    def _campaigns_named(self, name: str) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        for page in self.client.query_pages(soql.campaign_by_name(name), what="query Campaign"):
            rows.extend(page.records)
        return rows

    def ensure_campaign(self, spec: TargetSpec, current: TargetRef | None, adopt: bool
                        ) -> TargetRef:
        name = campaign_name(spec.name)
        same_name = [c for c in self._campaigns_named(name)
                     if current is None or c.get("Id") != current.target_id]
        if same_name and not (adopt and current is None):
            raise TargetConflict(
                f"a Campaign named {name!r} already exists in Salesforce "
                f"({same_name[0].get('Id')}) and segsync did not create it; rename or delete "
                "that campaign, or change the segment's name or [crm].name_prefix"
            )
        if current is None and same_name:  # adopt: created by a run stopped before recording it
            return TargetRef(str(same_name[0]["Id"]), spec.name)
        self.before_write()
        if current is not None:
            try:
                self.client.rest("PATCH", f"sobjects/Campaign/{current.target_id}",
                                 json={"Name": name})
            except ConnectorError as exc:
                if self.client.last_error_code in ("NOT_FOUND", "ENTITY_IS_DELETED"):
                    raise ConnectorError(
                        f"the Campaign segsync created for {spec.key!r} ({current.target_id}) "
                        "was deleted in Salesforce; restore it from the recycle bin, or remove "
                        "the segment's target from the store to create a new one"
                    ) from exc
                raise
            return TargetRef(current.target_id, spec.name)
        return TargetRef(self._create_campaign(name, spec.key), spec.name)

    def _create_campaign(self, name: str, key: str) -> str:
        body = {
            "Name": name,
            "IsActive": True,
            "Description": f"Managed by segsync (segment '{key}'): members are rewritten on "
                           "every sync; edits made here are undone.",
        }
        try:
            created = self.client.rest("POST", "sobjects/Campaign/", json=body, once=True)
        except RetriableAPIError:
            # The create may have reached Salesforce before the connection failed: look first,
            # so a retry never makes a second campaign.
            found = self._campaigns_named(name)
            if found:
                return str(found[0]["Id"])
            created = self.client.rest("POST", "sobjects/Campaign/", json=body)
        campaign_id = (created or {}).get("id")
        if not campaign_id:
            raise ConnectorError(f"Salesforce did not return an id for the new Campaign {name!r}")
        log.info("created Campaign %s (%s)", name, campaign_id)
        return str(campaign_id)

    def members(self, target: TargetRef) -> Iterator[str]:
        """The campaign's people: REST pages of 2,000, or -- when the first page shows a
        campaign above ``bulk_threshold`` for which it saves calls -- one Bulk API 2.0 job
        for all of them (create, poll, one download per 100,000), as a first pull does."""
        query = soql.member_persons(target.target_id)
        pages = self.client.query_pages(query, what="query CampaignMember")
        seen: set[str] = set()
        read = 0
        for page in pages:
            read += len(page.records)
            yield from _people(page.records, seen)
            if self.bulk is not None and read < page.total_size and use_bulk(
                    page.total_size, read, self.settings.bulk_threshold, len(page.records)):
                close = getattr(pages, "close", None)
                if close is not None:
                    close()
                for frame in self.bulk(query, ["ContactId", "LeadId"]):
                    yield from _people(cast(list[dict[str, Any]], frame.to_dict("records")), seen)
                return

    def apply(self, target: TargetRef, batch: Batch) -> Tally:
        """Apply one batch (removes first); see the module docstring for the outcomes."""
        tally = Tally()
        removes = list(dict.fromkeys(batch.removes))
        removing = set(removes)
        adds = [i for i in dict.fromkeys(batch.adds) if i not in removing]
        for person in [*removes, *adds]:
            if person_object(person) is None:
                tally.failed[person] = NOT_A_PERSON
        removes = [p for p in removes if p not in tally.failed]
        adds = [p for p in adds if p not in tally.failed]
        if removes:
            self.before_write()
            self._remove(target, removes, tally)
        if adds:
            self.before_write()
            self._add(target, adds, tally)
        return tally

    def _remove(self, target: TargetRef, people: Sequence[str], tally: Tally) -> None:
        contacts = [p for p in people if person_object(p) == "Contact"]
        leads = [p for p in people if person_object(p) == "Lead"]
        wanted = set(people)
        # member id -> the asked people it stands for (a converted lead's row is both the
        # lead's and the contact's membership)
        rows: dict[str, set[str]] = {}
        query = soql.member_rows(target.target_id, contacts, leads)
        try:
            for page in self.client.query_pages(query, what="query CampaignMember",
                                                unreadable=UnreadableAnswer):
                for row in page.records:
                    matched = {str(v) for v in (row.get("ContactId"), row.get("LeadId"))
                               if v and str(v) in wanted}
                    if matched:
                        rows.setdefault(str(row["Id"]), set()).update(matched)
        except UnreadableAnswer as exc:
            reason = f"nothing was deleted: the member lookup could not be read ({exc})"
            log.warning("Campaign %s: %s", target.target_id, reason)
            tally.failed.update(dict.fromkeys(people, reason))
            return
        # Absent people (no row) are done; a person with several rows is only as done as
        # the least certain of them.
        states: dict[str, tuple[_State, str]] = {}

        def settle(member_id: str, state: _State, reason: str) -> None:
            for person in rows[member_id]:
                if _RANK[state] > _RANK[states.get(person, ("done", ""))[0]]:
                    states[person] = (state, reason)

        for chunk in _chunks(sorted(rows), COLLECTION_LIMIT):
            sent = self._with_lock_retries(chunk, self._delete_members)
            for member_id, outcome in sent.proven:
                if outcome.ok or outcome.code in ALREADY_DELETED:
                    continue  # deleted now, or already gone: the goal of a remove
                settle(member_id, "failed", outcome.reason)
            for member_id in sent.unread:
                settle(member_id, "unknown", f"the member may or may not be deleted: "
                                             f"{sent.reason}")
        for person, (state, reason) in states.items():
            (tally.unknown if state == "unknown" else tally.failed)[person] = reason

    def _delete_members(self, member_ids: list[str]) -> list[Outcome]:
        results = self.client.rest("DELETE", "composite/sobjects",
                                   params={"ids": ",".join(member_ids), "allOrNone": "false"},
                                   unreadable=UnreadableAnswer)
        return collection_outcomes(len(member_ids), results)

    def _add(self, target: TargetRef, people: Sequence[str], tally: Tally) -> None:
        for chunk in _chunks(list(people), COLLECTION_LIMIT):

            def send(batch: list[str]) -> list[Outcome]:
                records = [{"attributes": {"type": "CampaignMember"},
                            "CampaignId": target.target_id,
                            ("LeadId" if person_object(p) == "Lead" else "ContactId"): p}
                           for p in batch]
                results = self.client.rest("POST", "composite/sobjects",
                                           json={"allOrNone": False, "records": records},
                                           unreadable=UnreadableAnswer)
                return collection_outcomes(len(batch), results)

            sent = self._with_lock_retries(chunk, send)
            for person, outcome in sent.proven:
                if outcome.ok or outcome.code == "DUPLICATE_VALUE":
                    continue  # added now, or already a member
                if outcome.code in PERSON_GONE and "CampaignId" in outcome.fields:
                    raise ConnectorError(
                        f"the Campaign {target.name!r} ({target.target_id}) is gone from "
                        f"Salesforce ({outcome.reason}); restore it from the recycle bin"
                    )
                if self._person_gone(person, outcome):
                    tally.gone.add(person)
                    continue
                tally.failed[person] = outcome.reason
            for person in sent.unread:
                tally.unknown[person] = f"the member may or may not be added: {sent.reason}"

    def read_memberships(self, targets: Sequence[TargetRef], record_ids: Sequence[str]
                         ) -> MembershipRead:
        """Live (campaign, person) pairs of these people in these campaigns.

        One query per :data:`SOQL_IDS_PER_QUERY` people (and per as many campaigns),
        following ``nextRecordsUrl``. A row matches an asked person through ContactId or
        LeadId: a converted lead's row carries both, and both ids are members. People
        whose every query was answered are ``known``; an unreadable answer leaves its
        people unknown (the other queries still count). Ids that are not Contacts or
        Leads cannot be members: they are ``gone``. ``api_calls`` is left to the caller.
        """
        people = list(dict.fromkeys(record_ids))
        gone = frozenset(p for p in people if person_object(p) is None)
        asked = [p for p in people if p not in gone]
        campaigns = list(dict.fromkeys(t.target_id for t in targets))
        if not campaigns:
            return MembershipRead(known=frozenset(asked), gone=gone)
        present: set[tuple[str, str]] = set()
        known: set[str] = set()
        for chunk in _chunks(asked, SOQL_IDS_PER_QUERY):
            wanted = set(chunk)
            contacts = [p for p in chunk if person_object(p) == "Contact"]
            leads = [p for p in chunk if person_object(p) == "Lead"]
            try:
                for some in _chunks(campaigns, SOQL_IDS_PER_QUERY):
                    query = soql.memberships(some, contacts, leads)
                    for page in self.client.query_pages(query, what="query CampaignMember",
                                                        unreadable=UnreadableAnswer):
                        for row in page.records:
                            campaign = str(row.get("CampaignId") or "")
                            for key in ("ContactId", "LeadId"):
                                value = row.get(key)
                                if value and str(value) in wanted:
                                    present.add((campaign, str(value)))
            except UnreadableAnswer as exc:
                log.warning("reading %d people's campaign memberships: %s; they stay "
                            "unknown", len(chunk), exc)
                continue
            known.update(chunk)
        return MembershipRead(frozenset(present), frozenset(known), gone)

    def _person_gone(self, person: str, outcome: Outcome, *, direct: bool = False) -> bool:
        """Deleted, merged-away or converted people: reported gone, the next pull drops them.

        ``direct`` is true when the failing record *is* the person (a field update); for a
        CampaignMember insert the error must name the ContactId/LeadId field, otherwise it
        might be about the campaign and is reported as a failure instead.
        """
        if outcome.code not in PERSON_GONE:
            return False
        if not direct and outcome.code != "CANNOT_UPDATE_CONVERTED_LEAD" and not (
                set(outcome.fields) & PERSON_FIELDS):
            return False
        log.info("%s is gone: %s (it leaves the store on the next pull)", person, outcome.reason)
        self.gone.add(person)
        return True

    def _with_lock_retries(
        self, items: list[T], send: Callable[[list[T]], list[Outcome]]
    ) -> Sent[T]:
        """Send, then resend only the rows Salesforce could not lock, a bounded number of times.

        An answer that cannot be read ends the loop: the rows of that call are unread
        (unknown), while the outcomes earlier answers proved are kept. A call that got no
        answer at all raises (see the module docstring).
        """
        sent: Sent[T] = Sent([])
        pending = items
        for attempt in range(LOCK_RETRIES + 1):
            try:
                outcomes = send(pending)
            except UnreadableAnswer as exc:
                log.warning("%d record(s): %s", len(pending), exc)
                sent.unread, sent.reason = list(pending), str(exc)
                break
            locked = [(i, o) for i, o in zip(pending, outcomes, strict=True)
                      if not o.ok and o.code == "UNABLE_TO_LOCK_ROW"]
            sent.proven.extend((i, o) for i, o in zip(pending, outcomes, strict=True)
                               if o.ok or o.code != "UNABLE_TO_LOCK_ROW")
            if not locked:
                break
            if attempt == LOCK_RETRIES:
                sent.proven.extend(locked)
                break
            delay = LOCK_BASE_DELAY * 2**attempt + self.rng.uniform(0, LOCK_JITTER)
            log.info("%d row(s) locked by another transaction; retrying in %.1f s",
                     len(locked), delay)
            self.sleep(delay)
            pending = [i for i, _ in locked]
        return sent

    # -- the multi-select picklist ---------------------------------------------------------

    def check_field(self, sobject: str, options: Sequence[str]) -> FieldCheck:
        """Does ``sobject`` have the picklist, writable, with these values? (one describe)"""
        name = self.settings.field_name
        described = self.client.rest("GET", f"sobjects/{sobject}/describe") or {}
        found = next((f for f in described.get("fields", [])
                      if str(f.get("name", "")).lower() == name.lower()), None)
        check = FieldCheck()
        steps = (f"Setup > Object Manager > {sobject} > Fields & Relationships > New > "
                 f"Picklist (Multi-Select), API name {name}")
        if found is None:
            check.problems.append(
                f"{sobject}.{name} does not exist or the API user cannot see it: create it "
                f"({steps}) and grant the integration user's profile or permission set "
                f"Read and Edit on it (Field-Level Security)")
            return check
        if found.get("type") != "multipicklist":
            check.problems.append(f"{sobject}.{name} is a {found.get('type')} field, not a "
                                  f"multi-select picklist: set [crm].field_name to one ({steps})")
            return check
        if not found.get("updateable"):
            check.problems.append(
                f"{sobject}.{name} is read-only for the API user: grant Edit in its Field-Level "
                "Security for the integration user's profile or permission set")
        check.values = {str(v.get("value")) for v in found.get("picklistValues", [])
                        if v.get("active", True)}
        missing = [o for o in options if o not in check.values]
        if missing and found.get("restrictedPicklist"):
            check.problems.append(
                f"{sobject}.{name} is a restricted picklist without the value(s) "
                f"{', '.join(missing)}: add them (Setup > Object Manager > {sobject} > "
                f"{name} > Values > New), or uncheck 'Restrict picklist to the values defined "
                "in the value set'")
        elif missing:
            check.warnings.append(
                f"{sobject}.{name} lacks the value(s) {', '.join(missing)}: Salesforce stores "
                "them, but list views and reports will not offer them until an admin adds them")
        return check

    def ensure_field(self, options: Sequence[str]) -> None:
        bad = [o for o in options if ";" in o or not o.strip() or len(o) > 255]
        if bad:
            raise ConnectorError(
                f"segment value(s) {', '.join(repr(b) for b in bad)} cannot be picklist values "
                "(no ';', not empty, at most 255 characters)")
        problems: list[str] = []
        for sobject in self.settings.objects:
            check = self.check_field(sobject, options)
            problems += check.problems
            for warning in check.warnings:
                log.warning("%s", warning)
        if problems:
            raise ConnectorError("the segment field is not ready; a Salesforce admin must:\n  - "
                                 + "\n  - ".join(problems))

    def write_field(self, updates: Mapping[str, tuple[str, ...]]) -> Tally:
        """PATCH each person's full set of segment names, 200 per call.

        Outcomes as for :meth:`apply`: ``success: true`` is done; a PERSON_GONE code on the
        record itself (deleted, merged away, a converted lead) is gone; other errors are
        failed; an unreadable answer makes that call's people unknown.
        """
        name = self.settings.field_name
        tally = Tally()
        records: list[dict[str, Any]] = []
        for person in sorted(updates):
            sobject = person_object(person)
            if sobject is None or sobject not in self.settings.objects:
                tally.failed[person] = NOT_A_PERSON
                continue
            values = sorted(set(updates[person]))
            records.append({"attributes": {"type": sobject}, "id": person,
                            name: ";".join(values) if values else None})

        def send(batch: list[dict[str, Any]]) -> list[Outcome]:
            results = self.client.rest("PATCH", "composite/sobjects",
                                       json={"allOrNone": False, "records": batch},
                                       unreadable=UnreadableAnswer)
            return collection_outcomes(len(batch), results)

        for chunk in _chunks(records, COLLECTION_LIMIT):
            self.before_write()
            sent = self._with_lock_retries(chunk, send)
            for record, outcome in sent.proven:
                person = str(record["id"])
                if outcome.ok:
                    continue
                if self._person_gone(person, outcome, direct=True):
                    tally.gone.add(person)
                    continue
                tally.failed[person] = outcome.reason
            for record in sent.unread:
                tally.unknown[str(record["id"])] = (f"the field may or may not be written: "
                                                    f"{sent.reason}")
        return tally


def _people(rows: Sequence[Mapping[str, Any]], seen: set[str]) -> Iterator[str]:
    """Each member's person id once (a Bulk read repeats the first REST page's rows)."""
    for row in rows:
        person = row.get("ContactId") or row.get("LeadId")
        if person and str(person) not in seen:
            seen.add(str(person))
            yield str(person)


def _chunks(items: Sequence[T], size: int) -> Iterator[list[T]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])

