"""Where each activity type comes from on a CRM, and rules that must mean the same everywhere.

Every CRM records some activity as events (a call, a logged email, a won deal), keeps
some only as roll-ups on the contact (HubSpot's last open date and open count), and
lacks some altogether (Salesforce has no marketing-email opens). A rule must not silently
mean something else on one CRM. :func:`adapt` rewrites each activity condition for the
configured CRM's :data:`Source` of each type and refuses, with one sentence and the
closest rule it can answer, what that CRM cannot answer:

* types kept as ``events``: unchanged;
* types kept as ``rollup``: "at least one within N days", "none within N days", "never",
  days since the last one (a roll-up's last date answers these exactly, also mixed with
  event types), and a lifetime count of one type (without a window; roll-ups count all
  time, not only what was pulled); every other count is refused;
* types the CRM does not keep (``none``): refused when a rule names them.

``activity = "any"`` means every type the CRM keeps: its event types, plus its roll-up
types where the roll-ups answer the rule. :func:`describe_sources` says so per CRM.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Literal

from segment_rules.errors import Problem
from segment_rules.kinds.activity import ACTIVITY_TYPES, ActivityCondition
from segment_rules.kinds.rollup import RollupCondition
from segment_rules.schema import Condition, Group, Segment

__all__ = ["EVENTS_EVERYWHERE", "Adapted", "Source", "adapt", "describe_sources"]

Source = Literal["events", "rollup", "none"]
#: Every type as events: the CSV default, and what rules mean when no CRM is known.
EVENTS_EVERYWHERE: Mapping[str, Source] = dict.fromkeys(ACTIVITY_TYPES, "events")


@dataclass(frozen=True)
class Adapted:
    """The rewritten segments, the problems (refused rules) and notes for ``check``."""

    segments: tuple[Segment, ...]
    problems: tuple[Problem, ...] = ()
    notes: tuple[str, ...] = ()


def adapt(segments: Iterable[Segment], sources: Mapping[str, Source], crm: str) -> Adapted:
    """Rewrite every activity condition for ``sources`` (see the module docstring)."""
    problems: list[Problem] = []
    notes: list[str] = []
    out = [replace(s, rule=_rewrite(s.rule, sources, crm, problems, notes)) for s in segments]
    return Adapted(tuple(out), tuple(problems), tuple(dict.fromkeys(notes)))


def describe_sources(sources: Mapping[str, Source], crm: str) -> list[str]:
    """What each activity type is on this CRM, in a few lines (``segsync check``)."""
    by: dict[Source, list[str]] = {"events": [], "rollup": [], "none": []}
    for kind in ACTIVITY_TYPES:
        by[sources.get(kind, "events")].append(kind)
    lines = [f"activity on {crm}: events (exact counts in any window) for "
             + ", ".join(by["events"])]
    if by["rollup"]:
        lines.append(f"activity on {crm}: roll-ups (last date and lifetime count) for "
                     + ", ".join(by["rollup"]) + ": answerable as at least one / none within "
                     "N days, never, days since the last one, or an all-time count")
    if by["none"]:
        lines.append(f"activity on {crm}: not available for " + ", ".join(by["none"])
                     + "; rules naming them are refused")
    covered = by["events"] + [f"{k} (roll-up)" for k in by["rollup"]]
    lines.append(f'activity = "any" on {crm} covers ' + ", ".join(covered))
    return lines


def _rewrite(condition: Condition, sources: Mapping[str, Source], crm: str,
             problems: list[Problem], notes: list[str]) -> Condition:
    if isinstance(condition, Group):
        return replace(condition, children=tuple(
            _rewrite(child, sources, crm, problems, notes) for child in condition.children))
    if not isinstance(condition, ActivityCondition):
        return condition
    return _activity(condition, sources, crm, problems, notes)


def _activity(node: ActivityCondition, sources: Mapping[str, Source], crm: str,
              problems: list[Problem], notes: list[str]) -> Condition:
    named = bool(node.types)
    types = node.types or ACTIVITY_TYPES
    events = tuple(t for t in types if sources.get(t, "events") == "events")
    rollups = tuple(t for t in types if sources.get(t, "events") == "rollup")
    missing = [t for t in types if sources.get(t, "events") == "none"]
    if named and missing:
        problems.append(Problem(
            node.path, f"{crm} does not record {', '.join(missing)} activity, so this rule "
            "would match as if nobody had any",
            "remove " + ", ".join(repr(t) for t in missing) + " from the rule"
            + (f", or use {', '.join(events)}" if events else "")))
        return node
    if not rollups:
        return node
    exists = _exists_shape(node)
    if exists is not None:
        found = RollupCondition(rollups, "exists", within_days=node.within_days,
                                event_types=events, path=node.path)
        return found if exists else Group("not", (found,), node.path)
    if node.metric == "days_since_last":
        return RollupCondition(rollups, "days_since_last", node.op, node.value,
                               event_types=events, path=node.path)
    if not named:  # "any" counted: the CRM's events only (roll-ups hold no windowed counts)
        notes.append(f'activity = "any" counts only {crm}\'s event types ({", ".join(events)}) '
                     f"where a rule counts more than one; {', '.join(rollups)} are roll-ups")
        return node
    if node.metric == "count" and node.within_days is None and not events and len(rollups) == 1:
        notes.append(f"{node.path}: {rollups[0]} is counted over all time (a {crm} roll-up), "
                     "not only over the pulled history")
        return RollupCondition(rollups, "count", node.op, node.value, path=node.path)
    problems.append(Problem(
        node.path, f"{crm} keeps {', '.join(rollups)} only as a last date and a lifetime "
        "count per contact, so it cannot tell " + _wants(node),
        _closest(node, rollups)))
    return node


def _exists_shape(node: ActivityCondition) -> bool | None:
    """True for "at least one", False for "none", None for any other count or metric."""
    if node.metric != "count" or isinstance(node.value, tuple):
        return None
    if node.op == "gte" and node.value == 1:
        return True
    if (node.op in ("eq", "lte") and node.value == 0) or (node.op == "lt" and node.value == 1):
        return False
    return None


def _wants(node: ActivityCondition) -> str:
    window = f" within {node.within_days} days" if node.within_days else ""
    if node.metric == "sum_amount":
        return "amounts"
    return f"how many there were{window}"


def _closest(node: ActivityCondition, rollups: Sequence[str]) -> str:
    kind = rollups[0]
    if node.within_days:
        return (f'the closest answerable rule: {{ activity = "{kind}", at_least = 1, '
                f"within_days = {node.within_days} }}, or an all-time count "
                f'{{ activity = "{kind}", at_least = {_number(node)} }}')
    return (f'the closest answerable rule: {{ activity = "{kind}", at_least = '
            f"{_number(node)} }} (one type, all time)")


def _number(node: ActivityCondition) -> str:
    value = node.value if not isinstance(node.value, tuple) else node.value[0]
    return f"{max(1, int(value)):d}"
