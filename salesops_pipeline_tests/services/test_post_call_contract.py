"""The post-call contract, rule by rule, against the sandbox provider over loopback: newest
call wins per contact, at most one write per event through crashes and lost answers, a write
counts only once the provider shows it, claims belong to one processor, and support loads
count only what the provider holds or is about to hold. No network call holds the inbox's
write lock."""

import json
import sqlite3
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from urllib.parse import unquote

import pytest

from salesops_pipeline import postgres
from salesops_pipeline.cli import main
from salesops_pipeline.clients import VoiceClient
from salesops_pipeline.post_call.inbox import Inbox
from salesops_pipeline.post_call.processor import PostCallSettings, idempotency_key
from salesops_pipeline.post_call.status import WriteState
from salesops_pipeline.post_call.storage import QUEUE_LOCK, TRANSFER_CHOICE_LOCK, contact_lock
from salesops_pipeline.post_call.store import base as inbox_base
from salesops_pipeline.post_call.store import queue as inbox_queue
from salesops_pipeline.services.sandbox.seed import demo_agents
from salesops_pipeline.services.sandbox.server import running_sandbox
from salesops_pipeline.services.sandbox.store import SandboxStore
from salesops_pipeline_tests.conftest import arm_fault, post_call_processor

CONTACT = "c-1"


@pytest.fixture
def provider(tmp_path):
    """Support agents, and campaign B's contacts c-0 … c-9, none assigned."""
    store = SandboxStore(tmp_path / "provider.sqlite")
    store.create()
    store.add_agents(demo_agents())
    store.add_contacts("B", [{"id": f"c-{i}", "phone": f"061111110{i}"} for i in range(10)])
    # A record the provider serves that does not fit its own schema.
    store.add_contacts("A", [{"id": "c-odd", "phone": "0611111199", "totalCalls": "many"}])
    with running_sandbox(store, api_key="k") as sandbox:
        yield sandbox


@pytest.fixture
def inbox(any_inbox):
    """The inbox where `salesops` commands look for it, on each back end."""
    return any_inbox


processor = post_call_processor


def callback(call_id: str, call_end: str, callback_on: str, contact=CONTACT) -> str:
    """A `Rappel` event: the call ended at `call_end`, the agent asked for `callback_on`."""
    return json.dumps(
        {
            "callId": call_id,
            "contactId": contact,
            "wrapup": "Rappel",
            "callEnd": call_end,
            "callBackDate": callback_on,
        }
    )


def transfer(call_id: str, call_end: str, contact=CONTACT) -> str:
    return json.dumps(
        {"callId": call_id, "contactId": contact, "wrapup": "support", "callEnd": call_end}
    )


OLDER = callback("old", "07/04/2025 10:00:00", "20/04/2025 09:00:00")
NEWER = callback("new", "07/04/2025 11:00:00", "22/04/2025 15:00:00")


def _until_settled(write, p) -> float:
    """Seconds until `write` can no longer land, as `p` judges it."""
    settled = datetime.fromisoformat(write.sent_at) + p.landing
    return max((settled - datetime.now(UTC)).total_seconds(), 0.0) + 0.05


def contact(provider, contact_id=CONTACT) -> dict:
    return json.loads(provider.app.state.store.contact(contact_id))


def writes(provider) -> list[dict]:
    return provider.app.state.store.write_log()


def received_per_event(provider) -> dict[str, int]:
    counts: dict[str, int] = {}
    for entry in writes(provider):
        counts[entry["idempotency_key"]] = counts.get(entry["idempotency_key"], 0) + 1
    return counts


# 1. Newest call wins, per contact ----------------------------------------------------------


def test_an_older_callback_delivered_late_is_superseded(provider, inbox, capsys):
    inbox.accept("new", NEWER)
    with processor(provider, inbox) as p:
        assert p.process("new").status == "applied"
        inbox.accept("old", OLDER)
        outcome = p.process("old")
    assert outcome.status == "superseded"
    assert "call new" in outcome.decision
    assert contact(provider)["retryDate"] == "2025-04-22T15:00:00"
    assert received_per_event(provider) == {"post-call-new": 1}
    assert main(["inbox"]) == 0
    assert "superseded" in capsys.readouterr().out


