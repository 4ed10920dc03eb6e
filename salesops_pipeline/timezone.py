"""The business time zone: the company, its agents and its voice provider all live on Paris time."""

from datetime import datetime
from zoneinfo import ZoneInfo

BUSINESS_TIMEZONE_NAME = "Europe/Paris"
BUSINESS_TIMEZONE = ZoneInfo(BUSINESS_TIMEZONE_NAME)


def paris_time(moment_utc: str | None) -> str:
    """A stored UTC moment (ISO text) as operators read it: Paris time, to the second, so that
    every tool shows one time zone."""
    if not moment_utc:
        return "–"
    try:
        moment = datetime.fromisoformat(moment_utc)
    except ValueError:
        return moment_utc
    return moment.astimezone(BUSINESS_TIMEZONE).strftime("%Y-%m-%d %H:%M:%S")
