"""Handling one post-call event end to end: decide, read the contact, write to the provider,
record the outcome. Shared by the Dagster job and `salesops post-call`; nothing of Dagster here.

Never twice: an event is claimed before it is handled, so two runs cannot handle it at once;
an event whose status is final is skipped; and what is about to be written is recorded first,
so that a run that crashed after writing finds the contact already as planned and writes
nothing more.
"""

from dataclasses import dataclass, field
from datetime import datetime

from salesops_pipeline.clients import (
    ApiError,
    ApiNotFoundError,
    ApiRequestError,
    CrmClient,
    VoiceClient,
)
from salesops_pipeline.clients.voice import format_provider_datetime
from salesops_pipeline.errors import SalesopsError
from salesops_pipeline.post_call.events import EventError, PostCallEvent, parse_event
from salesops_pipeline.post_call.inbox import Inbox
from salesops_pipeline.post_call.rules import (
    Decision,
    SupportCandidate,
    decide,
    least_loaded_agent,
    support_loads,
)


@dataclass(frozen=True)
class PostCallSettings:
    callback_labels: tuple[str, ...] = ("Rappel",)
    support_keyword: str = "support"
    support_team: str = "support"
    # Support agents' load counts their contacts in this campaign.
    load_campaign: str = "B"


@dataclass
class Outcome:
    call_id: str
    status: str  # applied | nothing_to_do | failed | retrying | skipped | dry_run
    decision: str
    writes: list[dict] = field(default_factory=list)
    error: str | None = None


class PermanentFailure(SalesopsError):
    """The event cannot succeed as it is: retrying would fail the same way."""


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
        self.owner = run_id or "cli"
        self._campaign_assignments: dict[str, str] | None = None
        self._support_agents: list | None = None

    # Public --------------------------------------------------------------------------------

    def process(self, call_id: str) -> Outcome:
        """Handle a stored event once; any failure is recorded, never raised."""
        record = self.inbox.claim(call_id, self.owner)
        if record is None:
            current = self.inbox.get(call_id)
            reason = (
                "unknown event"
                if current is None
                else f"already {current.status}"
                if current.status in ("applied", "nothing_to_do", "failed")
                else "being handled by another run"
            )
            self.inbox.record_skip(call_id, reason, self.run_id)
            return Outcome(call_id, "skipped", reason)
        decision_text = ""
        try:
            event = parse_event(record.payload.encode())
            decision = self._decide(event)
            decision_text = self._describe(decision)
            if not decision.has_work:
                return self._finish(call_id, "nothing_to_do", decision_text, [])
            writes = self._apply(event, decision, record.plan)
            return self._finish(call_id, "applied", decision_text, writes)
        except (PermanentFailure, EventError, ApiNotFoundError, ApiRequestError) as error:
            return self._finish(call_id, "failed", decision_text, [], str(error))
        except ApiError as error:
            # Unreachable, overloaded or refusing our key: worth another try later.
            return self._finish(call_id, "retrying", decision_text, [], str(error))
        except Exception as error:  # noqa: BLE001 - one broken event must not stop the batch
            return self._finish(
                call_id, "retrying", decision_text, [], f"{type(error).__name__}: {error}"
            )

    def preview(self, event: PostCallEvent) -> Outcome:
        """What handling `event` would do, without claiming, recording or writing anything."""
        decision = self._decide(event)
        text = self._describe(decision)
        if not decision.has_work:
            return Outcome(event.callId, "dry_run", text)
        contact = self.voice.get_contact(contact_id=event.contactId)
        changes = {}
        if decision.reschedule_to is not None:
            changes["retryDate"] = format_provider_datetime(decision.reschedule_to)
        if decision.transfer_to_support:
            agent = self._choose_agent(contact.id, self.inbox.transfers())
            if agent is None:
                raise PermanentFailure("no active support agent to transfer to")
            changes["assignedAgent"] = agent
        return Outcome(event.callId, "dry_run", text, [{"contact": contact.id, "changes": changes}])

    # Steps ---------------------------------------------------------------------------------

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
    def _describe(decision: Decision) -> str:
        parts = []
        if decision.reschedule_to is not None:
            parts.append(f"reschedule to {decision.reschedule_to.isoformat()}")
        if decision.transfer_to_support:
            parts.append("transfer to support")
        if decision.note:
            parts.append(decision.note)
        return "; ".join(parts)

    def _apply(self, event: PostCallEvent, decision: Decision, plan: dict | None) -> list[dict]:
        try:
            contact = self.voice.get_contact(contact_id=event.contactId)
        except ApiNotFoundError:
            raise PermanentFailure(f"unknown contact {event.contactId}") from None
        if plan is None:
            plan = {}
            if decision.reschedule_to is not None:
                plan["retryDate"] = format_provider_datetime(decision.reschedule_to)
            if decision.transfer_to_support:
                agent = self.inbox.assign_transfer(
                    contact.id,
                    event.callId,
                    lambda ledger: self._choose_agent(contact.id, ledger),
                )
                if agent is None:
                    raise PermanentFailure("no active support agent to transfer to")
                plan["assignedAgent"] = agent
            self.inbox.record_plan(event.callId, plan)
        current = {
            "retryDate": contact.retry_date and format_provider_datetime(contact.retry_date),
            "assignedAgent": contact.assigned_agent,
        }
        if all(current.get(name) == value for name, value in plan.items()):
            # A previous attempt wrote this and crashed before recording it: nothing to redo.
            return []
        self.voice.update_contact(
            contact_id=contact.id,
            retry_date=datetime.fromisoformat(plan["retryDate"]) if "retryDate" in plan else None,
            assigned_agent=plan.get("assignedAgent"),
        )
        return [{"method": "PATCH", "contact": contact.id, "changes": plan}]

    def _choose_agent(self, contact_id: str, ledger: dict[str, str]) -> str | None:
        if self._support_agents is None:
            # Read once per batch, like the campaign: a batch lasts seconds.
            self._support_agents = self.crm.list_agents(team=self.settings.support_team).items
        agents = self._support_agents
        loads = support_loads(self._assignments(), ledger, contact_id)
        return least_loaded_agent(
            [SupportCandidate(a.username, a.active, loads.get(a.username, 0)) for a in agents]
        )

    def _assignments(self) -> dict[str, str]:
        # Read once per batch: the campaign can be large, and the ledger covers later changes.
        if self._campaign_assignments is None:
            self._campaign_assignments = {
                contact.id: contact.assigned_agent
                for page in self.voice.iter_contact_pages(campaign_id=self.settings.load_campaign)
                for contact in page.items
                if contact.id and contact.assigned_agent
            }
        return self._campaign_assignments

    def _finish(
        self, call_id: str, status: str, decision: str, writes: list[dict], error: str | None = None
    ) -> Outcome:
        stored = self.inbox.finish(
            call_id,
            status=status,
            decision=decision,
            writes=writes,
            error=error,
            run_id=self.run_id,
        )
        return Outcome(call_id, stored, decision, writes, error)