def test_an_older_callback_retried_after_a_503_never_overwrites_a_newer_one(provider, inbox):
    inbox.accept("old", OLDER)
    arm_fault(provider, method="PATCH", path_prefix="/voice/", status=503, retry_after=30)
    with processor(provider, inbox) as p:
        assert p.process("old").status == "retrying"
        inbox.accept("new", NEWER)
        assert p.process("new").status == "applied"
        assert p.process("old").status == "superseded"
    assert contact(provider)["retryDate"] == "2025-04-22T15:00:00"


def test_a_late_older_transfer_is_superseded_too(provider, inbox):
    inbox.accept("new", NEWER)
    with processor(provider, inbox) as p:
        p.process("new")
        inbox.accept("old-transfer", transfer("old-transfer", "07/04/2025 09:00:00"))
        assert p.process("old-transfer").status == "superseded"
    assert contact(provider).get("assignedAgent") is None


def test_a_contacts_calls_apply_in_call_order_whatever_their_arrival(provider, inbox):
    inbox.accept("new", NEWER)  # arrives first
    inbox.accept("old", OLDER)
    with processor(provider, inbox) as p:
        outcomes = p.process_batch(["new", "old"])
    assert [(o.call_id, o.status) for o in outcomes] == [("old", "applied"), ("new", "applied")]
    assert [w["idempotency_key"] for w in writes(provider)] == ["post-call-old", "post-call-new"]
    assert contact(provider)["retryDate"] == "2025-04-22T15:00:00"


# 2. At most one write per event, even across crashes -----------------------------------------


def test_the_write_is_recorded_before_it_is_sent(provider, inbox, monkeypatch):
    inbox.accept("old", OLDER)
    seen = []
    original = VoiceClient.write_contact

    def spy(self, **kwargs):
        seen.append(inbox.write_of("old").state)
        return original(self, **kwargs)

    monkeypatch.setattr(VoiceClient, "write_contact", spy)
    with processor(provider, inbox) as p:
        assert p.process("old").status == "applied"
    assert seen == [WriteState.SENDING]
    assert inbox.write_of("old").state == WriteState.APPLIED


def _killed_after_sending(provider, inbox, monkeypatch, call_id: str) -> str:
    """Handle `call_id` in a run worker killed once its PATCH went out, before its outcome
    was recorded; the dead worker's owner."""
    crashed = processor(provider, inbox, run_id="crashed")
    original = Inbox.finish

    def die(self, call_id, owner, **kwargs):
        if owner == crashed.owner:
            raise SystemExit("the run worker was killed")
        return original(self, call_id, owner, **kwargs)

    monkeypatch.setattr(Inbox, "finish", die)
    with pytest.raises(SystemExit):
        crashed.process(call_id)
    monkeypatch.setattr(Inbox, "finish", original)
    return crashed.owner


def test_a_crash_after_the_write_never_reverts_a_newer_call(provider, inbox, monkeypatch):
    inbox.accept("old", OLDER)
    inbox.release_dead_worker(_killed_after_sending(provider, inbox, monkeypatch, "old"), "killed")
    inbox.accept("new", NEWER)
    with processor(provider, inbox) as p:
        # The newer call waits while the older one's write is unresolved, and so does the
        # older one's recovery while its write may still land.
        assert p.process("new").status == "deferred"
        assert p.process("old").status == "deferred"
        time.sleep(_until_settled(inbox.write_of("old"), p))
        recovered = p.process("old")
        assert recovered.status == "applied"
        assert "confirmed by reading" in recovered.decision
        assert p.process("new").status == "applied"
    assert received_per_event(provider) == {"post-call-old": 1, "post-call-new": 1}
    assert contact(provider)["retryDate"] == "2025-04-22T15:00:00"


def test_a_write_given_up_in_flight_still_outranks_older_calls(provider, inbox, monkeypatch):
    # Out of attempts with its write's fate unknown: applied, the answer lost, and the
    # provider failing every read that would have told.
    monkeypatch.setattr(inbox_base, "MAX_ATTEMPTS", 1)
    inbox.accept("new", NEWER)
    arm_fault(provider, method="PATCH", path_prefix="/voice/", status=None, drop_after_apply=True)
    arm_fault(provider, method="GET", path_prefix="/voice/", status=503, retry_after=0.01, times=20)
    with processor(provider, inbox) as p:
        assert p.process("new").status == "failed"
        assert inbox.write_of("new").state == WriteState.GIVEN_UP
        # A newer call waits while the given-up write may still land; an older one is
        # superseded by it.
        inbox.accept("newest", callback("newest", "07/04/2025 12:00:00", "25/04/2025 10:00:00"))
        assert p.process("newest").status == "deferred"
        inbox.accept("old", OLDER)
        older = p.process("old")
        assert older.status == "superseded" and "call new" in older.decision
        time.sleep(_until_settled(inbox.write_of("new"), p))
        assert inbox.replay("new")  # still unreadable: its write stays one that may be there
        assert p.process("new").status == "failed"
        assert inbox.write_of("new").state == WriteState.GIVEN_UP
        assert p.process("newest").status == "applied"
    assert received_per_event(provider) == {"post-call-new": 1, "post-call-newest": 1}
    assert contact(provider)["retryDate"] == "2025-04-25T10:00:00"


