"""Plain Python clients for the voice provider and the CRM; nothing of Dagster inside."""

from salesops_pipeline.clients.crm import CrmClient
from salesops_pipeline.clients.errors import (
    ApiAuthError,
    ApiError,
    ApiNotFoundError,
    ApiRequestError,
    ApiUnavailableError,
    ApiWriteNotApplied,
    ApiWriteUnknown,
)
from salesops_pipeline.clients.models import CrmAgent, CrmContact, Rejected, VoiceContact
from salesops_pipeline.clients.transport import ApiTransport
from salesops_pipeline.clients.voice import VoiceClient

__all__ = [
    "ApiAuthError",
    "ApiError",
    "ApiNotFoundError",
    "ApiRequestError",
    "ApiTransport",
    "ApiUnavailableError",
    "ApiWriteNotApplied",
    "ApiWriteUnknown",
    "CrmAgent",
    "CrmClient",
    "CrmContact",
    "Rejected",
    "VoiceClient",
    "VoiceContact",
]
