"""The post-call business rules, as pure functions of plain values.

Dates here are naive datetimes in Europe/Paris local time: the provider writes them that way
and expects them back that way.
"""

import re
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta

from salesops_pipeline.timezone import BUSINESS_TIMEZONE


def _existing_local(day, at: time) -> datetime:
    """`day` at `at` in Paris; a wall time skipped by the spring DST change moves past the gap."""
    wanted = datetime.combine(day, at)
    aware = wanted.replace(tzinfo=BUSINESS_TIMEZONE)
    round_trip = aware.astimezone(UTC).astimezone(BUSINESS_TIMEZONE).replace(tzinfo=None)
    return round_trip if round_trip != wanted else wanted


def callback_date(call_day: datetime, requested: datetime) -> datetime:
    """Q2.1: a callback may not fall on the day of the call.

    A request on or before the call's day moves to the day after the call, at the requested
    time of day; a later request stays as it is.
    """
    if requested.date() > call_day.date():
        return requested
    return _existing_local(call_day.date() + timedelta(days=1), requested.time())


def is_callback(wrapup: str | None, labels: tuple[str, ...]) -> bool:
    if not wrapup:
        return False
    return wrapup.strip().casefold() in {label.strip().casefold() for label in labels}


def is_support_transfer(wrapup: str | None, keyword: str) -> bool:
    """Whether the agent asked for support: the keyword as a word of the wrap-up, in any case
    ("Transfert support", "SUPPORT technique"), not letters inside another word ("unsupported
    number")."""
    keyword = keyword.strip()
    if not wrapup or not keyword:
        return False
    # Lookarounds rather than \b: they also bound a configured keyword that ends in punctuation.
    word = rf"(?<!\w){re.escape(keyword)}(?!\w)"
    return re.search(word, wrapup, re.IGNORECASE) is not None


def can_take_support_contacts(active: bool | None, team: str | None, support_team: str) -> bool:
    """Only an agent the CRM explicitly says is active and in the support team: an agent whose
    status or team is missing or unexpected is left out rather than handed a customer."""
    return active is True and team == support_team


@dataclass(frozen=True)
class SupportCandidate:
    username: str
    active: bool
    load: int


def support_loads(
    campaign_holders: dict[str, str | None],
    listed_since: str,
    transfers: dict[str, tuple[str, str]],
    moving_contact: str,
) -> dict[str, int]:
    """Q2.2: how many contacts each support agent holds.

    `campaign_holders` maps every contact of the load campaign to its assigned agent (or None),
    as the provider listed them. `transfers` maps each contact this pipeline handed to support
    within the load period to (agent, when) of its latest transfer, in flight or confirmed.

    A transferred contact counts for its agent until the campaign's list shows it (then the
    list decides, whoever holds it there), until a later transfer moves it, or until the load
    period ends. A transfer sent since `listed_since` (shortly before the list was read) may not
    show in the list yet: it counts over what the list says. Each contact counts once, for its
    latest holder; the contact being moved counts for no one.
    """
    holders = dict(campaign_holders)
    for contact, (agent, at) in transfers.items():
        if contact not in holders or at >= listed_since:
            holders[contact] = agent
    holders.pop(moving_contact, None)
    loads: dict[str, int] = {}
    for agent in holders.values():
        if agent:
            loads[agent] = loads.get(agent, 0) + 1
    return loads


def call_moment(call_end: datetime | None, call_start: datetime | None) -> datetime | None:
    """When a call happened, for ordering a contact's calls: its end, else its start."""
    return call_end or call_start


def ordering_key(moment: datetime | None, fallback_utc: str) -> str:
    """A call's moment as a sortable UTC ISO string (naive times are Paris time); calls with
    no date are placed at `fallback_utc`, when their event was received."""
    if moment is None:
        return fallback_utc
    aware = moment.replace(tzinfo=BUSINESS_TIMEZONE) if moment.tzinfo is None else moment
    return aware.astimezone(UTC).isoformat(timespec="milliseconds")


def least_loaded_agent(candidates: list[SupportCandidate], keep: str | None = None) -> str | None:
    """Q2.2: the active support agent with the fewest contacts; ties go to the first username.
    A transfer sent again keeps the agent chosen before (`keep`) while that agent is still an
    active candidate, so that a contact is not moved for nothing.

    None when no support agent is active.
    """
    active = [c for c in candidates if c.active]
    if not active:
        return None
    if any(c.username == keep for c in active):
        return keep
    return min(active, key=lambda c: (c.load, c.username)).username


# Loads named in a transfer's explanation: the chosen agent's and the next few are what a
# reader checks; a support team of fifty would drown the line.
LOADS_SHOWN = 6


def describe_choice(
    agent: str, candidates: list[SupportCandidate], kept: bool = False, shown: int = LOADS_SHOWN
) -> str:
    """Why a transfer went to `agent`, for the inbox, the run log and the operators' tools:
    the loads of the active support agents it was chosen from, lightest first."""
    active = sorted((c for c in candidates if c.active), key=lambda c: (c.load, c.username))
    loads = ", ".join(f"{c.username} {c.load}" for c in active[:shown])
    if len(active) > shown:
        loads += f", and {len(active) - shown} more"
    how = "kept, still an active support agent" if kept else "least loaded"
    return f"{agent} ({how}; loads: {loads})"


@dataclass(frozen=True)
class Decision:
    """What an event asks for: nothing, a new retry date, a transfer to support, or both."""

    reschedule_to: datetime | None = None
    transfer_to_support: bool = False
    note: str = ""

    @property
    def has_work(self) -> bool:
        return self.reschedule_to is not None or self.transfer_to_support


def decide(
    *,
    wrapup: str | None,
    call_end: datetime | None,
    call_start: datetime | None,
    callback_requested: datetime | None,
    callback_labels: tuple[str, ...],
    support_keyword: str,
) -> Decision:
    """What to do after a call, from its wrap-up and dates alone."""
    reschedule_to = None
    notes = []
    if is_callback(wrapup, callback_labels):
        call_day = call_end or call_start
        if callback_requested is None:
            notes.append("callback asked without a date: nothing to reschedule")
        elif call_day is None:
            notes.append("callback asked but the call has no date: kept as requested")
            reschedule_to = callback_requested
        else:
            reschedule_to = callback_date(call_day, callback_requested)
            if reschedule_to != callback_requested:
                notes.append(
                    f"callback on the day of the call or before, moved from"
                    f" {callback_requested.isoformat()} to {reschedule_to.isoformat()}"
                )
    transfer = is_support_transfer(wrapup, support_keyword)
    if not reschedule_to and not transfer and not notes:
        notes.append(f"wrap-up {wrapup!r} needs no action")
    return Decision(
        reschedule_to=reschedule_to, transfer_to_support=transfer, note="; ".join(notes)
    )
