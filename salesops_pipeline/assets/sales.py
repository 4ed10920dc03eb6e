"""Sales reporting for managers and the frontend, from the company's sales DB (Q3)."""

import dagster as dg

from salesops_pipeline import warehouse as wh
from salesops_pipeline.charts import progression_chart_markdown
from salesops_pipeline.constants import MONTHLY_PARTITIONS, SALES_OPS_OWNER
from salesops_pipeline.exports import write_progression_exports
from salesops_pipeline.resources import SalesDatabaseResource, WarehouseResource
from salesops_pipeline.sales import reports
from salesops_pipeline.text import markdown_cell


@dg.asset(owners=[SALES_OPS_OWNER], kinds={"sqlite", "duckdb"})
def team_sales(
    context: dg.AssetExecutionContext,
    sales_db: SalesDatabaseResource,
    warehouse: WarehouseResource,
) -> dg.MaterializeResult:
    """Sales per team and status: how many sessions, for how much, and the unsubscription rate.

    Managers use it to follow each team's volume and how many sales are later withdrawn. A sale
    counts in every team its agent belongs to, so an agent in two teams appears in both.
    """
    with sales_db.connect() as conn:
        report = reports.team_sales(conn)
    with warehouse.get_connection() as conn:
        wh.replace_team_sales(conn, report)
    context.log.info(f"{len(report.rows)} team/status rows over {len(report.teams)} teams")
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(report.rows),
            "teams": len(report.teams),
            "team_sales": dg.MetadataValue.md(_team_sales_markdown(report)),
        }
    )


def _team_sales_markdown(report: reports.TeamSalesReport) -> str:
    lines = [
        "| team | status | sessions | amount (€) | team unsubscription rate |",
        "|---|---|---:|---:|---:|",
    ]
    for team in report.teams:
        rate = report.unsubscription_rate(team)
        rate_text = "–" if rate is None else f"{rate:.1%}"
        # Team names and statuses are whatever the sales DB holds: shown, never rendered.
        team_cell = markdown_cell(team)
        rows = report.rows_of(team) or [None]
        for row in rows:
            if row is None:
                lines.append(f"| {team_cell} | no sales | 0 | 0 | {rate_text} |")
            else:
                amount = f"{row.amount:,.2f}".replace(",", " ")
                lines.append(
                    f"| {team_cell} | {markdown_cell(row.status)} | {row.sessions} | {amount}"
                    f" | {rate_text} |"
                )
    return "\n".join(lines)


@dg.asset(
    owners=[SALES_OPS_OWNER],
    kinds={"sqlite", "duckdb", "json"},
    partitions_def=MONTHLY_PARTITIONS,
)
def agent_daily_progression(
    context: dg.AssetExecutionContext,
    sales_db: SalesDatabaseResource,
    warehouse: WarehouseResource,
) -> dg.MaterializeResult:
    """Each agent's day-by-day progression toward their target over one month (Q3.2).

    One row per agent and target day: the day's target and booked amount (unsubscriptions
    count negative on the day they are booked), the ratio of the two, and the running totals
    since the first of the month. Agents see it in the frontend, which reads one JSON file per
    agent and month from `exports/progression/<YYYY-MM>/<username, percent-encoded>.json`.
    """
    month = context.partition_key
    with sales_db.connect() as conn:
        rows = reports.agent_daily_progression(conn, month)
    with warehouse.get_connection() as conn:
        wh.replace_progression_month(conn, month, rows)
    files = write_progression_exports(warehouse.exports_dir(), month, rows)
    agents = sorted({row.agent for row in rows})
    context.log.info(f"{month}: {len(rows)} rows for {len(agents)} agents")
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(rows),
            "agents": len(agents),
            "exported_files": len(files),
            "exports_dir": dg.MetadataValue.path(
                str(warehouse.exports_dir() / "progression" / month)
            ),
            "month_end": dg.MetadataValue.md(_month_end_markdown(rows)),
            "progression_chart": dg.MetadataValue.md(progression_chart_markdown(month, rows)),
        }
    )


def _month_end_markdown(rows: list[reports.ProgressionRow]) -> str:
    last_rows: dict[str, reports.ProgressionRow] = {}
    for row in rows:
        last_rows[row.agent] = row  # rows come in date order: the last one wins
    lines = [
        "| agent | last day | target so far (€) | sold so far (€) | progression |",
        "|---|---|---:|---:|---:|",
    ]
    for agent, row in sorted(last_rows.items()):
        lines.append(
            f"| {markdown_cell(agent)} | {row.date} | {row.target_accumulated:,.0f} |"
            f" {row.amount_accumulated:,.0f} | {row.progression_accumulated:.0%} |"
        )
    return "\n".join(lines)
