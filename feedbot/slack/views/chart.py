"""The digest's chart: reports per week, stacked by category, as a PNG for a phone screen."""

from __future__ import annotations

import io

from feedbot.core.digest import Trend
from feedbot.slack.i18n import t
from feedbot.slack.text import shorten
from feedbot.slack.views.digest import week_number

CHART_SERIES = 8
"""Categories drawn one by one; more would make the legend unreadable on a phone."""


def render_chart(trend: Trend, *, locale: str) -> bytes:
    """Reports per week, stacked by category, as a PNG sized for a phone screen: large type,
    whole numbers only, the legend under the bars. Rendered headless (Agg), without pyplot's global
    state, so concurrent renders in threads do not interfere."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    figure = Figure(figsize=(8, 6), dpi=150, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    labels = [t(locale, "digest.chart_week", week=week_number(period)) for period in trend.periods]
    series = list(trend.series.items())
    if len(series) > CHART_SERIES:  # the largest ones, and the rest as one
        rest = series[CHART_SERIES - 1 :]
        summed = [sum(counts[week] for _, counts in rest) for week in range(len(labels))]
        series = [
            *series[: CHART_SERIES - 1],
            (t(locale, "digest.chart_rest", n=len(rest)), summed),
        ]
    positions = list(range(len(labels)))
    bottom = [0] * len(labels)
    colours = [
        "#1b5e9b",
        "#e8871e",
        "#2e8b57",
        "#c0392b",
        "#7d5ba6",
        "#8c564b",
        "#d35f9a",
        "#7f7f7f",
        "#17a2b8",
        "#b8a21e",
    ]
    for index, (category, counts) in enumerate(series):
        axes.bar(
            positions,
            counts,
            bottom=bottom,
            label=shorten(category, 28),
            color=colours[index % len(colours)],
            width=0.7,
        )
        bottom = [low + count for low, count in zip(bottom, counts, strict=True)]
    axes.set_title(t(locale, "digest.chart_title"), fontsize=18, loc="left", pad=12)
    axes.set_ylabel(t(locale, "digest.chart_axis"), fontsize=14)
    axes.set_xticks(positions, labels, fontsize=12, rotation=0)
    axes.tick_params(axis="y", labelsize=12)
    axes.yaxis.set_major_locator(MaxNLocator(integer=True))
    axes.spines[["top", "right"]].set_visible(False)
    axes.grid(axis="y", alpha=0.3)
    axes.set_axisbelow(True)
    if series:
        axes.legend(
            loc="upper center",
            bbox_to_anchor=(0.5, -0.08),
            ncols=2,
            fontsize=12,
            frameon=False,
        )
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def chart_comment(trend: Trend, locale: str) -> str:
    return t(
        locale,
        "digest.chart_comment",
        first=week_number(trend.periods[0]),
        last=week_number(trend.periods[-1]),
    )
