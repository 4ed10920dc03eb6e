"""Checks that the sales reports can be trusted before a manager reads them."""

import dagster as dg

from salesops_pipeline import warehouse as wh
from salesops_pipeline.assets.sales import agent_daily_progression, team_sales
from salesops_pipeline.resources import SalesDatabaseResource, WarehouseResource
from salesops_pipeline.sales import reports
from salesops_pipeline.text import markdown_cell


@dg.asset_check(asset=team_sales)
def team_sales_reconcile_with_sessions(
    sales_db: SalesDatabaseResource, warehouse: WarehouseResource
) -> dg.AssetCheckResult:
    """Every team's stored totals equal its sessions counted straight from the sales DB."""
    with sales_db.connect() as conn:
        raw = reports.raw_team_totals(conn)
    with warehouse.get_connection() as conn:
        stored = wh.stored_team_totals(conn)
    differences = reports.team_total_differences(stored, raw)
    return dg.AssetCheckResult(
        passed=not differences,
        metadata={
            "teams_checked": len(raw),
            "differences": dg.MetadataValue.md(
                "\n".join(f"- {markdown_cell(d)}" for d in differences) or "none"
            ),
        },
    )


@dg.asset_check(asset=agent_daily_progression)
def progression_accumulates_daily_values(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    """The accumulated target and amount are exactly the running sums of the daily values."""
    with warehouse.get_connection() as conn:
        mismatches = wh.accumulation_mismatches(conn)
    return dg.AssetCheckResult(
        passed=not mismatches,
        metadata={
            "mismatches_shown": len(mismatches),
            "first_mismatches": dg.MetadataValue.md(
                "\n".join(
                    f"- {month} {markdown_cell(agent)} {day}: target {t} (expected {et}),"
                    f" amount {a} (expected {ea})"
                    for month, agent, day, t, et, a, ea in mismatches
                )
                or "none"
            ),
        },
    )


@dg.asset_check(asset=agent_daily_progression)
def progression_never_negative(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    """No progression is below 0: a day of unsubscriptions shows as 0, not as a negative."""
    with warehouse.get_connection() as conn:
        negatives = wh.negative_progressions(conn)
    return dg.AssetCheckResult(
        passed=not negatives,
        metadata={
            "negatives_shown": len(negatives),
            "first_negatives": dg.MetadataValue.md(
                "\n".join(
                    f"- {month} {markdown_cell(agent)} {day}: day {p_day}, accumulated {p_acc}"
                    for month, agent, day, p_day, p_acc in negatives
                )
                or "none"
            ),
        },
    )
