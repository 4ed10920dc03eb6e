"""The voice provider's contacts API: campaigns' contacts, one contact, updating a contact."""

from collections.abc import Iterator
from datetime import datetime
from urllib.parse import quote

from salesops_pipeline.clients.errors import ApiRequestError
from salesops_pipeline.clients.models import Parsed, VoiceContact, parse_record, parse_records
from salesops_pipeline.clients.transport import ApiTransport, prefetched


def format_provider_datetime(value: datetime) -> str:
    """The way the provider writes dates: naive local (Paris) time, ISO 8601."""
    return value.replace(tzinfo=None).isoformat()


class VoiceClient:
    def __init__(self, transport: ApiTransport):
        self.transport = transport

    def iter_contact_pages(self, *, campaign_id: str) -> Iterator[Parsed[VoiceContact]]:
        """A campaign's contacts page by page; a contact's campaign is the one asked for."""
        call = "GET /voice/contacts"
        pages = self.transport.iter_pages("voice/contacts", params={"campaignId": campaign_id})
        for response in prefetched(pages):
            try:
                page = parse_records(VoiceContact, response.content)
            except ValueError as error:
                raise ApiRequestError(call, str(error)) from None
            for contact in page.items:
                if contact.campaign_id is None:
                    contact.campaign_id = campaign_id
            yield page

    def list_contacts(self, *, campaign_id: str) -> Parsed[VoiceContact]:
        contacts: Parsed[VoiceContact] = Parsed()
        for page in self.iter_contact_pages(campaign_id=campaign_id):
            contacts.extend(page)
        return contacts

    def get_contact(self, *, contact_id: str) -> VoiceContact:
        """One contact; an unknown id raises ApiNotFoundError."""
        response = self.transport.request("GET", self._contact_url(contact_id))
        return self._parse_one("GET /voice/contacts/{id}", response.content)

    def update_contact(
        self,
        *,
        contact_id: str,
        retry_date: datetime | None = None,
        assigned_agent: str | None = None,
    ) -> VoiceContact:
        """Change only the given fields of a contact and return it as the provider now has it."""
        changes: dict[str, str] = {}
        if retry_date is not None:
            changes["retryDate"] = format_provider_datetime(retry_date)
        if assigned_agent is not None:
            changes["assignedAgent"] = assigned_agent
        if not changes:
            raise ValueError("update_contact needs at least one field to change")
        response = self.transport.request("PATCH", self._contact_url(contact_id), json=changes)
        return self._parse_one("PATCH /voice/contacts/{id}", response.content)

    def _contact_url(self, contact_id: str) -> str:
        return self.transport.url(f"voice/contacts/{quote(contact_id, safe='')}")

    @staticmethod
    def _parse_one(call: str, raw: bytes) -> VoiceContact:
        try:
            return parse_record(VoiceContact, raw)
        except ValueError as error:
            raise ApiRequestError(call, f"unreadable contact: {error}") from None
