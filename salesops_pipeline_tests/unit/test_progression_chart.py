"""The progression chart: each agent in shares of the month's target, best standing first, and a
PNG whatever the names hold."""

import struct
from datetime import date

from salesops_pipeline.sales.charts import agent_curves, progression_chart_png
from salesops_pipeline.sales.reports import ProgressionRow

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _month(agent: str, daily: list[tuple[float, float]]) -> list[ProgressionRow]:
    rows, target_sum, amount_sum = [], 0.0, 0.0
    for day, (target, amount) in enumerate(daily, start=1):
        target_sum += target
        amount_sum += amount
        rows.append(
            ProgressionRow(
                agent,
                f"2025-04-{day:02d}",
                target,
                amount,
                round(amount / target, 2) if target else 0.0,
                target_sum,
                amount_sum,
                round(amount_sum / target_sum, 2) if target_sum else 0.0,
            )
        )
    return rows


def test_a_strong_first_day_is_a_share_of_the_month_not_a_spike():
    # Day 2 sells eight times its target: 800 % that day, under 27 % of the month's target.
    rows = _month("spike@example.com", [(100, 0), (100, 800), *[(100, 50)] * 28])
    [curve] = agent_curves(rows)
    assert rows[1].progression_of_the_day == 8.0
    assert curve.amount_share[1] == 800 / 3000
    assert curve.target_share[-1] == 1.0
    assert max(curve.amount_share) <= 1.0


def test_agents_come_best_standing_first():
    rows = [
        *_month("low@example.com", [(100, 20)] * 3),
        *_month("high@example.com", [(100, 150)] * 3),
        *_month("mid@example.com", [(100, 90)] * 3),
    ]
    assert [c.name for c in agent_curves(rows)] == ["high", "mid", "low"]


def test_days_to_come_have_booked_nothing_yet():
    rows = _month("lea@example.com", [(100, 100)] * 10)
    [curve] = agent_curves(rows, today=date(2025, 4, 4))
    assert len(curve.amount_share) == 4 and len(curve.target_share) == 10
    assert curve.standing == rows[3].progression_accumulated


def test_the_chart_is_a_png_even_with_awkward_names_and_no_rows():
    rows = [
        *_month("a$\\frac$b@example.com", [(100, 50)] * 3),
        *_month("_lea@example.com", [(0, 0)] * 3),  # no target at all: no division by zero
        *_month("\x1b[31mred@example.com", [(100, 120)] * 3),
    ]
    assert progression_chart_png("2025-04", rows).startswith(PNG_SIGNATURE)
    assert progression_chart_png("2025-04", []).startswith(PNG_SIGNATURE)


def test_many_agents_still_give_one_readable_chart():
    rows = [row for n in range(60) for row in _month(f"agent{n:02d}@example.com", [(100, n)] * 5)]
    assert progression_chart_png("2025-04", rows).startswith(PNG_SIGNATURE)


def _png_width(png: bytes) -> int:
    return struct.unpack(">I", png[16:20])[0]  # the IHDR chunk comes first


def test_the_chart_fits_the_asset_pages_column_whole():
    # About 780 px in a 1440 px window: a wider chart loses its right edge on the asset page.
    rows = [row for n in range(12) for row in _month(f"agent{n:02d}@example.com", [(100, n)] * 5)]
    assert _png_width(progression_chart_png("2025-04", rows)) <= 760
    assert _png_width(progression_chart_png("2025-04", [])) <= 760
