"""When the monthly reports are fresh: the months a manager reads in the morning, and since when
each must have been computed.

The nightly refresh runs at 02:00 Paris time; from 04:00 its figures must be there. What must be
there is the current month, computed that night. During the first days of a month, the month
that just ended must also have been computed after it ended, with its final figures: managers
close it then. Another month computed that night (a backfill of last spring, say) counts for
nothing. Plain functions, nothing of Dagster.
"""

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from salesops_pipeline.timezone import BUSINESS_TIMEZONE

# Managers read the reports from 04:00; the refresh starts at 02:00 and takes minutes. A run
# started from 01:45 counts for the night, so that one started a little early still counts.
DEADLINE = time(4, 0)
NIGHT_STARTS = time(1, 45)
# The month that ended is judged for this many days into the next.
CLOSING_DAYS = 3


@dataclass(frozen=True)
class MonthExpectation:
    """A month that must have been computed since `since`, and why, for the person reading."""

    month: str
    since: datetime
    why: str


def month_of(day: date) -> str:
    return f"{day.year:04d}-{day.month:02d}"


def previous_month(month: str) -> str:
    year, number = int(month[:4]), int(month[5:7])
    return f"{year - 1:04d}-12" if number == 1 else f"{year:04d}-{number - 1:02d}"


def latest_deadline(now: datetime) -> datetime:
    """The latest 04:00 in Paris at or before `now` (an aware datetime)."""
    local = now.astimezone(BUSINESS_TIMEZONE)
    day = local.date() if local.time() >= DEADLINE else local.date() - timedelta(days=1)
    return datetime.combine(day, DEADLINE, tzinfo=BUSINESS_TIMEZONE)


def expected_months(now: datetime) -> tuple[datetime, list[MonthExpectation]]:
    """The latest deadline at `now`, and the months that must have been computed by then."""
    deadline = latest_deadline(now)
    night = datetime.combine(deadline.date(), NIGHT_STARTS, tzinfo=BUSINESS_TIMEZONE)
    current = month_of(deadline.date())
    expectations = [
        MonthExpectation(
            current,
            night,
            f"the current month, refreshed each night: computed since"
            f" {night:%Y-%m-%d %H:%M} (Paris)",
        )
    ]
    if deadline.day <= CLOSING_DAYS:
        ended = datetime.combine(deadline.date().replace(day=1), time(0), tzinfo=BUSINESS_TIMEZONE)
        closing = previous_month(current)
        expectations.append(
            MonthExpectation(
                closing,
                ended,
                f"the month that just ended, closed in the first {CLOSING_DAYS} days of the"
                f" next: computed after it ended ({ended:%Y-%m-%d %H:%M}, Paris)",
            )
        )
    return deadline, expectations


def months_to_refresh(scheduled_at: datetime) -> list[str]:
    """The months the nightly refresh at `scheduled_at` computes: the month of the business day
    that has just ended, and on the 1st the new month as well, so that both are fresh by 04:00.
    """
    local = scheduled_at.astimezone(BUSINESS_TIMEZONE)
    ended = month_of(local.date() - timedelta(days=1))
    current = month_of(local.date())
    return [ended] if ended == current else [ended, current]
