"""Which months the morning's reports must hold, and since when, on Paris time."""

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from salesops_pipeline.sales.freshness import expected_months, latest_deadline, previous_month

PARIS = ZoneInfo("Europe/Paris")


def _judged(now: datetime) -> dict[str, datetime]:
    _, expected = expected_months(now)
    return {e.month: e.since for e in expected}


def test_mid_month_the_current_month_must_come_from_last_night():
    assert _judged(datetime(2026, 12, 15, 9, 0, tzinfo=PARIS)) == {
        "2026-12": datetime(2026, 12, 15, 1, 45, tzinfo=PARIS)
    }


def test_before_the_deadline_last_night_is_not_yet_due():
    now = datetime(2026, 12, 15, 3, 59, tzinfo=PARIS)
    assert latest_deadline(now) == datetime(2026, 12, 14, 4, 0, tzinfo=PARIS)
    assert _judged(now) == {"2026-12": datetime(2026, 12, 14, 1, 45, tzinfo=PARIS)}


def test_early_in_a_month_the_month_that_ended_must_be_closed_too():
    assert _judged(datetime(2027, 1, 2, 8, 0, tzinfo=PARIS)) == {
        "2027-01": datetime(2027, 1, 2, 1, 45, tzinfo=PARIS),
        "2026-12": datetime(2027, 1, 1, 0, 0, tzinfo=PARIS),
    }


@pytest.mark.parametrize("day", [4, 20, 31])
def test_after_the_first_days_the_month_that_ended_is_left_alone(day):
    assert list(_judged(datetime(2026, 12, day, 8, 0, tzinfo=PARIS))) == ["2026-12"]


def test_the_night_of_the_first_still_judges_the_last_month_until_four():
    # 02:30 on 1 January: the latest deadline is 31 December's, which judges December.
    assert _judged(datetime(2027, 1, 1, 2, 30, tzinfo=PARIS)) == {
        "2026-12": datetime(2026, 12, 31, 1, 45, tzinfo=PARIS)
    }


def test_the_deadline_is_paris_time_whatever_the_clock_says():
    # 03:30 UTC in summer is 05:30 in Paris: that morning's deadline has passed.
    now = datetime(2026, 7, 10, 3, 30, tzinfo=UTC)
    assert latest_deadline(now) == datetime(2026, 7, 10, 4, 0, tzinfo=PARIS)


@pytest.mark.parametrize(("month", "before"), [("2026-12", "2026-11"), ("2027-01", "2026-12")])
def test_previous_month(month, before):
    assert previous_month(month) == before