def test_a_write_whose_runs_kept_dying_is_read_before_a_replay_sends_it(
    provider, inbox, monkeypatch
):
    monkeypatch.setattr(inbox_base, "MAX_CRASHES", 1)
    inbox.accept("new", NEWER)
    dead = _killed_after_sending(provider, inbox, monkeypatch, "new")
    assert inbox.release_dead_worker(dead, "killed") == ["new"]
    assert inbox.get("new").status == "failed"
    assert inbox.write_of("new").state == WriteState.GIVEN_UP
    inbox.accept("old", OLDER)
    with processor(provider, inbox) as p:
        assert p.process("old").status == "superseded"
        assert inbox.replay("new")
        assert p.process("new").status == "deferred"  # its write may still land
        time.sleep(_until_settled(inbox.write_of("new"), p))
        replayed = p.process("new")
    assert replayed.status == "applied" and "confirmed by reading" in replayed.decision
    assert received_per_event(provider) == {"post-call-new": 1}
    assert contact(provider)["retryDate"] == "2025-04-22T15:00:00"


def test_a_lost_answer_is_verified_by_reading_never_sent_again(provider, inbox):
    inbox.accept("old", OLDER)
    arm_fault(provider, method="PATCH", path_prefix="/voice/", status=None, drop_after_apply=True)
    with processor(provider, inbox) as p:
        outcome = p.process("old")
    assert outcome.status == "applied"
    assert received_per_event(provider) == {"post-call-old": 1}


def test_a_timed_out_write_is_verified_before_anything_is_sent_again(provider, inbox):
    inbox.accept("old", OLDER)
    arm_fault(provider, method="PATCH", path_prefix="/voice/", status=None, delay_seconds=3)
    with processor(provider, inbox) as p:
        first = p.process("old")
        assert first.status == "retrying" and "verified by reading" in first.error
        assert inbox.write_of("old").state == WriteState.UNKNOWN
        assert p.process("old").status == "deferred"  # not before it has settled
        time.sleep(_until_settled(inbox.write_of("old"), p))
        assert p.process("old").status == "applied"
    assert received_per_event(provider) == {"post-call-old": 1}


# 3. A write counts as applied only when the provider applied it ------------------------------


@pytest.mark.parametrize("status", [302, 303])
def test_a_redirected_write_is_not_counted_as_applied(provider, inbox, status):
    inbox.accept("old", OLDER)
    arm_fault(provider, method="PATCH", path_prefix="/voice/", status=status, times=3)
    with processor(provider, inbox) as p:
        outcome = p.process("old")
        assert outcome.status == "retrying" and f"{status} redirect" in outcome.error
        assert writes(provider) == []
        assert p.process("old").status == "applied"
    assert received_per_event(provider) == {"post-call-old": 1}


def test_a_2xx_that_does_not_show_the_write_is_not_counted(provider, inbox):
    inbox.accept("old", OLDER)
    arm_fault(provider, method="PATCH", path_prefix="/voice/", status=200)
    with processor(provider, inbox) as p:
        outcome = p.process("old")
        assert outcome.status == "retrying"
        assert "does not show it" in outcome.error
        time.sleep(_until_settled(inbox.write_of("old"), p))
        assert p.process("old").status == "applied"
    assert received_per_event(provider) == {"post-call-old": 1}


def test_an_empty_2xx_is_confirmed_by_reading(provider, inbox):
    inbox.accept("old", OLDER)
    arm_fault(provider, method="PATCH", path_prefix="/voice/", status=None, empty_after_apply=True)
    with processor(provider, inbox) as p:
        assert p.process("old").status == "applied"
    arm_fault(provider, method="PATCH", path_prefix="/voice/", status=204)
    inbox.accept("new", NEWER)
    with processor(provider, inbox) as p:
        assert p.process("new").status == "retrying"  # 204, but the contact does not show it


