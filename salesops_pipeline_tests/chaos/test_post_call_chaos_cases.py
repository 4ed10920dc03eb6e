"""Three more faults on the real stack (`salesops dev`, the inbox in SQLite), each with tens of
events rather than hundreds:

- a provider that applies an older call's write 27 s late, after its run worker was killed,
  while a newer call of the same contact arrives: the contact must end as the newer call
  asked, and the older write must reach the provider at most once;
- a CRM that deactivates a support agent while transfers flow through open runs: every
  transfer the provider receives more than 10 s later must name an agent active then;
- an inbox that a run cannot reach for half a minute, so that the run fails inside its step:
  the events it leaves must all reach the provider within 60 s of the inbox coming back,
  with nobody touching anything.

Each writes its figures to `test-artifacts/` (`chaos-late-write.json`,
`chaos-agent-deactivated.json`, `chaos-step-failure.json`).
"""

import contextlib
import json
import os
import signal
import sqlite3
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import requests

from salesops_pipeline.clients.wire import format_webhook_datetime
from salesops_pipeline.post_call.inbox import Inbox, lane_key, lane_of
from salesops_pipeline_tests.conftest import REPO_ROOT
from salesops_pipeline_tests.support.post_call_outcome import (
    ACTIVE_SUPPORT,
    callback_event,
    provider,
    wait_until_final,
)
from salesops_pipeline_tests.support.post_call_outcome import contacts as contacts_of
from salesops_pipeline_tests.support.processes import run_workers
from salesops_pipeline_tests.support.stack_process import start_stack, stop_stack

# Within the client's 30 s timeout, and later than a write is given to land before it is
# read back: a write judged lost at that point must not be sent again blindly.
LATE_SECONDS = 27
DEACTIVATION_GRACE = timedelta(seconds=10)
STEP_FAILURE_RECOVERY = 60.0
MAX_INBOX_HOLD = 65.0
LANES = 4


def _record(name: str, figures: dict) -> None:
    artifacts = REPO_ROOT / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    (artifacts / name).write_text(json.dumps(figures, indent=2))
    print(json.dumps(figures, indent=2))


def _session(stack) -> requests.Session:
    session = requests.Session()
    session.headers.update({"X-API-KEY": stack.intake_key, "Content-Type": "application/json"})
    return session


def _post(session: requests.Session, stack, event: dict) -> None:
    answer = session.post(f"{stack.intake_url}/webhooks/post-call", json=event, timeout=10)
    assert answer.status_code in (200, 202), answer.text


def _sandbox(stack, method: str, path: str, body: dict | None = None) -> dict:
    response = requests.request(
        method,
        f"{stack.sandbox_url}{path}",
        json=body,
        headers={"X-API-KEY": stack.provider_key},
        timeout=10,
    )
    response.raise_for_status()
    return response.json()


def _callback(call_id: str, contact: str, end: datetime, days: int) -> tuple[dict, str]:
    """A `Rappel` call and the retryDate the contact must then show, as the provider writes
    it."""
    event, expected = callback_event(call_id, contact, end, days)
    return event, expected.isoformat()


def _received(log: list[dict]) -> Counter:
    return Counter(entry["idempotency_key"] for entry in log)


def _post_call_runs(stack) -> list[dict]:
    data = stack.graphql(
        """
        { runsOrError(filter: {pipelineName: "post_call_job"}) {
            ... on Runs { results { runId status tags { key value } } } } }
        """
    )
    return [
        {
            "run_id": run["runId"],
            "status": run["status"],
            "run_key": next(
                (t["value"] for t in run["tags"] if t["key"] == "dagster/run_key"), None
            ),
        }
        for run in data["runsOrError"]["results"]
    ]


