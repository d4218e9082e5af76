"""The report's chart: the last 14 days of cost and tokens, stacked by platform, as a PNG.

matplotlib is imported lazily (it takes about a second) and drawn in a worker thread with the
object-oriented API and the Agg canvas: no pyplot, no global figure state, safe off the main thread.
"""

from __future__ import annotations

import asyncio
import io
from typing import TYPE_CHECKING

from core.reports.model import DailyReport, DayPoint

if TYPE_CHECKING:
    from matplotlib.axes import Axes

_COLORS = ("#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860")


async def render_chart(report: DailyReport) -> bytes | None:
    """PNG bytes, or None when the history holds no usage at all."""
    if not any(p.cost_by_platform or p.tokens_by_platform for p in report.history):
        return None
    return await asyncio.to_thread(_draw, report)


def _platforms(history: list[DayPoint]) -> list[str]:
    """Platforms in order of total tokens over the period (biggest at the bottom of each stack)."""
    totals: dict[str, int] = {}
    for point in history:
        for name in {*point.cost_by_platform, *point.tokens_by_platform}:
            totals[name] = totals.get(name, 0) + point.tokens_by_platform.get(name, 0)
    return sorted(totals, key=lambda name: (-totals[name], name))


def _cost_decimals(peak: float) -> int:
    """Enough decimals that a small team's daily cents do not all read "$0.00"."""
    if peak >= 10:
        return 0
    if peak >= 0.1:
        return 2
    return 4 if peak >= 0.001 else 6


def _draw(report: DailyReport) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    history = report.history
    platforms = _platforms(history)
    labels = [f"{p.day:%d %b}" for p in history]
    figure = Figure(figsize=(9, 5.5), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    cost_axes, token_axes = figure.subplots(2, 1, sharex=True)
    _stack(cost_axes, labels, platforms, [p.cost_by_platform for p in history])
    _stack(token_axes, labels, platforms, [p.tokens_by_platform for p in history])
    cost_axes.set_ylabel("Cost (USD)")
    decimals = _cost_decimals(max((sum(p.cost_by_platform.values()) for p in history), default=0.0))
    cost_axes.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"${v:,.{decimals}f}"))
    token_axes.set_ylabel("Tokens")
    token_axes.yaxis.set_major_formatter(FuncFormatter(lambda v, _: _compact(v)))
    token_axes.tick_params(axis="x", labelrotation=45)
    cost_axes.set_title(f"Last {len(history)} days to {report.day:%Y-%m-%d} ({report.timezone})")
    cost_axes.legend(loc="upper left", fontsize="small")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _stack(
    axes: Axes, labels: list[str], platforms: list[str], series: list[dict[str, float]] | list[dict[str, int]]
) -> None:
    bottom = [0.0] * len(labels)
    for index, name in enumerate(platforms):
        values = [float(day.get(name, 0)) for day in series]
        axes.bar(labels, values, bottom=bottom, label=name, color=_COLORS[index % len(_COLORS)])
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    axes.grid(axis="y", alpha=0.3)


def _compact(value: float) -> str:
    if value >= 1_000_000:
        return f"{value / 1_000_000:.1f}M"
    if value >= 1_000:
        return f"{value / 1_000:.0f}k"
    return f"{value:.0f}"