def test_a_contact_with_malformed_fields_is_still_written_and_verified(provider, inbox):
    odd = callback("odd", "07/04/2025 10:00:00", "20/04/2025 09:00:00", contact="c-odd")
    inbox.accept("odd", odd)
    arm_fault(provider, method="PATCH", path_prefix="/voice/", status=None, empty_after_apply=True)
    with processor(provider, inbox) as p:
        assert p.process("odd").status == "applied"  # confirmed by reading it
    inbox.accept("odd-2", callback("odd-2", "07/04/2025 11:00:00", "21/04/2025 09:00:00", "c-odd"))
    with processor(provider, inbox) as p:
        assert p.process("odd-2").status == "applied"  # nothing left holding the contact


# 4. Claims belong to one processor -----------------------------------------------------------


def test_every_processor_claims_under_its_own_name(provider, inbox):
    inbox.accept("old", OLDER)
    first, second = processor(provider, inbox), processor(provider, inbox)
    assert first.owner != second.owner
    assert inbox.claim("old", first.owner) is not None
    assert second.process("old").status == "skipped"
    assert writes(provider) == []


def test_a_holder_whose_lease_ran_out_stops_without_writing(provider, inbox, monkeypatch):
    inbox.accept("old", OLDER)
    slow = processor(provider, inbox)
    original = Inbox.begin_write

    def lease_runs_out_first(self, call_id, owner, **kwargs):
        with self.transaction() as conn:
            conn.execute(
                "UPDATE event SET lease_until = '2000-01-01' WHERE call_id = ?", (call_id,)
            )
        assert self.claim(call_id, "the-next-holder") is not None
        return original(self, call_id, owner, **kwargs)

    monkeypatch.setattr(Inbox, "begin_write", lease_runs_out_first)
    outcome = slow.process("old")
    assert outcome.status == "lease_lost"
    assert writes(provider) == []
    assert inbox.get("old").status == "pending"  # the next holder's, untouched


# 7. Support loads ----------------------------------------------------------------------------


def test_a_failed_transfer_stops_counting(provider, inbox):
    arm_fault(provider, method="PATCH", path_prefix="/voice/contacts/c-0", status=400)
    inbox.accept("t0", transfer("t0", "07/04/2025 10:00:00", contact="c-0"))
    inbox.accept("t1", transfer("t1", "07/04/2025 10:01:00", contact="c-1"))
    with processor(provider, inbox) as p:
        refused = p.process("t0")
        assert refused.status == "failed"
        chosen = p.process("t1")
    assert chosen.status == "applied"
    # c-0's transfer was refused: the agent it would have gone to is still the least loaded.
    assert refused.writes == []
    first_choice = inbox.write_of("t0").changes["assignedAgent"]
    assert contact(provider, "c-1")["assignedAgent"] == first_choice
    assert inbox.transfers() == {"c-1": first_choice}


def test_the_providers_view_wins_over_an_old_ledger_entry(provider, inbox):
    agents = sorted(a["username"] for a in demo_agents() if a["team"] == "support" and a["active"])
    # Long ago the pipeline gave c-1 … c-3 to the first agent; the provider now shows them
    # unassigned (someone moved them back). Only what the provider shows counts.
    with inbox.transaction() as conn:
        for i in (1, 2, 3):
            conn.execute(
                "INSERT INTO transfer (call_id, contact_id, agent, state, at)"
                " VALUES (?, ?, ?, 'confirmed', ?)",
                (f"old-{i}", f"c-{i}", agents[0], "2020-01-01T00:00:00.000+00:00"),
            )
    inbox.accept("t9", transfer("t9", "07/04/2025 10:00:00", contact="c-9"))
    with processor(provider, inbox) as p:
        assert p.process("t9").status == "applied"
    assert contact(provider, "c-9")["assignedAgent"] == agents[0]


# 8. No network call while holding the inbox's write lock -------------------------------------


