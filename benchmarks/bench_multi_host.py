"""Multi-host: the intake's accept time and post-call's latency with every host 100 ms (round
trip) from the database, against the same hosts with none added, measured in the same run.

The stack runs as in the multi-host test suite: the database (behind the fault proxy), two
intakes, Dagster and the provider, each in a Linux network namespace of its own (root only). The
proxy delays every chunk 50 ms each way on every route to the database. Each run posts the same
mix of events (callback pairs, transfers, calls with nothing to do) at a steady rate to both
intakes, alternating the two settings, and waits until every event is final; at a quiet
pace (1/s) and a busy one (10/s):

- accept: how long an intake took to answer a delivery it stored (measured by the sender, on
  the hosts' LAN, so it is the intake's own time: its round trips to the database);
- post-call: from an event's storage to its write applied, or its final status (the inbox's
  own timestamps, `Inbox.latencies`).
"""

import shutil
import statistics
import tempfile
import time
import zlib
from pathlib import Path

from benchmarks.common import table
from salesops_pipeline.post_call.inbox import Inbox
from salesops_pipeline_tests.support import netns
from salesops_pipeline_tests.support.system_packages import missing_for
from salesops_pipeline_tests.support.webhook_sender import percentile, scenario_events, send

# One way: a round trip between a host and the database gains twice as much.
ONE_WAY_MS = 50.0
SETTINGS = (("no added latency", 0.0), ("100 ms round trip", ONE_WAY_MS))
FINAL_DEADLINE = 180.0


# (events a second, events per run): a quiet call centre's pace, and a busy hour's.
LOADS = ((1.0, 30), (10.0, 200))


def main(scale: int, repeat: int, smoke: bool = False) -> str:
    reason = netns.unavailable() or missing_for("postgres")
    if reason:
        return f"\n(Multi-host: no table, {reason}.)"
    from salesops_pipeline_tests.support.multi_host import (
        start_multi_host_stack,
        stop_multi_host_stack,
    )

    root = Path(tempfile.mkdtemp(prefix="salesops-bench-hosts-"))
    stack = start_multi_host_stack(root, contacts_per_campaign=3000)
    try:
        loads = ((10.0, 20),) if smoke else LOADS
        return measure(stack, repeat=1 if smoke else repeat, loads=loads)
    finally:
        stop_multi_host_stack(stack)
        shutil.rmtree(root, ignore_errors=True)


def measure(stack, *, repeat: int, loads=LOADS) -> str:
    """Run each load at each setting `repeat` times on `stack`, alternating the settings; the
    table of medians."""
    inbox = Inbox(url=stack.admin_url)
    keys = ("accept_p50", "accept_p99", "post_call_p50", "post_call_p95")
    figures = {(rate, name): {key: [] for key in keys} for rate, _ in loads for name, _ in SETTINGS}
    try:
        for run in range(repeat):
            for rate, events in loads:
                for index, (name, one_way) in enumerate(SETTINGS):
                    stack.proxy.set("*", latency_ms=one_way)
                    tag = f"bench{run}r{rate:g}s{index}"
                    accept, post_call = _one_run(stack, inbox, events, rate, tag)
                    cell = figures[(rate, name)]
                    cell["accept_p50"].append(percentile(accept, 0.5))
                    cell["accept_p99"].append(percentile(accept, 0.99))
                    cell["post_call_p50"].append(percentile(post_call, 0.5))
                    cell["post_call_p95"].append(percentile(post_call, 0.95))
    finally:
        stack.proxy.set("*", latency_ms=0)
    rows = [
        [f"{rate:g}/s, {events} events", name]
        + [_median_spread(figures[(rate, name)][key]) for key in keys]
        for rate, events in loads
        for name, _ in SETTINGS
    ]
    return table(
        f"Multi-host: two intakes, hosts in network namespaces, median of {repeat} (min–max)",
        rows,
        ["load", "between every host and the database", "accept p50", "accept p99",
         "post-call p50", "post-call p95"],
    )  # fmt: skip


def _one_run(stack, inbox: Inbox, count: int, rate: float, tag: str):
    pairs, transfers = count // 5, count // 10
    others = count - 2 * pairs - transfers
    contacts = stack.take_contacts(pairs + transfers + others)
    events, _, _ = scenario_events(
        contacts, tag, zlib.crc32(tag.encode()), pairs=pairs, transfers=transfers, others=others
    )
    sent = send(stack.intake_urls, stack.intake_key, events, rate=rate)
    call_ids = [e["callId"] for e in events]
    deadline = time.monotonic() + FINAL_DEADLINE
    while len(inbox.latencies(call_ids)) < len(call_ids):
        if time.monotonic() > deadline:
            raise RuntimeError(f"events of {tag} still open after {FINAL_DEADLINE:.0f}s")
        time.sleep(0.5)
    return sent.accept_seconds(), inbox.latencies(call_ids)


def _median_spread(values: list[float]) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "–"
    median = statistics.median(values) * 1000
    return f"{median:,.0f} ms ({min(values) * 1000:,.0f}–{max(values) * 1000:,.0f})"
