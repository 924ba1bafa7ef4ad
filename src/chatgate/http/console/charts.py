"""Small line charts as inline SVG, drawn on the server (no script, no library).

`line_chart` takes series of (time, value) points and returns SVG markup built
only from numbers and escaped labels, so a page can include it as is.  Colours
are presentation attributes, not `style`, so the console's Content-Security-
Policy (no inline styles) does not strip them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from markupsafe import Markup

PALETTE = ("#2563eb", "#16a34a", "#d97706", "#dc2626", "#7c3aed")


@dataclass(frozen=True)
class Series:
    label: str
    points: Sequence[tuple[float, float]]


def _nice_max(value: float) -> float:
    """A round upper bound at or above `value` (1, 2, 5 times a power of ten)."""
    if value <= 0:
        return 1.0
    magnitude = 1.0
    while magnitude * 10 <= value:
        magnitude *= 10
    while magnitude > value:
        magnitude /= 10
    for step in (1, 2, 5, 10):
        if step * magnitude >= value:
            return step * magnitude
    return 10 * magnitude


def _number(value: float) -> str:
    return f"{value:.0f}" if value >= 10 or value == int(value) else f"{value:.1f}"


def line_chart(
    title: str, series: Sequence[Series], *, width: int = 480, height: int = 160
) -> Markup:
    """An SVG chart of `series` over a shared time axis; an empty chart says so."""
    left, right, top, bottom = 40, 10, 22, 20
    plot_w, plot_h = width - left - right, height - top - bottom
    times = [t for s in series for t, _ in s.points]
    values = [v for s in series for _, v in s.points]
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {width} {height}"'
        f' width="{width}" height="{height}" role="img" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
        f'<text x="{left}" y="14" font-size="12" fill="#111827">{escape(title)}</text>',
        f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none"'
        ' stroke="#d1d5db"/>',
    ]
    if len(set(times)) < 2:
        parts.append(
            f'<text x="{left + plot_w / 2:.1f}" y="{top + plot_h / 2:.1f}" font-size="12"'
            ' text-anchor="middle" fill="#6b7280">collecting samples…</text>'
        )
        parts.append("</svg>")
        return Markup("".join(parts))
    t0, t1 = min(times), max(times)
    top_value = _nice_max(max(values, default=0.0))
    parts.append(
        f'<text x="{left - 4}" y="{top + 10}" font-size="10" text-anchor="end"'
        f' fill="#6b7280">{_number(top_value)}</text>'
    )
    parts.append(
        f'<text x="{left - 4}" y="{top + plot_h}" font-size="10" text-anchor="end"'
        ' fill="#6b7280">0</text>'
    )
    minutes = (t1 - t0) / 60
    parts.append(
        f'<text x="{left}" y="{height - 5}" font-size="10" fill="#6b7280">'
        f"{_number(minutes)} min ago</text>"
    )
    parts.append(
        f'<text x="{left + plot_w}" y="{height - 5}" font-size="10" text-anchor="end"'
        ' fill="#6b7280">now</text>'
    )
    for index, s in enumerate(series):
        colour = PALETTE[index % len(PALETTE)]
        coords = " ".join(
            f"{left + (t - t0) / (t1 - t0) * plot_w:.1f},"
            f"{top + plot_h - v / top_value * plot_h:.1f}"
            for t, v in s.points
        )
        if coords:
            parts.append(
                f'<polyline points="{coords}" fill="none" stroke="{colour}" stroke-width="1.5"/>'
            )
        legend_x = left + 150 + index * 95
        parts.append(
            f'<rect x="{legend_x}" y="6" width="10" height="10" fill="{colour}"/>'
            f'<text x="{legend_x + 14}" y="15" font-size="11" fill="#111827">'
            f"{escape(s.label)}</text>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))
