"""What the provider's API returns, as typed models.

Unknown fields are ignored, so the provider can add some without breaking us. Lists are parsed
record by record when needed: one malformed record is reported with its reason and skipped,
never fatal for the whole list.
"""

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

# Provider dates are naive local times (Europe/Paris) and stay naive here: converting them
# would shift what agents typed and what the provider expects back.
_CONFIG = ConfigDict(extra="ignore", populate_by_name=True, coerce_numbers_to_str=True)


class VoiceContact(BaseModel):
    """A contact of a call campaign, as the voice provider holds it."""

    model_config = _CONFIG

    id: str | None = None
    campaign_id: str | None = None
    phone: str | None = None
    retry_date: datetime | None = Field(default=None, alias="retryDate")
    last_call_at: datetime | None = Field(default=None, alias="lastCallAt")
    assigned_agent: str | None = Field(default=None, alias="assignedAgent")
    wrapup: str | None = None
    total_calls: int | None = Field(default=None, alias="totalCalls")
    crm_id: str | None = None


class CrmAgent(BaseModel):
    """An agent as the CRM knows them: the team they work in and whether they are active."""

    model_config = _CONFIG

    id: str | None = None
    username: str
    team: str | None = None
    # None when the CRM does not say: such an agent is not known to be active, and gets no
    # customer handed to them.
    active: bool | None = None


class CrmContact(BaseModel):
    model_config = _CONFIG

    id: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    phone: str | None = None
    email: str | None = None


@dataclass(frozen=True)
class Rejected:
    """A record that could not be read: where it was, its id if any, and why."""

    index: int
    record_id: str | None
    reason: str


Model = TypeVar("Model", bound=BaseModel)


@dataclass
class Parsed(Generic[Model]):
    items: list[Model] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)

    def extend(self, other: "Parsed[Model]") -> None:
        offset = len(self.items) + len(self.rejected)
        self.items.extend(other.items)
        self.rejected.extend(
            Rejected(r.index + offset, r.record_id, r.reason) for r in other.rejected
        )


_LIST_ADAPTERS: dict[type, TypeAdapter] = {}


def _describe(error: ValidationError) -> str:
    # Never echo the offending value: it may be a phone number or a name.
    return "; ".join(
        f"{'.'.join(str(part) for part in issue['loc']) or 'record'}: {issue['msg']}"
        for issue in error.errors(include_input=False, include_url=False)
    )


def parse_records(model: type[Model], raw: bytes) -> Parsed[Model]:
    """Parse a JSON list of `model` records; raises ValueError if it is not a JSON list."""
    adapter = _LIST_ADAPTERS.setdefault(model, TypeAdapter(list[model]))
    try:
        # The fast path: the whole list validated in one go, inside pydantic's core.
        return Parsed(items=adapter.validate_json(raw))
    except ValidationError:
        pass
    try:
        records = json.loads(raw)
    except ValueError as error:
        raise ValueError(f"the answer is not valid JSON ({error})") from None
    if not isinstance(records, list):
        raise ValueError(f"expected a JSON list, got {type(records).__name__}")
    parsed: Parsed[Model] = Parsed()
    for index, record in enumerate(records):
        try:
            parsed.items.append(model.model_validate(record))
        except ValidationError as error:
            record_id = record.get("id") if isinstance(record, dict) else None
            parsed.rejected.append(
                Rejected(index, None if record_id is None else str(record_id), _describe(error))
            )
    return parsed


def parse_record(model: type[Model], raw: bytes) -> Model:
    """Parse one JSON object; raises ValueError with the reason if it does not fit `model`."""
    try:
        return model.model_validate_json(raw)
    except ValidationError as error:
        raise ValueError(_describe(error)) from None
