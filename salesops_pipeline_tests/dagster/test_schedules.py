"""The nightly schedule refreshes the month of the day that just ended, on Paris time."""

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import dagster as dg
import pytest

from salesops_pipeline.assets.constants import MONTHLY_PARTITIONS
from salesops_pipeline.assets.sales import month_to_refresh, nightly_sales_reports_schedule

PARIS = ZoneInfo("Europe/Paris")


@pytest.mark.parametrize(
    ("scheduled_at", "month"),
    [
        (datetime(2025, 4, 15, 2, 0, tzinfo=PARIS), "2025-04"),
        (datetime(2025, 5, 1, 2, 0, tzinfo=PARIS), "2025-04"),  # closes April
        (datetime(2026, 1, 1, 2, 0, tzinfo=PARIS), "2025-12"),  # closes the year
        (datetime(2025, 3, 30, 2, 0, tzinfo=PARIS), "2025-03"),  # DST switch night
        # 23:30 UTC on 30 April is already 1 May 01:30 in Paris: April just ended there.
        (datetime(2025, 4, 30, 23, 30, tzinfo=UTC), "2025-04"),
        (datetime(2025, 5, 1, 23, 30, tzinfo=UTC), "2025-05"),
    ],
)
def test_month_to_refresh(scheduled_at, month):
    assert month_to_refresh(scheduled_at) == month


def test_schedule_requests_the_current_month_partition():
    context = dg.build_schedule_context(
        scheduled_execution_time=datetime(2025, 4, 16, 2, 0, tzinfo=PARIS)
    )
    request = nightly_sales_reports_schedule(context)
    assert isinstance(request, dg.RunRequest)
    assert request.partition_key == "2025-04"
    assert request.partition_key in MONTHLY_PARTITIONS.get_partition_keys(
        current_time=datetime(2025, 4, 16, 2, 0, tzinfo=PARIS)
    )


def test_schedule_runs_nightly_on_paris_time():
    assert nightly_sales_reports_schedule.cron_schedule == "0 2 * * *"
    assert nightly_sales_reports_schedule.execution_timezone == "Europe/Paris"
    assert nightly_sales_reports_schedule.job_name == "sales_reports_job"
