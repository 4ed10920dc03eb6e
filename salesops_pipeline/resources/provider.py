from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
from pydantic import Field

from salesops_pipeline.clients import ApiTransport, ApiUnavailableError, CrmClient, VoiceClient
from salesops_pipeline.errors import SalesopsError


@contextmanager
def provider_failures() -> Iterator[None]:
    """Turn a failed provider call into a one-line step failure.

    Only an unreachable or overloaded provider is worth a retry of the step; a refused key or
    a bad request fails the same way every time.
    """
    try:
        yield
    except SalesopsError as error:
        raise dg.Failure(
            description=str(error), allow_retries=isinstance(error, ApiUnavailableError)
        ) from None


class ProviderResource(dg.ConfigurableResource):
    """The voice provider's and the CRM's API, as one host and key.

    The same HTTP client serves production and the sandbox provider; only `host` differs.
    """

    host: str = Field(description="Base URL of the API, e.g. https://api.provider.example")
    api_key: str = Field(description="Sent as X-API-KEY on every request. Set via an env var.")
    connect_timeout_seconds: float = 3.05
    read_timeout_seconds: float = 30.0

    def _transport(self) -> ApiTransport:
        return ApiTransport(
            self.host,
            self.api_key,
            timeout=(self.connect_timeout_seconds, self.read_timeout_seconds),
        )

    def get_voice_client(self) -> VoiceClient:
        return VoiceClient(self._transport())

    def get_crm_client(self) -> CrmClient:
        return CrmClient(self._transport())
