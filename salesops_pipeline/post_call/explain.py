"""Why a customer's record looks the way it does: every post-call event of one contact, in call
order, with what the pipeline decided, the write it sent and what the provider made of it,
beside the contact as the provider shows it now. Behind `salesops contact`."""

from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from salesops_pipeline.campaigns.phones import mask_phone
from salesops_pipeline.post_call.events import EventError, parse_event
from salesops_pipeline.post_call.inbox import Inbox
from salesops_pipeline.post_call.rules import call_moment, ordering_key
from salesops_pipeline.post_call.status import EventStatus, HandlingStatus, WriteState
from salesops_pipeline.timezone import paris_time

# What each status means to someone asking "why this date, why this agent?".
MEANINGS = {
    EventStatus.PENDING: "waiting to be handled",
    EventStatus.RETRYING: "to be tried again",
    EventStatus.APPLIED: "applied: the provider shows the write",
    EventStatus.NOTHING_TO_DO: "nothing to do: the call asked for no callback and no transfer",
    EventStatus.SUPERSEDED: "superseded: a newer call of this contact was applied first",
    EventStatus.FAILED: "failed: given up on, until someone replays it",
    EventStatus.DISMISSED: "dismissed: failed, and never to be replayed",
    HandlingStatus.DEFERRED: "deferred: looked at again later",
    HandlingStatus.SKIPPED: "skipped",
    HandlingStatus.LEASE_LOST: "taken over by another processor",
}

# What the provider made of a write, by the ledger's state.
ANSWERS = {
    WriteState.SENDING: "recorded before its send, answer awaited",
    WriteState.APPLIED: "applied: the provider shows it",
    WriteState.NOT_APPLIED: "refused by the provider, nothing applied; sent again later",
    WriteState.UNKNOWN: "answer lost: verified by reading the contact once it can no longer land",
    WriteState.SUPERSEDED: "not sent again: a newer call of the contact was applied",
    WriteState.FAILED: "refused for good by the provider",
    WriteState.GIVEN_UP: "given up on while in flight: it may have landed",
}

# Contact fields that hold phone numbers: personal data, shown masked.
_PHONE_FIELDS = ("phone", "phoneNumber", "contactPhone", "mobile", "displayedPhoneNumber")


@dataclass
class EventStory:
    call_id: str
    call_time: str  # UTC ISO, the order of the contact's calls
    call_agent: str | None
    wrapup: str | None
    callback_requested: str | None
    received_at: str
    deliveries: int
    status: str
    attempts: int
    handlings: list[dict] = field(default_factory=list)
    write: dict | None = None
    transfers: list[dict] = field(default_factory=list)


@dataclass
class ContactStory:
    contact_id: str
    events: list[EventStory]
    newest_applied_call: str | None
    provider: dict | None = None
    provider_error: str | None = None  # why `provider` is missing

    def to_json(self) -> dict:
        return asdict(self)


