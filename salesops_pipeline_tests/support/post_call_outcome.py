"""Scoring a post-call run of the real stack against the contract: what the provider received,
what the inbox says, and what each contact ended with. Shared by the suites that kill parts of
the stack (chaos, multi-intake)."""

from dataclasses import dataclass

import requests

from salesops_pipeline.services.sandbox.seed import SUPPORT_AGENTS

ACTIVE_SUPPORT = {name for name, active, _ in SUPPORT_AGENTS if active}


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
