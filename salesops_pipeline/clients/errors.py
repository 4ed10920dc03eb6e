"""Typed errors of the provider clients: each says which call failed and why."""

from salesops_pipeline.errors import SalesopsError


class ApiError(SalesopsError):
    """A call to the provider failed. `call` names it (`GET /voice/contacts`)."""

    def __init__(self, call: str, reason: str, *, status: int | None = None):
        super().__init__(f"{call} failed: {reason}")
        self.call = call
        self.reason = reason
        self.status = status


class ApiAuthError(ApiError):
    """401/403: the key is missing, wrong or not allowed. Retrying cannot help."""


class ApiNotFoundError(ApiError):
    """404: the thing asked for does not exist at the provider."""


class ApiRequestError(ApiError):
    """Another 4xx, or an answer that is not what the API promises: the request must change."""


class ApiUnavailableError(ApiError):
    """The provider could not be reached, timed out, or kept failing after the retries."""


class ApiWriteNotApplied(ApiUnavailableError):
    """The provider answered a write without applying it (a redirect, 429, 503): sending it
    again is safe, after `retry_after` seconds when the provider said so."""

    def __init__(self, call: str, reason: str, *, status: int | None = None, retry_after=None):
        super().__init__(call, reason, status=status)
        self.retry_after: float | None = retry_after


class ApiWriteUnknown(ApiUnavailableError):
    """A write was sent but its outcome is unknown: no answer in time, the connection dropped,
    a server error, or a 2xx that does not show the change. Only reading the contact tells;
    it is never re-sent blindly. `may_still_land` when the provider may still be working on it.
    """

    def __init__(self, call: str, reason: str, *, status: int | None = None, may_still_land=False):
        super().__init__(call, reason, status=status)
        self.may_still_land: bool = may_still_land
