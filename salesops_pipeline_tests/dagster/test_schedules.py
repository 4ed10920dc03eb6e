"""The nightly schedule refreshes the month of the day that just ended, on Paris time, and on
the 1st the new month as well."""

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import dagster as dg
import pytest

from salesops_pipeline.assets.constants import MONTHLY_PARTITIONS
from salesops_pipeline.assets.sales import nightly_sales_reports_schedule
from salesops_pipeline.sales.freshness import months_to_refresh

PARIS = ZoneInfo("Europe/Paris")


@pytest.mark.parametrize(
    ("scheduled_at", "months"),
    [
        (datetime(2025, 4, 15, 2, 0, tzinfo=PARIS), ["2025-04"]),
        (datetime(2025, 5, 1, 2, 0, tzinfo=PARIS), ["2025-04", "2025-05"]),  # closes April
        (datetime(2026, 1, 1, 2, 0, tzinfo=PARIS), ["2025-12", "2026-01"]),  # closes the year
        (datetime(2025, 3, 30, 2, 0, tzinfo=PARIS), ["2025-03"]),  # DST switch night
        # 23:30 UTC on 30 April is already 1 May 01:30 in Paris: April just ended there.
        (datetime(2025, 4, 30, 23, 30, tzinfo=UTC), ["2025-04", "2025-05"]),
        (datetime(2025, 5, 1, 23, 30, tzinfo=UTC), ["2025-05"]),
    ],
)
def test_months_to_refresh(scheduled_at, months):
    assert months_to_refresh(scheduled_at) == months


def _requests(at: datetime) -> list[dg.RunRequest]:
    return list(
        nightly_sales_reports_schedule(dg.build_schedule_context(scheduled_execution_time=at))
    )


def test_schedule_requests_the_current_month_partition():
    at = datetime(2025, 4, 16, 2, 0, tzinfo=PARIS)
    [request] = _requests(at)
    assert request.partition_key == "2025-04"
    assert request.partition_key in MONTHLY_PARTITIONS.get_partition_keys(current_time=at)


def test_on_the_first_the_schedule_closes_the_month_and_opens_the_new_one():
    at = datetime(2025, 5, 1, 2, 0, tzinfo=PARIS)
    requests = _requests(at)
    assert [r.partition_key for r in requests] == ["2025-04", "2025-05"]
    # One run per month, each with a key of its own: neither is taken for the other.
    assert len({r.run_key for r in requests}) == 2
    for request in requests:
        assert request.partition_key in MONTHLY_PARTITIONS.get_partition_keys(current_time=at)


def test_schedule_runs_nightly_on_paris_time():
    assert nightly_sales_reports_schedule.cron_schedule == "0 2 * * *"
    assert nightly_sales_reports_schedule.execution_timezone == "Europe/Paris"
    assert nightly_sales_reports_schedule.job_name == "sales_reports_job"
