"""The connector contract: what the engine needs from a CRM, and nothing more.

A connector does four things: read records changed since a watermark (``pull``), make
sure a write-back target exists for a segment (``ensure_target``), change memberships in
batches (``apply``), and read a target's live members for ``--reconcile`` (``members``).
The engine depends only on this Protocol; ``tests/fakes.py`` implements it in memory.

A write proves only what its answer says. ``apply`` and ``write_field`` report every id
of a batch as done, ``failed`` (refused: the state is as before), ``unknown`` (the answer
does not prove what happened) or ``gone`` (the record does not exist). An answer that
cannot be read at all (malformed JSON, a count mismatch) makes every id of that call
unknown; a call whose answer never came (retries exhausted, connection lost) raises, and
the engine, which recorded the batch as intended before sending it, keeps it unknown.
Unknown pairs are resolved by a later run: written again idempotently, or read back
through the optional :class:`MembershipReader`.

Records travel as pandas DataFrames in the canonical columns of :mod:`connectors.frames`,
one frame per page. What a connector can do beyond that -- write a multi-value field, read
memberships back, delete its targets, check a daily budget -- it declares once in
:meth:`Connector.capabilities`; the engine reads that instead of probing attributes.

A write proves only what its answer says. ``apply`` and ``write_field`` report every id
of a batch as done, ``failed`` (refused: the state is as before), ``unknown`` (the answer
does not prove what happened) or ``gone`` (the record does not exist). An answer that
cannot be read at all (malformed JSON, a count mismatch) makes every id of that call
unknown; a call whose answer never came (retries exhausted, connection lost) raises, and
the engine, which recorded the batch as intended before sending it, keeps it unknown.
Unknown pairs are resolved by a later run: written again idempotently, or read back
through the optional :class:`MembershipReader`.

Records travel as pandas DataFrames in canonical columns, one frame per page, so the
store can insert a page in one vectorised statement:

* ``contacts``: ``_crm_id``, ``_modified_at``, ``_company_id``, ``_opted_out``, ``_lat``,
  ``_lon``, ``_kind`` (contact/lead), then one text column per requested property
  (``email`` always among them).
* ``companies``: ``_crm_id``, ``_modified_at``, ``_lat``, ``_lon``, then text properties.
* ``purchases`` and ``activities`` (both become *events*): ``_crm_id``, ``_contact_id``,
  ``type``, ``ts``, ``amount`` (purchases only), ``_modified_at``. One row per
  (record, contact) pair, so a deal with two contacts yields two rows.

Timestamps are naive UTC ``datetime64``; property values are text or missing (None).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

import pandas as pd

from segment_rules.schema import ACTIVITY_TYPES

__all__ = [
    "ACTIVITY_TYPES",
    "STREAMS",
    "Batch",
    "BatchResult",
    "BudgetAware",
    "Capabilities",
    "Connector",
    "FieldWriter",
    "MembershipRead",
    "MembershipReader",
    "Page",
    "PullRequest",
    "Stream",
    "TargetDeleter",
    "TargetRef",
    "TargetSpec",
    "budget_aware",
    "field_writer",
    "membership_reader",
    "target_deleter",
]

Stream = Literal["contacts", "companies", "purchases", "activities"]
STREAMS: tuple[Stream, ...] = ("contacts", "companies", "purchases", "activities")

@dataclass(frozen=True)
class PullRequest:
    """What to pull for one stream.

    ``since`` is the watermark the connector returned last time (None: everything);
    ``fields`` names the CRM properties the rules read; ``events_since`` bounds how far
    back activity and purchases are fetched.
    """

    stream: Stream
    since: str | None
    fields: frozenset[str] = frozenset()
    events_since: dt.datetime | None = None


@dataclass(frozen=True)
class Page:
    """One page of pulled records and the watermark that is safe once they are stored.

    ``present_ids``, when set (at most once per pull, on its last page), is the complete
    set of ids the CRM currently holds for the stream; the store drops every other row.
    """

    records: pd.DataFrame
    watermark: str | None = None
    deleted: tuple[str, ...] = ()
    merged: Mapping[str, str] = field(default_factory=dict)
    present_ids: frozenset[str] | None = None


@dataclass(frozen=True)
class TargetSpec:
    """The write-back target a segment should have: its stable key and display name."""

    key: str
    name: str


@dataclass(frozen=True)
class TargetRef:
    """A target segsync created: the CRM's id for it and the name it has there."""

    target_id: str
    name: str


@dataclass(frozen=True)
class Batch:
    """Membership changes for one target, at most ``Connector.max_batch`` ids in total."""

    adds: tuple[str, ...] = ()
    removes: tuple[str, ...] = ()


@dataclass(frozen=True)
class BatchResult:
    """What the CRM's answers proved about each id of a batch.

    Every id is in at most one of the three: ``failed`` (id -> reason: the CRM refused the
    change, so the record's state is what it was before), ``unknown`` (id -> reason: the
    answer does not prove the outcome, e.g. a 207 error that names no record, an id the
    answer does not list, an unreadable answer) and ``gone`` (the CRM says the record does
    not exist: it is in no list and holds no value). Every other id is done as asked.
    """

    failed: Mapping[str, str] = field(default_factory=dict)
    api_calls: int = 0
    unknown: Mapping[str, str] = field(default_factory=dict)
    gone: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Capabilities:
    """What a connector does, declared once; each optional part has its Protocol below.

    ``lists`` false means memberships are only recorded in the store (a field-only write
    mode); ``field``, ``read_memberships``, ``delete_targets`` and ``budget`` promise the
    :class:`FieldWriter`, :class:`MembershipReader`, :class:`TargetDeleter` and
    :class:`BudgetAware` methods. Batch sizes are the CRM's endpoint maxima.
    """

    #: Most ids one ``apply`` call may carry.
    max_batch: int
    lists: bool = True
    field: bool = False
    #: Most contacts one ``write_field`` call may carry.
    max_field_batch: int = 0
    read_memberships: bool = False
    #: Most records one membership read covers (in every asked target at once).
    max_read_batch: int = 0
    delete_targets: bool = False
    budget: bool = False


