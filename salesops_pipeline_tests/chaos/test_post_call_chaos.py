"""The post-call contract under chaos, on the real stack (intake, sandbox provider, Dagster
daemon and runs): a few hundred events with callback pairs posted newest-first half of the
time, transfers and redeliveries; about 30% provider faults (refusals with every form of
Retry-After, redirects, answers lost after the write, slow writes); the run worker killed
twice mid-batch; then the whole stack killed and started again. On each back end: the inbox
in its SQLite file, and the inbox and the Dagster instance in a PostgreSQL database that
outlives the stack, as it would on its own server.

Every accepted event must be final within 2 minutes of the restart, the provider must have
received each event's write at most once (exactly once unless superseded, or unless the contact
held what it asked from the start and a crash hid whether the write went out), each contact must
end as its newest call asked, and no inactive agent may have been chosen. The figures go to
`test-artifacts/chaos.json` (`chaos-postgres.json`).
"""

import contextlib
import json
import os
import random
import signal
import threading
import time
from email.utils import formatdate

import pytest
import requests

from salesops_pipeline.post_call.inbox import Inbox
from salesops_pipeline_tests.conftest import REPO_ROOT
from salesops_pipeline_tests.support.post_call_outcome import contacts as contacts_of
from salesops_pipeline_tests.support.post_call_outcome import (
    provider,
    scenario,
    score,
    wait_until_final,
)
from salesops_pipeline_tests.support.processes import descendants
from salesops_pipeline_tests.support.processes import run_workers as _run_workers
from salesops_pipeline_tests.support.stack_process import start_stack, stop_stack

PAIRS = 90  # callback pairs: two calls of one contact
TRANSFERS = 50
OTHERS = 40
RESEND_SHARE = 0.2
RECOVERY_DEADLINE = 120.0


def _kill_everything(stack) -> None:
    for pid in [stack.process.pid, *descendants(stack.process.pid)]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    stack.process.wait(timeout=30)


def _arm_faults(stack) -> int:
    """About 30% of writes, and some reads, misbehave; returns how many fault kinds."""
    http_date = formatdate(time.time() + 1, usegmt=True)
    faults = [
        # Tried in turn, the first that fires wins: about 31% of writes in all.
        {"method": "PATCH", "status": None, "delay_seconds": 0.3, "probability": 0.05},
        {"method": "PATCH", "status": 503, "retry_after": 1, "probability": 0.07},
        {"method": "PATCH", "status": 429, "retry_after": "0.5", "probability": 0.07},
        {"method": "PATCH", "status": 503, "retry_after": http_date, "probability": 0.05},
        {"method": "PATCH", "status": 302, "location": "/healthz", "probability": 0.06},
        {"method": "PATCH", "status": None, "drop_after_apply": True, "probability": 0.06},
        {"method": "GET", "status": 503, "retry_after": "0.2", "probability": 0.1},
    ]
    for fault in faults:
        response = requests.post(
            f"{stack.sandbox_url}/_sandbox/faults",
            json={"path_prefix": "/voice/contacts", "times": 100_000, **fault},
            headers={"X-API-KEY": stack.provider_key},
            timeout=5,
        )
        response.raise_for_status()
    return len(faults)


def _post_all(stack, events: list[dict], rng: random.Random) -> tuple[set[str], int]:
    """Post every event (some twice, as the provider redelivers); the callIds accepted."""
    session = requests.Session()
    session.headers.update({"X-API-KEY": stack.intake_key, "Content-Type": "application/json"})
    accepted, resent = set(), 0
    for event in events:
        body = json.dumps(event)
        times = 2 if rng.random() < RESEND_SHARE else 1
        resent += times - 1
        for _ in range(times):
            answer = session.post(f"{stack.intake_url}/webhooks/post-call", data=body, timeout=10)
            assert answer.status_code in (200, 202), answer.text
            accepted.add(event["callId"])
    return accepted, resent


def _writes_tried(stack) -> int:
    return provider(stack, "/_sandbox/faults")["requests"].get("PATCH", 0)


def _final_share(inbox: Inbox) -> float:
    counts = inbox.counts()
    total = sum(counts.values())
    return 0.0 if not total else 1 - (counts.get("pending", 0) + counts.get("retrying", 0)) / total


def _share(*stats: dict, method: str) -> str:
    """Faults injected among the requests of `method`, over both lives of the sandbox."""
    faults = sum(s["faults"].get(method, 0) for s in stats)
    requests_ = sum(s["requests"].get(method, 0) for s in stats)
    return f"{faults} of {requests_} ({faults / max(requests_, 1):.0%})"


