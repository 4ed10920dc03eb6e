"""The CRM's API: agents by team, and contacts."""

from salesops_pipeline.clients.errors import ApiRequestError
from salesops_pipeline.clients.models import CrmAgent, CrmContact, Parsed, parse_records
from salesops_pipeline.clients.transport import ApiTransport


class CrmClient:
    def __init__(self, transport: ApiTransport):
        self.transport = transport

    def list_agents(self, *, team: str | None = None) -> Parsed[CrmAgent]:
        return self._list(CrmAgent, "crm/agents", {"team": team} if team else None)

    def list_contacts(self) -> Parsed[CrmContact]:
        return self._list(CrmContact, "crm/contacts", None)

    def _list(self, model, path: str, params: dict | None) -> Parsed:
        result: Parsed = Parsed()
        for response in self.transport.iter_pages(path, params=params):
            try:
                result.extend(parse_records(model, response.content))
            except ValueError as error:
                raise ApiRequestError(f"GET /{path}", str(error)) from None
        return result
