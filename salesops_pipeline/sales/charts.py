"""Pictures for the Dagster UI, embedded in asset metadata as markdown images."""

import base64
import io
from collections import defaultdict
from collections.abc import Iterable

from salesops_pipeline.sales.reports import ProgressionRow
from salesops_pipeline.text import terminal_safe

# More lines than this make an unreadable chart; the full data stays in the warehouse.
MAX_AGENTS_CHARTED = 15


def progression_chart_markdown(month: str, rows: Iterable[ProgressionRow]) -> str:
    """A line per agent: the month's accumulated progression toward target, day by day."""
    # Imported here: matplotlib is slow to import and only materializations draw charts.
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    series: dict[str, list[ProgressionRow]] = defaultdict(list)
    for row in rows:
        series[row.agent].append(row)
    figure, axis = plt.subplots(figsize=(9, 4.5), dpi=80)
    try:
        for agent, agent_rows in sorted(series.items())[:MAX_AGENTS_CHARTED]:
            axis.plot(
                [int(row.date[8:10]) for row in agent_rows],
                [row.progression_accumulated for row in agent_rows],
                marker=".",
                label=_literal_label(agent.split("@")[0]),
            )
        axis.axhline(1.0, color="grey", linestyle="--", linewidth=1)
        axis.set_title(f"Accumulated progression toward target, {month}")
        axis.set_xlabel("day of month")
        axis.set_ylabel("amount / target")
        if series:
            axis.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
        figure.tight_layout()
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png")
    finally:
        plt.close(figure)
    encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f"![Progression {month}](data:image/png;base64,{encoded})"


def _literal_label(name: str) -> str:
    """A name as matplotlib shows it literally: `$` would start math text (and may fail the
    whole chart), a leading `_` hides the line from the legend, and control characters have
    no glyph."""
    label = terminal_safe(name).replace("$", r"\$")
    return f" {label}" if label.startswith("_") else label
