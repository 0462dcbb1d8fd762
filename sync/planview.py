"""What a plan means for review: sample contacts entering/leaving and the API calls it costs.

Built right after ``sync.engine.run_plan`` from the plan's tables in the store; rendered by
``sync.output`` as text, Markdown (for a pull-request comment) or JSON.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from connectors.base import Connector
from sync.plan import Plan
from sync.store import Store

__all__ = ["SAMPLE_SIZE", "PlanView", "SegmentCost", "plan_view"]

SAMPLE_SIZE = 5


@dataclass(frozen=True)
class SegmentCost:
    """Estimated write calls for one segment and the first contacts it gains and loses."""

    batches: int = 0
    target: int = 0
    entering: tuple[str, ...] = ()
    leaving: tuple[str, ...] = ()

    @property
    def calls(self) -> int:
        return self.batches + self.target


@dataclass(frozen=True)
class PlanView:
    plan: Plan
    max_batch: int
    segments: dict[str, SegmentCost] = field(default_factory=dict)
    #: Calls for the segment field (field write mode).
    field_calls: int = 0
    daily_budget: int | None = None

    @property
    def calls(self) -> int:
        return sum(c.calls for c in self.segments.values()) + self.field_calls

    @property
    def over_budget(self) -> bool:
        return self.daily_budget is not None and self.calls > self.daily_budget


def plan_view(
    store: Store, plan: Plan, connector: Connector, name_prefix: str, *,
    daily_budget: int | None = None, sample: int = SAMPLE_SIZE,
) -> PlanView:
    """Samples and call estimates for ``plan`` (computed on ``store`` just before).

    Per written segment: ceil(changes / max_batch) membership calls, plus one call when
    its list/campaign must be created or renamed. Field mode adds
    ceil(contacts to rewrite / max_field_batch). Reads (the pull) are not counted.
    """
    caps = connector.capabilities()
    lists = caps.lists
    max_batch = max(1, caps.max_batch)
    sids = store.segment_ids(s.key for s in plan.segments)
    targets = store.targets()
    costs: dict[str, SegmentCost] = {}
    for change in plan.segments:
        entering, leaving = (store.plan_samples(plan.tables, sids[change.key], sample)
                             if plan.tables is not None else ((), ()))
        batches = target = 0
        if lists and not change.blocked and not change.store_only:
            batches = math.ceil((change.adds + change.removes) / max_batch)
            row = targets.get(change.key)
            ref = row.ref if row else None
            target = int(ref is None or ref.name != name_prefix + change.name)
        costs[change.key] = SegmentCost(batches, target, entering, leaving)
    field_calls = 0
    if caps.field and plan.field_updates and not plan.blocked:
        field_calls = math.ceil(plan.field_updates / max(1, caps.max_field_batch))
    return PlanView(plan, max_batch, costs, field_calls, daily_budget)
