"""The voice provider's date formats, written once for every reader and writer.

The provider speaks naive Paris local time. Its webhooks write `DD/MM/YYYY HH:MM:SS`; its
contacts API writes and expects ISO 8601 without an offset.
"""

from datetime import datetime

from salesops_pipeline.timezone import BUSINESS_TIMEZONE

WEBHOOK_DATE_FORMAT = "%d/%m/%Y %H:%M:%S"


def parse_provider_datetime(text: str | None) -> datetime | None:
    """`DD/MM/YYYY HH:MM:SS` (the provider's) or ISO 8601, to naive Paris time.

    An ISO date with an offset is converted to Paris time. Raises ValueError naming the value
    for an impossible date such as 31/02/2025.
    """
    if text is None or not text.strip():
        return None
    value = text.strip()
    try:
        return datetime.strptime(value, WEBHOOK_DATE_FORMAT)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(
            f"{value!r} is not a valid date (expected DD/MM/YYYY HH:MM:SS or ISO 8601)"
        ) from None
    return provider_local(moment)


def provider_local(moment: datetime) -> datetime:
    """Naive Paris time, as the provider stores it; an explicit offset is converted, not dropped."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(BUSINESS_TIMEZONE).replace(tzinfo=None)
    return moment


def format_provider_datetime(value: datetime) -> str:
    """The way the provider's contacts API writes dates: naive local (Paris) time, ISO 8601."""
    return value.replace(tzinfo=None).isoformat()


def format_webhook_datetime(value: datetime) -> str:
    """The way the provider's webhooks write dates: `DD/MM/YYYY HH:MM:SS`, Paris time."""
    return value.strftime(WEBHOOK_DATE_FORMAT)
