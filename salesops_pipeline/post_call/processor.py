"""Handling post-call events end to end: decide, write to the provider, record the outcome.
Shared by the Dagster job and `salesops post-call`; nothing of Dagster here.

The contract, for every write to a customer's record at the provider:

1. Newest call wins, per contact: a contact's events are handled in call order, and an event
   older than one already applied to the contact ends `superseded`, writing nothing.
2. At most one write per event, even across crashes: the write is recorded before it is sent,
   sent once, and a write whose answer was lost is verified by reading the contact, never sent
   again blindly. One contact has at most one unresolved write at a time. A sent write may
   land until the client's own timeout has passed (`landing_window`): before then neither a
   resend nor a newer call of the contact goes out.
3. A write counts as applied only when the provider shows it: redirects are not followed, and
   an empty 2xx is confirmed by reading the contact.
4. Only the holder of an event's lease writes, and it checks the lease before every write and
   at finish.
"""

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Generic, TypeVar
from urllib.parse import quote

from salesops_pipeline.clients import (
    ApiAuthError,
    ApiError,
    ApiNotFoundError,
    ApiRequestError,
    ApiWriteNotApplied,
    ApiWriteUnknown,
    CrmClient,
    VoiceClient,
)
from salesops_pipeline.clients.wire import format_provider_datetime, parse_provider_datetime
from salesops_pipeline.errors import SalesopsError
from salesops_pipeline.post_call.events import EventError, PostCallEvent, parse_event
from salesops_pipeline.post_call.inbox import EventRecord, Inbox, Write, WritePlan
from salesops_pipeline.post_call.rules import (
    Decision,
    SupportCandidate,
    call_moment,
    can_take_support_contacts,
    decide,
    describe_choice,
    least_loaded_agent,
    ordering_key,
    support_loads,
)
from salesops_pipeline.post_call.status import EventStatus, HandlingStatus, Refusal, WriteState
from salesops_pipeline.post_call.workers import this_worker


@dataclass(frozen=True)
class PostCallSettings:
    callback_labels: tuple[str, ...] = ("Rappel",)
    support_keyword: str = "support"
    support_team: str = "support"
    # Support agents' load counts their contacts in this campaign.
    load_campaign: str = "B"
    # A contact this pipeline handed to support counts in its agent's load this long, unless
    # the load campaign's list shows it or a later transfer moves it.
    support_load_days: float = 30.0
    # Added to the client's own timeout for how long a sent write may still land at the
    # provider (see `landing_window`).
    write_landing_margin_seconds: float = 10.0
    # The CRM's support agents are read again once this old: an agent deactivated or moved out
    # of support stops getting contacts within about twice this.
    agents_max_age_seconds: float = 5.0
    # The load campaign's list is read again once this old; transfers since it was read count
    # on top of it.
    load_campaign_max_age_seconds: float = 60.0
    # When another call's write to the same contact is unresolved, look again after this.
    busy_retry_seconds: float = 3.0
    # Longest wait asked by a provider's Retry-After that is honoured for a refused write.
    max_retry_after_seconds: float = 60.0
    # A write the provider refused (429, 503, a redirect) is sent again at once this many
    # times when the wait it asks for is short; beyond that the event is retried later.
    immediate_resends: int = 2
    immediate_resend_max_wait_seconds: float = 2.0

    def __post_init__(self):
        for name in (
            "write_landing_margin_seconds",
            "agents_max_age_seconds",
            "load_campaign_max_age_seconds",
            "support_load_days",
        ):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be a number of at least 0")


def landing_window(client_write_deadline_seconds: float, margin_seconds: float) -> timedelta:
    """How long after its send a write may still land at the provider.

    The provider, or a gateway's upstream, may apply a write it received until the client gave
    up on it, and a little after: the client's whole timeout plus a margin, never less. A write
    whose fate is unknown is judged only once this has passed: before then it is neither sent
    again nor overtaken by a newer call of its contact.
    """
    return timedelta(seconds=client_write_deadline_seconds + max(margin_seconds, 0.0))


# Header values are Latin-1 text without line breaks: any other character of a callId is
# percent-encoded, and so is "%" itself, so that two callIds never share a key.
_KEY_SAFE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) != "%")


def idempotency_key(call_id: str) -> str:
    """The `Idempotency-Key` of an event's write: the same for every send of it, and sendable
    whatever characters its callId holds."""
    return "post-call-" + quote(call_id, safe=_KEY_SAFE)


T = TypeVar("T")

# How a decision reads when it hands the contact to support; the chosen agent follows it.
TRANSFER = "transfer to support"


