"""The HTML report's charts: matplotlib drawing inline SVG, so every chart has axes, tick values, labelled
points and a legend, and the report still opens anywhere without JavaScript or network."""

from __future__ import annotations

import io

WIDTH, HEIGHT = 6.4, 3.6  # inches at 100 dpi: 640x360 px in the page


def _figure(title: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(WIDTH, HEIGHT), dpi=100)
    axes.set_title(title, fontsize=11)
    axes.grid(True, alpha=0.3)
    return plt, figure, axes


def _svg(plt, figure) -> str:
    buffer = io.StringIO()
    figure.tight_layout()
    figure.savefig(buffer, format="svg", metadata={"Date": None})
    plt.close(figure)
    text = buffer.getvalue()
    return text[text.index("<svg"):]


def scatter(points: dict[str, tuple[float, float]], title: str, x_label: str, y_label: str) -> str:
    """One point per name, each with its own colour and marker, named in a legend beside the plot (points
    often sit on top of each other, where text labels would overlap); the y-range hugs the data."""
    if not points:
        return ""
    plt, figure, axes = _figure(title)
    figure.set_size_inches(WIDTH * 1.35, HEIGHT)
    markers = "os^Dv<>pPX*h"
    colours = plt.get_cmap("tab20").colors
    for i, (name, (x, y)) in enumerate(points.items()):
        axes.scatter([x], [y], s=36, marker=markers[i % len(markers)], color=colours[i % len(colours)], label=name,
                     zorder=3)
    ys = [y for _, y in points.values()]
    span = (max(ys) - min(ys)) or abs(max(ys)) * 0.01 or 0.01
    axes.set_ylim(min(ys) - 0.3 * span, max(ys) + 0.3 * span)
    axes.set_xlabel(x_label)
    axes.set_ylabel(y_label)
    axes.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False)
    return _svg(plt, figure)


def bars(values: dict[str, float], title: str, x_label: str) -> str:
    """Horizontal bars, longest first, each with its value."""
    if not values:
        return ""
    plt, figure, axes = _figure(title)
    ordered = sorted(values.items(), key=lambda item: item[1])
    bars_drawn = axes.barh([name for name, _ in ordered], [value for _, value in ordered], color="#73a15a")
    axes.bar_label(bars_drawn, labels=[f"{value:,.0f}" for _, value in ordered], fontsize=8, padding=3)
    axes.set_xlabel(x_label)
    axes.tick_params(axis="y", labelsize=8)
    axes.margins(x=0.15)
    return _svg(plt, figure)


def lines(series: dict[str, list[tuple[float, float]]], title: str, x_label: str, y_label: str) -> str:
    if not any(series.values()):
        return ""
    plt, figure, axes = _figure(title)
    for name, points in series.items():
        axes.plot([x for x, _ in points], [y for _, y in points], marker="o", markersize=3, label=name)
    axes.set_xlabel(x_label)
    axes.set_ylabel(y_label)
    axes.legend(fontsize=8)
    return _svg(plt, figure)