def test_a_slow_crm_never_holds_the_inbox_lock(provider, inbox):
    arm_fault(provider, method="GET", path_prefix="/crm/agents", status=None, delay_seconds=2)
    inbox.accept("t1", transfer("t1", "07/04/2025 10:00:00"))
    done = []
    worker = threading.Thread(
        target=lambda: done.append(processor(provider, inbox).process("t1").status)
    )
    worker.start()
    deadline = time.monotonic() + 10
    while not provider.app.state.faults.log:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    # The CRM is answering slowly right now: a webhook can still be stored at once, and every
    # lock the transfer's decision takes is free.
    assert_inbox_free(inbox, contact_id=CONTACT, call_id="t1")
    worker.join(timeout=30)
    assert done == ["applied"]


def assert_inbox_free(inbox, *, contact_id: str, call_id: str) -> None:
    """Fail unless a writer gets every lock an event's handling can take, within 0.2 s."""
    if inbox.kind == "sqlite":
        conn = sqlite3.connect(inbox.path, timeout=0.2, isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("ROLLBACK")
        finally:
            conn.close()
        return
    with inbox.transaction() as conn:
        conn.execute("SET LOCAL lock_timeout = '200ms'")
        for name in (QUEUE_LOCK, TRANSFER_CHOICE_LOCK, contact_lock(contact_id)):
            conn.execute("SELECT pg_advisory_xact_lock(?)", (postgres.advisory_key(name),))
        conn.execute("SELECT 1 FROM event WHERE call_id = ? FOR UPDATE NOWAIT", (call_id,))


# 9. One batch of deliveries -------------------------------------------------------------------


def test_a_batch_stores_each_call_once_counts_repeats_and_keeps_conflicts(inbox):
    first, edited = OLDER, OLDER.replace("Rappel", "Vente")
    other = transfer("t1", "07/04/2025 10:00:00")
    accepted = inbox.accept_many(
        [("old", first), ("t1", other), ("old", first), ("old", edited), ("t1", other)]
    )
    assert [a.status for a in accepted] == [
        "stored",
        "stored",
        "duplicate",
        "conflict",
        "duplicate",
    ]
    assert [q.call_id for q in inbox.queued_after(0, 10)] == ["old", "t1"]
    assert (inbox.get("old").deliveries, inbox.get("t1").deliveries) == (2, 2)
    assert [(c["call_id"], c["payload"]) for c in inbox.conflicts()] == [("old", edited)]
    [again] = inbox.accept_many([("old", first)])
    assert again.status == "duplicate" and inbox.get("old").deliveries == 3
    assert len(inbox.queued_after(0, 10)) == 2


# 10. Late writes: a sent write may land until the client's timeout has passed -----------------


def test_the_wait_for_a_write_of_unknown_fate_is_the_clients_timeout_and_a_margin(provider, inbox):
    with processor(provider, inbox, write_landing_margin_seconds=10) as p:
        # The client waits 3.05 s to connect and 2 s for the answer.
        assert p.landing.total_seconds() == pytest.approx(15.05)
    with pytest.raises(ValueError, match="write_landing_margin_seconds"):
        PostCallSettings(write_landing_margin_seconds=-1)


def test_a_write_that_lands_after_its_worker_died_never_reverts_a_newer_call(
    provider, inbox, monkeypatch
):
    # The provider applies the older call's PATCH 4.5 s after it was sent: after the client
    # gave up (2 s) and its worker was killed, but within the client's whole timeout (5.05 s).
    arm_fault(provider, method="PATCH", path_prefix="/voice/", status=None, apply_after_seconds=4.5)
    inbox.accept("old", OLDER)
    inbox.release_dead_worker(_killed_after_sending(provider, inbox, monkeypatch, "old"), "killed")
    inbox.accept("new", NEWER)
    with processor(provider, inbox) as p:
        assert p.process("old").status == "deferred"  # read only once it cannot land anymore
        assert p.process("new").status == "deferred"  # the newer call waits for it
        time.sleep(_until_settled(inbox.write_of("old"), p))
        recovered = p.process("old")
        assert recovered.status == "applied" and "confirmed by reading" in recovered.decision
        assert p.process("new").status == "applied"
    assert received_per_event(provider) == {"post-call-old": 1, "post-call-new": 1}
    assert contact(provider)["retryDate"] == "2025-04-22T15:00:00"


@pytest.mark.parametrize("status", [502, 504])
def test_a_gateway_error_is_waited_out_like_a_lost_answer(provider, inbox, status):
    inbox.accept("old", OLDER)
    arm_fault(provider, method="PATCH", path_prefix="/voice/", status=status)
    with processor(provider, inbox) as p:
        first = p.process("old")
        assert first.status == "retrying" and f"{status}" in first.error
        assert inbox.write_of("old").state == WriteState.UNKNOWN
        inbox.accept("new", NEWER)
        assert p.process("new").status == "deferred"
        assert p.process("old").status == "deferred"  # neither read nor resent yet
        assert writes(provider) == []
        time.sleep(_until_settled(inbox.write_of("old"), p))
        # It did not land: sent again, then the newer call.
        assert p.process("old").status == "applied"
        assert p.process("new").status == "applied"
    assert received_per_event(provider) == {"post-call-old": 1, "post-call-new": 1}


# 11. The CRM changes under a running pipeline -------------------------------------------------


def _support_agents() -> list[str]:
    return sorted(a["username"] for a in demo_agents() if a["team"] == "support" and a["active"])


def test_an_agent_deactivated_in_the_crm_gets_no_contact_once_the_agents_are_read_again(
    provider, inbox
):
    first, *others = _support_agents()
    inbox.accept("t0", transfer("t0", "07/04/2025 10:00:00", contact="c-0"))
    inbox.accept("t1", transfer("t1", "07/04/2025 10:00:00", contact="c-1"))
    inbox.accept("t2", transfer("t2", "07/04/2025 10:00:00", contact="c-2"))
    with processor(provider, inbox, agents_max_age_seconds=0.5) as p:
        assert p.process("t0").status == "applied"
        assert contact(provider, "c-0")["assignedAgent"] == first
        provider.app.state.store.set_agent(others[0], {"active": False})
        provider.app.state.store.set_agent(others[1], {"team": "sales"})
        time.sleep(0.6)
        # The same run, still open: only the agent left in support gets the next contacts.
        assert p.process("t1").status == "applied"
        assert p.process("t2").status == "applied"
    assert contact(provider, "c-1")["assignedAgent"] == first
    assert contact(provider, "c-2")["assignedAgent"] == first


def test_a_refused_transfer_goes_to_another_agent_when_its_agent_left(provider, inbox):
    inbox.accept("t0", transfer("t0", "07/04/2025 10:00:00", contact="c-0"))
    arm_fault(provider, method="PATCH", path_prefix="/voice/", status=503, retry_after=30)
    with processor(provider, inbox, agents_max_age_seconds=0) as p:
        assert p.process("t0").status == "retrying"
        chosen = inbox.write_of("t0").changes["assignedAgent"]
        provider.app.state.store.set_agent(chosen, {"active": False})
        assert p.process("t0").status == "applied"
    now = contact(provider, "c-0")["assignedAgent"]
    assert now != chosen and now in _support_agents()
    assert inbox.write_of("t0").changes["assignedAgent"] == now
    assert inbox.transfers() == {"c-0": now}


def test_a_replayed_transfer_chooses_again_when_its_agent_left(provider, inbox, monkeypatch):
    monkeypatch.setattr(inbox_base, "MAX_ATTEMPTS", 1)
    inbox.accept("t0", transfer("t0", "07/04/2025 10:00:00", contact="c-0"))
    arm_fault(provider, method="PATCH", path_prefix="/voice/", status=503, retry_after=30)
    with processor(provider, inbox, agents_max_age_seconds=0) as p:
        assert p.process("t0").status == "failed"
        chosen = inbox.write_of("t0").changes["assignedAgent"]
        provider.app.state.store.set_agent(chosen, {"team": "sales"})
        assert inbox.replay("t0")
        assert p.process("t0").status == "applied"
    assert contact(provider, "c-0")["assignedAgent"] not in (chosen, None)


# 12. Support loads from the transfer ledger ---------------------------------------------------


def test_transfers_arriving_one_after_another_spread_over_the_agents(provider, inbox):
    # Campaign-A contacts, which campaign B's list never shows, handed to support one after
    # another, each by a new run that reads the list afresh.
    agents = _support_agents()
    for n in range(2 * len(agents)):
        inbox.accept(f"t{n}", transfer(f"t{n}", "07/04/2025 10:00:00", contact=f"a-{n}"))
        provider.app.state.store.add_contacts("A", [{"id": f"a-{n}", "phone": f"06222222{n:02d}"}])
        with processor(provider, inbox) as p:
            assert p.process(f"t{n}").status == "applied"
    chosen = [contact(provider, f"a-{n}")["assignedAgent"] for n in range(2 * len(agents))]
    assert Counter(chosen) == dict.fromkeys(agents, 2)


def test_a_transfer_counts_no_longer_than_the_load_period(provider, inbox):
    agents = _support_agents()
    with inbox.transaction() as conn:
        for n, days_ago in enumerate((40, 40, 20)):
            at = (datetime.now(UTC) - timedelta(days=days_ago)).isoformat(timespec="milliseconds")
            conn.execute(
                "INSERT INTO transfer (call_id, contact_id, agent, state, at)"
                " VALUES (?, ?, ?, 'confirmed', ?)",
                (f"old-{n}", f"a-{n}", agents[0] if days_ago > 30 else agents[1], at),
            )
    inbox.accept("t9", transfer("t9", "07/04/2025 10:00:00", contact="c-9"))
    with processor(provider, inbox, support_load_days=30) as p:
        assert p.process("t9").status == "applied"
    # agents[0]'s two contacts are past the load period; agents[1] still holds one.
    assert contact(provider, "c-9")["assignedAgent"] == agents[0]


# 13. Leases that run out ----------------------------------------------------------------------


def test_a_lease_that_ran_out_during_slow_reads_is_kept_by_its_holder(provider, inbox, monkeypatch):
    monkeypatch.setattr(inbox_base, "LEASE", timedelta(seconds=0.3))
    monkeypatch.setattr(inbox_queue, "LEASE", timedelta(seconds=0.3))
    arm_fault(provider, method="GET", path_prefix="/crm/agents", status=None, delay_seconds=1)
    inbox.accept("t1", transfer("t1", "07/04/2025 10:00:00"))
    with processor(provider, inbox) as p:
        outcome = p.process("t1")
    assert outcome.status == "applied"
    assert inbox.get("t1").attempts == 1
    assert received_per_event(provider) == {"post-call-t1": 1}


def test_the_attempt_limit_holds_for_handlings_that_never_finish(provider, inbox):
    inbox.accept("old", OLDER)
    for n in range(inbox_base.MAX_ATTEMPTS):
        assert inbox.claim("old", f"worker-{n}") is not None
        with inbox.transaction() as conn:  # its lease runs out, nobody finished it
            conn.execute("UPDATE event SET lease_until = '2000-01-01' WHERE call_id = 'old'")
    assert inbox.claim("old", "worker-last") is None
    event = inbox.get("old")
    assert event.status == "failed" and event.attempts == inbox_base.MAX_ATTEMPTS
    assert "never finished" in event.last_error
    with processor(provider, inbox) as p:
        assert p.process("old").status == "skipped"
    assert writes(provider) == []


# 14. Any callId the intake accepts can be written ---------------------------------------------


@pytest.mark.parametrize("call_id", ["appel-é€-中", "appel\nsur deux lignes", "100%"])
def test_a_call_id_of_any_characters_is_written_under_a_key_that_names_it(provider, inbox, call_id):
    inbox.accept(call_id, callback(call_id, "07/04/2025 10:00:00", "20/04/2025 09:00:00"))
    inbox.accept("new", NEWER)
    with processor(provider, inbox) as p:
        assert p.process(call_id).status == "applied"
        assert p.process("new").status == "applied"  # nothing holds the contact
    [key, _] = [entry["idempotency_key"] for entry in writes(provider)]
    assert key.isascii() and key.isprintable() and unquote(key) == f"post-call-{call_id}"
    assert idempotency_key("100%") != idempotency_key("100%25")
    assert contact(provider)["retryDate"] == "2025-04-22T15:00:00"


def test_agents_read_again_are_never_read_under_the_inbox_lock(provider, inbox):
    # Agents that go stale at once: every read of them is slow, and none may hold the lock.
    arm_fault(
        provider, method="GET", path_prefix="/crm/agents", status=None, delay_seconds=1, times=5
    )
    inbox.accept("t1", transfer("t1", "07/04/2025 10:00:00"))
    done = []
    worker = threading.Thread(
        target=lambda: done.append(
            processor(provider, inbox, agents_max_age_seconds=0).process("t1").status
        )
    )
    worker.start()
    checked = 0
    while worker.is_alive():
        slow_reads = len(provider.app.state.faults.log)
        if slow_reads > checked:  # a slow read of the agents is under way
            assert_inbox_free(inbox, contact_id=CONTACT, call_id="t1")
            checked = slow_reads
        time.sleep(0.05)
    worker.join()
    assert done == ["applied"] and checked >= 1
