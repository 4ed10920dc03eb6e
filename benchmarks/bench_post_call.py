"""Post-call, end to end: the simulator posts events to the real stack (intake, sensor, the
Dagster daemon's runs, the sandbox provider) and every event is followed until final.

Three measures:
- latency at 20 events/s sustained for 5 minutes, in lanes (the shipped design), against two
  baselines run the same way: one batch at a time (one lane, a run stops after one pass of up
  to 100 events) and one run per event (one lane, one event per run);
- throughput: the rate is stepped up, 2 minutes per step, and the highest rate at which p95
  stays within 30 s is reported.

An event's latency runs from the moment the intake stored it (just before its 2xx) to the
moment its handling was recorded final, after the provider confirmed the write. Events not
final when the wait ends count with the time they had waited, so a p95 among them is a lower
bound, shown with ">".
"""

import os
import sqlite3
import statistics
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import requests

from benchmarks.common import table
from salesops_pipeline.devtools.simulator import simulate
from salesops_pipeline.post_call.status import EventStatus
from salesops_pipeline_tests.support.stack_process import start_stack, stop_stack

FINAL = tuple(status.value for status in EventStatus if status.is_final)
DESIGNS = {
    "lanes (ours)": {},
    "one batch at a time": {
        "SALESOPS_POST_CALL_LANES": "1",
        "SALESOPS_POST_CALL_IDLE_SECONDS": "0",
        "SALESOPS_POST_CALL_BATCH": "100",
    },
    "one run per event": {
        "SALESOPS_POST_CALL_LANES": "1",
        "SALESOPS_POST_CALL_IDLE_SECONDS": "0",
        "SALESOPS_POST_CALL_BATCH": "1",
    },
}
P95_LIMIT = 30.0
THROUGHPUT_RATES = (40.0, 60.0, 80.0, 100.0)
# Runs per throughput step; empty: --repeat. Each step costs about 3 minutes a run.
THROUGHPUT_REPEAT = int(os.environ.get("SALESOPS_BENCH_THROUGHPUT_REPEAT", "0"))


@dataclass
class Load:
    rate: float
    seconds: float
    accepted: int = 0
    final: int = 0
    lost: int = 0
    twice: int = 0
    writes: int = 0
    patches: int = 0
    runs: int = 0
    p50: float = 0.0
    p95: float = 0.0
    p95_bound: bool = False  # p95 falls among events that never became final
    max: float = 0.0


def main(scale: int, repeat: int, smoke: bool = False) -> str:
    if smoke:
        # The shipped design only: the baselines each start a stack of their own.
        return _latency_table({"lanes (ours)": [_load({}, 5.0, 4.0, 60)]}, 5.0, 4.0)
    # The baselines fall behind within seconds at this rate: a shorter load and a bounded wait
    # show it, and the events they could not finish count with the time they waited.
    latency = {}
    for name, settings in DESIGNS.items():
        load, wait = (300.0, 120) if name == "lanes (ours)" else (30.0, 60)
        latency[name] = [_load(settings, 20.0, load, wait) for _ in range(repeat)]
    sections = [_latency_table(latency, 20.0, 300.0)]
    # Each table is printed as soon as it is measured: the whole module takes over an hour.
    print(sections[-1], flush=True)
    sections.append(_throughput(THROUGHPUT_REPEAT or repeat))
    return sections[-1]


def _load(settings: dict, rate: float, seconds: float, wait: float) -> Load:
    # A Dagster code server may outlive the stack by a few seconds, still writing to its home.
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as tmp:
        stack = start_stack(Path(tmp) / "salesops_home", settings=settings)
        try:
            return _measure(stack, rate, seconds, wait)
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


