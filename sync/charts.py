"""Small SVG charts drawn server-side for ``segsync report`` (no JavaScript, no fonts).

Every function returns one ``<svg class="chart">`` element with explicit width and height,
a ``role="img"`` and an ``aria-label``; hover details are SVG ``<title>`` tooltips. All
text passes through :func:`html.escape`.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

__all__ = ["PALETTE", "diverging_bars", "hbars", "heatmap", "line_chart", "stacked_bar"]

PALETTE = {
    "line": "#2563eb", "add": "#16a34a", "remove": "#dc2626", "muted": "#94a3b8",
    "text": "#1e293b", "grid": "#e2e8f0", "control": "#f59e0b", "treated": "#2563eb",
}
CHAR_WIDTH = 6.6  # px per character of 11px sans-serif, for label layout


def _fmt(n: float) -> str:
    return f"{n:,.0f}"


def _svg(width: float, height: float, label: str, body: Sequence[str], css: str = "") -> str:
    cls = f"chart {css}".strip()
    return (f'<svg class="{cls}" xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" '
            f'height="{height:.0f}" viewBox="0 0 {width:.0f} {height:.0f}" role="img" '
            f'aria-label="{escape(label)}">' + "".join(body) + "</svg>")


def _text(x: float, y: float, text: str, *, anchor: str = "start", size: int = 11,
          fill: str = PALETTE["text"], weight: str = "normal", extra: str = "") -> str:
    return (f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" font-size="{size}" '
            f'fill="{fill}" font-weight="{weight}"{extra}>{escape(text)}</text>')


def _clip(text: str, chars: int) -> str:
    return text if len(text) <= chars else text[: chars - 1] + "…"


def line_chart(values: Sequence[int | None], labels: Sequence[str], title: str, *,
               width: float = 240, height: float = 90) -> str:
    """Size over runs: a line (gaps where a run has no value), min/max and last value."""
    left, right, top, bottom = 40.0, 10.0, 10.0, 16.0
    plot_w, plot_h = width - left - right, height - top - bottom
    known = [v for v in values if v is not None]
    body = [f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" '
            f'stroke="{PALETTE["grid"]}"/>']
    if not known:
        body.append(_text(width / 2, height / 2, "no data", anchor="middle",
                          fill=PALETTE["muted"]))
        return _svg(width, height, f"{title}: no data", body, "line")
    low, high = min(known), max(known)
    span = high - low or max(1.0, high * 0.1)
    base = low if high != low else low - span / 2
    n = len(values)

    def xy(i: int, v: int) -> tuple[float, float]:
        x = left + (plot_w / 2 if n == 1 else i * plot_w / (n - 1))
        return x, top + plot_h - (v - base) / span * plot_h

    body.append(_text(left - 4, top + 8, _fmt(high), anchor="end", size=9,
                      fill=PALETTE["muted"]))
    body.append(_text(left - 4, top + plot_h, _fmt(low), anchor="end", size=9,
                      fill=PALETTE["muted"]))
    run: list[str] = []
    runs: list[list[str]] = [run]
    for i, v in enumerate(values):
        if v is None:
            run = []
            runs.append(run)
            continue
        x, y = xy(i, v)
        run.append(f"{x:.1f},{y:.1f}")
    for points in runs:
        if len(points) > 1:
            body.append(f'<polyline fill="none" stroke="{PALETTE["line"]}" stroke-width="2" '
                        f'points="{" ".join(points)}"/>')
    for i, v in enumerate(values):
        if v is not None:
            x, y = xy(i, v)
            radius = 3.0 if i == n - 1 else 2.0
            body.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{radius}" '
                        f'fill="{PALETTE["line"]}"><title>{escape(labels[i])}: {_fmt(v)}'
                        "</title></circle>")
    if labels:
        body.append(_text(left, height - 3, labels[0], size=9, fill=PALETTE["muted"]))
        if n > 1:
            body.append(_text(left + plot_w, height - 3, labels[-1], anchor="end", size=9,
                              fill=PALETTE["muted"]))
    return _svg(width, height, f"{title}: size over the last {n} run(s)", body, "line")


def _blend(share: float) -> str:
    """White to deep blue."""
    share = max(0.0, min(1.0, share))
    start, end = (244, 247, 251), (30, 64, 175)
    r, g, b = (round(a + (z - a) * share) for a, z in zip(start, end, strict=True))
    return f"#{r:02x}{g:02x}{b:02x}"


def heatmap(keys: Sequence[str], sizes: Sequence[int], overlap: Sequence[Sequence[int]],
            title: str, *, cell: float = 22) -> str:
    """Overlap matrix: cell (row a, column b) is |a ∩ b| / |a|; the diagonal shows sizes."""
    n = len(keys)
    label_w = min(max((len(k) for k in keys), default=4), 28) * CHAR_WIDTH + 8
    left, top = label_w, label_w
    width, height = left + n * cell + 10, top + n * cell + 10
    body = []
    for i, key in enumerate(keys):
        y = top + i * cell + cell * 0.68
        body.append(_text(left - 6, y, _clip(key, 28), anchor="end"))
        x = left + i * cell + cell * 0.68
        body.append(_text(x, top - 6, _clip(key, 28),
                          extra=f' transform="rotate(-90 {x:.1f} {top - 6:.1f})"'))
    for i, a in enumerate(keys):
        for j, b in enumerate(keys):
            both = overlap[i][j]
            x, y = left + j * cell, top + i * cell
            if i == j:
                fill, share = "#475569", 1.0
                tip = f"{a}: {_fmt(sizes[i])} members"
            else:
                share = both / sizes[i] if sizes[i] else 0.0
                fill = _blend(share)
                other = both / sizes[j] if sizes[j] else 0.0
                tip = (f"{a} ∩ {b}: {_fmt(both)} contacts ({share:.0%} of {a}, "
                       f"{other:.0%} of {b})")
            body.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{cell - 1:.1f}" '
                        f'height="{cell - 1:.1f}" fill="{fill}"><title>{escape(tip)}</title>'
                        "</rect>")
            if i != j and share >= 0.01:
                body.append(_text(x + (cell - 1) / 2, y + cell * 0.62, f"{share * 100:.0f}",
                                  anchor="middle", size=8,
                                  fill="#ffffff" if share > 0.5 else PALETTE["text"]))
    return _svg(width, height, title, body, "heatmap")


def diverging_bars(rows: Sequence[tuple[str, int, int]], title: str, *,
                   width: float = 680, bar: float = 18) -> str:
    """Per label: removes to the left of the axis (red), adds to the right (green)."""
    label_w = min(max((len(r[0]) for r in rows), default=4), 32) * CHAR_WIDTH + 10
    top = 20.0
    height = top + len(rows) * (bar + 6) + 6
    half = (width - label_w - 20) / 2
    axis = label_w + half
    peak = max((max(a, r) for _, a, r in rows), default=0) or 1
    body = [_text(axis - 4, 13, "removed", anchor="end", size=10, fill=PALETTE["remove"]),
            _text(axis + 4, 13, "added", size=10, fill=PALETTE["add"])]
    for i, (label, adds, removes) in enumerate(rows):
        y = top + i * (bar + 6)
        body.append(_text(label_w - 8, y + bar * 0.72, _clip(label, 32), anchor="end"))
        w_add, w_rem = adds / peak * (half - 50), removes / peak * (half - 50)
        body.append(f'<rect x="{axis:.1f}" y="{y:.1f}" width="{max(w_add, 0.5):.1f}" '
                    f'height="{bar}" fill="{PALETTE["add"]}"><title>{escape(label)}: '
                    f"+{_fmt(adds)}</title></rect>")
        body.append(f'<rect x="{axis - max(w_rem, 0.5):.1f}" y="{y:.1f}" '
                    f'width="{max(w_rem, 0.5):.1f}" height="{bar}" fill="{PALETTE["remove"]}">'
                    f"<title>{escape(label)}: -{_fmt(removes)}</title></rect>")
        body.append(_text(axis + w_add + 4, y + bar * 0.72, f"+{_fmt(adds)}", size=10))
        body.append(_text(axis - w_rem - 4, y + bar * 0.72, f"-{_fmt(removes)}", anchor="end",
                          size=10))
    body.append(f'<line x1="{axis:.1f}" y1="{top - 2}" x2="{axis:.1f}" y2="{height - 4:.1f}" '
                f'stroke="{PALETTE["text"]}"/>')
    return _svg(width, height, title, body, "diverging")


def hbars(rows: Sequence[tuple[str, Sequence[tuple[int, str]]]], title: str, *,
          width: float = 680, bar: float = 16, note: Sequence[str] = ()) -> str:
    """Horizontal bars; each row has one or more (value, colour) bars stacked vertically."""
    label_w = min(max((len(r[0]) for r in rows), default=4), 32) * CHAR_WIDTH + 10
    peak = max((v for _, bars in rows for v, _ in bars), default=0) or 1
    scale = (width - label_w - 90) / peak
    body = []
    y = 6.0
    for index, (label, bars) in enumerate(rows):
        block = len(bars) * (bar + 2)
        body.append(_text(label_w - 8, y + block / 2 + 4, _clip(label, 32), anchor="end"))
        for value, colour in bars:
            w = max(value * scale, 0.5)
            body.append(f'<rect x="{label_w:.1f}" y="{y:.1f}" width="{w:.1f}" height="{bar}" '
                        f'fill="{colour}"><title>{escape(label)}: {_fmt(value)}</title></rect>')
            body.append(_text(label_w + w + 4, y + bar * 0.75, _fmt(value), size=10))
            y += bar + 2
        if index < len(note) and note[index]:
            body.append(_text(width - 4, y - block / 2 + 2, note[index], anchor="end", size=10,
                              fill=PALETTE["muted"]))
        y += 8
    return _svg(width, y + 2, title, body, "bars")


def stacked_bar(parts: Sequence[tuple[str, int, str]], title: str, *,
                width: float = 680, height: float = 54) -> str:
    """One 100% bar split into labelled parts, with a legend line below."""
    total = sum(v for _, v, _ in parts) or 1
    body = []
    x = 0.0
    for label, value, colour in parts:
        w = value / total * width
        body.append(f'<rect x="{x:.1f}" y="0" width="{w:.1f}" height="28" fill="{colour}">'
                    f"<title>{escape(label)}: {_fmt(value)} ({value / total:.0%})</title></rect>")
        if w > 60:
            body.append(_text(x + w / 2, 18, f"{value / total:.0%}", anchor="middle",
                              fill="#ffffff", weight="bold"))
        x += w
    legend_x = 0.0
    for label, value, colour in parts:
        text = f"{label} {_fmt(value)}"
        body.append(f'<rect x="{legend_x:.1f}" y="38" width="10" height="10" fill="{colour}"/>')
        body.append(_text(legend_x + 14, 47, text, size=11))
        legend_x += 14 + len(text) * CHAR_WIDTH + 18
    return _svg(width, height, title, body, "stacked")