class Connector(Protocol):
    """What the engine needs from a CRM."""

    def capabilities(self) -> Capabilities:
        """What this connector, as configured, can do (see :class:`Capabilities`)."""
        ...

    def check(self) -> list[str]:
        """Verify access; return what was checked, raise AuthError/ConnectorError if not ok."""
        ...

    def pull(self, request: PullRequest) -> Iterator[Page]:
        """Yield pages of records changed since ``request.since``, oldest first."""
        ...

    def ensure_target(self, spec: TargetSpec, current: TargetRef | None, adopt: bool) -> TargetRef:
        """Create the target, or rename ``current`` to ``spec.name``.

        ``adopt`` is true only when segsync recorded that it was creating this target
        and was stopped before it could record the id: then a target with exactly this
        name is taken over. Otherwise a name clash raises TargetConflict.
        """
        ...

    def apply(self, target: TargetRef, batch: Batch) -> BatchResult:
        """Add and remove members; ids already present/absent count as done.

        Raise only when no answer arrived (the engine then keeps the batch unknown);
        per-record outcomes, unreadable answers included, go into the result.
        """
        ...

    def members(self, target: TargetRef) -> Iterator[str]:
        """The target's live member ids, for ``--reconcile``."""
        ...

    def finish(self) -> None:
        """Flush anything the connector buffers once all batches are applied."""
        ...

    def api_usage(self) -> Mapping[str, int]:
        """Requests sent since the connector was built, by endpoint label (for run records)."""
        ...


@runtime_checkable
class FieldWriter(Protocol):
    """Optional capability: write segment names into one multi-value field per contact.

    HubSpot's multi-checkbox property and Salesforce's multi-select picklist work this
    way. The engine sends each changed contact's *full* set of segment names, so the
    connector never has to read current values first. Declared by
    ``Capabilities.field``.
    """

    def ensure_field(self, options: Sequence[str]) -> None:
        """Create the field if missing and make its options exactly ``options``."""
        ...

    def write_field(self, updates: Mapping[str, tuple[str, ...]]) -> BatchResult:
        """Set each contact's field to the given segment names (empty tuple clears it).

        Outcomes as for ``Connector.apply``: only ids an answer proves are done.
        """
        ...


@dataclass(frozen=True)
class MembershipRead:
    """The live memberships of some records in some targets, as far as the answers prove.

    ``present`` holds the (target id, record id) pairs the CRM reports; for every record in
    ``known`` the answer covered all asked targets, so its pairs not in ``present`` are
    absent. ``gone`` records do not exist (absent everywhere). Records in none of these
    stay unknown.
    """

    present: frozenset[tuple[str, str]] = frozenset()
    known: frozenset[str] = frozenset()
    gone: frozenset[str] = frozenset()
    api_calls: int = 0


@runtime_checkable
class MembershipReader(Protocol):
    """Optional capability: read the live state of chosen (target, record) pairs.

    The engine uses it to resolve memberships whose state is unknown (a lost answer, a
    merge or lead conversion that moved memberships inside the CRM) without reading whole
    lists. One call covers up to ``Capabilities.max_read_batch`` records in every asked
    target.
    """

    def read_memberships(
        self, targets: Sequence[TargetRef], record_ids: Sequence[str]
    ) -> MembershipRead:
        """Which of ``record_ids`` are members of which of ``targets``, read live."""
        ...


@runtime_checkable
class TargetDeleter(Protocol):
    """Optional capability used by ``segsync prune``: delete a target segsync owns."""

    def delete_target(self, target: TargetRef) -> None:
        """Delete the list/campaign/file; one already gone counts as deleted."""
        ...


@runtime_checkable
class BudgetAware(Protocol):
    """Optional capability: refuse a run whose writes would pass the CRM's daily budget share.

    The engine asks before the first write, so a run that cannot finish does not start.
    """

    def estimate_write_calls(self, adds: int, removes: int, new_targets: int = 0) -> int:
        """API calls one segment's changes would cost."""
        ...

    def check_budget(self, planned_calls: int) -> None:
        """Raise QuotaExhausted when ``planned_calls`` would pass the allowed share."""
        ...


def field_writer(connector: Connector) -> FieldWriter | None:
    """The connector as a field writer, when it declares one."""
    ok = connector.capabilities().field and isinstance(connector, FieldWriter)
    return connector if ok else None  # type: ignore[return-value]


def membership_reader(connector: Connector) -> MembershipReader | None:
    """The connector as a membership reader, when it declares one."""
    ok = connector.capabilities().read_memberships and isinstance(connector, MembershipReader)
    return connector if ok else None  # type: ignore[return-value]


def target_deleter(connector: Connector) -> TargetDeleter | None:
    """The connector as a target deleter, when it declares one."""
    ok = connector.capabilities().delete_targets and isinstance(connector, TargetDeleter)
    return connector if ok else None  # type: ignore[return-value]


def budget_aware(connector: Connector) -> BudgetAware | None:
    """The connector as a budget checker, when it declares one."""
    ok = connector.capabilities().budget and isinstance(connector, BudgetAware)
    return connector if ok else None  # type: ignore[return-value]