@pytest.mark.parametrize(
    "back_end", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_every_event_once_and_in_call_order_through_faults_kills_and_a_restart(
    tmp_path, request, back_end
):
    began = time.monotonic()
    rng = random.Random(20261126)
    home = tmp_path / "salesops_home"
    url = request.getfixturevalue("postgres_url") if back_end == "postgres" else None
    settings = {"SALESOPS_DATABASE_URL": url} if url else None
    stack = start_stack(home, generate_keys=True, settings=settings)
    inbox = Inbox(url=url) if url else Inbox(home / "intake" / "inbox.sqlite")
    kills = 0
    try:
        # The contacts as the provider holds them before any event.
        initial = contacts_of(stack)
        contact_ids = list(initial)
        events, expected_retry, transfers = scenario(
            contact_ids, rng, pairs=PAIRS, transfers=TRANSFERS, others=OTHERS
        )
        rng.shuffle(events)
        fault_kinds = _arm_faults(stack)
        posted: list = []
        poster = threading.Thread(target=lambda: posted.append(_post_all(stack, events, rng)))
        poster.start()
        # The run worker is killed twice while it is writing to the provider.
        deadline = time.monotonic() + 150
        while kills < 2:
            assert time.monotonic() < deadline, f"only {kills} run workers caught writing"
            workers = _run_workers(stack)
            before = _writes_tried(stack)
            time.sleep(0.3)
            if workers and _writes_tried(stack) > before:
                time.sleep(rng.uniform(0.1, 0.6))
                try:
                    os.kill(workers[0], signal.SIGKILL)
                except ProcessLookupError:
                    continue  # it ended meanwhile (a hand-over): not a kill, catch another
                kills += 1
                while workers[0] in _run_workers(stack):
                    time.sleep(0.1)
        poster.join(timeout=120)
        [(accepted, resent)] = posted
        # Then, with work done and work left, the whole stack dies at once.
        while _final_share(inbox) < 0.5:
            assert time.monotonic() < deadline, f"stuck before the stack kill: {inbox.counts()}"
            time.sleep(0.5)
        faults_before_kill = provider(stack, "/_sandbox/faults")
        _kill_everything(stack)
    except BaseException:
        stop_stack(stack)
        raise

    restarted = start_stack(home, generate_keys=True, settings=settings)
    up_at = time.monotonic()
    try:
        _arm_faults(restarted)  # the provider is as flaky after the restart
        wait_until_final(
            inbox, up_at + RECOVERY_DEADLINE, f"{RECOVERY_DEADLINE:.0f}s after the restart"
        )
        recovery = time.monotonic() - up_at
        faults_after_restart = provider(restarted, "/_sandbox/faults")
        requests.delete(
            f"{restarted.sandbox_url}/_sandbox/faults",
            headers={"X-API-KEY": restarted.provider_key},
            timeout=5,
        ).raise_for_status()
        statuses = {call_id: inbox.get(call_id).status for call_id in accepted}
        writes = {call_id: inbox.write_of(call_id) for call_id in accepted}
        log = provider(restarted, "/_sandbox/writes")
        contacts = contacts_of(restarted)
    finally:
        stop_stack(restarted)

    result = score(
        statuses=statuses,
        writes=writes,
        log=log,
        initial=initial,
        final=contacts,
        expected_retry=expected_retry,
        transfers=transfers,
    )
    figures = {
        "back_end": back_end,
        "events": len(events),
        "deliveries": len(events) + resent,
        "redeliveries": resent,
        "fault_kinds": fault_kinds,
        "faulty_writes": _share(faults_before_kill, faults_after_restart, method="PATCH"),
        "faulty_reads": _share(faults_before_kill, faults_after_restart, method="GET"),
        "run_worker_kills": kills,
        "stack_kills": 1,
        "recovery_seconds": round(recovery, 1),
        "statuses": {s: list(statuses.values()).count(s) for s in sorted(set(statuses.values()))},
        "writes_received": len(log),
        "lost": len(result.lost),
        "applied_as_already_held": len(result.already_held),
        "twice": len(result.twice),
        "reverted": len(result.reverted),
        "inactive_agent_chosen": len(result.inactive),
        "test_seconds": round(time.monotonic() - began),
    }
    artifacts = REPO_ROOT / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    name = "chaos.json" if back_end == "sqlite" else f"chaos-{back_end}.json"
    (artifacts / name).write_text(json.dumps(figures, indent=2))
    print(json.dumps(figures, indent=2))
    assert accepted == {event["callId"] for event in events}
    assert result.twice == [], f"written more than once: {result.twice}"
    assert result.lost == [], f"applied but not received exactly once: {result.lost}"
    assert result.unexpected == [], result.unexpected
    assert result.reverted == [], f"contacts not as their newest call asked: {result.reverted}"
    assert result.inactive == [], result.inactive