class _Fresh(Generic[T]):
    """A value read from another system, read again once `max_age` seconds old: a run may stay
    open for minutes while the CRM and the provider change under it."""

    def __init__(self, read: Callable[[], T], max_age: float):
        self._read, self._max_age = read, max_age
        self._value: tuple[T, float] | None = None

    def get(self) -> T:
        if self._value is None or time.monotonic() - self._value[1] >= self._max_age:
            self._value = (self._read(), time.monotonic())
        return self._value[0]


@dataclass
class Outcome:
    call_id: str
    status: str  # an EventStatus, or a HandlingStatus for a handling that changed nothing
    decision: str
    writes: list[dict] = field(default_factory=list)
    error: str | None = None


class PermanentFailure(SalesopsError):
    """The event cannot succeed as it is: retrying would fail the same way."""


def shows(contact: dict, changes: dict) -> bool:
    """Whether the contact's fields, as the provider has them, carry every field of `changes`."""
    for name, wanted in changes.items():
        value = contact.get(name)
        if name == "retryDate" and isinstance(value, str):
            try:
                moment = parse_provider_datetime(value)
            except ValueError:
                return False
            value = moment and format_provider_datetime(moment)
        if value != wanted:
            return False
    return True


class PostCallProcessor:
    def __init__(
        self,
        *,
        inbox: Inbox,
        voice: VoiceClient,
        crm: CrmClient,
        settings: PostCallSettings = PostCallSettings(),
        run_id: str | None = None,
    ):
        self.inbox = inbox
        self.voice = voice
        self.crm = crm
        self.settings = settings
        self.run_id = run_id
        self.worker = this_worker(run_id)
        self.owner = self.worker.owner
        self.released: list[str] = []
        self.release_error: BaseException | None = None
        self.landing = landing_window(
            voice.write_deadline_seconds, settings.write_landing_margin_seconds
        )
        self._support_agents = _Fresh(
            lambda: self.crm.list_agents(team=self.settings.support_team).items,
            settings.agents_max_age_seconds,
        )
        self._holders = _Fresh(self._read_campaign_holders, settings.load_campaign_max_age_seconds)
        self._choice: str | None = None

    # Public --------------------------------------------------------------------------------

    def __enter__(self) -> "PostCallProcessor":
        """Register as a worker, so that if this process dies its leases are released."""
        self.inbox.register_worker(self.worker)
        return self

    def __exit__(self, _type, error: BaseException | None, _traceback) -> None:
        """Unregister. A processor stopped by an error (its run failed or was cancelled) first
        gives back what it still holds, as for a worker that died: its events would otherwise
        stay leased after it ends, skipped by the lane's next run until their stale time. Each
        counts as a crash, since handling it may be what failed the run. An inbox that cannot
        be reached keeps the worker registered: its events are freed once this process is gone.
        `released` and `release_error` say what happened."""
        if error is None:
            self.inbox.unregister_worker(self.owner)
            return
        who = f"run {self.run_id}" if self.run_id else "its processor"
        try:
            self.released = self.inbox.release_dead_worker(
                self.owner, f"{who} failed: {type(error).__name__}"
            )
        except self.inbox.errors() as unreachable:
            self.release_error = unreachable

    def process_batch(self, call_ids: Iterable[str]) -> list[Outcome]:
        """Handle events in call order (so that each contact's calls apply oldest first)."""
        return [self.process(call_id) for call_id in self.in_call_order(call_ids)]

    def in_call_order(self, call_ids: Iterable[str]) -> list[str]:
        keyed = []
        for position, call_id in enumerate(call_ids):
            record = self.inbox.get(call_id)
            keyed.append((self._call_key(record), position, call_id))
        return [call_id for _, _, call_id in sorted(keyed)]

    def process(self, call_id: str) -> Outcome:
        """Handle a stored event once; any failure is recorded, never raised."""
        self._choice = None
        record = self.inbox.claim(call_id, self.owner)
        if record is None:
            current = self.inbox.get(call_id)
            reason = (
                "unknown event"
                if current is None
                else f"already {current.status}"
                if EventStatus(current.status).is_final
                else "being handled by another processor"
            )
            self.inbox.record_skip(call_id, reason, self.run_id)
            return Outcome(call_id, HandlingStatus.SKIPPED, reason)
        text = ""
        try:
            event = parse_event(record.payload.encode())
            decision = self._decide(event)
            text = self._describe(decision)
            if not decision.has_work:
                return self._finish(record, EventStatus.NOTHING_TO_DO, text)
            earlier = self.inbox.write_of(call_id)
            if earlier is not None and earlier.state.may_have_landed:
                return self._recover(record, text, earlier)
            if earlier is not None:
                # Refused by the provider last time (not applied): the same write goes again.
                return self._send(record, text, self._resend(record, earlier))
            return self._send(record, text, self._plan(record, event, decision))
        except (PermanentFailure, EventError, ApiNotFoundError, ApiRequestError) as error:
            return self._finish(record, EventStatus.FAILED, text, error=str(error))
        except ApiError as error:
            # Unreachable, overloaded or refusing our key: worth another try later.
            return self._finish(record, EventStatus.RETRYING, text, error=str(error))
        except Exception as error:  # noqa: BLE001 - one broken event must not stop the batch
            return self._finish(
                record, EventStatus.RETRYING, text, error=f"{type(error).__name__}: {error}"
            )

    def preview(self, event: PostCallEvent) -> Outcome:
        """What handling `event` would do, without claiming, recording or writing anything."""
        decision = self._decide(event)
        text = self._describe(decision)
        if not decision.has_work:
            return Outcome(event.callId, HandlingStatus.DRY_RUN, text)
        try:
            self.voice.get_contact_fields(contact_id=event.contactId)
        except ApiNotFoundError:
            raise PermanentFailure(f"unknown contact {event.contactId}") from None
        changes = self._changes(decision)
        if decision.transfer_to_support:
            choose = self._chooser(event.contactId)
            counted = (
                self.inbox.counted_transfers(self._load_since()) if self.inbox.exists() else {}
            )
            agent = choose(counted)
            if agent is None:
                raise PermanentFailure("no active support agent to transfer to")
            changes["assignedAgent"] = agent
            text = self._with_choice(text, changes)
        return Outcome(
            event.callId,
            HandlingStatus.DRY_RUN,
            text,
            [{"contact": event.contactId, "changes": changes}],
        )

    # Steps ---------------------------------------------------------------------------------

    def _plan(self, record: EventRecord, event: PostCallEvent, decision: Decision) -> WritePlan:
        """Read what a transfer needs from the provider first (no lock held), then decide and
        record the write under the inbox's lock."""
        choose = None
        if decision.transfer_to_support:
            choose = self._chooser(event.contactId)
        return self.inbox.begin_write(
            record.call_id,
            self.owner,
            contact_id=event.contactId,
            call_time=self._call_time(event, record.received_at),
            changes=self._changes(decision),
            choose_agent=choose,
            transfers_since=self._load_since(),
            landing=self.landing,
        )

    def _resend(self, record: EventRecord, write: Write) -> WritePlan:
        """Record that a write goes out again. A transfer whose agent is no longer a candidate
        (deactivated, or moved out of support, since it was chosen) is given to another."""
        keep_or_choose = None
        if "assignedAgent" in write.changes:
            choose = self._chooser(write.contact_id)

            def keep_or_choose(current: str, counted: dict[str, tuple[str, str]]) -> str | None:
                return choose(counted, keep=current)

        return self.inbox.resend_write(
            record.call_id,
            self.owner,
            landing=self.landing,
            rechoose_agent=keep_or_choose,
            transfers_since=self._load_since(),
        )

    def _send(
        self, record: EventRecord, text: str, plan: WritePlan, resends: int | None = None
    ) -> Outcome:
        resends = self.settings.immediate_resends if resends is None else resends
        if plan.write is None:
            self._choice = None
            return self._refused(record, text, plan)
        write = plan.write
        # A resend below starts again from the decision alone, and names its own choice.
        decided, text = text, self._with_choice(text, write.changes)
        sent = [{"method": "PATCH", "contact": write.contact_id, "changes": write.changes}]
        try:
            contact = self.voice.write_contact(
                contact_id=write.contact_id,
                changes=write.changes,
                idempotency_key=idempotency_key(record.call_id),
            )
            if contact is None:
                # An empty 2xx says nothing of what the provider did: read the contact.
                contact = self.voice.get_contact_fields(contact_id=write.contact_id)
            if not shows(contact, write.changes):
                raise ApiWriteUnknown(
                    "PATCH /voice/contacts/{id}", "answered 2xx but the contact does not show it"
                )
        except (ApiWriteNotApplied, ApiAuthError) as error:
            # Refused (a redirect, 429, 503, or the key at the door): nothing was applied.
            retry_after = getattr(error, "retry_after", None)
            wait = 0.25 if retry_after is None else retry_after
            if (
                isinstance(error, ApiWriteNotApplied)
                and resends > 0
                and wait <= self.settings.immediate_resend_max_wait_seconds
            ):
                time.sleep(wait)
                plan = self._resend(record, write)
                return self._send(record, decided, plan, resends - 1)
            return self._finish(
                record,
                EventStatus.RETRYING,
                text,
                error=str(error),
                write_state=WriteState.NOT_APPLIED,
                retry_at=self._after(retry_after),
            )
        except ApiWriteUnknown as error:
            # A write the contact already shows has landed, late answer or not; one it does not
            # show yet may still land, and is read again once it cannot.
            if self._shows_now(write):
                return self._finish(
                    record, EventStatus.APPLIED, text, sent, write_state=WriteState.APPLIED
                )
            return self._finish(
                record,
                EventStatus.RETRYING,
                text,
                error=f"{error}; to be verified by reading the contact",
                write_state=WriteState.UNKNOWN,
                retry_at=self._settled(write),
            )
        except (ApiNotFoundError, ApiRequestError) as error:
            reason = (
                f"unknown contact {write.contact_id}"
                if isinstance(error, ApiNotFoundError)
                else str(error)
            )
            return self._finish(
                record, EventStatus.FAILED, text, error=reason, write_state=WriteState.FAILED
            )
        return self._finish(record, EventStatus.APPLIED, text, sent, write_state=WriteState.APPLIED)

    def _recover(self, record: EventRecord, text: str, write: Write) -> Outcome:
        """An earlier handling sent this write and never learnt its fate (it crashed, or the
        answer was lost). Never send it again before knowing: wait until it has settled, then
        read the contact."""
        settled_at = self._settled(write)
        if datetime.now(UTC) < settled_at:
            return self._finish(
                record,
                EventStatus(record.status),
                f"{text}; its earlier write is verified once settled",
                count_attempt=False,
                retry_at=settled_at,
            )
        newest = self.inbox.newest_applied(write.contact_id)
        if newest is not None and newest[0] > write.call_time and newest[1] != record.call_id:
            return self._finish(
                record,
                EventStatus.SUPERSEDED,
                f"{text}; call {newest[1]} is newer and applied, its write is not sent again",
                write_state=WriteState.SUPERSEDED,
            )
        if self._verified(write):
            return self._finish(
                record,
                EventStatus.APPLIED,
                f"{text}; confirmed by reading the contact",
                [{"method": "PATCH", "contact": write.contact_id, "changes": write.changes}],
                write_state=WriteState.APPLIED,
            )
        return self._send(record, text, self._resend(record, write))

    def _shows_now(self, write: Write) -> bool:
        """`_verified`, where a read that fails says only that nothing is known yet."""
        try:
            return self._verified(write)
        except ApiError:
            return False

    def _verified(self, write: Write) -> bool:
        """Whether the provider shows the write (reading the contact)."""
        try:
            return shows(self.voice.get_contact_fields(contact_id=write.contact_id), write.changes)
        except ApiNotFoundError:
            raise PermanentFailure(f"unknown contact {write.contact_id}") from None

    def _refused(self, record: EventRecord, text: str, plan: WritePlan) -> Outcome:
        if plan.refusal == Refusal.LEASE_LOST:
            return Outcome(
                record.call_id,
                HandlingStatus.LEASE_LOST,
                text,
                error="lease ran out: another processor took the event over",
            )
        if plan.refusal == Refusal.SUPERSEDED:
            write = self.inbox.write_of(record.call_id)
            return self._finish(
                record,
                EventStatus.SUPERSEDED,
                f"{text}; {plan.detail}",
                write_state=None if write is None else WriteState.SUPERSEDED,
            )
        if plan.refusal == Refusal.BUSY:
            return self._finish(
                record,
                EventStatus(record.status),
                f"{text}; {plan.detail}",
                count_attempt=False,
                retry_at=self._after(self.settings.busy_retry_seconds),
            )
        raise PermanentFailure(f"{plan.detail} to transfer to")

    def _decide(self, event: PostCallEvent) -> Decision:
        return decide(
            wrapup=event.wrapup,
            call_end=event.moment("callEnd"),
            call_start=event.moment("callStart"),
            callback_requested=event.moment("callBackDate"),
            callback_labels=self.settings.callback_labels,
            support_keyword=self.settings.support_keyword,
        )

    @staticmethod
    def _changes(decision: Decision) -> dict:
        if decision.reschedule_to is None:
            return {}
        return {"retryDate": format_provider_datetime(decision.reschedule_to)}

    @classmethod
    def _call_key(cls, record: EventRecord | None) -> str:
        """The event's call time as a sortable UTC string; unreadable events sort first."""
        if record is None:
            return ""
        try:
            event = parse_event(record.payload.encode())
        except EventError:
            return ""
        return cls._call_time(event, record.received_at)

    @staticmethod
    def _call_time(event: PostCallEvent, received_at: str) -> str:
        return ordering_key(
            call_moment(event.moment("callEnd"), event.moment("callStart")), received_at
        )

    @staticmethod
    def _describe(decision: Decision) -> str:
        parts = []
        if decision.reschedule_to is not None:
            parts.append(f"reschedule to {decision.reschedule_to.isoformat()}")
        if decision.transfer_to_support:
            parts.append(TRANSFER)
        if decision.note:
            parts.append(decision.note)
        return "; ".join(parts)

    def _after(self, seconds: float | None) -> datetime | None:
        if seconds is None:
            return None
        return datetime.now(UTC) + timedelta(
            seconds=min(seconds, self.settings.max_retry_after_seconds)
        )

    def _settled(self, write: Write) -> datetime:
        """When the write, sent at `sent_at`, can no longer land (see `landing_window`)."""
        sent = datetime.fromisoformat(write.sent_at) if write.sent_at else datetime.now(UTC)
        return sent + self.landing

    # Support transfers ---------------------------------------------------------------------

    def _read_campaign_holders(self) -> tuple[dict[str, str | None], str]:
        """The load campaign's contacts and their agents as the provider lists them, and from
        when on this pipeline's transfers count on top of that list: a transfer sent since a
        landing window before the read began may not show in it yet."""
        listed_since = (datetime.now(UTC) - self.landing).isoformat(timespec="milliseconds")
        holders = {
            contact.id: contact.assigned_agent
            for page in self.voice.iter_contact_pages(campaign_id=self.settings.load_campaign)
            for contact in page.items
            if contact.id
        }
        return holders, listed_since

    def _load_since(self) -> str:
        """The oldest transfer that still counts in an agent's load."""
        oldest = datetime.now(UTC) - timedelta(days=self.settings.support_load_days)
        return oldest.isoformat(timespec="milliseconds")

    def _chooser(self, contact_id: str) -> Callable[..., str | None]:
        """What chooses the agent for `contact_id` under the inbox's lock, given the transfers
        that count (and, for a transfer sent again, the agent chosen before, kept while still a
        candidate). The provider and the CRM are read now, with no lock held: the choice itself
        reads nothing."""
        holders, listed_since = self._holders.get()
        agents = self._support_agents.get()
        team = self.settings.support_team

        def choose(counted: dict[str, tuple[str, str]], keep: str | None = None) -> str | None:
            loads = support_loads(holders, listed_since, counted, contact_id)
            candidates = [
                SupportCandidate(
                    a.username,
                    can_take_support_contacts(a.active, a.team, team),
                    loads.get(a.username, 0),
                )
                for a in agents
            ]
            agent = least_loaded_agent(candidates, keep=keep)
            # Kept for the outcome: which agent, and the loads it was chosen from (one event at
            # a time per processor).
            self._choice = (
                None
                if agent is None
                else describe_choice(agent, candidates, kept=agent == keep and keep is not None)
            )
            return agent

        return choose

    def _with_choice(self, text: str, write_changes: dict | None) -> str:
        """The decision's text, naming the agent a transfer went to and the loads behind it."""
        choice, self._choice = self._choice, None
        if choice is None or not write_changes or "assignedAgent" not in write_changes:
            return text
        if TRANSFER in text:
            return text.replace(TRANSFER, f"{TRANSFER}: {choice}", 1)
        return f"{text}; assigned to {choice}" if text else f"assigned to {choice}"

    def _finish(
        self,
        record: EventRecord,
        status: str,
        decision: str,
        writes: list[dict] | None = None,
        *,
        error: str | None = None,
        write_state: WriteState | None = None,
        retry_at: datetime | None = None,
        count_attempt: bool = True,
    ) -> Outcome:
        stored = self.inbox.finish(
            record.call_id,
            self.owner,
            status=status,
            decision=decision,
            writes=writes or [],
            error=error,
            run_id=self.run_id,
            write_state=write_state,
            retry_at=retry_at,
            count_attempt=count_attempt,
        )
        if stored is None:
            return Outcome(
                record.call_id,
                HandlingStatus.LEASE_LOST,
                decision,
                writes or [],
                "lease ran out before the outcome was recorded: another processor took over",
            )
        shown = stored if count_attempt else HandlingStatus.DEFERRED
        return Outcome(record.call_id, shown, decision, writes or [], error)
