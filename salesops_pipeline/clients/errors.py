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
