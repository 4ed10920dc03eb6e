"""Two intakes and the Dagster daemon on one PostgreSQL database, as on several hosts: a
thousand events posted alternately to both, some delivered again to the other one, some
conflicting, some unreadable; one intake killed with SIGKILL midway, its requests then
delivered to the other, as a load balancer and the provider's redelivery would.

Nothing accepted may be lost, nothing applied twice, and every contact must end as its newest
call asked. The figures go to `test-artifacts/multi-intake.json`.
"""

import json
import os
import random
import signal
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor

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
from salesops_pipeline_tests.support.processes import cmdline, descendants
from salesops_pipeline_tests.support.stack_process import start_stack, stop_stack

# Its deadlines are minutes beyond what it takes: it may share the cores with other tests.
pytestmark = [pytest.mark.postgres, pytest.mark.shares_cores]

PAIRS = 150  # callback pairs: two calls of one contact, 300 events
TRANSFERS = 100
OTHERS = 600
REDELIVERED_SHARE = 0.1
CONFLICTS = 10
BAD_BODIES = 10
KILL_AT = 500  # deliveries made before the second intake is killed
FINAL_DEADLINE = 120.0


def _deliveries(events: list[dict], rng: random.Random) -> list[tuple[bytes, int, str]]:
    """(body, intake, kind) in order: each event to the intakes in turn; some delivered again
    to the other intake a little later, some again with another payload (a conflict), and
    bodies no event can be read from."""
    deliveries = [(json.dumps(e).encode(), n % 2, "event") for n, e in enumerate(events)]
    for n, event in enumerate(events):
        if rng.random() < REDELIVERED_SHARE:
            at = min(n + rng.randint(1, 40), len(deliveries))
            deliveries.insert(at, (json.dumps(event).encode(), (n + 1) % 2, "redelivery"))
    for event in rng.sample(events, CONFLICTS):
        changed = {**event, "wrapup": f"{event['wrapup']} (edited)"}
        # Well after the original, so that the original is the one stored.
        first = next(
            n
            for n, (body, _, kind) in enumerate(deliveries)
            if kind == "event" and json.loads(body)["callId"] == event["callId"]
        )
        at = rng.randint(min(first + 20, len(deliveries)), len(deliveries))
        deliveries.insert(at, (json.dumps(changed).encode(), rng.randint(0, 1), "conflict"))
    for n in range(BAD_BODIES):
        at = rng.randint(0, len(deliveries))
        deliveries.insert(at, (b'{"callId": "bad-%d", ' % n, n % 2, "bad"))
    return deliveries


def _intake_pid(stack, port: int) -> int:
    [pid] = [
        pid
        for pid in descendants(stack.process.pid)
        if " serve " in cmdline(pid) and f" {port}" in cmdline(pid)
    ]
    return pid


