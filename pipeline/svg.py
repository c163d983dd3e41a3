"""Tiny inline-SVG charts for the HTML report: no plotting library, no JavaScript, opens anywhere."""

from __future__ import annotations

from html import escape

W, H, PAD = 560, 300, 56


def _scale(values: list[float], lo_px: float, hi_px: float):
    lo, hi = min(values), max(values)
    span = (hi - lo) or abs(hi) or 1.0
    lo, hi = lo - 0.08 * span, hi + 0.08 * span
    return lambda v: lo_px + (v - lo) / (hi - lo) * (hi_px - lo_px), (lo, hi)


def _frame(title: str, x_label: str, y_label: str, body: str, x_range, y_range) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" role="img">'
        f"<title>{escape(title)}</title>"
        f'<rect x="{PAD}" y="10" width="{W - PAD - 10}" height="{H - PAD - 10}" fill="none" stroke="#999"/>'
        f'<text x="{W / 2}" y="{H - 12}" text-anchor="middle" font-size="12">{escape(x_label)} '
        f"({x_range[0]:.3g} – {x_range[1]:.3g})</text>"
        f'<text x="14" y="{H / 2}" transform="rotate(-90 14 {H / 2})" text-anchor="middle" font-size="12">'
        f"{escape(y_label)} ({y_range[0]:.4g} – {y_range[1]:.4g})</text>{body}</svg>"
    )


def scatter(points: dict[str, tuple[float, float]], title: str, x_label: str, y_label: str) -> str:
    if not points:
        return ""
    sx, xr = _scale([p[0] for p in points.values()], PAD, W - 10)
    sy, yr = _scale([p[1] for p in points.values()], H - PAD, 10)
    # Points are numbered and named in a legend: variants often sit on top of each other.
    body = "".join(
        f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="4" fill="#3465a4"/>'
        f'<text x="{sx(x) + 5:.1f}" y="{sy(y) - 5 - 9 * (i % 3):.1f}" font-size="10">{i + 1}</text>'
        for i, (x, y) in enumerate(points.values())
    )
    legend = " · ".join(f"{i + 1} {escape(name)}" for i, name in enumerate(points))
    return _frame(title, x_label, y_label, body, xr, yr) + f"<p style='font-size:11px;max-width:{W}px'>{legend}</p>"


def bars(values: dict[str, float], title: str, x_label: str) -> str:
    if not values:
        return ""
    top = max(values.values()) or 1.0
    row = 22
    height = len(values) * row + 30
    body = "".join(
        f'<text x="170" y="{20 + i * row + 14}" text-anchor="end" font-size="11">{escape(name)}</text>'
        f'<rect x="176" y="{20 + i * row + 3}" width="{(W - 260) * v / top:.1f}" height="{row - 6}" fill="#73a15a"/>'
        f'<text x="{180 + (W - 260) * v / top:.1f}" y="{20 + i * row + 14}" font-size="10">{v:,.0f}</text>'
        for i, (name, v) in enumerate(values.items())
    )
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{height}" role="img">'
            f'<title>{escape(title)}</title><text x="176" y="12" font-size="11">{escape(x_label)}</text>{body}</svg>')


def lines(series: dict[str, list[tuple[float, float]]], title: str, x_label: str, y_label: str) -> str:
    points = [p for s in series.values() for p in s]
    if not points:
        return ""
    sx, xr = _scale([p[0] for p in points], PAD, W - 10)
    sy, yr = _scale([p[1] for p in points], H - PAD, 10)
    colours = ["#3465a4", "#cc0000", "#73a15a", "#f57900"]
    body = ""
    for i, (name, pts) in enumerate(series.items()):
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in pts)
        body += (f'<polyline points="{path}" fill="none" stroke="{colours[i % 4]}" stroke-width="2"/>'
                 f'<text x="{W - 140}" y="{24 + 14 * i}" font-size="11" fill="{colours[i % 4]}">{escape(name)}</text>')
    return _frame(title, x_label, y_label, body, xr, yr)
