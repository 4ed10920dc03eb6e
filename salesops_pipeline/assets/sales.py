"""Sales reporting for managers and the frontend, from the company's sales DB (Q3): the
reports, the checks that gate them, the job and the nightly schedule that refresh them, and the
freshness checks that show a missed night."""

import warnings
from datetime import datetime, timedelta

import dagster as dg

from salesops_pipeline.assets.constants import (
    MONTHLY_PARTITIONS,
    SALES_OPS_OWNER,
    SALES_REPORTING_GROUP,
)
from salesops_pipeline.resources import (
    PublishedReportsResource,
    SalesDatabaseResource,
    WarehouseResource,
)
from salesops_pipeline.sales import reports
from salesops_pipeline.sales import warehouse as wh
from salesops_pipeline.sales.charts import progression_chart_markdown
from salesops_pipeline.sales.exports import write_progression_exports
from salesops_pipeline.text import markdown_cell, markdown_list
from salesops_pipeline.timezone import BUSINESS_TIMEZONE, BUSINESS_TIMEZONE_NAME


@dg.asset(group_name=SALES_REPORTING_GROUP, owners=[SALES_OPS_OWNER], kinds={"sqlite", "duckdb"})
def team_sales(
    context: dg.AssetExecutionContext,
    sales_db: SalesDatabaseResource,
    warehouse: WarehouseResource,
    published_reports: PublishedReportsResource,
) -> dg.MaterializeResult:
    """Sales per team and status: how many sessions, for how much, and the unsubscription rate.

    Managers use it to follow each team's volume and how many sales are later withdrawn. A sale
    counts in every team its agent belongs to, so an agent in two teams appears in both.
    """
    with sales_db.connect() as conn:
        report = reports.team_sales(conn)
    with warehouse.get_connection() as conn:
        wh.replace_team_sales(conn, report)
    if published_reports.publish_team_sales(report):
        context.log.info("published to PostgreSQL for the frontend")
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
    group_name=SALES_REPORTING_GROUP,
    owners=[SALES_OPS_OWNER],
    kinds={"sqlite", "duckdb"},
    partitions_def=MONTHLY_PARTITIONS,
)
def agent_daily_progression(
    context: dg.AssetExecutionContext,
    sales_db: SalesDatabaseResource,
    warehouse: WarehouseResource,
    published_reports: PublishedReportsResource,
) -> dg.MaterializeResult:
    """Each agent's day-by-day progression toward their target over one month (Q3.2).

    One row per agent and target day: the day's target and booked amount (unsubscriptions
    count negative on the day they are booked), the ratio of the two, and the running totals
    since the first of the month. The frontend reads it through `progression_exports`, once
    the checks below have passed.
    """
    month = context.partition_key
    with sales_db.connect() as conn:
        rows = reports.agent_daily_progression(conn, month)
        usernames = reports.agent_usernames(conn)
    with warehouse.get_connection() as conn:
        wh.replace_progression_month(conn, month, rows)
    if published_reports.publish_progression(month, rows, usernames):
        context.log.info("published to PostgreSQL for the frontend, with the agents' list")
    agents = sorted({row.agent for row in rows})
    context.log.info(f"{month}: {len(rows)} rows for {len(agents)} agents")
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(rows),
            "agents": len(agents),
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
                markdown_list(markdown_cell(d) for d in differences)
            ),
        },
    )


def _stored_rows_check(found: list[tuple], what: str, describe) -> dg.AssetCheckResult:
    """Passed when no stored row is `found`; else the first ones, described for a person."""
    return dg.AssetCheckResult(
        passed=not found,
        metadata={
            f"{what}_shown": len(found),
            f"first_{what}": dg.MetadataValue.md(markdown_list(describe(*row) for row in found)),
        },
    )


def _month_of(context: dg.AssetCheckExecutionContext) -> str | None:
    # In a run for one month the checks judge that month alone, so that bad rows of another
    # month never hold its files back; run on their own, they judge every stored month.
    return context.partition_key if context.has_partition_key else None


# Blocking: in a run, a month whose figures fail either check does not reach the frontend.
@dg.asset_check(asset=agent_daily_progression, blocking=True)
def progression_accumulates_daily_values(
    context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource
) -> dg.AssetCheckResult:
    """The accumulated target and amount are exactly the running sums of the daily values."""
    with warehouse.get_connection() as conn:
        mismatches = wh.accumulation_mismatches(conn, month=_month_of(context))
    return _stored_rows_check(
        mismatches,
        "mismatches",
        lambda month, agent, day, t, et, a, ea: (
            f"{month} {markdown_cell(agent)} {day}: target {t} (expected {et}),"
            f" amount {a} (expected {ea})"
        ),
    )


