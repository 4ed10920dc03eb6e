"""Sales reporting for managers and the frontend, from the company's sales DB (Q3): the
reports, the checks that gate them, the job and the nightly schedule that refresh them, the
automation that computes a month as soon as it starts, and the freshness that shows a missed
night."""

from datetime import date, datetime, timedelta

import dagster as dg

from salesops_pipeline import numbers, settings
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
from salesops_pipeline.sales import freshness, reports
from salesops_pipeline.sales import warehouse as wh
from salesops_pipeline.sales.chart_links import chart_link
from salesops_pipeline.sales.charts import progression_chart_markdown
from salesops_pipeline.sales.exports import write_progression_exports
from salesops_pipeline.sales.schema import describe_sales_db
from salesops_pipeline.text import markdown_cell, markdown_list
from salesops_pipeline.timezone import BUSINESS_TIMEZONE, BUSINESS_TIMEZONE_NAME

sales_database = dg.AssetSpec(
    "sales_database",
    group_name=SALES_REPORTING_GROUP,
    owners=[SALES_OPS_OWNER],
    kinds={"sqlite"},
    description=(
        "The company's sales database (SQLite): agents, teams, sessions and each agent's daily"
        " targets, as the sales tools record them. Every report reads it; nothing here writes"
        " to it. `SALESOPS_SALES_DB` names it; without it the reports read generated demo data,"
        " and say so."
    ),
)

# A month's reports are computed as soon as the month exists (on the stack's first start, and
# at midnight on the 1st), without waiting for the night; once requested, a month is not asked
# for again until it goes missing anew, so a failing run is not relaunched every tick. Unlike
# `on_missing()`, which leaves alone what is already missing when it is first evaluated, this
# also covers a new stack. The sales DB is read when the run starts, never "materialized" here:
# it does not hold a report back.
_WHEN_MISSING = (
    (
        dg.AutomationCondition.in_latest_time_window()
        & dg.AutomationCondition.missing()
        .newly_true()
        .since(dg.AutomationCondition.newly_requested() | dg.AutomationCondition.newly_updated())
        & ~dg.AutomationCondition.any_deps_missing()
    )
    .ignore(dg.AssetSelection.assets(sales_database.key))
    .with_label("missing in the latest month")
)


@dg.asset(
    group_name=SALES_REPORTING_GROUP,
    owners=[SALES_OPS_OWNER],
    kinds={"sqlite", "duckdb"},
    deps=[sales_database],
    automation_condition=_WHEN_MISSING,
    freshness_policy=dg.FreshnessPolicy.cron(
        deadline_cron="0 4 * * *",
        lower_bound_delta=timedelta(hours=2, minutes=15),
        timezone=BUSINESS_TIMEZONE_NAME,
    ),
)
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
        unbooked = reports.unbooked_sessions(conn)
        source = describe_sales_db(conn)
    with warehouse.get_connection() as conn:
        wh.replace_team_sales(conn, report)
    if published_reports.publish_team_sales(report):
        context.log.info("published to PostgreSQL for the frontend")
    context.log.info(
        f"{len(report.rows)} team/status rows over {len(report.teams)} teams, from {source}"
    )
    return dg.MaterializeResult(
        metadata={
            "sales_db": source,
            "dagster/row_count": len(report.rows),
            "teams": len(report.teams),
            "sessions_in_no_month": dg.MetadataValue.int(unbooked),
            "team_sales": dg.MetadataValue.md(_team_sales_markdown(report)),
        }
    )


def _team_sales_markdown(report: reports.TeamSalesReport) -> str:
    lines = [
        "| team | status | sessions | amount | team unsubscription rate |",
        "|---|---|---:|---:|---:|",
    ]
    for team in report.teams:
        rate_text = numbers.percent(report.unsubscription_rate(team))
        # Team names and statuses are whatever the sales DB holds: shown, never rendered.
        team_cell = markdown_cell(team)
        rows = report.rows_of(team) or [None]
        for row in rows:
            if row is None:
                lines.append(
                    f"| {team_cell} | no sales | {numbers.count(0)} | {numbers.money(0)}"
                    f" | {rate_text} |"
                )
            else:
                lines.append(
                    f"| {team_cell} | {markdown_cell(row.status)} | {numbers.count(row.sessions)}"
                    f" | {numbers.money(row.amount)} | {rate_text} |"
                )
    return "\n".join(lines)


