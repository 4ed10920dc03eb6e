"""Intake replicas: the intake's requests/s on its SQLite inbox, on a PostgreSQL inbox, and as
two intakes sharing that PostgreSQL inbox (each intake's accepts serialised on the queue lock),
with the load split evenly between them. Runs alternate the three configurations, each on a
fresh SALESOPS_HOME and a fresh database.

Everything runs on this machine: the load generators, the intakes and PostgreSQL share its
cores, so two intakes here show a floor, not what two hosts would serve.
"""

import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from benchmarks.bench_intake import CONNECTIONS, KEY, _stored
from benchmarks.common import server_process, table
from salesops_pipeline.post_call.inbox import Inbox
from salesops_pipeline.settings import DATABASE_URL_ENV
from salesops_pipeline_tests.support.stack_process import free_port
from salesops_pipeline_tests.support.system_packages import missing_for


@dataclass(frozen=True)
class Configuration:
    name: str
    postgres: bool
    intakes: int


CONFIGURATIONS = (
    Configuration("1 intake, SQLite", postgres=False, intakes=1),
    Configuration("1 intake, PostgreSQL", postgres=True, intakes=1),
    Configuration("2 intakes, PostgreSQL", postgres=True, intakes=2),
)
BASELINE = CONFIGURATIONS[0]


def main(scale: int, repeat: int, smoke: bool = False) -> str:
    total = 200 if smoke else min(scale, 20_000)
    time_limit = 10 if smoke else 60
    missing = missing_for("postgres")
    if missing:
        return f"\n(Replicas: no table, PostgreSQL is missing: {missing}.)"
    from salesops_pipeline_tests.support.postgres import start_server

    # With fsync, as in production: each commit on disk before its answer, as SQLite's.
    server, stop = start_server(durable=True)
    try:
        settings = _server_settings(server)
        rows, rates = [], {c: [] for c in CONFIGURATIONS}
        for run in range(1 if smoke else repeat):
            # Alternating, so that a drift of the machine during the runs weighs on all alike.
            for configuration in CONFIGURATIONS:
                row, rate = _one_run(server, configuration, total, time_limit, run)
                rows.append(row)
                rates[configuration].append(rate)
    finally:
        stop()
    medians = {c: statistics.median(rates[c]) for c in CONFIGURATIONS}
    summary = "\n\n" + "; ".join(
        f"{c.name}: median {medians[c]:,.0f} req/s ({min(rates[c]):,.0f}–{max(rates[c]):,.0f})"
        + (
            ""
            if c is BASELINE
            else f", {(medians[c] - medians[BASELINE]) / medians[BASELINE]:+.1%} vs {BASELINE.name}"
        )
        for c in CONFIGURATIONS
    )
    summary += ". Every event answered 2xx was stored once (checked after each run)."
    return (
        table(
            f"Replicas: intake req/s, {total:,} events per run, {CONNECTIONS} connections in"
            f" all (two intakes: two load generators at once, {CONNECTIONS // 2} connections"
            f" and half the events each, each posting to its own intake); {os.cpu_count()}"
            " cores shared by the load generators, the intakes and PostgreSQL, so two intakes"
            " compete with PostgreSQL and the generators for CPU: a floor, not a cluster's"
            " throughput. req/s = events answered / wall time from the first generator's start"
            " to the last one's finish; with two generators p50 and p99 are the worse of the"
            f" two, max the larger. PostgreSQL with {settings} and the intake's sessions at"
            " synchronous_commit=on, SQLite with synchronous=FULL: on both, each commit is on"
            " disk before its answer",
            rows,
            ["run", "configuration", "events", "req/s", "p50", "p99", "max", "non-2xx", "stored"],
        )
        + summary
    )


def _server_settings(server) -> str:
    import psycopg2

    conn = psycopg2.connect(server.url("postgres"))
    try:
        cursor = conn.cursor()
        shown = []
        for name in ("fsync",):
            cursor.execute(f"SHOW {name}")
            shown.append(f"{name}={cursor.fetchone()[0]}")
    finally:
        conn.close()
    return " and ".join(shown)


