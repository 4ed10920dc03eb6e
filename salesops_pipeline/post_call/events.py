"""The provider's post-call webhook event, and reading it from raw bytes with clear reasons."""

import json
from datetime import datetime

from pydantic import BaseModel, ConfigDict, ValidationError

from salesops_pipeline.clients.wire import parse_provider_datetime
from salesops_pipeline.errors import InvalidInputError

DATE_FIELDS = ("callBackDate", "callEnd", "callStart")


class EventError(InvalidInputError):
    """A post-call body that cannot be accepted; the message names the problem."""

    def __init__(self, message: str, http_status: int = 422):
        super().__init__(message)
        self.http_status = http_status


class PostCallEvent(BaseModel):
    """The event the provider posts at the end of every call. All fields are strings or null;
    fields the provider adds later are kept, not refused."""

    model_config = ConfigDict(extra="allow", coerce_numbers_to_str=True)

    agent: str | None = None
    callDurationInSeconds: str | None = None
    callBackDate: str | None = None
    callEnd: str | None = None
    callId: str | None = None
    callResult: str | None = None
    callStart: str | None = None
    callType: str | None = None
    campaignId: str | None = None
    campaignName: str | None = None
    contactId: str | None = None
    contactPhone: str | None = None
    conversationDuration: str | None = None
    displayedPhoneNumber: str | None = None
    wrapup: str | None = None
    wrapupComment: str | None = None

    def moment(self, field: str) -> datetime | None:
        """A date field as a naive Europe/Paris datetime (None when absent)."""
        return parse_provider_datetime(getattr(self, field))


def parse_event(raw: bytes) -> PostCallEvent:
    """Read and validate one event; raises EventError saying exactly what is wrong."""
    try:
        document = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise EventError("body is not UTF-8 text", 400) from None
    except ValueError as error:
        raise EventError(f"malformed JSON: {error}", 400) from None
    except RecursionError:
        raise EventError("malformed JSON: nested too deeply", 400) from None
    if not isinstance(document, dict):
        raise EventError(f"expected a JSON object (an event), got {type(document).__name__}", 400)
    try:
        event = PostCallEvent.model_validate(document)
    except RecursionError:
        raise EventError("invalid event: nested too deeply", 400) from None
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in issue['loc'])}: {issue['msg']}"
            for issue in error.errors(include_input=False, include_url=False)
        )
        raise EventError(f"invalid event: {problems}") from None
    for name in ("callId", "contactId"):
        value = getattr(event, name)
        if not value:
            raise EventError(f"{name} is missing: the event cannot be tracked or applied")
        # Neither a NUL nor half a surrogate pair can be stored as text, in either database.
        if any(char == "\x00" or 0xD800 <= ord(char) <= 0xDFFF for char in value):
            raise EventError(f"{name} holds a NUL or a lone surrogate, which no text can store")
    for name in DATE_FIELDS:
        try:
            event.moment(name)
        except ValueError as error:
            raise EventError(f"{name}: {error}") from None
    return event


def contact_id_of(payload: str) -> str | None:
    """The contactId of a stored event's payload, read as the pipeline reads it; None for a
    payload that names none or cannot be read."""
    try:
        return parse_event(payload.encode()).contactId
    except EventError:
        return None
