"""The intake: sustained requests/s of valid post-call events, each stored durably (WAL,
synchronous=FULL) before its answer, from a loopback load generator bounded in count and time."""

import json
import os
import statistics
import sys
import tempfile
import threading
import time

import requests

from benchmarks.common import server_process, table
from salesops_pipeline_tests.support.stack_process import free_port

KEY = "benchmark-key"
THREADS = 8


def main(scale: int, repeat: int, smoke: bool = False) -> str:
    total = 200 if smoke else min(scale, 20_000)
    time_limit = 10 if smoke else 60
    rows = []
    for run in range(1 if smoke else repeat):
        with tempfile.TemporaryDirectory() as home:
            rows.append(_one_run(home, total, time_limit, run))
    return table(
        f"Intake: {total:,} events per run, {THREADS} concurrent clients, durable storage",
        rows,
        ["run", "events", "req/s", "p50", "p99", "max", "non-2xx"],
    )


def _one_run(home: str, total: int, time_limit: float, run: int) -> list[str]:
    port = free_port()
    env = {**os.environ, "SALESOPS_HOME": home, "X_API_KEY": KEY}
    env.pop("SALESOPS_WEBHOOK_SECRET", None)
    url = f"http://127.0.0.1:{port}/webhooks/post-call"
    argv = [sys.executable, "-m", "salesops_pipeline.cli", "serve", "--port", str(port)]
    with server_process(argv, env, f"http://127.0.0.1:{port}/healthz"):
        latencies: list[float] = []
        failures = [0]
        counter = iter(range(total))
        lock = threading.Lock()
        stop_at = time.monotonic() + time_limit

        def client():
            session = requests.Session()
            session.headers.update({"X-API-KEY": KEY, "Content-Type": "application/json"})
            while time.monotonic() < stop_at:
                with lock:
                    n = next(counter, None)
                if n is None:
                    return
                body = json.dumps(
                    {
                        "callId": f"bench-{run}-{n}",
                        "contactId": f"c{n % 500}",
                        "wrapup": "Vente",
                        "callEnd": "07/04/2025 10:26:14",
                    }
                )
                started = time.perf_counter()
                response = session.post(url, data=body, timeout=30)
                elapsed = time.perf_counter() - started
                with lock:
                    latencies.append(elapsed)
                    if response.status_code >= 300:
                        failures[0] += 1

        started = time.perf_counter()
        threads = [threading.Thread(target=client) for _ in range(THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wall = time.perf_counter() - started
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    return [
        str(run + 1),
        f"{len(latencies):,}",
        f"{len(latencies) / wall:,.0f}",
        f"{statistics.median(latencies) * 1000:.1f} ms",
        f"{p99 * 1000:.1f} ms",
        f"{latencies[-1] * 1000:.1f} ms",
        str(failures[0]),
    ]
