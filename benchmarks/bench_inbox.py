"""The inbox's hot queries as its history grows: the intake's accept, the sensor's tick, a lane's
claim and a `/metrics` scrape, with 0, 1M and 5M finished events already in the inbox, on
SQLite and (when a server is available) on PostgreSQL; and how long the longest batch of the
nightly pruning holds the write lock.

The history is written with bulk SQL (a recursive CTE, generate_series): finished events with
their queue entries, outcomes and writes, the lanes having read past them all, as after a
pipeline that kept up. Before each measurement 100 open events wait in the lanes. Each figure is
the median of `repeat` runs, each run the mean of a few operations; the goal: each at most twice
its figure with an empty history.
"""

import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from benchmarks.common import table
from salesops_pipeline.post_call.inbox import Inbox
from salesops_pipeline.services.intake.metrics import IntakeMetrics
from salesops_pipeline_tests.support.system_packages import missing_for

LANES = 4
OPEN_EVENTS = 100
# Operations per run: one run's figure is their mean.
OPERATIONS = 20
# The history spans this many days; pruning is measured on its oldest days.
HISTORY_DAYS = 60
PRUNED_DAYS = 3
NOW = datetime.now(UTC)

_ISO_SQLITE = "strftime('%Y-%m-%dT%H:%M:%f', {seconds}, 'unixepoch') || '+00:00'"
_ISO_POSTGRES = (
    "to_char(to_timestamp({seconds}) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS')"
    " || '+00:00'"
)


def main(scale: int, repeat: int, smoke: bool = False) -> str:
    sizes = [0, 2_000, 10_000] if smoke else [0, 1_000_000, 5_000_000]
    repeat = 1 if smoke else repeat
    sections = []
    with tempfile.TemporaryDirectory() as home:
        sections.append(_back_end("SQLite", Inbox(Path(home) / "inbox.sqlite"), sizes, repeat))
    # Shown as soon as measured: the PostgreSQL half takes as long again.
    print(sections[0], file=sys.stderr, flush=True)
    missing = missing_for("postgres")
    if missing:
        sections.append(f"\n(Inbox on PostgreSQL: no table, PostgreSQL is missing: {missing}.)")
    else:
        from salesops_pipeline_tests.support.postgres import start_server

        server, stop = start_server(durable=True)
        try:
            url = server.create_database("bench_inbox")
            sections.append(_back_end("PostgreSQL", Inbox(url=url), sizes, repeat))
        finally:
            stop()
    return "\n".join(sections)


def _back_end(name: str, inbox: Inbox, sizes: list[int], repeat: int) -> str:
    results: dict[int, dict[str, list[float]]] = {}
    prunes: dict[int, object] = {}
    filled = 0
    for size in sizes:
        _fill(inbox, filled, size)
        filled = max(filled, size)
        results[size] = _measure(inbox, repeat)
        if size:
            # The oldest days of the history, as the nightly job finds them; then the same
            # events again, for the next size to start from `size`.
            prunes[size] = inbox.prune(
                timedelta(days=HISTORY_DAYS - PRUNED_DAYS), now=NOW + timedelta(seconds=1)
            )
            _fill(inbox, 0, size, before=NOW.timestamp() - (HISTORY_DAYS - PRUNED_DAYS) * 86400)
    operations = list(results[0])
    rows = []
    for size in sizes:
        row = [f"{size:,}"]
        for operation in operations:
            runs = results[size][operation]
            base = statistics.median(results[0][operation])
            median = statistics.median(runs)
            ratio = median / base
            row.append(
                f"{median * 1000:.2f} ms ({min(runs) * 1000:.2f}–{max(runs) * 1000:.2f})"
                f" {ratio:.1f}×{'' if ratio <= 2 else ' MISS'}"
            )
        rows.append(row)
    text = table(
        f"Inbox on {name}: hot queries with N finished events kept (median of {repeat} runs,"
        f" each the mean of {OPERATIONS} operations; spread; ratio to N = 0, goal ≤ 2×)",
        rows,
        ["finished events", *operations],
    )
    notes = [
        f"at {size:,}: pruning {p.rows['event']:,} events ({p.rows['queue']:,} queue,"
        f" {p.rows['outcome']:,} outcome, {p.rows['write']:,} write rows) took {p.batches}"
        f" batches; the longest held the write lock {p.longest_lock_s * 1000:.0f} ms"
        for size, p in prunes.items()
    ]
    return text + "\n\n" + "; ".join(notes) + "."