def test_a_write_applied_late_after_a_kill_never_reverts_a_newer_call(tmp_path):
    began = time.monotonic()
    home = tmp_path / "salesops_home"
    stack = start_stack(home, generate_keys=True)
    inbox = Inbox(home / "intake" / "inbox.sqlite")
    try:
        contact = sorted(contacts_of(stack))[0]
        base = datetime(2026, 3, 2, 9, 0)
        older, _ = _callback("late-older", contact, base, days=3)
        newer, expected = _callback("late-newer", contact, base + timedelta(minutes=40), days=5)
        # The older call's write gets no answer and lands LATE_SECONDS after it arrived.
        _sandbox(
            stack,
            "POST",
            "/_sandbox/faults",
            {
                "method": "PATCH",
                "path_prefix": f"/voice/contacts/{contact}",
                "status": None,
                "apply_after_seconds": LATE_SECONDS,
                "times": 1,
            },
        )
        session = _session(stack)
        _post(session, stack, older)
        deadline = time.monotonic() + 90
        while _sandbox(stack, "GET", "/_sandbox/faults")["faults"].get("PATCH", 0) == 0:
            assert time.monotonic() < deadline, "the older call's write never reached the provider"
            time.sleep(0.1)
        held_at = time.monotonic()
        # Its run worker dies with the write in flight; then the newer call arrives.
        killed = run_workers(stack)
        assert killed, "no run worker to kill"
        for pid in killed:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        _post(session, stack, newer)
        wait_until_final(inbox, held_at + LATE_SECONDS + 90, "90 s after the held write landed")
        # Judged once the held write has landed, whenever the pipeline finished.
        time.sleep(max(0.0, held_at + LATE_SECONDS + 2 - time.monotonic()))
        final = provider(stack, f"/voice/contacts/{contact}")
        log = provider(stack, "/_sandbox/writes")
        statuses = {call_id: inbox.get(call_id).status for call_id in ("late-older", "late-newer")}
        settled = time.monotonic() - held_at
    finally:
        stop_stack(stack)
    received = _received(log)
    figures = {
        "back_end": "sqlite",
        "events": 2,
        "apply_after_seconds": LATE_SECONDS,
        "run_workers_killed": len(killed),
        "statuses": statuses,
        "older_writes_received": received.get("post-call-late-older", 0),
        "newer_writes_received": received.get("post-call-late-newer", 0),
        "writes": [
            {"key": e["idempotency_key"], "at": e["at"], "changes": e["changes"]} for e in log
        ],
        "contact_retry_date": final.get("retryDate"),
        "expected_retry_date": expected,
        "final_after_held_seconds": round(settled, 1),
        "test_seconds": round(time.monotonic() - began),
    }
    _record("chaos-late-write.json", figures)
    assert received.get("post-call-late-older", 0) <= 1, f"older write received twice: {log}"
    assert received.get("post-call-late-newer", 0) <= 1, f"newer write received twice: {log}"
    assert final.get("retryDate") == expected, (
        f"the contact ended with {final.get('retryDate')}, not the newer call's {expected}: {log}"
    )
    assert statuses["late-newer"] == "applied", statuses


def test_transfers_after_an_agent_is_deactivated_name_only_active_agents(tmp_path):
    began = time.monotonic()
    home = tmp_path / "salesops_home"
    stack = start_stack(home, generate_keys=True)
    inbox = Inbox(home / "intake" / "inbox.sqlite")
    posted: list[str] = []
    stop = threading.Event()
    try:
        contacts = sorted(contacts_of(stack))[:80]
        session = _session(stack)
        base = datetime(2026, 3, 2, 12, 0)

        def post_transfers() -> None:
            # A steady trickle: every lane keeps getting work, so its run stays open.
            for n, contact in enumerate(contacts):
                if stop.is_set():
                    return
                event = {
                    "callId": f"transfer-{n}",
                    "contactId": contact,
                    "wrapup": "Transfert support",
                    "callEnd": format_webhook_datetime(base + timedelta(minutes=n)),
                }
                _post(session, stack, event)
                posted.append(event["callId"])
                stop.wait(0.8)

        poster = threading.Thread(target=post_transfers, daemon=True)
        poster.start()
        deadline = time.monotonic() + 90
        while True:
            transfers = [
                e for e in provider(stack, "/_sandbox/writes") if "assignedAgent" in e["changes"]
            ]
            if len(transfers) >= 4:
                break
            assert time.monotonic() < deadline, "no transfer reached the provider"
            time.sleep(0.5)
        # The agent the runs are choosing now leaves the active support team.
        agent = transfers[-1]["changes"]["assignedAgent"]
        _sandbox(stack, "PATCH", f"/_sandbox/agents/{agent}", {"active": False})
        deactivated_at = datetime.now(UTC)
        stop.wait(22)
        stop.set()
        poster.join(timeout=30)
        wait_until_final(inbox, time.monotonic() + 60, "60 s after the last transfer")
        log = provider(stack, "/_sandbox/writes")
        statuses = Counter(inbox.get(call_id).status for call_id in posted)
    finally:
        stop.set()
        stop_stack(stack)
    late = [
        e
        for e in log
        if "assignedAgent" in e["changes"]
        and datetime.fromisoformat(e["at"]) > deactivated_at + DEACTIVATION_GRACE
    ]
    allowed = ACTIVE_SUPPORT - {agent}
    wrong = [
        f"{e['idempotency_key']} at {e['at']}: {e['changes']['assignedAgent']}"
        for e in late
        if e["changes"]["assignedAgent"] not in allowed
    ]
    figures = {
        "back_end": "sqlite",
        "transfers": len(posted),
        "deactivated_agent": agent,
        "deactivated_at": deactivated_at.isoformat(timespec="milliseconds"),
        "writes_received": len(log),
        "writes_after_grace": len(late),
        "to_deactivated_agent_after_grace": len(wrong),
        "to_deactivated_agent_in_all": sum(
            1 for e in log if e["changes"].get("assignedAgent") == agent
        ),
        "statuses": dict(statuses),
        "test_seconds": round(time.monotonic() - began),
    }
    _record("chaos-agent-deactivated.json", figures)
    assert len(late) >= 3, f"too few transfers written after the grace to judge: {figures}"
    assert wrong == [], f"transfers to an agent inactive for over 10 s: {wrong}"
    assert statuses == {"applied": len(posted)}, statuses


