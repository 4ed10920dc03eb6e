"""The inbox on a PostgreSQL database shared by several hosts: what SQLite gets from letting one
writer in at a time must hold with many, through the locks the inbox takes."""

import contextlib
import json
import random
import subprocess
import sys
import threading
import time
import zlib
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from salesops_pipeline import settings
from salesops_pipeline.post_call.inbox import Inbox
from salesops_pipeline.post_call.status import AcceptStatus, EventStatus, Refusal, WriteState
from salesops_pipeline.post_call.storage import PostgresStore
from salesops_pipeline.post_call.store import ledger as inbox_ledger
from salesops_pipeline.services.http_server import serving_in_thread
from salesops_pipeline.services.intake.app import create_intake_app

pytestmark = pytest.mark.postgres

# How long a sent write may still land, as the processor would pass it.
LANDING = timedelta(seconds=40)


@pytest.fixture
def inbox(postgres_url):
    return Inbox(url=postgres_url)


def _event(call_id: str, contact: str, when: str = "07/04/2025 10:00:00") -> str:
    return json.dumps({"callId": call_id, "contactId": contact, "callTime": when})


def test_intakes_on_several_hosts_store_each_event_once(postgres_url):
    """Eight intakes, each with its own pool, receive the same 200 events in their own order."""
    events = [(f"call-{n}", _event(f"call-{n}", f"c-{n}")) for n in range(200)]

    def intake(seed: int) -> list:
        own = Inbox(url=postgres_url)
        mine = random.Random(seed).sample(events, len(events))
        return [
            accepted
            for start in range(0, len(mine), 20)
            for accepted in own.accept_many(mine[start : start + 20])
        ]

    with ThreadPoolExecutor(8) as pool:
        answers = [a for batch in pool.map(intake, range(8)) for a in batch]
    stored = Counter(a.call_id for a in answers if a.status == AcceptStatus.STORED)
    assert stored == Counter({call_id: 1 for call_id, _ in events})
    assert Counter(a.status for a in answers)[AcceptStatus.DUPLICATE] == 7 * 200
    inbox = Inbox(url=postgres_url)
    assert len(inbox.queued_after(0, 10_000)) == 200
    assert inbox.counts() == {EventStatus.PENDING: 200}
    with inbox.connect() as conn:
        [(deliveries,)] = conn.execute("SELECT SUM(deliveries) FROM event").fetchall()
    assert deliveries == 8 * 200


def test_a_lane_reader_never_steps_over_a_position_committed_late(inbox):
    """Intakes commit concurrently while a lane run reads and advances: every event queued is
    read. Positions are taken and committed in the same order, under the queue's lock."""
    writers_done = threading.Event()
    seen: list[str] = []

    def intake(n: int) -> None:
        for batch in range(60):
            inbox.accept_many(
                [(f"w{n}-{batch}-{i}", _event(f"w{n}-{batch}-{i}", f"c{n}{i}")) for i in range(3)]
            )

    def lane_run() -> None:
        position = 0
        while True:
            finished = writers_done.is_set()
            call_ids, read_to = inbox.open_in_lane(0, 1, position, 50)
            seen.extend(call_ids)
            if read_to is not None:
                position = read_to
            elif finished:
                return

    reader = threading.Thread(target=lane_run)
    reader.start()
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(intake, range(4)))
    writers_done.set()
    reader.join(timeout=60)
    assert len(seen) == len(set(seen)) == 4 * 60 * 3


def test_an_older_call_decides_only_after_a_newer_ones_write_is_settled(inbox, monkeypatch):
    """While the newer call's applied write is being recorded, the older call's decision waits
    for it, then sees it: superseded, never written over the newer call."""
    inbox.accept("new", _event("new", "c-1", "07/04/2025 11:00:00"))
    inbox.accept("old", _event("old", "c-1", "07/04/2025 10:00:00"))
    assert inbox.claim("new", "run-a") and inbox.claim("old", "run-b")
    plan = inbox.begin_write(
        "new",
        "run-a",
        contact_id="c-1",
        call_time="2025-04-07T11:00:00",
        changes={"x": 1},
        landing=LANDING,
    )
    assert plan.write is not None
    settle, recording = inbox_ledger._settle_write, threading.Event()

    def slow_settle(conn, call_id, state, now):
        settle(conn, call_id, state, now)
        if call_id == "new":
            recording.set()
            time.sleep(0.5)  # committed only after this

    monkeypatch.setattr(inbox_ledger, "_settle_write", slow_settle)
    newer = threading.Thread(
        target=inbox.finish,
        args=("new", "run-a"),
        kwargs={"status": EventStatus.APPLIED, "decision": "d", "writes": []},
    )
    newer.start()
    assert recording.wait(5)
    started = time.monotonic()
    older = inbox.begin_write(
        "old",
        "run-b",
        contact_id="c-1",
        call_time="2025-04-07T10:00:00",
        changes={"x": 0},
        landing=LANDING,
    )
    waited = time.monotonic() - started
    newer.join()
    assert older.refusal == Refusal.SUPERSEDED, older
    assert waited >= 0.3
    assert inbox.write_of("new").state == WriteState.APPLIED and inbox.write_of("old") is None


