"""The intake: sustained requests/s of valid post-call events, each stored durably (WAL,
synchronous=FULL) before its answer, from a loopback load generator bounded in count and time."""

import json
import os
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.common import server_process, table
from salesops_pipeline_tests.support.stack_process import free_port

KEY = "benchmark-key"
# Concurrent keep-alive connections, as a provider delivering a burst would open.
CONNECTIONS = 32


def main(scale: int, repeat: int, smoke: bool = False) -> str:
    total = 200 if smoke else min(scale, 20_000)
    time_limit = 10 if smoke else 60
    rows = []
    for run in range(1 if smoke else repeat):
        with tempfile.TemporaryDirectory() as home:
            rows.append(_one_run(home, total, time_limit, run))
    return table(
        f"Intake: {total:,} events per run, {CONNECTIONS} connections from a load generator in"
        " its own process, each event committed to disk before its answer",
        rows,
        ["run", "events", "req/s", "p50", "p99", "max", "non-2xx", "stored"],
    )


def _one_run(home: str, total: int, time_limit: float, run: int) -> list[str]:
    port = free_port()
    env = {**os.environ, "SALESOPS_HOME": home, "X_API_KEY": KEY}
    env.pop("SALESOPS_WEBHOOK_SECRET", None)
    url = f"http://127.0.0.1:{port}/webhooks/post-call"
    argv = [
        sys.executable,
        "-m",
        "salesops_pipeline.cli",
        "serve",
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]
    with server_process(argv, env, f"http://127.0.0.1:{port}/healthz"):
        # The load generator is a process of its own, as the provider would be.
        generator = subprocess.run(
            [
                sys.executable,
                "-m",
                "benchmarks.loadgen",
                "--url",
                url,
                "--key",
                KEY,
                "--total",
                str(total),
                "--connections",
                str(CONNECTIONS),
                "--seconds",
                str(time_limit),
                "--run",
                str(run),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
    result = json.loads(generator.stdout)
    stored = _stored(Path(home) / "intake" / "inbox.sqlite")
    return [
        str(run + 1),
        f"{result['count']:,}",
        f"{result['count'] / result['wall']:,.0f}",
        f"{result['p50_ms']:.1f} ms",
        f"{result['p99_ms']:.1f} ms",
        f"{result['max_ms']:.1f} ms",
        str(result["non_2xx"]),
        f"{stored:,}",
    ]


def _stored(inbox: Path) -> int:
    with sqlite3.connect(inbox) as conn:
        return conn.execute("SELECT COUNT(*) FROM event").fetchone()[0]