@dg.asset_check(asset=agent_daily_progression, blocking=True)
def progression_never_negative(
    context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource
) -> dg.AssetCheckResult:
    """No progression is below 0: a day of unsubscriptions shows as 0, not as a negative."""
    with warehouse.get_connection() as conn:
        negatives = wh.negative_progressions(conn, month=_month_of(context))
    return _stored_rows_check(
        negatives,
        "negatives",
        lambda month, agent, day, p_day, p_acc: (
            f"{month} {markdown_cell(agent)} {day}: day {p_day}, accumulated {p_acc}"
        ),
    )


@dg.asset(
    group_name=SALES_REPORTING_GROUP,
    owners=[SALES_OPS_OWNER],
    kinds={"json"},
    partitions_def=MONTHLY_PARTITIONS,
    deps=[agent_daily_progression],
)
def progression_exports(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    """The progression files the frontend shows each agent: one JSON array per agent and month,
    at `exports/progression/<YYYY-MM>/<username, percent-encoded>.json`.

    Written from the month's stored progression. In a run that refreshes the progression too
    (the nightly one, or materializing both), the files are written only once the month's
    blocking checks have passed: figures that fail them never reach an agent's screen, and the
    files of the last good run stay.
    """
    month = context.partition_key
    with warehouse.get_connection() as conn:
        rows = wh.stored_progression_month(conn, month)
    files = write_progression_exports(warehouse.exports_dir(), month, rows)
    context.log.info(f"{month}: {len(files)} agent files written")
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(rows),
            "exported_files": len(files),
            "exports_dir": dg.MetadataValue.path(
                str(warehouse.exports_dir() / "progression" / month)
            ),
        }
    )


# Team sales is not partitioned; in a run for one month it is simply refreshed as a whole
# alongside that month's progression.
sales_reports_job = dg.define_asset_job(
    name="sales_reports_job",
    selection=dg.AssetSelection.groups(SALES_REPORTING_GROUP),
    description=(
        "Refresh team sales and one month of agent progression, with their checks, then the"
        " month's frontend files."
    ),
)


def month_to_refresh(scheduled_at: datetime) -> str:
    """The month (`YYYY-MM`) of the business day that has just ended at `scheduled_at`.

    The nightly run refreshes the current month; just after midnight on the 1st, the day that
    ended belongs to the previous month, which is then closed with its final figures.
    """
    day_that_ended = scheduled_at.astimezone(BUSINESS_TIMEZONE) - timedelta(days=1)
    return day_that_ended.strftime("%Y-%m")


# Every day at 02:00 Paris time, once the day's sales are booked.
@dg.schedule(
    job=sales_reports_job,
    cron_schedule="0 2 * * *",
    execution_timezone=BUSINESS_TIMEZONE_NAME,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description=(
        "Nightly at 02:00 Europe/Paris: refresh team sales, the current month's agent"
        " progression (the month of the day that just ended) and its frontend files."
    ),
)
def nightly_sales_reports_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    return dg.RunRequest(partition_key=month_to_refresh(context.scheduled_execution_time))


# Managers read the reports in the morning: from 04:00 Paris time each night's refresh (02:00,
# a few minutes long) must have landed, or the check fails and the asset shows red. The window
# opens at 01:45 so that a run started a little early still counts. For the monthly assets the
# check reads the latest refresh of any month: the nightly run refreshes the current one, so a
# backfill of an old month during the window would count too.
NIGHTLY_REPORTS_DEADLINE_CRON = "0 4 * * *"
NIGHTLY_REPORTS_WINDOW = timedelta(hours=2, minutes=15)

# These checks are superseded by FreshnessPolicy, which reports freshness as an asset state
# rather than as a check; checks are kept because they show in the Checks tab, carry their
# deadline as metadata and can be run and alerted on like every other check here.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", dg.SupersessionWarning)
    nightly_reports_freshness_checks = dg.build_last_update_freshness_checks(
        assets=[team_sales, agent_daily_progression, progression_exports],
        lower_bound_delta=NIGHTLY_REPORTS_WINDOW,
        deadline_cron=NIGHTLY_REPORTS_DEADLINE_CRON,
        timezone=BUSINESS_TIMEZONE_NAME,
        severity=dg.AssetCheckSeverity.ERROR,
    )
    # Runs the freshness checks when one could have turned overdue; a failed one runs again
    # with the next refresh of its asset.
    nightly_reports_freshness_sensor = dg.build_sensor_for_freshness_checks(
        freshness_checks=nightly_reports_freshness_checks,
        name="nightly_reports_freshness_sensor",
        minimum_interval_seconds=300,
        default_status=dg.DefaultSensorStatus.RUNNING,
    )

defs = dg.Definitions(
    assets=[team_sales, agent_daily_progression, progression_exports],
    asset_checks=[
        team_sales_reconcile_with_sessions,
        progression_accumulates_daily_values,
        progression_never_negative,
        *nightly_reports_freshness_checks,
    ],
    jobs=[sales_reports_job],
    schedules=[nightly_sales_reports_schedule],
    sensors=[nightly_reports_freshness_sensor],
)