def _one_run(
    server, configuration: Configuration, total: int, time_limit: float, run: int
) -> tuple[list[str], float]:
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "SALESOPS_HOME": home, "X_API_KEY": KEY}
        env.pop("SALESOPS_WEBHOOK_SECRET", None)
        env.pop(DATABASE_URL_ENV, None)
        url = server.create_database("bench") if configuration.postgres else None
        try:
            if url:
                env[DATABASE_URL_ENV] = url
                # The schema made before the intakes start, so that they do not race to make it.
                Inbox(url=url).counts()
            results, wall = _burst(env, configuration.intakes, total, time_limit, run)
            stored = (
                sum(Inbox(url=url).counts().values())
                if url
                else _stored(Path(home) / "intake" / "inbox.sqlite")
            )
        finally:
            if url:
                server.drop_database(url)
    count = sum(r["count"] for r in results)
    non_2xx = sum(r["non_2xx"] for r in results)
    if stored != count - non_2xx:
        raise RuntimeError(
            f"{configuration.name}, run {run + 1}: {count - non_2xx} events accepted,"
            f" {stored} stored"
        )
    rate = count / wall
    row = [
        str(run + 1),
        configuration.name,
        f"{count:,}",
        f"{rate:,.0f}",
        f"{max(r['p50_ms'] for r in results):.1f} ms",
        f"{max(r['p99_ms'] for r in results):.1f} ms",
        f"{max(r['max_ms'] for r in results):.1f} ms",
        str(non_2xx),
        f"{stored:,}",
    ]
    return row, rate


def _burst(
    env: dict[str, str], intakes: int, total: int, time_limit: float, run: int
) -> tuple[list[dict], float]:
    """`intakes` intakes up, then one load generator per intake at once, the events and the
    connections split evenly; their results and the wall time of the whole burst."""
    ports = [free_port() for _ in range(intakes)]
    with _intakes(ports, env):
        shares = [total // intakes + (n < total % intakes) for n in range(intakes)]
        generators = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "benchmarks.loadgen",
                    "--url",
                    f"http://127.0.0.1:{port}/webhooks/post-call",
                    "--key",
                    KEY,
                    "--total",
                    str(share),
                    "--connections",
                    str(CONNECTIONS // intakes),
                    "--seconds",
                    str(time_limit),
                    # Distinct call ids across the generators of one run.
                    "--run",
                    f"{run}-{n}",
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for n, (port, share) in enumerate(zip(ports, shares, strict=True))
        ]
        finished: list[tuple[float, str, str, int]] = [(0.0, "", "", 0)] * intakes

        def wait(n: int) -> None:
            out, err = generators[n].communicate()
            finished[n] = (time.perf_counter(), out, err, generators[n].returncode)

        waiters = [threading.Thread(target=wait, args=(n,)) for n in range(intakes)]
        for waiter in waiters:
            waiter.start()
        for waiter in waiters:
            waiter.join()
    for _, _, err, code in finished:
        if code != 0:
            raise RuntimeError(f"the load generator failed: {err[-2000:]}")
    results = [json.loads(out) for _, out, _, _ in finished]
    # A generator times its own burst, from its first connection to its last answer; its
    # start is taken as its exit less that time (one generator: its own time exactly; two:
    # each exit's own cost, a few ms, may shift the span a little).
    ends = [at for at, _, _, _ in finished]
    starts = [at - r["wall"] for at, r in zip(ends, results, strict=True)]
    return results, max(ends) - min(starts)


@contextmanager
def _intakes(ports: list[int], env: dict[str, str]) -> Iterator[None]:
    """`salesops serve` on each port, started one after the other, all answering inside the
    block."""
    with ExitStack() as stack:
        for port in ports:
            argv = [sys.executable, "-m", "salesops_pipeline.cli", "serve", "--port", str(port)]
            stack.enter_context(
                server_process(
                    [*argv, "--log-level", "warning"], env, f"http://127.0.0.1:{port}/healthz"
                )
            )
        yield