@dg.asset(
    group_name=SALES_REPORTING_GROUP,
    owners=[SALES_OPS_OWNER],
    kinds={"sqlite", "duckdb"},
    partitions_def=MONTHLY_PARTITIONS,
    deps=[sales_database],
    automation_condition=_WHEN_MISSING,
)
def monthly_team_sales(
    context: dg.AssetExecutionContext,
    sales_db: SalesDatabaseResource,
    warehouse: WarehouseResource,
    published_reports: PublishedReportsResource,
) -> dg.MaterializeResult:
    """Sales per team and status booked in one month, beside the month before: how this month
    compares with the last.

    A sale belongs to the month it was booked in, the first day it counted toward its agent's
    target; its unsubscription, booked later, keeps it in that month with its new status. The
    all-time view is `team_sales`.
    """
    month = context.partition_key
    before = freshness.previous_month(month)
    with sales_db.connect() as conn:
        report = reports.team_sales(conn, month)
        previous = reports.team_sales(conn, before)
        source = describe_sales_db(conn)
    with warehouse.get_connection() as conn:
        wh.replace_monthly_team_sales(conn, report)
    if published_reports.publish_monthly_team_sales(report):
        context.log.info("published to PostgreSQL for the frontend")
    sessions = sum(row.sessions for row in report.rows)
    context.log.info(f"{month}: {sessions} sessions booked, from {source}")
    return dg.MaterializeResult(
        metadata={
            "sales_db": source,
            "dagster/row_count": len(report.rows),
            "sessions": dg.MetadataValue.int(sessions),
            "amount": dg.MetadataValue.float(float(sum(row.amount for row in report.rows))),
            "month_over_month": dg.MetadataValue.md(
                _month_over_month_markdown(report, previous, before)
            ),
            "team_sales": dg.MetadataValue.md(_team_sales_markdown(report)),
        }
    )


