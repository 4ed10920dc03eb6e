"""The states of post-call work, named once: of an event, of one handling of it, of its
delivery to the inbox, of its write to the provider, of a support transfer, and why a write
was refused."""

from enum import StrEnum


class EventStatus(StrEnum):
    """Where an event stands. The first two are open: the sensor hands them to runs."""

    PENDING = "pending"
    RETRYING = "retrying"
    APPLIED = "applied"
    NOTHING_TO_DO = "nothing_to_do"
    # A newer call of the same contact had its effect applied first: this one never overwrites it.
    SUPERSEDED = "superseded"
    FAILED = "failed"
    # A failed event a person decided never to replay: finished, and pruned like the others.
    DISMISSED = "dismissed"

    @property
    def is_final(self) -> bool:
        return self not in (EventStatus.PENDING, EventStatus.RETRYING)


OPEN_STATUSES = tuple(s.value for s in EventStatus if not s.is_final)
FINAL_STATUSES = tuple(s.value for s in EventStatus if s.is_final)


class AcceptStatus(StrEnum):
    """What the inbox did with a delivered webhook."""

    STORED = "stored"
    # The same callId with the same payload: a redelivery, already stored.
    DUPLICATE = "duplicate"
    # The same callId with another payload: kept out, for a person to look at.
    CONFLICT = "conflict"


class HandlingStatus(StrEnum):
    """What one handling did, beside the event statuses it can end in."""

    # Not handled: already final, or held by another processor.
    SKIPPED = "skipped"
    # Put back without using an attempt: an earlier call's write to the contact is unresolved.
    DEFERRED = "deferred"
    DRY_RUN = "dry_run"
    # The lease ran out mid-way: stopped without writing, another holder takes over.
    LEASE_LOST = "lease_lost"


class WriteState(StrEnum):
    """A write to the provider, recorded before it is sent."""

    SENDING = "sending"
    # Sent, but its answer was lost (timeout, dropped connection): verified by reading.
    UNKNOWN = "unknown"
    APPLIED = "applied"
    # The provider answered that it did not apply it (a redirect, 429, 503): safe to send again.
    NOT_APPLIED = "not_applied"
    SUPERSEDED = "superseded"
    FAILED = "failed"
    # Its event was given up (out of attempts, or its runs kept dying) while the write was in
    # flight: it may have landed. It no longer holds the contact back from newer calls, but
    # older calls stay superseded by it, and a replay reads the contact before sending again.
    GIVEN_UP = "given_up"

    @property
    def in_flight(self) -> bool:
        return self in (WriteState.SENDING, WriteState.UNKNOWN)

    @property
    def may_have_landed(self) -> bool:
        """Sent with no answer that says what the provider did: only reading can tell."""
        return self.in_flight or self == WriteState.GIVEN_UP


class TransferState(StrEnum):
    """A contact handed to a support agent, as the loads that choose the next agent count it."""

    IN_FLIGHT = "in_flight"
    CONFIRMED = "confirmed"
    FAILED = "failed"


class Refusal(StrEnum):
    """Why the inbox would not let a write be sent."""

    # A newer call's effect is applied to the contact.
    SUPERSEDED = "superseded"
    # Another call's write to the contact is unresolved.
    BUSY = "busy"
    LEASE_LOST = "lease_lost"
    NO_AGENT = "no_agent"
