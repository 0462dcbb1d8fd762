"""Plain-text renderings of plans, results and status for the terminal (stdout)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sync.apply import ApplyResult
from sync.plan import Plan
from sync.planview import PlanView
from sync.resolve import Resolution
from sync.store import RunRow

__all__ = ["plan_json", "render_plan", "render_plan_costs", "render_plan_markdown",
           "render_result", "render_status", "sparkline"]


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]], right: set[int]) -> str:
    cells = [[str(c) for c in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for row in cells:
        parts = [
            cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
            for i, cell in enumerate(row)
        ]
        lines.append("  " + "  ".join(parts).rstrip())
    return "\n".join(lines)


def render_plan(plan: Plan) -> str:
    rows = []
    for s in plan.segments:
        note = f"BLOCKED: {s.blocked}" if s.blocked else ("add only" if s.mode == "add_only" else "")
        if s.unknown_adds or s.unknown_removes:
            verify = f"{s.unknown_adds + s.unknown_removes} of unknown state written again"
            note = f"{note}; {verify}" if note else verify
        rows.append([s.key, s.before, s.after, f"+{s.adds}", f"-{s.removes}", note])
    body = _table(["segment", "now", "computed", "adds", "removes", "note"], rows, {1, 2, 3, 4})
    lines = [f"Plan: {len(plan.segments)} segment(s), +{plan.adds} / -{plan.removes} "
             "membership change(s)", body]
    if plan.field_updates:
        lines.append(f"Segment field: {plan.field_updates} contact(s) to rewrite")
    for key, extra, missing in plan.drift:
        lines.append(f"Reconcile: {key} had {extra} member(s) added and {missing} removed in "
                     "the CRM by hand; the plan restores the computed membership")
    if plan.orphans:
        lines.append("Targets whose segment is no longer configured (left untouched): "
                     + ", ".join(plan.orphans))
    return "\n".join(lines)


def render_result(
    result: ApplyResult, status: str, run_id: int | None, seconds: float, *,
    resolution: Resolution | None = None, unknown_left: int = 0,
) -> str:
    text = (f"Result: run {run_id} {status}: +{result.adds} / -{result.removes} applied, "
            f"{result.failed} failed, {result.api_calls} write call(s), {seconds:.1f} s")
    if resolution is not None and resolution.unknown:
        text += (f"\n  {resolution.unknown} membership(s) of unknown state settled: "
                 f"{resolution.read} read live ({resolution.read_calls} call(s)), the rest "
                 "written in their desired state")
    if result.failures:
        text += "\n  failed records (retried on the next run): " + ", ".join(
            f"{k}: {n}" for k, n in sorted(result.failures.items()))
    if unknown_left:
        text += (f"\n  {unknown_left} write(s) the CRM did not prove (lost or incomplete "
                 "answers): the next run settles them")
    return text


SPARKS = "▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[int]) -> str:
    """A one-line chart of ``values`` (oldest first), e.g. ``▁▃▅█``; flat series sit mid-way."""
    if not values:
        return ""
    low, high = min(values), max(values)
    if high == low:
        return SPARKS[3] * len(values)
    top = len(SPARKS) - 1
    return "".join(SPARKS[round((v - low) * top / (high - low))] for v in values)


def _change(first: int, last: int) -> str:
    delta = last - first
    if first == 0:
        return f"{delta:+d}" if delta else "="
    return f"{delta:+d} ({delta / first:+.1%})" if delta else "="


def render_status(
    runs: Sequence[RunRow],
    sizes: Mapping[str, Sequence[int]],
    failures: Sequence[tuple[str, str, str, str]],
    orphans: Sequence[str],
    *,
    failures_total: int | None = None,
    schedule: str | None = None,
    pending: tuple[int, int] | None = None,
    unknown: Mapping[str, int] | None = None,
) -> str:
    lines = ["Last runs:"]
    if not runs:
        lines.append("  (none yet)")
    else:
        rows = []
        for run in runs:
            started, finished = run.started_at, run.finished_at
            took = f"{(finished - started).total_seconds():.1f} s" if finished else "-"
            rows.append([run.run_id, run.command, f"{started:%Y-%m-%d %H:%M:%S}",
                         took, run.status, f"+{run.adds}/-{run.removes}",
                         run.failed, run.api_calls, run.message])
        lines.append(_table(["run", "command", "started (UTC)", "took", "status", "changes",
                             "failed", "api calls", "message"], rows, {0, 6, 7}))
        usage = runs[0].api_usage
        if usage:
            lines.append(f"  API calls of run {runs[0].run_id}: " + ", ".join(
                f"{label} {n}" for label, n in sorted(usage.items())))
    if schedule:
        lines.append(f"Schedule: {schedule}")
    depth = max((len(h) for h in sizes.values()), default=0)
    lines.append(f"Segments: size now, trend over the last {depth} sync run(s), change, "
                 "sizes (oldest first):")
    if not sizes:
        lines.append("  (no sync yet)")
    width = max((len(k) for k in sizes), default=0) + 1
    for key, history in sorted(sizes.items()):
        now = history[-1] if history else 0
        trail = " -> ".join(str(n) for n in history)
        change = _change(history[0], now) if history else ""
        lines.append(f"  {key + ':':<{width}} {now:>8}  {sparkline(history):<{depth}}  "
                     f"{change:<16} {trail}".rstrip())
    if pending is not None:
        lines.append(f"Changes the next sync would apply (over the store as last pulled): "
                     f"+{pending[0]} / -{pending[1]}")
    total = len(failures) if failures_total is None else failures_total
    lines.append(f"Failed records waiting for retry: {total}")
    for segment, contact, op, error in failures[:20]:
        lines.append(f"  {segment}: {op} {contact}: {error}")
    if total > min(len(failures), 20):
        lines.append(f"  ... and {total - min(len(failures), 20)} more")
    if unknown:
        lines.append(f"Writes whose outcome the CRM did not prove: {sum(unknown.values())} "
                     "(settled by the next sync: read live or written again)")
        lines.append("  " + ", ".join(f"{key}: {n}" for key, n in sorted(unknown.items())))
    if orphans:
        lines.append("Targets without a configured segment: " + ", ".join(orphans))
        lines.append("  (left in the CRM untouched; `segsync prune` deletes them)")
    return "\n".join(lines)


# -- plan for review: text extras, Markdown, JSON ------------------------------------------


def render_plan_costs(view: PlanView) -> str:
    """Lines appended to the text plan: the estimated write calls and the budget."""
    targets = sum(c.target for c in view.segments.values())
    text = (f"Estimated write calls: {view.calls} (batches of up to {view.max_batch} ids"
            + (f", {targets} list/campaign creation(s) or rename(s)" if targets else "")
            + (f", {view.field_calls} segment-field call(s)" if view.field_calls else "") + ")")
    budget = _budget(view)
    return text + (f"\n{budget}" if budget else "")


def _budget(view: PlanView) -> str:
    if view.daily_budget is None:
        return ""
    share = view.calls / view.daily_budget if view.daily_budget else float("inf")
    text = f"Daily API budget: {view.daily_budget}; this plan would use {share:.1%} of it"
    if view.over_budget:
        text += " (OVER BUDGET: the run would stop when the quota runs out and resume the next day)"
    return text


def _md(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return (text.replace("\\", "\\\\").replace("|", "\\|").replace("`", "'")
            .replace("<", "&lt;").replace("\n", " "))


def _ids(ids: Sequence[str], more: int) -> str:
    if not ids:
        return ""
    shown = ", ".join(f"`{_md(i)}`" for i in ids)
    return shown + (f" +{more}" if more > 0 else "")


def render_plan_markdown(view: PlanView) -> str:
    """The plan as a pull-request comment (GitHub-flavoured Markdown)."""
    plan = view.plan
    changed = [s for s in plan.segments if s.changed or s.blocked]
    calls = f"about **{view.calls}** write call(s)"
    budget = _budget(view)
    lines = [
        "### segsync plan",
        "",
        f"**+{plan.adds} / -{plan.removes}** membership change(s) in {len(changed)} of "
        f"{len(plan.segments)} segment(s); {calls}."
        + (f" {budget}." if budget else ""),
    ]
    if view.over_budget:
        lines += ["", f"> :warning: **Over the daily API budget** ({view.daily_budget})."]
    if plan.blocked:
        lines += ["", "> :no_entry: **Safety guard**: these segments would not be applied "
                  "without `--force`:"]
        lines += [f"> - `{_md(s.key)}`: {_md(s.blocked or '')}" for s in plan.blocked]
    if changed:
        lines += ["", "| segment | now | computed | size change | adds | removes | "
                  "entering (first 5) | leaving (first 5) | calls |",
                  "|---|--:|--:|--:|--:|--:|---|---|--:|"]
        for s in changed:
            cost = view.segments.get(s.key)
            note = " :no_entry:" if s.blocked else (" *(add only)*" if s.mode == "add_only" else "")
            note += " *(not written: control group)*" if s.store_only else ""
            entering = _ids(cost.entering, s.adds - len(cost.entering)) if cost else ""
            leaving = _ids(cost.leaving, s.removes - len(cost.leaving)) if cost else ""
            lines.append(
                f"| {_md(s.name)} `{_md(s.key)}`{note} | {s.before} | {s.after} | "
                f"{_change(s.before, s.after)} | +{s.adds} | -{s.removes} | {entering} | "
                f"{leaving} | {cost.calls if cost else 0} |")
    unchanged = [s for s in plan.segments if not (s.changed or s.blocked)]
    if unchanged:
        lines += ["", f"<details><summary>{len(unchanged)} unchanged segment(s)</summary>", "",
                  ", ".join(f"`{_md(s.key)}` ({s.after})" for s in unchanged), "",
                  "</details>"]
    if plan.field_updates:
        lines += ["", f"Segment field: {plan.field_updates} contact(s) to rewrite."]
    if plan.orphans:
        lines += ["", "Lists/campaigns whose segment is no longer configured (left in place; "
                  "`segsync prune` deletes them): " + ", ".join(f"`{_md(k)}`" for k in plan.orphans)]
    return "\n".join(lines)


def plan_json(view: PlanView) -> dict[str, object]:
    """The plan as one JSON document (``segsync plan --format json``)."""
    plan = view.plan
    segments = []
    for s in plan.segments:
        cost = view.segments.get(s.key)
        segments.append({
            "key": s.key, "name": s.name, "mode": s.mode, "before": s.before, "after": s.after,
            "size_change": s.after - s.before, "adds": s.adds, "removes": s.removes,
            "blocked": s.blocked, "store_only": s.store_only,
            "entering_sample": list(cost.entering) if cost else [],
            "leaving_sample": list(cost.leaving) if cost else [],
            "estimated_calls": cost.calls if cost else 0,
        })
    budget = view.daily_budget
    return {
        "adds": plan.adds,
        "removes": plan.removes,
        "blocked": [s.key for s in plan.blocked],
        "segments": segments,
        "orphans": list(plan.orphans),
        "field_updates": plan.field_updates,
        "drift": [{"key": k, "added_in_crm": a, "removed_in_crm": r} for k, a, r in plan.drift],
        "api": {
            "estimated_write_calls": view.calls,
            "max_batch": view.max_batch,
            "target_calls": sum(c.target for c in view.segments.values()),
            "field_calls": view.field_calls,
            "daily_budget": budget,
            "share_of_budget": (view.calls / budget) if budget else None,
            "over_budget": view.over_budget,
        },
    }
