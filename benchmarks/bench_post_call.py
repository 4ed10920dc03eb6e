"""Post-call, end to end: the simulator posts events to the real stack (intake, sensor, the
Dagster daemon's runs, the sandbox provider) and every event is followed until applied."""

import sqlite3
import statistics
import tempfile
import time
from datetime import datetime
from pathlib import Path

import requests

from benchmarks.common import table
from salesops_pipeline.devtools.simulator import simulate
from salesops_pipeline_tests.support.stack_process import start_stack, stop_stack

FINAL = ("applied", "nothing_to_do", "failed")


def main(scale: int, repeat: int, smoke: bool = False) -> str:
    rate, duration = (5.0, 4.0) if smoke else (20.0, 120.0)
    with tempfile.TemporaryDirectory() as tmp:
        stack = start_stack(Path(tmp) / "salesops_home")
        try:
            return _measure(stack, rate, duration)
        finally:
            stop_stack(stack)


def _contact_ids(stack) -> list[str]:
    response = requests.get(
        f"{stack.sandbox_url}/voice/contacts",
        params={"campaignId": "A", "limit": 5000},
        headers={"X-API-KEY": stack.provider_key},
        timeout=30,
    )
    return [c["id"] for c in response.json() if c.get("id")]


def _parse(moment: str) -> datetime:
    return datetime.fromisoformat(moment)


def _measure(stack, rate: float, duration: float) -> str:
    report = simulate(
        intake_url=stack.intake_url,
        api_key=stack.intake_key,
        contact_ids=_contact_ids(stack),
        rate=rate,
        duration=duration,
        seed=1,
    )
    accepted = set(report.call_ids)
    inbox = stack.home / "intake" / "inbox.sqlite"
    deadline = time.monotonic() + 300
    while True:
        with sqlite3.connect(inbox) as conn:
            placeholders = ",".join("?" * len(FINAL))
            done = conn.execute(
                f"SELECT COUNT(*) FROM event WHERE status IN ({placeholders})", FINAL
            ).fetchone()[0]
        if done >= len(accepted) or time.monotonic() > deadline:
            break
        time.sleep(1)
    with sqlite3.connect(inbox) as conn:
        events = dict(conn.execute("SELECT call_id, received_at FROM event").fetchall())
        finished = dict(
            conn.execute(
                "SELECT call_id, MIN(at) FROM outcome WHERE status IN ('applied',"
                " 'nothing_to_do', 'failed') GROUP BY call_id"
            ).fetchall()
        )
        statuses = dict(conn.execute("SELECT status, COUNT(*) FROM event GROUP BY status"))
        written_twice = conn.execute(
            "SELECT COUNT(*) FROM (SELECT call_id FROM outcome WHERE writes != '[]'"
            " GROUP BY call_id HAVING COUNT(*) > 1)"
        ).fetchone()[0]
        writes = conn.execute(
            "SELECT COALESCE(SUM(json_array_length(writes)), 0) FROM outcome"
        ).fetchone()[0]
    patches = requests.get(
        f"{stack.sandbox_url}/_sandbox/patches",
        headers={"X-API-KEY": stack.provider_key},
        timeout=10,
    ).json()["count"]
    runs = stack.graphql(
        '{ runsOrError(filter: {pipelineName: "post_call_job"}) { ... on Runs { count } } }'
    )["runsOrError"]["count"]
    latencies = sorted(
        (_parse(finished[c]) - _parse(events[c])).total_seconds() for c in finished if c in events
    )
    lost = len(accepted - events.keys())
    unfinished = len(accepted) - len(finished)

    def pct(q):
        return latencies[min(len(latencies) - 1, int(len(latencies) * q))] if latencies else 0

    rows = [
        ["events posted / accepted", f"{report.sent} / {len(accepted)}"],
        ["event kinds", ", ".join(f"{k}: {n}" for k, n in sorted(report.kinds.items()))],
        ["final statuses", ", ".join(f"{k}: {n}" for k, n in sorted(statuses.items()))],
        ["event → final, p50", f"{statistics.median(latencies) if latencies else 0:.1f} s"],
        ["event → final, p95", f"{pct(0.95):.1f} s"],
        ["event → final, max", f"{latencies[-1] if latencies else 0:.1f} s"],
        ["post_call_job runs", f"{runs} ({runs / max(len(accepted), 1):.3f} per event)"],
        ["events lost", str(lost)],
        ["events not final within 5 min", str(unfinished)],
        ["events applied twice", str(written_twice)],
        ["PATCHes recorded / received by the provider", f"{writes} / {patches}"],
    ]
    return table(
        f"Post-call end to end: {rate:g} events/s for {duration:g} s through the Dagster daemon",
        rows,
        ["measure", "value"],
    )
