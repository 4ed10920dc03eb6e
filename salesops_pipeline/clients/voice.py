"""The voice provider's contacts API: campaigns' contacts, one contact, updating a contact."""

import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

from salesops_pipeline.clients.errors import ApiRequestError
from salesops_pipeline.clients.models import Parsed, VoiceContact, parse_record, parse_records
from salesops_pipeline.clients.transport import ApiTransport, prefetched


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

    def download_contact_pages(self, campaign_id: str, directory: Path) -> Iterator[Path]:
        """A campaign's contacts as the provider's own JSON pages, each saved to a file of
        `directory` as it arrives, unread: for loaders that read JSON faster than Python."""
        return self.transport.download_pages(
            "voice/contacts", directory, params={"campaignId": campaign_id}
        )

    def list_contacts(self, *, campaign_id: str) -> Parsed[VoiceContact]:
        contacts: Parsed[VoiceContact] = Parsed()
        for page in self.iter_contact_pages(campaign_id=campaign_id):
            contacts.extend(page)
        return contacts

    def get_contact(self, *, contact_id: str) -> VoiceContact:
        """One contact; an unknown id raises ApiNotFoundError."""
        response = self.transport.request("GET", self._contact_url(contact_id))
        return self._parse_one("GET /voice/contacts/{id}", response.content)

    def get_contact_fields(self, *, contact_id: str) -> dict:
        """One contact's fields as the provider sent them, unvalidated: checking what a write
        changed must not depend on fields it did not touch being well formed."""
        response = self.transport.request("GET", self._contact_url(contact_id))
        document = _json_object(response.content)
        if document is None:
            raise ApiRequestError("GET /voice/contacts/{id}", "the answer is not a contact")
        return document

    @property
    def write_deadline_seconds(self) -> float:
        """How long after sending a write this client may still be waiting on it."""
        return self.transport.write_deadline_seconds

    def write_contact(
        self, *, contact_id: str, changes: dict[str, str], idempotency_key: str
    ) -> dict | None:
        """Send one change of a contact exactly once (see ApiTransport.write).

        Returns the contact's fields as the provider answered them, or None when the answer
        has no body or is not a contact: the caller confirms by reading. `idempotency_key`
        names the change, so that a provider that honours the header can recognise it if it
        is ever sent again.
        """
        response = self.transport.write(
            "PATCH",
            self._contact_url(contact_id),
            json=changes,
            headers={"Idempotency-Key": idempotency_key},
        )
        return _json_object(response.content)

    def _contact_url(self, contact_id: str) -> str:
        # Percent-encoding leaves "." and ".." as they are, and a URL resolves them as dot
        # segments: /voice/contacts/.. would be another resource.
        if contact_id in ("", ".", "..") or any(ord(c) < 32 or ord(c) == 127 for c in contact_id):
            raise ApiRequestError("/voice/contacts/{id}", f"invalid contact id {contact_id!r}")
        return self.transport.url(f"voice/contacts/{quote(contact_id, safe='')}")

    @staticmethod
    def _parse_one(call: str, raw: bytes) -> VoiceContact:
        try:
            return parse_record(VoiceContact, raw)
        except ValueError as error:
            raise ApiRequestError(call, f"unreadable contact: {error}") from None


def _json_object(raw: bytes) -> dict | None:
    try:
        document = json.loads(raw) if raw.strip() else None
    except ValueError:
        return None
    return document if isinstance(document, dict) else None