def _hold_inbox(path) -> sqlite3.Connection:
    """Lock every other connection out of writing to the inbox file, as a stalled disk or a
    stray maintenance job holding a write transaction would, until the connection is closed.
    (Readers go on: in WAL mode nothing short of closing every other connection stops them.)"""
    lock = sqlite3.connect(path, timeout=20, isolation_level=None)
    lock.execute("BEGIN IMMEDIATE")
    lock.execute("SELECT COUNT(*) FROM event").fetchone()
    return lock


def test_events_a_run_failed_on_reach_the_provider_once_the_inbox_is_back(tmp_path):
    began = time.monotonic()
    home = tmp_path / "salesops_home"
    stack = start_stack(home, generate_keys=True)
    path = home / "intake" / "inbox.sqlite"
    inbox = Inbox(path)
    try:
        # Twelve contacts of one lane, one callback each.
        lane_contacts = [
            c
            for c in sorted(contacts_of(stack))
            if lane_of(lane_key(json.dumps({"contactId": c})), LANES) == 0
        ][:12]
        base = datetime(2026, 3, 3, 9, 0)
        events = [
            _callback(f"lane-{n}", contact, base + timedelta(minutes=n), days=2)
            for n, contact in enumerate(lane_contacts)
        ]
        session = _session(stack)
        for event, _ in events:
            _post(session, stack, event)
        # The run for them starts; the inbox goes away as it begins to work.
        deadline = time.monotonic() + 90
        while not any(r["status"] == "STARTED" for r in _post_call_runs(stack)):
            assert time.monotonic() < deadline, "no run started for the lane"
            time.sleep(0.1)
        lock = _hold_inbox(path)
        locked_at = time.monotonic()
        try:
            # Held until the run has failed: its inbox calls give up after the inbox's 30 s
            # busy timeout (two in a row when the lock caught it recording an event).
            while time.monotonic() - locked_at < MAX_INBOX_HOLD:
                if any(r["status"] == "FAILURE" for r in _post_call_runs(stack)):
                    break
                time.sleep(0.5)
        finally:
            lock.close()
        cleared_at = time.monotonic()
        wait_until_final(
            inbox,
            cleared_at + STEP_FAILURE_RECOVERY,
            f"{STEP_FAILURE_RECOVERY:.0f} s after the inbox came back",
        )
        recovery = time.monotonic() - cleared_at
        runs = _post_call_runs(stack)
        log = provider(stack, "/_sandbox/writes")
        statuses = Counter(inbox.get(event["callId"]).status for event, _ in events)
        final = {c: provider(stack, f"/voice/contacts/{c}") for c in lane_contacts}
    finally:
        stop_stack(stack)
    received = _received(log)
    figures = {
        "back_end": "sqlite",
        "events": len(events),
        "inbox_unavailable_seconds": round(cleared_at - locked_at, 1),
        "recovery_seconds": round(recovery, 1),
        "runs": [{"status": r["status"], "run_key": r["run_key"]} for r in runs],
        "statuses": dict(statuses),
        "writes_received": len(log),
        "test_seconds": round(time.monotonic() - began),
    }
    _record("chaos-step-failure.json", figures)
    assert any(r["status"] == "FAILURE" for r in runs), f"no run failed: {runs}"
    assert statuses == {"applied": len(events)}, statuses
    for event, expected in events:
        assert received.get(f"post-call-{event['callId']}") == 1, (event["callId"], log)
        assert final[event["contactId"]].get("retryDate") == expected, event["callId"]
