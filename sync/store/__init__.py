"""The local state store: one DuckDB file per CRM portal.

It holds the pulled records (only the fields the rules read), the pull watermarks, the
targets segsync owns, the memberships as last applied (and those whose state in the CRM
is unknown), the runs and the change log. DuckDB was chosen because segments are
evaluated by SQL over this very file, in place, with no load step (see
research/compute-bench.md: 1M contacts and 10M activities in about 2 s).

One module per concern, joined into :class:`Store`:

* :mod:`~sync.store.schema` -- every table, the schema version and migrations;
* :mod:`~sync.store.records` -- pulled records and watermarks;
* :mod:`~sync.store.memberships` -- targets, applied and unknown memberships, field values;
* :mod:`~sync.store.runlog` -- runs, the change log and the retry queue;
* :mod:`~sync.store.planning` -- evaluation, the plan's difference and its tables;
* :mod:`~sync.store.erasure` -- forgetting one person.

The DuckDB connection is private to this package; everything else calls named queries.

Invariants the engine relies on:

* a page of records and the watermark that covers it are committed in one transaction;
* ``applied`` changes only when a batch's outcome is recorded, in the same transaction as
  its change-log rows, so a killed run resumes exactly where it stopped;
* a write is recorded as intended (its pairs unknown) before it is sent and leaves that
  state only when an answer proves its outcome;
* a plan's tables are read only through the handle of the plan that made them;
* the file is created readable by its owner only.
"""

from __future__ import annotations

from sync.store.base import PlanTables, StalePlan
from sync.store.erasure import Erasure
from sync.store.keys import contact_key, contact_keys
from sync.store.memberships import GONE, IN_FLIGHT, Memberships, TargetRow, UnknownPair
from sync.store.planning import DiffCounts, Planning
from sync.store.records import Records
from sync.store.runlog import RetryItem, RunLog, RunRow, SegmentChangeRow
from sync.store.schema import ENGINE_COLUMNS, SCHEMA_VERSION

__all__ = [
    "ENGINE_COLUMNS",
    "GONE",
    "IN_FLIGHT",
    "SCHEMA_VERSION",
    "DiffCounts",
    "PlanTables",
    "RetryItem",
    "RunRow",
    "SegmentChangeRow",
    "StalePlan",
    "Store",
    "TargetRow",
    "UnknownPair",
    "contact_key",
    "contact_keys",
]


class Store(Records, Memberships, RunLog, Planning, Erasure):
    """A DuckDB store file; open with :meth:`open`, always close (or use as a context)."""
