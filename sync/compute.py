"""Compute: evaluate every segment over the store and diff against what was applied.

Both steps are SQL over the store's own file (:mod:`sync.store.planning`): the desired
memberships come from ``segment_rules``; the plan's adds and removes are their
difference from what was applied plus the pairs whose CRM state is unknown. The counts
go to :mod:`sync.plan` for the guard decisions; the plan carries the handle of its
tables for the apply step.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import replace

from segment_rules.generators import expand_per_value
from segment_rules.schema import PerValueGenerator, Segment
from sync.config import SyncSettings
from sync.plan import Plan, SegmentChange, guard_reason
from sync.store import PlanTables, Store

__all__ = ["compute_plan", "diff_plan", "expand_segments", "plan_field"]


def compute_plan(
    store: Store,
    segments: Sequence[Segment],
    now: dt.datetime,
    settings: SyncSettings,
    *,
    force: bool = False,
    per_value: Sequence[PerValueGenerator] = (),
) -> Plan:
    """Evaluate, diff and guard."""
    segments = expand_segments(store, segments, per_value)
    sids = store.segment_ids(s.key for s in segments)
    tables, after = store.evaluate(segments, sids, now)
    return diff_plan(store, tables, segments, after, settings, force=force)


def diff_plan(
    store: Store, tables: PlanTables, segments: Sequence[Segment], after: Mapping[str, int],
    settings: SyncSettings, *, force: bool = False,
) -> Plan:
    """Diff the evaluated plan against what the store knows, and apply the guard.

    A pair whose CRM state is unknown is written in its desired state: added when
    desired, removed (mirror segments) when not; those writes are counted apart, so the
    guard weighs only removals of members known to be there. Unknown pairs of add-only
    segments that are not desired cannot be written; they wait for a read
    (``sync.resolve``).
    """
    sids = store.segment_ids(s.key for s in segments)
    counts = store.diff(tables, [sids[s.key] for s in segments if s.mode == "mirror"])
    before = store.applied_sizes()
    changes = []
    for segment in segments:
        sid = sids[segment.key]
        size = before.get(sid, 0)
        lost = counts.removes.get(sid, 0)
        changes.append(
            SegmentChange(
                key=segment.key,
                name=segment.name,
                mode=segment.mode,
                before=size,
                after=after[segment.key],
                adds=counts.adds.get(sid, 0),
                removes=lost,
                blocked=guard_reason(size, lost - counts.unknown_removes.get(sid, 0),
                                     settings.max_removal_fraction,
                                     settings.min_removals_to_guard, force),
                store_only=segment.store_only,
                unknown_adds=counts.unknown_adds.get(sid, 0),
                unknown_removes=counts.unknown_removes.get(sid, 0),
            )
        )
    configured = {s.key for s in segments}
    orphans = tuple(k for k in store.targets() if k not in configured)
    return Plan(tuple(changes), orphans, expanded=tuple(segments), tables=tables)


def expand_segments(
    store: Store, segments: Sequence[Segment], per_value: Sequence[PerValueGenerator]
) -> list[Segment]:
    """Static segments plus the per-value ones, whose values come from the data."""
    expanded = list(segments)
    for generator in per_value:
        values = store.top_values(generator.field, generator.top)
        expanded.extend(expand_per_value(generator, values))
    return expanded


def plan_field(store: Store, plan: Plan) -> Plan:
    """The plan with the contacts whose set of segment names changed (field write mode).

    Only segments written to the CRM count (holdout control groups do not).
    """
    assert plan.tables is not None
    sids = store.segment_ids(s.key for s in plan.expanded)
    names = [(sids[s.key], s.name) for s in plan.expanded if not s.store_only]
    return replace(plan, field_updates=store.plan_field(plan.tables, names))
