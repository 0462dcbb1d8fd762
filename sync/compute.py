"""Compute: evaluate every segment over the store and diff against what was applied.

Both steps are SQL over the store's own file: ``desired`` comes from
``segment_rules.evaluate``; ``plan_adds``/``plan_removes`` are its difference from
``applied`` plus the pairs whose CRM state is ``unknown``. The resulting counts go to :mod:`sync.plan` for the guard decisions.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence

from segment_rules import evaluate, top_values
from segment_rules.generators import expand_per_value
from segment_rules.schema import PerValueGenerator, Segment
from sync.config import SyncSettings
from sync.plan import Plan, SegmentChange, guard_reason
from sync.store import Store

__all__ = ["compute_plan", "diff_plan", "expand_segments", "planned_ids"]


def compute_plan(
    store: Store,
    segments: Sequence[Segment],
    now: dt.datetime,
    settings: SyncSettings,
    *,
    force: bool = False,
    per_value: Sequence[PerValueGenerator] = (),
) -> Plan:
    """Evaluate, diff and guard; leaves ``plan_adds``/``plan_removes`` for the apply step."""
    segments = expand_segments(store, segments, per_value)
    sids = store.segment_ids(s.key for s in segments)
    after = evaluate(store.conn, segments, sids, now)
    return diff_plan(store, segments, after, settings, force=force)


def diff_plan(
    store: Store, segments: Sequence[Segment], after: Mapping[str, int],
    settings: SyncSettings, *, force: bool = False,
) -> Plan:
    """Diff ``desired`` (left by the evaluation) against what the store knows.

    A pair whose CRM state is unknown is written in its desired state: added when
    desired, removed (mirror segments) when not; those writes are counted apart, so the
    guard weighs only removals of members known to be there. Unknown pairs of add-only
    segments that are not desired cannot be written; they wait for a read
    (``sync.resolve``).
    """
    sids = store.segment_ids(s.key for s in segments)
    conn = store.conn
    # One full outer join finds both directions at once (faster than two anti-joins);
    # the difference is small, so splitting it afterwards costs nothing.
    # The join carries only the integer keys (less memory); the CRM ids of the few
    # removed members are looked up afterwards.
    conn.execute(
        "CREATE OR REPLACE TEMP TABLE plan_diff AS "
        "SELECT coalesce(d.sid, a.sid) AS sid, coalesce(d.cid, a.cid) AS cid, "
        "d.cid IS NULL AS remove FROM desired d "
        "FULL OUTER JOIN (SELECT sid, cid FROM applied) a ON a.sid = d.sid AND a.cid = d.cid "
        "WHERE d.cid IS NULL OR a.cid IS NULL"
    )
    mirror = [sids[s.key] for s in segments if s.mode == "mirror"] or [-1]
    marks = ", ".join("?" for _ in mirror)
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
        "CREATE OR REPLACE TEMP TABLE plan_removes AS SELECT p.sid, a.crm_id FROM plan_diff p "
        f"JOIN applied a ON a.sid = p.sid AND a.cid = p.cid WHERE p.remove AND p.sid IN ({marks}) "
        "UNION ALL SELECT sid, crm_id FROM plan_unknown "
        f"WHERE NOT wanted AND NOT held AND sid IN ({marks})",
        [*mirror, *mirror],
    )
    adds = _counts(store, "plan_adds")
    removes = _counts(store, "plan_removes")
    unknown_adds = _counts(store, "plan_unknown", "wanted")
    unknown_removes = _counts(store, "plan_unknown", f"NOT wanted AND sid IN ({marks})",
                              mirror)
    before = store.applied_sizes()
    changes = []
    for segment in segments:
        sid = sids[segment.key]
        size = before.get(sid, 0)
        lost = removes.get(sid, 0)
        changes.append(
            SegmentChange(
                key=segment.key,
                name=segment.name,
                mode=segment.mode,
                before=size,
                after=after[segment.key],
                adds=adds.get(sid, 0),
                removes=lost,
                blocked=guard_reason(size, lost - unknown_removes.get(sid, 0),
                                     settings.max_removal_fraction,
                                     settings.min_removals_to_guard, force),
                store_only=segment.store_only,
                unknown_adds=unknown_adds.get(sid, 0),
                unknown_removes=unknown_removes.get(sid, 0),
            )
        )
    configured = {s.key for s in segments}
    orphans = tuple(k for k in store.targets() if k not in configured)
    return Plan(tuple(changes), orphans, expanded=tuple(segments))


def expand_segments(
    store: Store, segments: Sequence[Segment], per_value: Sequence[PerValueGenerator]
) -> list[Segment]:
    """Static segments plus the per-value ones, whose values come from the data."""
    expanded = list(segments)
    for generator in per_value:
        values = top_values(store.conn, generator.field, generator.top)
        expanded.extend(expand_per_value(generator, values))
    return expanded


def _counts(
    store: Store, table: str, where: str = "true", params: Sequence[object] = ()
) -> dict[int, int]:
    rows = store.conn.execute(
        f"SELECT sid, count(*) FROM {table} WHERE {where} GROUP BY sid", list(params)
    ).fetchall()
    return {int(sid): int(n) for sid, n in rows}


def planned_ids(store: Store, table: str, sid: int) -> list[str]:
    """The CRM ids one segment must gain (``plan_adds``) or lose (``plan_removes``)."""
    source = (
        "(SELECT p.sid, c._crm_id AS crm_id FROM plan_adds p JOIN contacts c ON c._cid = p.cid)"
        if table == "plan_adds" else table
    )
    rows = store.conn.execute(
        f"SELECT crm_id FROM {source} WHERE sid = ? ORDER BY crm_id", [sid]
    ).fetchall()
    return [str(r[0]) for r in rows]


def plan_field(store: Store, segments: Sequence[Segment]) -> int:
    """Contacts whose set of segment names changed, into ``field_plan(crm_id, names)``.

    Only segments written to the CRM count (holdout control groups do not); names are
    sorted and ';'-joined, the multi-value format of both CRMs. A contact whose field
    value is unknown (``field_unknown``) is written again whatever the store holds.
    """
    sids = store.segment_ids(s.key for s in segments)
    names = [(sids[s.key], s.name) for s in segments if not s.store_only]
    conn = store.conn
    conn.execute("CREATE OR REPLACE TEMP TABLE field_names (sid SMALLINT, name VARCHAR)")
    if names:
        conn.executemany("INSERT INTO field_names VALUES (?, ?)", names)
    conn.execute(
        "CREATE OR REPLACE TEMP TABLE field_plan AS "
        "WITH wanted AS (SELECT d.cid, string_agg(n.name, ';' ORDER BY n.name) AS names "
        "  FROM desired d JOIN field_names n USING (sid) GROUP BY d.cid), "
        "known AS (SELECT coalesce(w.cid, f.cid) AS cid, f.crm_id, "
        "  coalesce(w.names, '') AS names, coalesce(f.names, '') AS held "
        "  FROM wanted w FULL OUTER JOIN field_applied f USING (cid)), "
        "todo AS (SELECT coalesce(k.cid, u.cid) AS cid, coalesce(k.crm_id, u.crm_id) AS crm_id, "
        "  coalesce(k.names, '') AS names, u.cid IS NOT NULL OR k.names <> k.held AS write "
        "  FROM known k FULL OUTER JOIN field_unknown u ON u.cid = k.cid) "
        "SELECT coalesce(c._crm_id, t.crm_id) AS crm_id, t.names FROM todo t "
        "LEFT JOIN contacts c ON c._cid = t.cid "
        "WHERE t.write AND coalesce(c._crm_id, t.crm_id) IS NOT NULL"
    )
    row = conn.execute("SELECT count(*) FROM field_plan").fetchone()
    return int(row[0]) if row else 0