def _measure(stack, rate: float, seconds: float, wait: float) -> Load:
    report = simulate(
        intake_url=stack.intake_url,
        api_key=stack.intake_key,
        contact_ids=_contact_ids(stack),
        rate=rate,
        duration=seconds,
        seed=1,
    )
    accepted = set(report.call_ids)
    inbox = stack.home / "intake" / "inbox.sqlite"
    placeholders = ",".join("?" * len(FINAL))
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        with sqlite3.connect(inbox) as conn:
            done = conn.execute(
                f"SELECT COUNT(*) FROM event WHERE status IN ({placeholders})", FINAL
            ).fetchone()[0]
        if done >= len(accepted):
            break
        time.sleep(1)
    ended = datetime.now(UTC)
    with sqlite3.connect(inbox) as conn:
        received = dict(conn.execute("SELECT call_id, received_at FROM event").fetchall())
        finished = dict(
            conn.execute(
                f"SELECT call_id, MIN(at) FROM outcome WHERE status IN ({placeholders})"
                " GROUP BY call_id",
                FINAL,
            ).fetchall()
        )
        twice = conn.execute(
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
    waited = []
    for call_id in accepted & received.keys():
        start = datetime.fromisoformat(received[call_id])
        end = datetime.fromisoformat(finished[call_id]) if call_id in finished else ended
        waited.append(((end - start).total_seconds(), call_id not in finished))
    waited.sort()
    load = Load(rate, seconds, accepted=len(accepted))
    load.final = sum(1 for _, open_ in waited if not open_)
    load.lost = len(accepted - received.keys())
    load.twice, load.writes, load.patches, load.runs = twice, writes, patches, runs
    if waited:
        load.p50 = statistics.median(w for w, _ in waited)
        p95_at = min(len(waited) - 1, int(len(waited) * 0.95))
        load.p95, load.p95_bound = waited[p95_at]
        load.max = waited[-1][0]
    return load


def _spread(values: list[float], bound: bool = False) -> str:
    mark = ">" if bound else ""
    text = f"{mark}{statistics.median(values):.1f} s"
    return text + (f" ({min(values):.1f}–{max(values):.1f})" if len(values) > 1 else "")


def _latency_table(loads: dict[str, list[Load]], rate: float, seconds: float) -> str:
    rows = []
    ours = statistics.median(load.p95 for load in loads["lanes (ours)"])
    for name, runs in loads.items():
        p95 = [load.p95 for load in runs]
        rows.append(
            [
                name,
                f"{runs[0].rate:g}/s × {runs[0].seconds:g} s",
                str(len(runs)),
                _spread([load.p50 for load in runs]),
                _spread(p95, any(load.p95_bound for load in runs)),
                _spread([load.max for load in runs]),
                f"{sum(load.final for load in runs)} / {sum(load.accepted for load in runs)}",
                str(sum(load.lost for load in runs)),
                str(sum(load.twice for load in runs)),
                f"{sum(load.writes for load in runs)} / {sum(load.patches for load in runs)}",
                str(sum(load.runs for load in runs)),
                f"{statistics.median(p95) / ours:.1f}×",
            ]
        )
    return table(
        f"Post-call latency: {rate:g} events/s through the Dagster daemon (median of runs, spread)",
        rows,
        [
            "design",
            "load",
            "runs",
            "p50",
            "p95",
            "max",
            "final / accepted",
            "lost",
            "applied twice",
            "PATCHes recorded / received",
            "post_call_job runs",
            "p95 vs ours",
        ],
    )


def _throughput(repeat: int) -> str:
    rows = []
    best = None
    for rate in THROUGHPUT_RATES:
        runs = [_load({}, rate, 120.0, 120) for _ in range(repeat)]
        p95 = statistics.median(load.p95 for load in runs)
        bound = any(load.p95_bound for load in runs)
        holds = p95 <= P95_LIMIT and not bound
        rows.append(
            [
                f"{rate:g}/s",
                str(len(runs)),
                _spread([load.p50 for load in runs]),
                _spread([load.p95 for load in runs], bound),
                f"{sum(load.final for load in runs)} / {sum(load.accepted for load in runs)}",
                str(sum(load.lost for load in runs)),
                str(sum(load.twice for load in runs)),
                "yes" if holds else "no",
            ]
        )
        if not holds:
            break
        best = rate
    text = table(
        f"Post-call throughput: rate stepped up, 2 minutes per step (p95 limit {P95_LIMIT:g} s)",
        rows,
        ["rate", "runs", "p50", "p95", "final / accepted", "lost", "applied twice", "p95 ≤ 30 s"],
    )
    verdict = (
        f"Highest rate with p95 ≤ {P95_LIMIT:g} s: {best:g} events/s."
        if best
        else (f"No rate tried kept p95 within {P95_LIMIT:g} s.")
    )
    return f"{text}\n\n{verdict}"
