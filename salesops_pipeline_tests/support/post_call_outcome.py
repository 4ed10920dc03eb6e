"""A post-call scenario for the real stack, and its scoring against the contract: what the
provider received, what the inbox says, and what each contact ended with. Shared by the suites
that kill parts of the stack (chaos, multi-intake)."""

import random
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

import requests

from salesops_pipeline.clients.wire import format_webhook_datetime
from salesops_pipeline.post_call.rules import callback_date
from salesops_pipeline.services.sandbox.seed import SUPPORT_AGENTS

ACTIVE_SUPPORT = {name for name, active, _ in SUPPORT_AGENTS if active}


def callback_event(call_id: str, contact: str, end: datetime, days: int) -> tuple[dict, datetime]:
    """A `Rappel` call ending at `end` that asks for 10:00 `days` later, and the retryDate the
    contact must then show (a later day, so the rules keep it as asked)."""
    asked = end.replace(hour=10, minute=0, second=0) + timedelta(days=days)
    event = {
        "callId": call_id,
        "contactId": contact,
        "wrapup": "Rappel",
        "callStart": format_webhook_datetime(end - timedelta(minutes=4)),
        "callEnd": format_webhook_datetime(end),
        "callBackDate": format_webhook_datetime(asked),
    }
    return event, callback_date(end, asked)


def scenario(
    contact_ids: list[str], rng: random.Random, *, pairs: int, transfers: int, others: int
) -> tuple[list[dict], dict, dict]:
    """The events: `pairs` callback pairs (two calls of one contact, the newer one first half
    the time), `transfers` transfers to support, `others` calls with nothing to do; what each
    pair's contact must end with; and each transfer's contact."""
    base = datetime(2026, 3, 2, 9, 0)
    contacts = iter(contact_ids)
    events, expected_retry, transferred = [], {}, {}
    for n in range(pairs):
        contact = next(contacts)
        first_end = base + timedelta(minutes=n)
        second_end = first_end + timedelta(minutes=rng.randint(1, 90))
        older, _ = callback_event(f"pair-{n}-a", contact, first_end, days=3)
        newer, expected = callback_event(f"pair-{n}-b", contact, second_end, days=5)
        pair = [older, newer]
        # The newer call ("b") is what the contact must end with.
        expected_retry[contact] = expected
        if rng.random() < 0.5:
            pair.reverse()  # the newer call's event arrives first
        events.extend(pair)
    for n in range(transfers):
        contact = next(contacts)
        end = base + timedelta(hours=3, minutes=n)
        events.append(
            {
                "callId": f"transfer-{n}",
                "contactId": contact,
                "wrapup": "Transfert support",
                "callEnd": format_webhook_datetime(end),
            }
        )
        transferred[f"transfer-{n}"] = contact
    for n in range(others):
        events.append(
            {
                "callId": f"other-{n}",
                "contactId": next(contacts),
                "wrapup": "Vente",
                "callEnd": format_webhook_datetime(base + timedelta(hours=5, minutes=n)),
            }
        )
    return events, expected_retry, transferred


def wait_until_final(inbox, deadline: float, after: str) -> None:
    """Return once no event is open; fail, saying what is, at `deadline` (monotonic)."""
    while True:
        counts = inbox.counts()
        open_events = counts.get("pending", 0) + counts.get("retrying", 0)
        if open_events == 0:
            return
        assert time.monotonic() < deadline, f"{open_events} events still open {after}: {counts}"
        time.sleep(1)


def provider(stack, path: str):
    """A GET on the sandbox provider of `stack`, with its key."""
    response = requests.get(
        f"{stack.sandbox_url}{path}", headers={"X-API-KEY": stack.provider_key}, timeout=30
    )
    response.raise_for_status()
    return response.json()


def contacts(stack) -> dict[str, dict]:
    """Every contact of both campaigns as the provider holds them now."""
    return {
        c["id"]: c
        for campaign in ("B", "A")
        for c in provider(stack, f"/voice/contacts?campaignId={campaign}&limit=5000")
        if c.get("id")
    }


@dataclass
class Score:
    twice: list[str]
    lost: list[str]
    already_held: set[str]
    unexpected: list[str]
    reverted: list[str]
    inactive: list[str]


def score(
    *,
    statuses: dict[str, str],
    writes: dict,
    log: list[dict],
    initial: dict[str, dict],
    final: dict[str, dict],
    expected_retry: dict,
    transfers: dict[str, str],
) -> Score:
    """Each list names what broke the contract; all empty when it held."""
    received: dict[str, int] = {}
    for entry in log:
        received[entry["idempotency_key"]] = received.get(entry["idempotency_key"], 0) + 1
    # A write whose fate a crash hid is settled by reading the contact. When the contact held
    # those values from the start (a transfer to the agent it already had), the reading cannot
    # tell whether the write went out, and need not: the provider holds what the event asked,
    # and nothing was written twice. Such an event may be applied with no write received.
    already_held = {
        call_id
        for call_id, status in statuses.items()
        if status == "applied"
        and received.get(f"post-call-{call_id}", 0) == 0
        and (write := writes[call_id]) is not None
        and all(initial[write.contact_id].get(k) == v for k, v in write.changes.items())
    }
    return Score(
        twice=sorted(key for key, n in received.items() if n > 1),
        lost=sorted(
            call_id
            for call_id, status in statuses.items()
            if status == "applied"
            and received.get(f"post-call-{call_id}", 0) != 1
            and call_id not in already_held
        ),
        already_held=already_held,
        unexpected=sorted(
            f"{call_id}: {status}"
            for call_id, status in statuses.items()
            if status not in ("applied", "superseded", "nothing_to_do")
            or (call_id.startswith("other-") and status != "nothing_to_do")
            or (call_id.startswith("transfer-") and status != "applied")
        ),
        reverted=sorted(
            contact
            for contact, expected in expected_retry.items()
            if final[contact].get("retryDate") != expected.isoformat()
        ),
        inactive=sorted(
            call_id
            for call_id, contact in transfers.items()
            if final[contact].get("assignedAgent") not in ACTIVE_SUPPORT
        ),
    )
