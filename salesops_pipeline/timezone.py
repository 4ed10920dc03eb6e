"""The business time zone: the company, its agents and its voice provider all live on Paris time."""

from zoneinfo import ZoneInfo

BUSINESS_TIMEZONE_NAME = "Europe/Paris"
BUSINESS_TIMEZONE = ZoneInfo(BUSINESS_TIMEZONE_NAME)
