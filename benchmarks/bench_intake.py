"""The intake: sustained requests/s of valid post-call events, each stored durably (WAL,
synchronous=FULL) before its answer, from a loopback load generator bounded in count and time;
and the same with Prometheus scraping `/metrics` every second, runs alternating, to show what a
scrape costs the webhooks."""

import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

from benchmarks.common import server_process, table
from salesops_pipeline_tests.support.stack_process import free_port

KEY = "benchmark-key"
# What the scraping runs' Prometheus sends: /metrics takes this token, not the webhook key.
METRICS_TOKEN = "benchmark-metrics-token"  # noqa: S105 - a throw-away local token
# Concurrent keep-alive connections, as a provider delivering a burst would open.
CONNECTIONS = 32
# How often the scraping runs read /metrics: far more often than Prometheus's usual 15 s.
SCRAPE_EVERY_SECONDS = 1.0


def main(scale: int, repeat: int, smoke: bool = False) -> str:
    total = 200 if smoke else min(scale, 20_000)
    time_limit = 10 if smoke else 60
    rows, rates = [], {False: [], True: []}
    for run in range(1 if smoke else repeat):
        # Alternating, so that a drift of the machine during the runs weighs on both alike.
        for scraped in (False, True):
            with tempfile.TemporaryDirectory() as home:
                row, rate = _one_run(home, total, time_limit, run, scraped)
            rows.append(row)
            rates[scraped].append(rate)
    plain, scraped = (statistics.median(rates[flag]) for flag in (False, True))
    summary = (
        f"\n\nMedian {plain:,.0f} requests/s without scrapes ({min(rates[False]):,.0f}–"
        f"{max(rates[False]):,.0f}), {scraped:,.0f} with a scrape every"
        f" {SCRAPE_EVERY_SECONDS:.0f} s ({min(rates[True]):,.0f}–{max(rates[True]):,.0f}):"
        f" {(scraped - plain) / plain:+.1%}."
    )
    return (
        table(
            f"Intake: {total:,} events per run, {CONNECTIONS} connections from a load generator"
            " in its own process, each event committed to disk before its answer; without and"
            f" with a scrape of /metrics every {SCRAPE_EVERY_SECONDS:.0f} s",
            rows,
            [
                "run",
                "scrapes",
                "events",
                "req/s",
                "p50",
                "p99",
                "max",
                "non-2xx",
                "stored",
                "scrape p50",
            ],
        )
        + summary
    )


def _one_run(
    home: str, total: int, time_limit: float, run: int, scraped: bool
) -> tuple[list[str], float]:
    port = free_port()
    env = {
        **os.environ,
        "SALESOPS_HOME": home,
        "X_API_KEY": KEY,
        "SALESOPS_METRICS_TOKEN": METRICS_TOKEN,
    }
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
        scrapes = _Scraper(f"http://127.0.0.1:{port}/metrics") if scraped else None
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
        )
        took = scrapes.stop() if scrapes else []
    if generator.returncode != 0:
        raise RuntimeError(f"the load generator failed: {generator.stderr[-2000:]}")
    result = json.loads(generator.stdout)
    stored = _stored(Path(home) / "intake" / "inbox.sqlite")
    rate = result["count"] / result["wall"]
    row = [
        str(run + 1),
        str(len(took)) if scrapes else "none",
        f"{result['count']:,}",
        f"{rate:,.0f}",
        f"{result['p50_ms']:.1f} ms",
        f"{result['p99_ms']:.1f} ms",
        f"{result['max_ms']:.1f} ms",
        str(result["non_2xx"]),
        f"{stored:,}",
        f"{statistics.median(took) * 1000:.1f} ms" if took else "–",
    ]
    return row, rate


class _Scraper:
    """Prometheus's part: GET /metrics with the metrics token every SCRAPE_EVERY_SECONDS, timing
    each."""

    def __init__(self, url: str):
        self.took: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._scrape, args=(url,), daemon=True)
        self._thread.start()

    def _scrape(self, url: str) -> None:
        with requests.Session() as session:
            while not self._stop.wait(SCRAPE_EVERY_SECONDS):
                started = time.perf_counter()
                response = session.get(
                    url, headers={"Authorization": f"Bearer {METRICS_TOKEN}"}, timeout=5
                )
                response.raise_for_status()
                assert b"salesops_post_call_backlog" in response.content
                self.took.append(time.perf_counter() - started)

    def stop(self) -> list[float]:
        self._stop.set()
        self._thread.join()
        return self.took


def _stored(inbox: Path) -> int:
    with sqlite3.connect(inbox) as conn:
        return conn.execute("SELECT COUNT(*) FROM event").fetchone()[0]
