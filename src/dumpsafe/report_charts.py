"""Charts as inline SVG, rendered on the server: no chart library, no external URL.
Used by the evidence report (one self-contained HTML file) and the dashboard's charts page."""

from __future__ import annotations

from datetime import datetime
from html import escape
from typing import Callable, Sequence

W, H = 560, 180
PAD_L, PAD_R, PAD_T, PAD_B = 64, 12, 26, 30


def _frame(title: str, body: str, ymax_label: str, first: str, last: str) -> str:
    return (
        f'<svg class="chart" viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" '
        f'aria-label="{escape(title)}"><title>{escape(title)}</title>'
        f'<text x="{PAD_L}" y="16" font-size="13" font-weight="bold">{escape(title)}</text>'
        f'<line x1="{PAD_L}" y1="{H - PAD_B}" x2="{W - PAD_R}" y2="{H - PAD_B}" stroke="#888"/>'
        f'<line x1="{PAD_L}" y1="{PAD_T}" x2="{PAD_L}" y2="{H - PAD_B}" stroke="#888"/>'
        f'<text x="{PAD_L - 4}" y="{PAD_T + 4}" font-size="10" text-anchor="end">{escape(ymax_label)}</text>'
        f'<text x="{PAD_L - 4}" y="{H - PAD_B}" font-size="10" text-anchor="end">0</text>'
        f'<text x="{PAD_L}" y="{H - 10}" font-size="10">{escape(first)}</text>'
        f'<text x="{W - PAD_R}" y="{H - 10}" font-size="10" text-anchor="end">{escape(last)}</text>'
        f"{body}</svg>"
    )


def empty(title: str) -> str:
    return _frame(title, f'<text x="{W / 2}" y="{H / 2}" font-size="12" text-anchor="middle" fill="#888">no data in the window</text>',
                  "", "", "")


def line_chart(title: str, points: Sequence[tuple[datetime, float]], fmt: Callable[[float], str]) -> str:
    """Values over time: x by time, y from 0 to the largest value."""
    if not points:
        return empty(title)
    pts = sorted(points)
    t0, t1 = pts[0][0], pts[-1][0]
    span = (t1 - t0).total_seconds() or 1.0
    top = max(v for _, v in pts) or 1.0
    xy = []
    for t, v in pts:
        x = PAD_L + (W - PAD_L - PAD_R) * ((t - t0).total_seconds() / span if len(pts) > 1 else 0.5)
        y = H - PAD_B - (H - PAD_T - PAD_B) * (v / top)
        xy.append((x, y, t, v))
    line = " ".join(f"{x:.1f},{y:.1f}" for x, y, _, _ in xy)
    dots = "".join(
        f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="#2563eb"><title>{t:%Y-%m-%d %H:%M} {escape(fmt(v))}</title></circle>'
        for x, y, t, v in xy
    )
    body = f'<polyline fill="none" stroke="#2563eb" stroke-width="1.5" points="{line}"/>{dots}'
    form = "%Y-%m-%d" if (t1 - t0).total_seconds() > 2 * 86400 else "%m-%d %H:%M"
    return _frame(title, body, fmt(top), t0.strftime(form), t1.strftime(form))


def bar_chart(title: str, bars: Sequence[tuple[str, float | None, bool]], fmt: Callable[[float], str]) -> str:
    """One bar per item (label, value, ok): green when ok, red otherwise (a failed drill shows as a short red bar)."""
    if not bars:
        return empty(title)
    top = max((v or 0.0) for _, v, _ in bars) or 1.0
    slot = min(48.0, (W - PAD_L - PAD_R) / len(bars))
    out = []
    for i, (label, v, ok) in enumerate(bars):
        h = (H - PAD_T - PAD_B) * ((v or 0.0) / top) if v else 3
        x = PAD_L + 6 + i * slot + slot * 0.15
        y = H - PAD_B - h
        shown = fmt(v) if v is not None else "-"
        out.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{slot * 0.7:.1f}" height="{h:.1f}" fill="{"#16a34a" if ok else "#dc2626"}">'
                   f"<title>{escape(label)} {escape(shown)}</title></rect>")
    return _frame(title, "".join(out), fmt(top), bars[0][0], bars[-1][0])