def _month_over_month_markdown(
    report: reports.TeamSalesReport, previous: reports.TeamSalesReport, before: str
) -> str:
    def totals(of: reports.TeamSalesReport, team: str) -> tuple[int, float]:
        rows = of.rows_of(team)
        return sum(r.sessions for r in rows), sum(r.amount for r in rows)

    def change(now: float, then: float) -> str:
        return numbers.change((now - then) / then) if then else numbers.MISSING

    lines = [
        f"| team | sessions | {before} | change | amount | {before} | change |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for team in sorted(set(report.teams) | set(previous.teams)):
        sessions, amount = totals(report, team)
        sessions_before, amount_before = totals(previous, team)
        lines.append(
            f"| {markdown_cell(team)} | {numbers.count(sessions)}"
            f" | {numbers.count(sessions_before)} | {change(sessions, sessions_before)}"
            f" | {numbers.money(amount)}"
            f" | {numbers.money(amount_before)} | {change(amount, amount_before)} |"
        )
    return "\n".join(lines)


@dg.asset(
    group_name=SALES_REPORTING_GROUP,
    owners=[SALES_OPS_OWNER],
    kinds={"sqlite", "duckdb"},
    partitions_def=MONTHLY_PARTITIONS,
    deps=[sales_database],
    automation_condition=_WHEN_MISSING,
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
    since the first of the month. The chart below shows each agent against the month's target;
    the frontend reads the figures through `progression_exports`, once the checks below have
    passed.
    """
    month = context.partition_key
    with sales_db.connect() as conn:
        rows = reports.agent_daily_progression(conn, month)
        usernames = reports.agent_usernames(conn)
        source = describe_sales_db(conn)
    with warehouse.get_connection() as conn:
        wh.replace_progression_month(conn, month, rows)
    if published_reports.publish_progression(month, rows, usernames):
        context.log.info("published to PostgreSQL for the frontend, with the agents' list")
    agents = sorted({row.agent for row in rows})
    context.log.info(f"{month}: {len(rows)} rows for {len(agents)} agents, from {source}")
    return dg.MaterializeResult(
        metadata={
            # First: the asset page shows a short markdown value in place, so the chart is
            # there without a click when it is a link to the frontend API.
            "progression_chart": dg.MetadataValue.md(_chart_markdown(month, rows)),
            "sales_db": source,
            "dagster/row_count": len(rows),
            "agents": len(agents),
            "month_end": dg.MetadataValue.md(_month_end_markdown(rows, _today())),
        }
    )


def _chart_markdown(month: str, rows: list[reports.ProgressionRow]) -> str:
    """The chart as an image of the frontend API when the UI's browsers can reach it (a link
    signed for this month alone), else embedded whole."""
    base_url, link_key = settings.frontend_api_url(), settings.chart_link_key()
    if base_url and link_key:
        return f"![Progression {month}]({chart_link(base_url, link_key, month)})"
    return progression_chart_markdown(month, rows, today=_today())


def _now() -> datetime:
    return datetime.now(BUSINESS_TIMEZONE)


def _today() -> date:
    return _now().date()


def _month_end_markdown(rows: list[reports.ProgressionRow], today: date) -> str:
    """Where each agent stands on their last target day so far (up to `today`), best first."""
    last_rows: dict[str, reports.ProgressionRow] = {}
    for row in rows:
        # Rows come in date order: the last one up to today wins, else the month's first.
        if row.date <= today.isoformat() or row.agent not in last_rows:
            last_rows[row.agent] = row
    lines = [
        "| agent | last day | target so far | sold so far | progression |",
        "|---|---|---:|---:|---:|",
    ]
    standing = sorted(last_rows.values(), key=lambda r: (-r.progression_accumulated, r.agent))
    for row in standing:
        lines.append(
            f"| {markdown_cell(row.agent)} | {row.date} | {numbers.money(row.target_accumulated)}"
            f" | {numbers.money(row.amount_accumulated)}"
            f" | {numbers.percent(row.progression_accumulated)} |"
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
    # Follows the progression whenever it is computed alone (by hand, or when a month starts),
    # and only once the progression's blocking checks have passed.
    automation_condition=dg.AutomationCondition.eager()
    & dg.AutomationCondition.all_deps_blocking_checks_passed(),
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
# alongside that month's reports. The sales DB is read, not materialized.
sales_reports_job = dg.define_asset_job(
    name="sales_reports_job",
    selection=dg.AssetSelection.groups(SALES_REPORTING_GROUP).materializable(),
    description=(
        "Refresh team sales, and one month's team sales and agent progression with their"
        " checks, then the month's frontend files."
    ),
)


# Every day at 02:00 Paris time, once the day's sales are booked.
@dg.schedule(
    job=sales_reports_job,
    cron_schedule="0 2 * * *",
    execution_timezone=BUSINESS_TIMEZONE_NAME,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description=(
        "Nightly at 02:00 Europe/Paris: refresh the reports of the month of the day that just"
        " ended; on the 1st, that month's final figures and the new month's first."
    ),
)
def nightly_sales_reports_schedule(context: dg.ScheduleEvaluationContext):
    scheduled_at = context.scheduled_execution_time
    return [
        dg.RunRequest(run_key=f"{scheduled_at:%Y-%m-%d}-{month}", partition_key=month)
        for month in freshness.months_to_refresh(scheduled_at)
    ]


def _month_freshness_check(asset: dg.AssetsDefinition) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=asset,
        name="fresh_for_the_morning",
        description=(
            "From 04:00 Paris time: the current month was computed by that night's refresh, and"
            f" during the first {freshness.CLOSING_DAYS} days of a month the month that ended"
            " was computed after its end. Another month computed that night does not count."
        ),
        blocking=False,
    )
    def fresh_for_the_morning(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
        deadline, expected = freshness.expected_months(_now())
        stale, judged = [], []
        for expectation in expected:
            records = context.instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=asset.key, asset_partitions=[expectation.month]),
                limit=1,
            ).records
            updated = (
                datetime.fromtimestamp(records[0].timestamp, BUSINESS_TIMEZONE) if records else None
            )
            when = f"{updated:%Y-%m-%d %H:%M}" if updated else "never"
            judged.append(f"{expectation.month}: computed {when}; {expectation.why}")
            if updated is None or updated < expectation.since:
                stale.append(expectation.month)
        return dg.AssetCheckResult(
            passed=not stale,
            severity=dg.AssetCheckSeverity.ERROR,
            description=(f"{', '.join(stale)} not fresh for the morning" if stale else "fresh"),
            metadata={
                "deadline": dg.MetadataValue.timestamp(deadline),
                "stale_months": ", ".join(stale) or "none",
                "months_judged": dg.MetadataValue.md(markdown_list(judged)),
            },
        )

    return fresh_for_the_morning


# Checked on each refresh of their asset (they ride along with its runs), and each morning once
# the deadline has passed, so that a night that never ran turns them red.
freshness_checks = [
    _month_freshness_check(asset)
    for asset in (monthly_team_sales, agent_daily_progression, progression_exports)
]

sales_freshness_job = dg.define_asset_job(
    name="sales_freshness_job",
    selection=dg.AssetSelection.checks(*freshness_checks),
    description="Judge whether the months managers read this morning were computed in time.",
)

morning_freshness_schedule = dg.ScheduleDefinition(
    name="morning_freshness_schedule",
    job=sales_freshness_job,
    cron_schedule="5 4 * * *",
    execution_timezone=BUSINESS_TIMEZONE_NAME,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="At 04:05 Europe/Paris, just past the reports' deadline: judge their freshness.",
)

# Computes each month's reports as the month starts, and whatever a fresh stack has never
# computed: managers find the current month there on their first visit.
sales_reports_automation = dg.AutomationConditionSensorDefinition(
    "sales_reports_automation",
    target=dg.AssetSelection.groups(SALES_REPORTING_GROUP).materializable(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    emit_backfills=False,
    description="Computes the sales reports of a month as soon as it starts, and what a new"
    " stack has never computed.",
)

defs = dg.Definitions(
    assets=[
        sales_database,
        team_sales,
        monthly_team_sales,
        agent_daily_progression,
        progression_exports,
    ],
    asset_checks=[
        team_sales_reconcile_with_sessions,
        progression_accumulates_daily_values,
        progression_never_negative,
        *freshness_checks,
    ],
    jobs=[sales_reports_job, sales_freshness_job],
    schedules=[nightly_sales_reports_schedule, morning_freshness_schedule],
    sensors=[sales_reports_automation],
)
