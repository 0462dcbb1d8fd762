"""Planning queries: desired memberships, their difference from what is known, and the
reads that review and apply a plan.

Evaluating the segments starts a new plan: its tables (``desired``, ``plan_adds``,
``plan_removes``, ``plan_unknown``, ``field_plan``) live on the store's connection and
the :class:`~sync.store.base.PlanTables` handle returned names them. Every read of them
checks the handle, so a plan whose tables a newer plan replaced is refused loudly
instead of applying someone else's changes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from segment_rules import evaluate as evaluate_segments
from segment_rules import top_values
from segment_rules.explain import Explanation, explain_contacts
from segment_rules.schema import PropertyCondition, Segment
from sync.store.base import PlanTables, StoreBase
from sync.store.memberships import UnknownPair

__all__ = ["DiffCounts", "Planning"]


@dataclass(frozen=True)
class DiffCounts:
    """Per segment id: adds and removes planned, and how many of them settle unknown pairs."""

    adds: Mapping[int, int] = field(default_factory=dict)
    removes: Mapping[int, int] = field(default_factory=dict)
    unknown_adds: Mapping[int, int] = field(default_factory=dict)
    unknown_removes: Mapping[int, int] = field(default_factory=dict)


class Planning(StoreBase):
    """Evaluate, diff, and read a plan's tables."""

    def evaluate(self, segments: Sequence[Segment], sids: Mapping[str, int],
                 now: dt.datetime) -> tuple[PlanTables, dict[str, int]]:
        """Compute ``desired`` for every segment (a new plan); returns its handle and sizes."""
        tables = self._new_plan()
        sizes = evaluate_segments(self._conn, segments, dict(sids), now)
        return tables, sizes

    def top_values(self, field_condition: PropertyCondition, top: int) -> list[str]:
        """The ``top`` most frequent values of a field (per-value segments)."""
        return top_values(self._conn, field_condition, top)

    def explain(self, segments: Sequence[Segment], contacts: Sequence[str] | None,
                now: dt.datetime) -> dict[str, list[Explanation]]:
        """Why each contact is or is not in each segment (``segsync explain``)."""
        return explain_contacts(self._conn, segments, contacts, now)

    def diff(self, tables: PlanTables, mirror: Sequence[int]) -> DiffCounts:
        """Diff ``desired`` against what the store knows; ``mirror`` segments also remove.

        A pair whose CRM state is unknown is written in its desired state: added when
        desired, removed (mirror segments) when not; those writes are counted apart.
        """
        self._current(tables)
        conn = self._conn
        # One full outer join finds both directions at once (faster than two anti-joins);
        # the difference is small, so splitting it afterwards costs nothing. The join
        # carries only the integer keys (less memory); the CRM ids of the few removed
        # members are looked up afterwards.
        conn.execute(
            "CREATE OR REPLACE TEMP TABLE plan_diff AS "
            "SELECT coalesce(d.sid, a.sid) AS sid, coalesce(d.cid, a.cid) AS cid, "
            "d.cid IS NULL AS remove FROM desired d "
            "FULL OUTER JOIN (SELECT sid, cid FROM applied) a ON a.sid = d.sid AND a.cid = d.cid "
            "WHERE d.cid IS NULL OR a.cid IS NULL"
        )
        ids = list(mirror) or [-1]
        marks = ", ".join("?" for _ in ids)
        # Unknown pairs (usually none, then the big tables are not touched again): desired
        # -> add again, else (mirror) -> remove again.
        some = conn.execute("SELECT EXISTS (SELECT 1 FROM unknown)").fetchone()
        conn.execute(
            "CREATE OR REPLACE TEMP TABLE plan_unknown AS SELECT u.sid, u.cid, u.crm_id, "
            "EXISTS (SELECT 1 FROM desired d WHERE d.sid = u.sid AND d.cid = u.cid) AS wanted, "
            "EXISTS (SELECT 1 FROM applied a WHERE a.sid = u.sid AND a.cid = u.cid) AS held "
            "FROM unknown u" + ("" if some and some[0] else " LIMIT 0")
        )
        conn.execute(
            "CREATE OR REPLACE TEMP TABLE plan_adds AS "
            "SELECT sid, cid FROM plan_diff WHERE NOT remove "
            "UNION ALL SELECT sid, cid FROM plan_unknown WHERE wanted AND held"
        )
        conn.execute(
            "CREATE OR REPLACE TEMP TABLE plan_removes AS SELECT p.sid, a.crm_id "
            "FROM plan_diff p JOIN applied a ON a.sid = p.sid AND a.cid = p.cid "
            f"WHERE p.remove AND p.sid IN ({marks}) "
            "UNION ALL SELECT sid, crm_id FROM plan_unknown "
            f"WHERE NOT wanted AND NOT held AND sid IN ({marks})",
            [*ids, *ids],
        )
        return DiffCounts(
            adds=self._counts("plan_adds"),
            removes=self._counts("plan_removes"),
            unknown_adds=self._counts("plan_unknown", "wanted"),
            unknown_removes=self._counts("plan_unknown", f"NOT wanted AND sid IN ({marks})",
                                         ids),
        )

    def _counts(self, table: str, where: str = "true",
                params: Sequence[object] = ()) -> dict[int, int]:
        rows = self._conn.execute(
            f"SELECT sid, count(*) FROM {table} WHERE {where} GROUP BY sid", list(params)
        ).fetchall()
        return {int(sid): int(n) for sid, n in rows}

    def planned_ids(self, tables: PlanTables, kind: str, sid: int) -> list[str]:
        """The CRM ids one segment must gain (``kind`` "adds") or lose ("removes")."""
        self._current(tables)
        source = (
            "(SELECT p.sid, c._crm_id AS crm_id FROM plan_adds p "
            "JOIN contacts c ON c._cid = p.cid)" if kind == "adds" else "plan_removes"
        )
        rows = self._conn.execute(
            f"SELECT crm_id FROM {source} WHERE sid = ? ORDER BY crm_id", [sid]
        ).fetchall()
        return [str(r[0]) for r in rows]

    def plan_samples(self, tables: PlanTables, sid: int, limit: int
                     ) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """The first contacts (by id) a segment gains and loses in the plan."""
        self._current(tables)
        entering = self._conn.execute(
            "SELECT c._crm_id FROM plan_adds p JOIN contacts c ON c._cid = p.cid "
            "WHERE p.sid = ? ORDER BY c._crm_id LIMIT ?", [sid, limit]).fetchall()
        leaving = self._conn.execute(
            "SELECT crm_id FROM plan_removes WHERE sid = ? ORDER BY crm_id LIMIT ?",
            [sid, limit]).fetchall()
        return tuple(str(r[0]) for r in entering), tuple(str(r[0]) for r in leaving)

    def unknown_in_plan(self, tables: PlanTables) -> list[tuple[UnknownPair, bool]]:
        """The plan's unknown pairs, each with whether its segment wants it."""
        self._current(tables)
        rows = self._conn.execute(
            "SELECT sid, cid, crm_id, wanted FROM plan_unknown ORDER BY sid, crm_id").fetchall()
        return [(UnknownPair(int(sid), int(cid), str(crm_id), "", ""), bool(wanted))
                for sid, cid, crm_id, wanted in rows]

    def plan_field(self, tables: PlanTables, names: Sequence[tuple[int, str]]) -> int:
        """Contacts whose set of segment names changed, into ``field_plan(crm_id, names)``.

        ``names`` maps the written segments' ids to their names; values are sorted and
        ';'-joined, the multi-value format of both CRMs. A contact whose field value is
        unknown (``field_unknown``) is written again whatever the store holds.
        """
        self._current(tables)
        conn = self._conn
        conn.execute("CREATE OR REPLACE TEMP TABLE field_names (sid SMALLINT, name VARCHAR)")
        if names:
            conn.executemany("INSERT INTO field_names VALUES (?, ?)", list(names))
        conn.execute(
            "CREATE OR REPLACE TEMP TABLE field_plan AS "
            "WITH wanted AS (SELECT d.cid, string_agg(n.name, ';' ORDER BY n.name) AS names "
            "  FROM desired d JOIN field_names n USING (sid) GROUP BY d.cid), "
            "known AS (SELECT coalesce(w.cid, f.cid) AS cid, f.crm_id, "
            "  coalesce(w.names, '') AS names, coalesce(f.names, '') AS held "
            "  FROM wanted w FULL OUTER JOIN field_applied f USING (cid)), "
            "todo AS (SELECT coalesce(k.cid, u.cid) AS cid, "
            "  coalesce(k.crm_id, u.crm_id) AS crm_id, coalesce(k.names, '') AS names, "
            "  u.cid IS NOT NULL OR k.names <> k.held AS write "
            "  FROM known k FULL OUTER JOIN field_unknown u ON u.cid = k.cid) "
            "SELECT coalesce(c._crm_id, t.crm_id) AS crm_id, t.names FROM todo t "
            "LEFT JOIN contacts c ON c._cid = t.cid "
            "WHERE t.write AND coalesce(c._crm_id, t.crm_id) IS NOT NULL"
        )
        row = conn.execute("SELECT count(*) FROM field_plan").fetchone()
        return int(row[0]) if row else 0

    def field_plan(self, tables: PlanTables) -> list[tuple[str, str]]:
        """(crm id, ';'-joined names) of every contact whose field value the plan writes."""
        self._current(tables)
        return [(str(c), str(n)) for c, n in self._conn.execute(
            "SELECT crm_id, names FROM field_plan ORDER BY crm_id").fetchall()]