def test_lanes_choosing_support_agents_at_once_spread_the_load(inbox):
    """Ten transfers decided at the same moment by different runs: each choice sees the
    others', so the two agents get five contacts each."""
    for n in range(10):
        inbox.accept(f"t{n}", _event(f"t{n}", f"c-{n}"))
        assert inbox.claim(f"t{n}", f"run-{n}")
    start = threading.Barrier(10)

    def least_loaded(counted: dict[str, tuple[str, str]]) -> str:
        loads = Counter(agent for agent, _ in counted.values())
        time.sleep(0.02)  # a choice that takes a moment, as reading loads does
        return min(("agent-a", "agent-b"), key=lambda agent: (loads[agent], agent))

    def transfer(n: int) -> str:
        start.wait()
        plan = inbox.begin_write(
            f"t{n}",
            f"run-{n}",
            contact_id=f"c-{n}",
            call_time="2025-04-07T10:00:00",
            changes={},
            choose_agent=least_loaded,
            landing=LANDING,
        )
        return plan.write.changes["assignedAgent"]

    with ThreadPoolExecutor(10) as pool:
        chosen = list(pool.map(transfer, range(10)))
    assert Counter(chosen) == {"agent-a": 5, "agent-b": 5}


def test_columns_order_and_count_as_in_sqlite(inbox):
    """Texts compare byte for byte, and a contact's lane key, an unsigned 32-bit CRC, fits."""
    contact = next(f"c{n}" for n in range(1000) if zlib.crc32(str(f"c{n}").encode()) >= 2**31)
    inbox.accept("big", _event("big", contact))
    assert inbox.lanes_with_work(7) == {zlib.crc32(contact.encode()) % 7: 1}
    with inbox.connect() as conn:
        collations = dict(
            conn.execute(
                "SELECT table_name || '.' || column_name, collation_name"
                " FROM information_schema.columns WHERE table_schema = 'salesops'"
                " AND data_type = 'text'"
            ).fetchall()
        )
        [(lane_key_type,)] = conn.execute(
            "SELECT data_type FROM information_schema.columns WHERE table_schema = 'salesops'"
            " AND table_name = 'event' AND column_name = 'lane_key'"
        ).fetchall()
        partial = conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE indexname = 'event_finished'"
        ).fetchone()
    assert collations and set(collations.values()) == {"C"}, collations
    assert lane_key_type == "bigint"
    assert partial is not None and "WHERE" in partial[0]


def test_hosts_starting_together_create_one_schema(postgres_url):
    """Intakes started at once on an empty database: all come up, on one inbox."""
    script = (
        "import sys; from salesops_pipeline.post_call.inbox import Inbox;"
        " print(Inbox(url=sys.argv[1]).epoch())"
    )
    starts = [
        subprocess.Popen(
            [sys.executable, "-c", script, postgres_url], stdout=subprocess.PIPE, text=True
        )
        for _ in range(4)
    ]
    epochs = {process.communicate(timeout=60)[0].strip() for process in starts}
    assert [process.returncode for process in starts] == [0] * 4
    assert len(epochs) == 1 and epochs != {""}


def test_connections_commit_durably_and_free_a_dead_peers_locks(inbox, postgres_server):
    """Whatever the server's defaults (this one's are the opposite): a commit is on disk before
    the answer, and a client that stops mid-transaction loses its locks within 30 s."""
    with inbox.connect() as conn:
        shown = {
            name: conn.execute(f"SHOW {name}").fetchone()[0]
            for name in (
                "synchronous_commit",
                "lock_timeout",
                "idle_in_transaction_session_timeout",
                "search_path",
            )
        }
    assert shown == {
        "synchronous_commit": "on",
        "lock_timeout": "30s",
        "idle_in_transaction_session_timeout": "30s",
        "search_path": "salesops",
    }


def test_the_inbox_is_named_without_its_credentials():
    inbox = Inbox(url="postgresql://salesops:s3cret@db.example:5432/sales?sslpassword=k3y")
    assert inbox.describe() == (
        "postgresql://***@db.example:5432/sales?sslpassword=*** (schema salesops)"
    )


@pytest.mark.parametrize("password", ["s3cr/et", "pa#ss", "p?ss", "plain"])
def test_a_password_is_hidden_whatever_it_holds(password):
    from urllib.parse import quote

    url = f"postgresql://salesops:{quote(password, safe='/#?')}@db.example:5432/sales"
    shown = Inbox(url=url).describe()
    assert password not in shown and quote(password, safe="") not in shown
    assert shown.startswith("postgresql://***@db.example:5432/sales")


