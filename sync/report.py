"""``segsync report --html FILE``: one self-contained page about the segments.

Everything is computed from the store (SQL) and drawn as inline SVG by ``sync.charts``:
no JavaScript, no external fonts, styles or scripts, so the file opens offline and can be
mailed or archived. Sections: segment sizes over the last runs, overlap between segments,
the last run's adds/removes, holdout vs treated sizes, RFM tiers, NPS mix, recent
failures and the last runs.

The page holds aggregate numbers; only the failure list names contacts (by CRM id).
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from html import escape
from pathlib import Path

from segment_rules.generators import NPS_BUCKETS, RFM_TIERS
from segment_rules.schema import Segment
from sync import charts
from sync.store import PlanTables, RunRow, Store

__all__ = ["ReportData", "collect", "generator_kinds", "render_html", "write_report"]

HISTORY_RUNS = 30
NPS_COLOURS = {"promoters": "#16a34a", "passives": "#94a3b8", "detractors": "#dc2626"}


@dataclass(frozen=True)
class Holdout:
    key: str
    name: str
    treated: int
    control: int


@dataclass(frozen=True)
class TierMix:
    """The members of one generator block: (segment key, label, size) in tier order."""

    key: str
    name: str
    parts: tuple[tuple[str, str, int], ...]

    @property
    def total(self) -> int:
        return sum(n for _, _, n in self.parts)


@dataclass(frozen=True)
class ReportData:
    label: str
    generated_at: dt.datetime
    names: Mapping[str, str]
    sizes: Mapping[str, int]
    #: Runs with segment sizes, oldest first: (run id, started at).
    history_runs: Sequence[tuple[int, dt.datetime]] = ()
    history: Mapping[str, Sequence[int | None]] = field(default_factory=dict)
    overlap_keys: Sequence[str] = ()
    overlap: Sequence[Sequence[int]] = ()
    last_run: int | None = None
    #: (segment key, adds, removes, failed, status) of the last run that applied changes.
    last_changes: Sequence[tuple[str, int, int, int, str]] = ()
    holdouts: Sequence[Holdout] = ()
    rfm: Sequence[TierMix] = ()
    nps: Sequence[TierMix] = ()
    failures: Sequence[tuple[str, str, str, str]] = ()
    failures_total: int = 0
    runs: Sequence[RunRow] = ()


def generator_kinds(segments: Iterable[Segment]) -> dict[str, str]:
    """Generator block key -> "rfm" | "nps" | "other", from what generated its segments."""
    found: dict[str, set[str]] = {}
    for segment in segments:
        if segment.generator and segment.control_of is None:
            found.setdefault(segment.generator, set()).add(segment.generator_kind)
    return {key: next(iter(kinds)) if kinds in ({"rfm"}, {"nps"}) else "other"
            for key, kinds in found.items()}


def _overlap(store: Store, keys: Sequence[str]) -> list[list[int]]:
    index = {k: i for i, k in enumerate(keys)}
    matrix = [[0] * len(keys) for _ in keys]
    for (a, b), n in store.overlap(keys).items():
        i, j = index[a], index[b]
        matrix[i][j] = matrix[j][i] = n
    return matrix


def _mixes(segments: Sequence[Segment], sizes: Mapping[str, int], kind: str,
           kinds: Mapping[str, str]) -> list[TierMix]:
    if kind == "rfm":
        order = [(suffix, label) for suffix, label, *_ in RFM_TIERS]
    else:
        order = [(suffix, label) for suffix, label, _ in NPS_BUCKETS]
    keys = {s.key for s in segments}
    mixes = []
    for generator, found in kinds.items():
        if found != kind:
            continue
        parts = tuple((f"{generator}-{suffix}", label, sizes.get(f"{generator}-{suffix}", 0))
                      for suffix, label in order if f"{generator}-{suffix}" in keys)
        name = generator
        if parts:  # generated names are "<block name>: <tier>" (rfm), "<block name> <bucket>"
            first = next(s.name for s in segments if s.key == parts[0][0])
            name = first.removesuffix(f": {parts[0][1]}").removesuffix(f" {parts[0][1]}")
        mixes.append(TierMix(generator, name, parts))
    return mixes


def collect(store: Store, segments: Sequence[Segment], label: str, *,
            now: dt.datetime, runs: int = HISTORY_RUNS,
            plan: PlanTables | None = None) -> ReportData:
    """Everything the page shows, read from the store; ``segments`` as expanded.

    With the current ``plan``'s tables, failed records are listed only while the plan
    still needs them.
    """
    sizes = store.applied_sizes_by_key()
    names = {s.key: s.name for s in segments}
    history_runs, history = store.size_history(runs)
    configured = [s.key for s in segments if s.control_of is None]
    overlap_keys = [k for k in configured if sizes.get(k)]
    holdouts = [Holdout(s.control_of, names.get(s.control_of, s.control_of),
                        sizes.get(s.control_of, 0), sizes.get(s.key, 0))
                for s in segments if s.control_of is not None]
    kinds = generator_kinds(segments)
    last_run, last_changes = store.last_changes()
    failures = store.retry_queue(plan=plan)
    return ReportData(
        label=label, generated_at=now, names=names, sizes=sizes,
        history_runs=history_runs, history=history,
        overlap_keys=overlap_keys, overlap=_overlap(store, overlap_keys),
        last_run=last_run, last_changes=last_changes, holdouts=holdouts,
        rfm=_mixes(segments, sizes, "rfm", kinds), nps=_mixes(segments, sizes, "nps", kinds),
        failures=failures[:100], failures_total=len(failures),
        runs=store.recent_runs(15),
    )


# -- the page -----------------------------------------------------------------------------

CSS = """
:root { color-scheme: light; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  color: #1e293b; background: #f8fafc; margin: 0; }
header { background: #0f172a; color: #f8fafc; padding: 18px 28px; }
header h1 { margin: 0; font-size: 20px; }
header p { margin: 4px 0 0; color: #cbd5e1; }
main { padding: 8px 28px 40px; max-width: 1200px; }
section { background: #fff; border: 1px solid #e2e8f0; border-radius: 8px; margin: 18px 0;
  padding: 14px 18px; }
h2 { font-size: 16px; margin: 0 0 4px; }
p.note { color: #64748b; margin: 0 0 10px; font-size: 13px; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(250px, 1fr));
  gap: 10px; }
.card { border: 1px solid #e2e8f0; border-radius: 6px; padding: 6px 8px; }
.card h3 { font-size: 12px; margin: 0; font-weight: 600; white-space: nowrap;
  overflow: hidden; text-overflow: ellipsis; }
.card .size { font-size: 18px; font-weight: 600; }
.card .delta { font-size: 12px; color: #64748b; margin-left: 6px; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; font-size: 13px; }
th, td { text-align: left; padding: 4px 10px; border-bottom: 1px solid #e2e8f0;
  vertical-align: top; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.status-ok { color: #15803d; } .status-failed, .status-interrupted { color: #b91c1c; }
.status-partial, .status-blocked { color: #b45309; }
.nps-score { font-size: 22px; font-weight: 700; }
.empty { color: #64748b; font-style: italic; }
"""


def _num(n: object) -> str:
    return f"{n:,}" if isinstance(n, int) else escape(str(n if n is not None else ""))


def _section(title: str, note: str, body: str, ident: str) -> str:
    return (f'<section id="{ident}"><h2>{escape(title)}</h2>'
            + (f'<p class="note">{escape(note)}</p>' if note else "") + body + "</section>")


def _empty(text: str) -> str:
    return f'<p class="empty">{escape(text)}</p>'


def _sizes_section(data: ReportData) -> str:
    labels = [f"run {run_id}" for run_id, _ in data.history_runs]
    keys = [k for k in data.names if k in data.history] + sorted(
        k for k in data.history if k not in data.names)
    if not keys:
        return _section("Segment sizes over time", "", _empty("No sync has run yet."), "sizes")
    cards = []
    for key in keys:
        values = list(data.history[key])
        known = [v for v in values if v is not None]
        now = data.sizes.get(key, known[-1] if known else 0)
        delta = ""
        if len(known) > 1:
            change = known[-1] - known[0]
            delta = f"{change:+,} since run {data.history_runs[0][0]}" if change else "stable"
        name = data.names.get(key, f"{key} (no longer configured)")
        cards.append(
            f'<div class="card" data-segment="{escape(key)}"><h3 title="{escape(name)}">'
            f"{escape(name)}</h3><div><code>{escape(key)}</code></div>"
            f'<div><span class="size">{now:,}</span><span class="delta">{escape(delta)}</span>'
            f"</div>{charts.line_chart(values, labels, key)}</div>")
    first, last = data.history_runs[0], data.history_runs[-1]
    note = (f"Members after each of the last {len(data.history_runs)} sync run(s), from run "
            f"{first[0]} ({first[1]:%Y-%m-%d %H:%M}) to run {last[0]} "
            f"({last[1]:%Y-%m-%d %H:%M} UTC). Each chart has its own scale.")
    return _section("Segment sizes over time", note,
                    '<div class="grid">' + "".join(cards) + "</div>", "sizes")


def _overlap_section(data: ReportData) -> str:
    if len(data.overlap_keys) < 2:
        return _section("Overlap between segments", "", _empty("Fewer than two segments have "
                                                              "members."), "overlap")
    sizes = [data.sizes.get(k, 0) for k in data.overlap_keys]
    chart = charts.heatmap(data.overlap_keys, sizes, data.overlap, "Overlap between segments")
    note = ("Row segment's members who are also in the column segment, in percent "
            "(memberships as last applied; hover a cell for counts). Control groups left out.")
    return _section("Overlap between segments", note, f'<div class="scroll">{chart}</div>',
                    "overlap")


def _changes_section(data: ReportData) -> str:
    if data.last_run is None or not data.last_changes:
        return _section("Last run's changes", "", _empty("No run has changed any membership "
                                                         "yet."), "changes")
    rows = [(k, a, r) for k, a, r, _, _ in data.last_changes]
    chart = charts.diverging_bars(rows, f"Adds and removes in run {data.last_run}")
    failed = [(k, f) for k, _, _, f, _ in data.last_changes if f]
    extra = ("<p>Failed records: " + ", ".join(f"{escape(k)} {f:,}" for k, f in failed)
             + "</p>") if failed else ""
    note = (f"Members added and removed per segment by run {data.last_run}, the last run "
            "that changed anything.")
    return _section("Last run's changes", note, chart + extra, "changes")


def _holdout_section(data: ReportData) -> str:
    if not data.holdouts:
        return _section("Holdout vs treated", "", _empty(
            "No segment has a holdout group (holdout_percent)."), "holdout")
    rows = [(f"{h.name}", [(h.treated, charts.PALETTE["treated"]),
                           (h.control, charts.PALETTE["control"])]) for h in data.holdouts]
    notes = [f"control {h.control / (h.treated + h.control):.1%}"
             if h.treated + h.control else "" for h in data.holdouts]
    chart = charts.hbars(rows, "Treated and control group sizes", note=notes)
    note = ("Treated members (blue) are written to the CRM; the control group (amber) is "
            "kept in the store only, to measure lift.")
    return _section("Holdout vs treated", note, chart, "holdout")


def _rfm_section(data: ReportData) -> str:
    if not data.rfm:
        return _section("RFM tiers", "", _empty("No kind = \"rfm\" segment is configured."),
                        "rfm")
    body = []
    for mix in data.rfm:
        total = mix.total
        rows = [(label, [(n, charts.PALETTE["line"])]) for _, label, n in mix.parts]
        notes = [f"{n / total:.0%}" if total else "" for _, _, n in mix.parts]
        body.append(f"<h3>{escape(mix.name)} <code>{escape(mix.key)}</code> · {total:,} "
                    "buyers</h3>" + charts.hbars(rows, f"RFM tiers of {mix.key}", note=notes))
    return _section("RFM tiers", "Buyers per recency/frequency/monetary tier.", "".join(body),
                    "rfm")


def _nps_section(data: ReportData) -> str:
    if not data.nps:
        return _section("NPS mix", "", _empty("No kind = \"nps\" segment is configured."), "nps")
    body = []
    for mix in data.nps:
        total = mix.total
        by = {key.rsplit("-", 1)[-1]: n for key, _, n in mix.parts}
        score = ((by.get("promoters", 0) - by.get("detractors", 0)) / total * 100
                 if total else 0.0)
        parts = [(label, n, NPS_COLOURS.get(key.rsplit("-", 1)[-1], "#64748b"))
                 for key, label, n in mix.parts]
        body.append(f'<h3>{escape(mix.name)} <code>{escape(mix.key)}</code></h3>'
                    f'<p>NPS <span class="nps-score">{score:+.0f}</span> from {total:,} '
                    "scored contacts</p>" + charts.stacked_bar(parts, f"NPS mix of {mix.key}"))
    return _section("NPS mix", "Promoters (9-10), passives (7-8) and detractors (0-6).",
                    "".join(body), "nps")


def _failures_section(data: ReportData) -> str:
    failed_runs = [r for r in data.runs if r.status in ("failed", "interrupted")]
    parts = []
    if failed_runs:
        rows = "".join(
            f"<tr><td class=num>{_num(r.run_id)}</td><td>{_num(r.command)}</td>"
            f"<td>{r.started_at:%Y-%m-%d %H:%M}</td>"
            f"<td class=status-{escape(r.status)}>{_num(r.status)}</td>"
            f"<td>{_num(r.message)}</td></tr>" for r in failed_runs)
        parts.append("<h3>Failed runs</h3><table><tr><th class=num>run</th><th>command</th>"
                     f"<th>started (UTC)</th><th>status</th><th>message</th></tr>{rows}</table>")
    if data.failures:
        rows = "".join(f"<tr><td>{escape(s)}</td><td>{escape(op)}</td><td>{escape(c)}</td>"
                       f"<td>{escape(e)}</td></tr>" for s, c, op, e in data.failures)
        more = (f"<p class=note>Showing {len(data.failures)} of {data.failures_total}.</p>"
                if data.failures_total > len(data.failures) else "")
        parts.append(f"<h3>Records waiting for retry ({data.failures_total:,})</h3>"
                     "<table><tr><th>segment</th><th>op</th><th>contact</th><th>error</th></tr>"
                     f"{rows}</table>{more}")
    if not parts:
        parts.append(_empty("No failed runs among the recent ones and no records waiting for "
                            "retry."))
    return _section("Recent failures", "Records the CRM rejected are retried on the next run.",
                    "".join(parts), "failures")


def _runs_section(data: ReportData) -> str:
    if not data.runs:
        return _section("Last runs", "", _empty("No runs yet."), "runs")
    rows = []
    for r in data.runs:
        started, finished = r.started_at, r.finished_at
        took = (f"{(finished - started).total_seconds():.1f} s"
                if isinstance(started, dt.datetime) and isinstance(finished, dt.datetime)
                else "")
        when = f"{started:%Y-%m-%d %H:%M:%S}" if isinstance(started, dt.datetime) else ""
        rows.append(
            f"<tr><td class=num>{_num(r.run_id)}</td><td>{_num(r.command)}</td>"
            f"<td>{when}</td><td class=num>{took}</td>"
            f"<td class=status-{escape(r.status)}>{_num(r.status)}</td>"
            f"<td class=num>+{_num(r.adds)} / -{_num(r.removes)}</td>"
            f"<td class=num>{_num(r.failed)}</td>"
            f"<td class=num>{_num(r.api_calls)}</td></tr>")
    table = ("<table><tr><th class=num>run</th><th>command</th><th>started (UTC)</th>"
             "<th class=num>took</th><th>status</th><th class=num>changes</th>"
             "<th class=num>failed</th><th class=num>API calls</th></tr>"
             + "".join(rows) + "</table>")
    return _section("Last runs", "", f'<div class="scroll">{table}</div>', "runs")


def render_html(data: ReportData) -> str:
    total = sum(n for k, n in data.sizes.items() if k in data.names)
    last = data.runs[0] if data.runs else None
    summary = (f"Last run {last.run_id} ({last.command}): {last.status}"
               if last else "No runs yet")
    sections = [_sizes_section(data), _overlap_section(data), _changes_section(data),
                _holdout_section(data), _rfm_section(data), _nps_section(data),
                _failures_section(data), _runs_section(data)]
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<link rel="icon" href="data:,">'
        f"<title>segsync report: {escape(data.label)}</title><style>{CSS}</style></head>"
        f"<body><header><h1>segsync report: {escape(data.label)}</h1>"
        f"<p>Generated {data.generated_at:%Y-%m-%d %H:%M} UTC · {len(data.names)} segment(s), "
        f"{total:,} memberships · {escape(summary)}</p></header><main>"
        + "".join(sections) + "</main></body></html>\n"
    )


def write_report(path: Path, html: str) -> None:
    """Write the page atomically, readable by its owner only (it may name contacts)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(html)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