def explain_contact(
    inbox: Inbox, contact_id: str, read_contact: Callable[[str], dict] | None = None
) -> ContactStory:
    """The contact's story from the inbox, and, with `read_contact`, its fields at the
    provider now (a failed read is told, not raised: the inbox's part still answers)."""
    transfers: dict[str, list[dict]] = {}
    for transfer in inbox.transfers_of_contact(contact_id):
        transfers.setdefault(transfer.pop("call_id"), []).append(transfer)
    events = []
    for record in inbox.events_of_contact(contact_id):
        try:
            event = parse_event(record.payload.encode())
        except EventError:
            event = None
        write = inbox.write_of(record.call_id)
        events.append(
            EventStory(
                call_id=record.call_id,
                call_time=(
                    ordering_key(
                        call_moment(event.moment("callEnd"), event.moment("callStart")),
                        record.received_at,
                    )
                    if event
                    else record.received_at
                ),
                call_agent=event.agent if event else None,
                wrapup=event.wrapup if event else None,
                callback_requested=event.callBackDate if event else None,
                received_at=record.received_at,
                deliveries=record.deliveries,
                status=record.status,
                attempts=record.attempts,
                handlings=[
                    {k: v for k, v in row.items() if k not in ("id", "call_id")}
                    for row in inbox.outcomes(record.call_id)
                ],
                write=None
                if write is None
                else {
                    "changes": write.changes,
                    "state": str(write.state),
                    "sends": write.sends,
                    "sent_at": write.sent_at,
                },
                transfers=transfers.get(record.call_id, []),
            )
        )
    events.sort(key=lambda story: (story.call_time, story.call_id))
    newest = inbox.newest_applied(contact_id)
    story = ContactStory(contact_id, events, newest[1] if newest else None)
    if read_contact is not None:
        try:
            story.provider = _masked(read_contact(contact_id))
        except Exception as error:  # noqa: BLE001 - the inbox's part answers regardless
            story.provider_error = f"could not be read: {str(error) or type(error).__name__}"
    return story


def _masked(contact: dict) -> dict:
    return {
        name: mask_phone(value) if name in _PHONE_FIELDS and isinstance(value, str) else value
        for name, value in contact.items()
    }


def _changes(changes: dict) -> str:
    return ", ".join(f"{name}={value}" for name, value in changes.items()) or "nothing"


def story_text(story: ContactStory, safe: Callable[[str], str] = str) -> list[str]:
    """The story as lines for a terminal; `safe` shows what a webhook or the provider sent
    without the terminal obeying it."""
    count = len(story.events)
    lines = [
        f"Contact {safe(story.contact_id)}: {count} post-call event{'s' if count != 1 else ''},"
        " oldest call first (times are Paris time)"
    ]
    for number, event in enumerate(story.events, 1):
        heard = ", ".join(
            part
            for part in (
                f"agent {safe(event.call_agent)}" if event.call_agent else "",
                f'wrap-up "{safe(event.wrapup)}"' if event.wrapup is not None else "",
                f"callback asked for {safe(event.callback_requested)}"
                if event.callback_requested
                else "",
            )
            if part
        )
        lines += [
            "",
            f"{number}. call {safe(event.call_id)} at {paris_time(event.call_time)}"
            + (f": {heard}" if heard else ""),
            f"   received {paris_time(event.received_at)}"
            + (f", delivered {event.deliveries} times" if event.deliveries > 1 else ""),
            f"   now {MEANINGS.get(event.status, event.status)}",
        ]
        for handling in event.handlings:
            meaning = handling["status"].replace("_", " ")
            line = f"   {paris_time(handling['at'])} {meaning}"
            if handling["decision"]:
                line += f": {safe(handling['decision'])}"
            lines.append(line)
            if handling["error"]:
                lines.append(f"      why: {safe(handling['error'])}")
        if event.write is not None:
            write = event.write
            answer = ANSWERS.get(write["state"], write["state"])
            sent = (
                f", sent {write['sends']} time{'s' if write['sends'] != 1 else ''},"
                f" last at {paris_time(write['sent_at'])}"
                if write["sends"]
                else ""
            )
            lines.append(f"   write: {safe(_changes(write['changes']))}; {answer}{sent}")
        for transfer in event.transfers:
            lines.append(
                f"   handed to {safe(transfer['agent'])} ({transfer['state']},"
                f" {paris_time(transfer['at'])})"
            )
    lines.append("")
    lines.append(
        "Newest call applied to this contact: "
        + (safe(story.newest_applied_call) if story.newest_applied_call else "none")
    )
    if story.provider is not None:
        fields = ", ".join(f"{name}={safe(str(value))}" for name, value in story.provider.items())
        lines.append(f"At the provider now: {fields}")
    elif story.provider_error is not None:
        lines.append(f"At the provider now: {safe(story.provider_error)}")
    return lines
