"""Plain-text renderings of plans, results and status for the terminal (stdout)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sync.apply import ApplyResult
from sync.plan import Plan

__all__ = ["render_plan", "render_result", "render_status"]


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


def render_result(result: ApplyResult, status: str, run_id: int | None, seconds: float) -> str:
    text = (f"Result: run {run_id} {status}: +{result.adds} / -{result.removes} applied, "
            f"{result.failed} failed, {result.api_calls} write call(s), {seconds:.1f} s")
    if result.failures:
        text += "\n  failed records (retried on the next run): " + ", ".join(
            f"{k}: {n}" for k, n in sorted(result.failures.items()))
    return text


def render_status(
    runs: Sequence[Mapping[str, object]],
    sizes: Mapping[str, Sequence[int]],
    failures: Sequence[tuple[str, str, str, str]],
    orphans: Sequence[str],
) -> str:
    lines = ["Last runs:"]
    if not runs:
        lines.append("  (none yet)")
    else:
        rows = []
        for run in runs:
            started, finished = run["started_at"], run["finished_at"]
            took = (f"{(finished - started).total_seconds():.1f} s"  # type: ignore[operator]
                    if finished and started else "-")
            rows.append([run["run_id"], run["command"], f"{started:%Y-%m-%d %H:%M:%S}",
                         took, run["status"], f"+{run['adds'] or 0}/-{run['removes'] or 0}",
                         run["failed"] or 0, run["api_calls"] or 0, run["message"] or ""])
        lines.append(_table(["run", "command", "started (UTC)", "took", "status", "changes",
                             "failed", "api calls", "message"], rows, {0, 6, 7}))
    lines.append("Segments (size after each of the last runs, oldest first):")
    if not sizes:
        lines.append("  (no sync yet)")
    for key, history in sorted(sizes.items()):
        trend = " -> ".join(str(n) for n in history)
        lines.append(f"  {key}: {trend}")
    lines.append(f"Failed records waiting for retry: {len(failures)}")
    for segment, contact, op, error in failures[:20]:
        lines.append(f"  {segment}: {op} {contact}: {error}")
    if orphans:
        lines.append("Targets without a configured segment: " + ", ".join(orphans))
    return "\n".join(lines)