def test_a_new_process_joins_without_waiting_for_writers(inbox, postgres_url):
    """A run or an intake starting while others write: its first connection finds the schema
    current and takes no lock on the tables (creating indexes would wait for every writer)."""
    inbox.accept("c-1", _event("c-1", "k-1"))
    held = threading.Event()
    release = threading.Event()

    def writer_holding_the_table() -> None:
        with inbox.transaction() as conn:
            conn.execute("UPDATE event SET deliveries = deliveries + 1 WHERE call_id = 'c-1'")
            held.set()
            release.wait(10)

    writer = threading.Thread(target=writer_holding_the_table)
    writer.start()
    try:
        assert held.wait(5)
        PostgresStore._ready.discard(postgres_url)  # as in a process of its own
        started = time.monotonic()
        assert Inbox(url=postgres_url).counts() == {EventStatus.PENDING: 1}
        assert time.monotonic() - started < 2
    finally:
        release.set()
        writer.join()


def test_a_dropped_schema_is_created_again(inbox):
    inbox.accept("c-1", _event("c-1", "k-1"))
    epoch = inbox.epoch()
    with inbox.transaction() as conn:
        conn.execute("DROP SCHEMA salesops CASCADE")
    with pytest.raises(inbox.errors()):
        inbox.get("c-1")
    assert inbox.get("c-1") is None and inbox.epoch() != epoch


def test_deliveries_are_stored_while_every_shared_connection_is_busy(inbox):
    """Frontend or metrics reads holding every pooled connection never make a webhook wait."""
    with contextlib.ExitStack() as busy:
        for _ in range(2 * settings.database_pool_size()):
            busy.enter_context(inbox.connect())
        app = create_intake_app(inbox, api_key="k")
        with serving_in_thread(app) as url:
            started = time.monotonic()
            answer = requests.post(
                f"{url}/webhooks/post-call",
                data=_event("c-9", "k-9"),
                headers={"X-API-KEY": "k", "Content-Type": "application/json"},
                timeout=30,
            )
    assert answer.status_code == 202 and time.monotonic() - started < 5


METRICS_TOKEN = "metrics-token-0123456789"


def _scrape(url: str) -> dict[tuple[str, str], float]:
    response = requests.get(
        f"{url}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}, timeout=10
    )
    assert response.status_code == 200
    return {
        (sample.name, sample.labels["status"]): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
        if family.name.startswith("salesops_post_call_") and "status" in sample.labels
    }


def test_counters_never_go_down_through_replays_and_pruning(inbox, postgres_url):
    """Events finished by several sessions at once, so several shards of the counts, then
    replayed and pruned: /metrics' totals only grow, its gauge follows the events."""
    inbox.accept_many([(f"c-{n}", _event(f"c-{n}", f"k-{n}")) for n in range(12)])

    def finish(n: int) -> None:
        with Inbox(url=postgres_url).transaction() as conn:
            conn.execute(
                "UPDATE event SET status = ?, updated_at = '2020-01-01T00:00:00.000+00:00'"
                " WHERE call_id = ?",
                ("failed" if n % 3 == 0 else "applied", f"c-{n}"),
            )

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(finish, range(12)))
    app = create_intake_app(inbox, api_key="k", metrics_token=METRICS_TOKEN)
    with serving_in_thread(app) as url:
        before = _scrape(url)
        assert before[("salesops_post_call_events_total", "failed")] == 4
        assert before[("salesops_post_call_events_total", "pending")] == 12
        assert before[("salesops_post_call_inbox_events", "failed")] == 4
        for n in (0, 3, 6):
            assert inbox.replay(f"c-{n}")
        inbox.prune(timedelta(days=30))
        time.sleep(1.1)  # the metrics read the inbox at most once a second
        after = _scrape(url)
    for key, value in before.items():
        if key[0].endswith("_total"):
            assert after[key] >= value, key
    assert after[("salesops_post_call_events_total", "failed")] == 4
    assert after[("salesops_post_call_events_total", "applied")] == 8
    assert after[("salesops_post_call_events_total", "retrying")] == 3
    assert after[("salesops_post_call_inbox_events", "failed")] == 1
    assert after[("salesops_post_call_inbox_events", "retrying")] == 3
    assert after[("salesops_post_call_inbox_events", "applied")] == 0
    assert inbox.counts() == {"failed": 1, "retrying": 3}


def test_counts_of_an_earlier_inbox_go_on_from_the_totals_it_showed(inbox, postgres_url):
    inbox.accept_many([(f"c-{n}", _event(f"c-{n}", f"k-{n}")) for n in range(3)])
    with inbox.transaction() as conn:
        conn.execute(
            "UPDATE event SET status = 'applied', updated_at = '2020-01-01T00:00:00.000+00:00'"
            " WHERE call_id IN ('c-0', 'c-1')"
        )
    inbox.prune(timedelta(days=30))
    # The counts as the earlier version kept them, without `entered`.
    with inbox.transaction() as conn:
        conn.execute("ALTER TABLE status_count DROP COLUMN entered")
        conn.execute("UPDATE meta SET value = 'earlier' WHERE key = 'schema'")
    PostgresStore._ready.discard(postgres_url)  # as in a process of its own
    again = Inbox(url=postgres_url)
    assert again.entered_totals() == {"applied": 2, "pending": 1}
    again.accept("c-9", _event("c-9", "k-9"))
    assert again.entered_totals() == {"applied": 2, "pending": 2}
    assert again.counts() == {"pending": 2}