def _measure(inbox: Inbox, repeat: int) -> dict[str, list[float]]:
    """Per operation, the mean seconds of each run, with OPEN_EVENTS open events waiting."""
    _finish_open(inbox)
    position = _max_seq(inbox)
    for lane in range(LANES):
        inbox.advance_lane(lane, LANES, position)
    inbox.accept_many(
        [(f"open-{position}-{n}", _payload(f"open-{position}-{n}", n)) for n in range(OPEN_EVENTS)]
    )
    metrics = IntakeMetrics(inbox, max_age=0)
    counter = iter(range(10**9))

    def accept():
        call_id = f"new-{position}-{next(counter)}"
        inbox.accept(call_id, _payload(call_id, next(counter)))

    def tick():
        inbox.requeue_due()
        inbox.lanes_with_work(LANES)

    def claim():
        lane = next(counter) % LANES
        call_ids, _ = inbox.open_in_lane(lane, LANES, position, 200)
        if call_ids:
            inbox.claim(call_ids[0], "bench")

    def scrape():
        metrics.exposition()

    operations: dict[str, Callable[[], None]] = {
        "accept (1 event)": accept,
        "sensor tick": tick,
        "lane claim": claim,
        "/metrics scrape": scrape,
    }
    figures: dict[str, list[float]] = {name: [] for name in operations}
    for _ in range(repeat):
        for name, operation in operations.items():
            operation()  # warm: a first connection makes sure of the schema
            started = time.perf_counter()
            for _ in range(OPERATIONS):
                operation()
            figures[name].append((time.perf_counter() - started) / OPERATIONS)
    return figures


def _payload(call_id: str, n: int) -> str:
    return f'{{"callId": "{call_id}", "contactId": "bench-{n % 5000}"}}'


def _finish_open(inbox: Inbox) -> None:
    """The previous step's open events finished, a day ago: the next step's recent latency
    reads its own events only."""
    with inbox.transaction() as conn:
        conn.execute(
            "UPDATE event SET status = 'applied', lease_owner = NULL, lease_until = NULL,"
            " updated_at = ? WHERE status IN ('pending', 'retrying')",
            ((NOW - timedelta(days=1)).isoformat(timespec="milliseconds"),),
        )
        if inbox.kind == "postgres":
            # As autovacuum would after a bulk load: the planner knows the tables' sizes.
            conn.execute("ANALYZE")


def _max_seq(inbox: Inbox) -> int:
    with inbox.connect() as conn:
        return conn.execute("SELECT COALESCE(MAX(seq), 0) FROM queue").fetchone()[0]


def _fill(inbox: Inbox, first: int, last: int, before: float | None = None) -> None:
    """Finished events `first` < i <= `last` (only those updated before `before`, if given),
    their updates spread over HISTORY_DAYS, each with a queue entry (one in ten with a second,
    a retry), an outcome, and a write when it was applied."""
    if last <= first:
        return
    postgres = inbox.kind == "postgres"
    numbers = (
        f"generate_series({first + 1}, {last}) AS n(i)"
        if postgres
        else f"(WITH RECURSIVE s(i) AS (SELECT {first + 1} UNION ALL SELECT i + 1 FROM s"
        f" WHERE i < {last}) SELECT i FROM s) n"
    )
    span = HISTORY_DAYS * 86400
    oldest = NOW.timestamp() - span
    seconds = f"({oldest} + (n.i % 1000003) * {span / 1000003})"
    iso = (_ISO_POSTGRES if postgres else _ISO_SQLITE).format(seconds=seconds)
    status = (
        "CASE n.i % 10 WHEN 0 THEN 'superseded' WHEN 1 THEN 'nothing_to_do'"
        " WHEN 2 THEN 'nothing_to_do' ELSE 'applied' END"
    )
    lane_key = "(n.i % 50000) * 2654435761 % 4294967296"
    when = f" AND {seconds} < {before}" if before is not None else ""

    def insert(into: str, select: str, condition: str = "1 = 1") -> None:
        conn.execute(f"INSERT INTO {into} SELECT {select} FROM {numbers} WHERE {condition}{when}")

    with inbox.transaction() as conn:
        insert(
            "event (call_id, payload, payload_sha256, received_at, status, attempts,"
            " next_attempt_at, updated_at, lane_key)",
            f"'hist-' || n.i, '{{\"callId\": \"hist-' || n.i || '\"}}', 'x', {iso}, {status},"
            f" 1, {iso}, {iso}, {lane_key}",
        )
        insert(
            "queue (call_id, reason, queued_at, lane_key)",
            f"'hist-' || n.i, 'received', {iso}, {lane_key}",
        )
        insert(
            "queue (call_id, reason, queued_at, lane_key)",
            f"'hist-' || n.i, 'retry', {iso}, {lane_key}",
            "n.i % 10 = 5",
        )
        insert(
            "outcome (call_id, attempt, status, decision, writes, error, run_id, at)",
            f"'hist-' || n.i, 1, {status}, 'bench', '[]', NULL, NULL, {iso}",
        )
        insert(
            "write (call_id, contact_id, call_time, changes, state, sends, sent_at, updated_at)",
            f"'hist-' || n.i, 'hist-c' || (n.i % 50000), {iso}, '{{}}', 'applied', 1, {iso}, {iso}",
            "n.i % 10 >= 3",
        )