def test_two_intakes_on_one_database_lose_nothing_when_one_is_killed(tmp_path, postgres_url):
    rng = random.Random(20261127)
    home = tmp_path / "salesops_home"
    stack = start_stack(
        home,
        generate_keys=True,
        intake_replicas=2,
        settings={"SALESOPS_DATABASE_URL": postgres_url},
    )
    inbox = Inbox(url=postgres_url)
    try:
        initial = contacts_of(stack)
        events, expected_retry, transfers = scenario(
            list(initial), rng, pairs=PAIRS, transfers=TRANSFERS, others=OTHERS
        )
        # Shuffled: a pair's older call often arrives first, and at the other intake.
        rng.shuffle(events)
        deliveries = _deliveries(events, rng)
        urls = stack.intake_urls
        victim = _intake_pid(stack, stack.intake_ports[1])
        lock = threading.Lock()
        made = {"count": 0, "killed_at": None}
        answers: dict[str, list[int]] = {"event": [], "redelivery": [], "conflict": [], "bad": []}
        failed_then_redelivered = [0, 0]
        latency: list[list[float]] = [[], []]

        def deliver(delivery) -> None:
            body, target, kind = delivery
            with lock:
                made["count"] += 1
                if made["count"] == KILL_AT:
                    os.kill(victim, signal.SIGKILL)
                    made["killed_at"] = time.monotonic()
            session = requests.Session()
            session.headers.update(
                {"X-API-KEY": stack.intake_key, "Content-Type": "application/json"}
            )
            deadline = time.monotonic() + 60
            while True:
                started = time.monotonic()
                try:
                    answer = session.post(
                        f"{urls[target]}/webhooks/post-call", data=body, timeout=10
                    )
                except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError):
                    # No answer, or one cut off when the intake was killed mid-answer.
                    answer = None
                if answer is not None and answer.status_code < 500:
                    latency[target].append(time.monotonic() - started)
                    with lock:
                        answers[kind].append(answer.status_code)
                    return
                # Not stored: the load balancer sends it to the other intake, or the
                # provider delivers it again.
                failed_then_redelivered[target] += 1
                assert time.monotonic() < deadline, f"{kind} never accepted"
                target = (target + 1) % len(urls)
                time.sleep(0.05)

        started = time.monotonic()
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(deliver, deliveries))
        posted_in = time.monotonic() - started
        wait_until_final(
            inbox,
            started + posted_in + FINAL_DEADLINE,
            f"{FINAL_DEADLINE:.0f}s after the last post",
        )
        final_in = time.monotonic() - started
        restarted = requests.get(f"{urls[1]}/healthz", timeout=5).status_code == 200
        statuses = {e["callId"]: inbox.get(e["callId"]).status for e in events}
        writes = {e["callId"]: inbox.write_of(e["callId"]) for e in events}
        log = provider(stack, "/_sandbox/writes")
        contacts = contacts_of(stack)
        conflicts, quarantined = len(inbox.conflicts()), len(inbox.quarantined())
        with inbox.connect() as conn:
            [(deliveries_stored,)] = conn.execute("SELECT SUM(deliveries) FROM event").fetchall()
    finally:
        stop_stack(stack)

    result = score(
        statuses=statuses,
        writes=writes,
        log=log,
        initial=initial,
        final=contacts,
        expected_retry=expected_retry,
        transfers=transfers,
    )

    def p(values: list[float], q: float) -> float:
        ordered = sorted(values)
        return round(ordered[min(int(q * len(ordered)), len(ordered) - 1)] * 1000, 1)

    figures = {
        "events": len(events),
        "deliveries": len(deliveries),
        "redeliveries_to_the_other_intake": len(answers["redelivery"]),
        "intake_killed_after_deliveries": KILL_AT,
        "requests_failed_and_delivered_again": {
            "intake-1": failed_then_redelivered[0],
            "intake-2": failed_then_redelivered[1],
        },
        "answers": {kind: dict(sorted(_count(codes).items())) for kind, codes in answers.items()},
        "accept_ms": {
            f"intake-{n + 1}": {"p50": p(latency[n], 0.5), "p99": p(latency[n], 0.99)}
            for n in range(2)
            if latency[n]
        },
        "posted_in_s": round(posted_in, 1),
        "all_final_in_s": round(final_in, 1),
        "statuses": {s: list(statuses.values()).count(s) for s in sorted(set(statuses.values()))},
        "writes_received": len(log),
        "conflicts_kept": conflicts,
        "quarantined": quarantined,
        "lost": len(result.lost),
        "applied_as_already_held": len(result.already_held),
        "twice": len(result.twice),
        "reverted": len(result.reverted),
        "inactive_agent_chosen": len(result.inactive),
        "killed_intake_restarted": restarted,
        "accept_p50_ms_all": round(statistics.median(latency[0] + latency[1]) * 1000, 1),
    }
    artifacts = REPO_ROOT / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    (artifacts / "multi-intake.json").write_text(json.dumps(figures, indent=2))
    print(json.dumps(figures, indent=2))
    assert made["killed_at"] is not None
    assert result.twice == [], f"written more than once: {result.twice}"
    assert result.lost == [], f"applied but not received exactly once: {result.lost}"
    assert result.unexpected == [], result.unexpected
    assert result.reverted == [], f"contacts not as their newest call asked: {result.reverted}"
    assert result.inactive == [], result.inactive
    assert sorted(set(answers["event"]) | set(answers["redelivery"])) <= [200, 202]
    assert set(answers["conflict"]) == {200} and conflicts == CONFLICTS
    assert set(answers["bad"]) == {400} and quarantined == BAD_BODIES
    # Every delivery answered 2xx was counted, once; so, at most, was a request the killed
    # intake committed without answering, since it was then delivered again.
    answered = len(answers["event"]) + len(answers["redelivery"])
    assert answered <= int(deliveries_stored) <= answered + sum(failed_then_redelivered)
    assert restarted


def _count(codes: list[int]) -> dict[int, int]:
    counted: dict[int, int] = {}
    for code in codes:
        counted[code] = counted.get(code, 0) + 1
    return counted
