"""The progression chart managers read in the morning: where each agent stands against the
month's target, readable in a few seconds.

Every figure is a share of the agent's target for the whole month. The accumulated target then
climbs from 0 to 100 % by the last day and an agent on track follows it; a strong first day
shows as a few percent of the month, not as the 800 % of that day's ratio that would flatten
every other line. One small panel per agent, sharing their scales, sorted by standing, under
a bar per agent of the standing itself. Plain functions, nothing of Dagster: the asset embeds
the picture, and the frontend API serves it as a PNG.
"""

import base64
import calendar
import io
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

from salesops_pipeline import numbers
from salesops_pipeline.sales.reports import ProgressionRow
from salesops_pipeline.text import terminal_safe

# Panels beyond this many make each one too small to read; the bars still show every agent
# up to MAX_AGENTS_BARRED, and the data stays whole in the warehouse.
MAX_AGENTS_CHARTED = 16
MAX_AGENTS_BARRED = 40
PANEL_COLUMNS = 3
# The asset page's main column in the Dagster UI is about 780 px wide in a 1440 px window; a
# wider image is cut at its right edge there.
WIDTH_INCHES, DPI = 9.25, 80


@dataclass(frozen=True)
class AgentCurve:
    """One agent's month as the chart shows it, in shares of the month's target."""

    agent: str
    days: list[int]
    target_share: list[float]
    amount_share: list[float]
    standing: float  # booked so far over the target so far, the month-end table's figure

    @property
    def name(self) -> str:
        return self.agent.split("@")[0]


def agent_curves(rows: Iterable[ProgressionRow], today: date | None = None) -> list[AgentCurve]:
    """Each agent's curve, best standing first. With `today`, booked amounts stop at that day
    (days to come have booked nothing yet) and the standing is the one of that day."""
    by_agent: dict[str, list[ProgressionRow]] = defaultdict(list)
    for row in rows:
        by_agent[row.agent].append(row)
    curves = []
    for agent, agent_rows in by_agent.items():
        agent_rows.sort(key=lambda row: row.date)
        month_target = agent_rows[-1].target_accumulated
        scale = 1.0 / month_target if month_target > 0 else 0.0
        booked = [row for row in agent_rows if today is None or row.date <= today.isoformat()]
        current = booked[-1] if booked else None
        curves.append(
            AgentCurve(
                agent=agent,
                days=[int(row.date[8:10]) for row in agent_rows],
                target_share=[row.target_accumulated * scale for row in agent_rows],
                amount_share=[row.amount_accumulated * scale for row in booked],
                standing=current.progression_accumulated if current else 0.0,
            )
        )
    curves.sort(key=lambda curve: (-curve.standing, curve.agent))
    return curves


def progression_chart_png(
    month: str, rows: Iterable[ProgressionRow], today: date | None = None
) -> bytes:
    """The month's progression chart as a PNG."""
    # Imported here: matplotlib is slow to import and only a chart needs it. A Figure of its
    # own rather than pyplot's global state: the frontend API draws charts in several threads.
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    curves = agent_curves(rows, today)
    if not curves:
        return _message_png(f"Progression toward target, {month}: no agent has targets this month")
    panels = curves[:MAX_AGENTS_CHARTED]
    panel_rows = max(1, -(-len(panels) // PANEL_COLUMNS))
    barred = curves[:MAX_AGENTS_BARRED]
    bar_height = max(1.6, 0.28 * len(barred) + 0.8)
    figure = Figure(figsize=(WIDTH_INCHES, bar_height + 2.1 * panel_rows + 0.6), dpi=DPI)
    grid = figure.add_gridspec(
        1 + panel_rows, PANEL_COLUMNS, height_ratios=[bar_height] + [2.1] * panel_rows
    )
    as_percent = FuncFormatter(lambda value, _: numbers.percent(value))
    figure.suptitle(f"Progression toward target, {month}", fontsize=13, x=0.02, ha="left")

    standings = figure.add_subplot(grid[0, :])
    _standings(standings, barred, len(curves), as_percent)
    top = max([1.0, *(max(c.amount_share, default=0.0) for c in panels)]) * 1.05
    last_day = calendar.monthrange(int(month[:4]), int(month[5:7]))[1]
    for index, curve in enumerate(panels):
        axis = figure.add_subplot(grid[1 + index // PANEL_COLUMNS, index % PANEL_COLUMNS])
        _panel(axis, curve, top, last_day, as_percent)
    figure.tight_layout(rect=(0, 0, 1, 0.97))
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _message_png(text: str) -> bytes:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(WIDTH_INCHES, 1.2), dpi=DPI)
    figure.text(0.02, 0.5, text, fontsize=13, va="center")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _standings(axis, curves: list[AgentCurve], total: int, as_percent) -> None:
    names = [_literal_label(curve.name) for curve in curves]
    values = [curve.standing for curve in curves]
    colors = ["#2e7d32" if value >= 1.0 else "#c62828" for value in values]
    positions = list(range(len(curves)))
    axis.barh(positions, values, color=colors, height=0.7)
    axis.set_yticks(positions, names, fontsize=9)
    axis.invert_yaxis()  # best first, at the top
    axis.axvline(1.0, color="grey", linestyle="--", linewidth=1)
    axis.xaxis.set_major_formatter(as_percent)
    for position, value in zip(positions, values, strict=True):
        axis.text(value, position, f" {numbers.percent(value)}", va="center", fontsize=8)
    more = f" (the first {len(curves)} of {total})" if total > len(curves) else ""
    axis.set_title(
        f"Booked so far against the target so far{more}; green at or above it.\nBelow: each"
        " agent's booked amount (line) and target (dashed) so far, in shares of the month's"
        " target.",
        fontsize=9,
        loc="left",
    )
    axis.set_xlim(0, max([1.2, *values]) * 1.15)
    axis.spines[["top", "right"]].set_visible(False)


def _panel(axis, curve: AgentCurve, top: float, last_day: int, as_percent) -> None:
    axis.plot(curve.days, curve.target_share, color="grey", linestyle="--", linewidth=1)
    color = "#2e7d32" if curve.standing >= 1.0 else "#c62828"
    axis.plot(curve.days[: len(curve.amount_share)], curve.amount_share, color=color)
    axis.set_title(
        f"{_literal_label(curve.name)}  {numbers.percent(curve.standing)}", fontsize=9, loc="left"
    )
    axis.set_ylim(0, top)
    axis.set_xlim(1, last_day)
    axis.yaxis.set_major_formatter(as_percent)
    axis.tick_params(labelsize=7)
    axis.spines[["top", "right"]].set_visible(False)


def progression_chart_markdown(
    month: str, rows: Iterable[ProgressionRow], today: date | None = None
) -> str:
    """The chart embedded in markdown, for a UI that shows it on demand."""
    encoded = base64.b64encode(progression_chart_png(month, rows, today)).decode("ascii")
    return f"![Progression {month}](data:image/png;base64,{encoded})"


def _literal_label(name: str) -> str:
    """A name as matplotlib shows it literally: `$` would start math text (and may fail the
    whole chart), a leading `_` hides the line from the legend, and control characters have
    no glyph."""
    label = terminal_safe(name).replace("$", r"\$")
    return f" {label}" if label.startswith("_") else label
