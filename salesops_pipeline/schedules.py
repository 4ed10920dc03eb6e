"""When the reports refresh on their own."""

from datetime import datetime, timedelta

import dagster as dg

from salesops_pipeline.constants import BUSINESS_TIMEZONE, BUSINESS_TIMEZONE_NAME
from salesops_pipeline.jobs import sales_reports_job


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
        "Nightly at 02:00 Europe/Paris: refresh team sales and the current month's agent"
        " progression (the month of the day that just ended)."
    ),
)
def nightly_sales_reports_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    return dg.RunRequest(partition_key=month_to_refresh(context.scheduled_execution_time))
