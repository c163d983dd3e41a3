"""The HTML report's charts: matplotlib drawing inline SVG, so every chart has axes, tick values and a legend,
and the report still opens anywhere without JavaScript or network. Text stays text in the SVG (the page's
font, selectable, searchable)."""

from __future__ import annotations

import io

WIDTH, HEIGHT = 6.4, 3.6  # inches at 100 dpi: 640x360 px in the page


def _figure(title: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams["svg.fonttype"] = "none"

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


def lines(series: dict[str, list[tuple[float, float]]], title: str, x_label: str, y_label: str,
          integer_x: bool = True) -> str:
    """One line per series; x ticks on whole numbers (epochs) unless integer_x is False."""
    if not any(series.values()):
        return ""
    from matplotlib.ticker import MaxNLocator

    plt, figure, axes = _figure(title)
    for name, points in series.items():
        axes.plot([x for x, _ in points], [y for _, y in points], marker="o", markersize=3, label=name)
    if integer_x:
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_xlabel(x_label)
    axes.set_ylabel(y_label)
    axes.legend(fontsize=8, loc="best")
    return _svg(plt, figure)
