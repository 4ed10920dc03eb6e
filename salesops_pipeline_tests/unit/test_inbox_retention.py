"""Inbox retention, without Dagster, on both back ends: finished events older than the
retention go with their writes, outcomes and queue entries, in bounded batches, and so do old
refused and conflicting deliveries; open, failed and recent events, the contacts' newest calls
and the transfers that still count in a load stay; a dismissed event goes like a finished one;
the lanes hand out the same events after pruning; and the hot queries start from the open
events."""

import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import settings as settings_for_hypothesis
from hypothesis import strategies as st

from salesops_pipeline import settings
from salesops_pipeline.errors import SettingError
from salesops_pipeline.post_call.inbox import Inbox
from salesops_pipeline.post_call.status import EventStatus
from salesops_pipeline.post_call.store import queue as inbox_queue
from salesops_pipeline.post_call.store import statistics as inbox_statistics
from salesops_pipeline_tests.conftest import reopened, sqlite_only

RETENTION = timedelta(days=30)
OLD = datetime.now(UTC) - timedelta(days=40)
RECENT = datetime.now(UTC) - timedelta(days=2)


@pytest.fixture
def inbox(any_inbox):
    return any_inbox


def _stamp(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds")


def _event(inbox: Inbox, call_id: str, status: str, at: datetime, contact: str = "c-1") -> None:
    """An event that reached `status` at `at`, with a write and an outcome as a handling
    leaves them."""
    inbox.accept(call_id, json.dumps({"callId": call_id, "contactId": contact}))
    with inbox.transaction() as conn:
        conn.execute(
            "UPDATE event SET status = ?, updated_at = ? WHERE call_id = ?",
            (status, _stamp(at), call_id),
        )
        if status != EventStatus.PENDING:
            conn.execute(
                "INSERT INTO write (call_id, contact_id, call_time, changes, state, updated_at)"
                " VALUES (?, ?, '2026-01-01T10:00:00', '{}', 'applied', ?)",
                (call_id, contact, _stamp(at)),
            )
            conn.execute(
                "INSERT INTO outcome (call_id, attempt, status, decision, writes, at)"
                " VALUES (?, 1, ?, 'd', '[]', ?)",
                (call_id, status, _stamp(at)),
            )


def _rows(inbox: Inbox, table: str, call_id: str) -> int:
    with inbox.connect() as conn:
        return conn.execute(
            f"SELECT COUNT(*) FROM {table} WHERE call_id = ?", (call_id,)
        ).fetchone()[0]


def test_pruning_deletes_old_finished_events_with_their_rows_and_keeps_the_rest(inbox):
    for status in ("applied", "nothing_to_do", "superseded"):
        _event(inbox, f"old-{status}", status, OLD)
    _event(inbox, "old-failed", "failed", OLD)
    _event(inbox, "recent-applied", "applied", RECENT)
    _event(inbox, "open", "pending", OLD)
    with inbox.transaction() as conn:
        conn.execute(
            "INSERT INTO contact_state (contact_id, call_time, call_id)"
            " VALUES ('c-1', '2026-01-01T10:00:00', 'old-applied')"
        )
        conn.execute(
            "INSERT INTO transfer (call_id, contact_id, agent, state, at)"
            " VALUES ('old-applied', 'c-1', 'agent', 'confirmed', ?)",
            (_stamp(OLD),),
        )

    # Transfers count in the loads for 60 days here: the 40-day-old one stays.
    pruned = inbox.prune(RETENTION, load_period=timedelta(days=60))

    assert pruned.rows["event"] == 3 and pruned.rows["write"] == 3
    assert pruned.rows["outcome"] == 3 and pruned.rows["queue"] == 3
    assert pruned.events_by_status == {"applied": 1, "nothing_to_do": 1, "superseded": 1}
    for status in ("applied", "nothing_to_do", "superseded"):
        assert inbox.get(f"old-{status}") is None
        for table in ("write", "outcome", "queue"):
            assert _rows(inbox, table, f"old-{status}") == 0
    for kept in ("old-failed", "recent-applied", "open"):
        assert inbox.get(kept) is not None and _rows(inbox, "queue", kept) == 1
    assert inbox.newest_applied("c-1") == ("2026-01-01T10:00:00", "old-applied")
    assert inbox.transfers() == {"c-1": "agent"}
    # Nothing left to prune: a second pass deletes nothing.
    assert sum(inbox.prune(RETENTION, load_period=timedelta(days=60)).rows.values()) == 0


def test_pruning_deletes_transfers_only_once_they_count_for_no_one(inbox):
    with inbox.transaction() as conn:
        for call_id, days_ago in (("t-50", 50), ("t-40", 40), ("t-20", 20)):
            conn.execute(
                "INSERT INTO transfer (call_id, contact_id, agent, state, at)"
                " VALUES (?, ?, 'agent', 'confirmed', ?)",
                (call_id, f"c-{call_id}", _stamp(datetime.now(UTC) - timedelta(days=days_ago))),
            )
    # Counted in the loads for 45 days, kept 30: only the 50-day-old one goes.
    pruned = inbox.prune(RETENTION, load_period=timedelta(days=45))
    assert pruned.rows["transfer"] == 1
    assert set(inbox.transfers()) == {"c-t-40", "c-t-20"}
    # Without a longer load period, the retention decides.
    assert inbox.prune(RETENTION).rows["transfer"] == 1
    assert set(inbox.transfers()) == {"c-t-20"}


def test_pruning_deletes_old_quarantined_and_conflicting_deliveries(inbox):
    inbox.quarantine("old", b"{", "application/json")
    inbox.accept("c", '{"callId": "c", "contactId": "x"}')
    inbox.accept("c", '{"callId": "c", "contactId": "other"}')  # a conflict
    with inbox.transaction() as conn:
        conn.execute("UPDATE quarantine SET received_at = ?", (_stamp(OLD),))
        conn.execute("UPDATE conflict SET received_at = ?", (_stamp(OLD),))
    inbox.quarantine("recent", b"[", "application/json")
    inbox.accept("c", '{"callId": "c", "contactId": "third"}')

    pruned = inbox.prune(RETENTION)

    assert (pruned.rows["quarantine"], pruned.rows["conflict"]) == (1, 1)
    assert [row["reason"] for row in inbox.quarantined()] == ["recent"]
    assert [json.loads(row["payload"])["contactId"] for row in inbox.conflicts()] == ["third"]
    assert inbox.get("c").status == EventStatus.PENDING


def test_pruning_runs_in_bounded_batches(inbox):
    for n in range(25):
        _event(inbox, f"old-{n}", "applied", OLD - timedelta(minutes=n))
    for n in range(13):
        inbox.quarantine(f"junk-{n}", b"{", None)
    with inbox.transaction() as conn:
        conn.execute("UPDATE quarantine SET received_at = ?", (_stamp(OLD),))

    pruned = inbox.prune(RETENTION, batch=10, delivery_batch=10)

    # At most 10 events, then 10 deliveries, per transaction: 10 + 10 + 5 events and 10 + 3
    # deliveries (more, smaller batches of events on a machine too slow for the lock's target).
    assert pruned.rows["event"] == 25 and pruned.rows["quarantine"] == 13
    assert pruned.largest_batch <= 10 and pruned.batches >= 5
    assert 0 < pruned.longest_lock_s < 5
    assert "event 25" in pruned.text() and f"{pruned.batches} batches" in pruned.text()


def test_batches_shrink_while_they_hold_the_lock_too_long(inbox, monkeypatch):
    from salesops_pipeline.post_call.store import retention

    for n in range(60):
        _event(inbox, f"old-{n}", "applied", OLD - timedelta(minutes=n))
    # A lock target no batch can meet: each batch is smaller than the last, down to the least.
    monkeypatch.setattr(retention, "LOCK_TARGET_S", 0.0)
    monkeypatch.setattr(retention, "MIN_BATCH", 4)
    sizes = []
    prune_events = retention.Retention._prune_events

    def recorded(self, cutoff, batch, pruned):
        sizes.append(batch)
        return prune_events(self, cutoff, batch, pruned)

    monkeypatch.setattr(retention.Retention, "_prune_events", recorded)
    assert inbox.prune(RETENTION, batch=32).rows["event"] == 60
    assert sizes[0] == 32 and sizes[1:] and set(sizes[1:]) == {4}


def test_a_dismissed_event_is_pruned_like_a_finished_one(inbox):
    _event(inbox, "failed-old", "failed", OLD)
    _event(inbox, "failed-kept", "failed", OLD)
    _event(inbox, "applied", "applied", RECENT)

    # All or nothing: an unknown callId or an event that did not fail dismisses none.
    assert inbox.dismiss(["failed-old", "nope", "applied"]) == {"nope": None, "applied": "applied"}
    assert inbox.get("failed-old").status == EventStatus.FAILED

    assert inbox.dismiss(["failed-old", "failed-old"]) == {}
    record = inbox.get("failed-old")
    assert record.status == EventStatus.DISMISSED and "dismissed" in record.last_decision
    assert inbox.outcomes("failed-old")[-1]["status"] == EventStatus.DISMISSED
    assert inbox.dismiss(["failed-old"]) == {"failed-old": "dismissed"}

    pruned = inbox.prune(RETENTION)
    assert pruned.events_by_status == {"dismissed": 1}
    assert inbox.get("failed-old") is None and inbox.get("failed-kept") is not None


def test_a_dismissed_event_replayed_gets_fresh_attempts(inbox):
    _event(inbox, "failed", "failed", OLD)
    assert inbox.dismiss(["failed"]) == {}
    assert inbox.replay("failed")
    assert inbox.get("failed").status == EventStatus.RETRYING
    assert inbox.prune(RETENTION).rows["event"] == 0


def test_an_old_event_replayed_within_the_retention_stays_until_its_replay_is_old(inbox):
    _event(inbox, "old", "applied", OLD)
    assert inbox.replay("old")
    assert inbox.prune(RETENTION).rows["event"] == 0
    assert inbox.lanes_with_work(1) == {0: 2}
    assert inbox.open_in_lane(0, 1, 0, 10) == (["old"], 2)
    later = datetime.now(UTC) + RETENTION + timedelta(days=1)
    assert inbox.prune(RETENTION, now=later).rows["event"] == 1


def test_the_lanes_hand_out_the_same_events_after_pruning(inbox):
    # An open event queued before finished ones that are pruned still reaches its lane.
    inbox.accept("early", '{"callId": "early", "contactId": "c-1"}')
    for n in range(5):
        _event(inbox, f"done-{n}", "applied", OLD)
    assert inbox.lanes_with_work(1) == {0: 1}
    assert inbox.prune(RETENTION).rows["queue"] == 5
    assert inbox.lanes_with_work(1) == {0: 1}
    assert inbox.open_in_lane(0, 1, 0, 10) == (["early"], 1)
    # Positions are never given twice, even once the latest entries are gone.
    inbox.advance_lane(0, 1, 6)
    inbox.accept("late", '{"callId": "late", "contactId": "c-1"}')
    assert inbox.lanes_with_work(1) == {0: 7}
    assert inbox.open_in_lane(0, 1, 6, 10) == (["late"], 7)
    assert inbox.claim("late", "run") is not None


def test_open_in_lane_respects_its_limit_and_never_skips_an_open_entry(inbox):
    for n in range(6):
        inbox.accept(f"e-{n}", json.dumps({"callId": f"e-{n}", "contactId": "c-1"}))
    _event(inbox, "done", "applied", RECENT)  # seq 7, final: never handed out
    inbox.replay("e-1")  # seq 8: e-1 twice, handed out once
    assert inbox.open_in_lane(0, 1, 0, 4) == (["e-0", "e-1", "e-2", "e-3"], 4)
    assert inbox.open_in_lane(0, 1, 4, 4) == (["e-4", "e-5", "e-1"], 8)
    assert inbox.open_in_lane(0, 1, 8, 4) == ([], None)
    assert inbox.lanes_with_work(1) == {0: 8}


def test_counts_stay_right_and_the_totals_of_transitions_never_go_down(inbox):
    _event(inbox, "old", "applied", OLD)
    _event(inbox, "recent", "applied", RECENT)
    _event(inbox, "failed", "failed", OLD)
    inbox.accept("open", '{"callId": "open", "contactId": "c"}')
    assert inbox.counts() == {"applied": 2, "failed": 1, "pending": 1}
    entered = {"pending": 4, "applied": 2, "failed": 1}
    assert inbox.entered_totals() == entered
    inbox.prune(RETENTION)
    assert inbox.counts() == {"applied": 1, "failed": 1, "pending": 1}
    assert inbox.entered_totals() == entered
    inbox.replay("failed")
    assert reopened(inbox).counts() == {"applied": 1, "retrying": 1, "pending": 1}
    # The replayed event still failed once; it now entered `retrying` too.
    assert inbox.entered_totals() == entered | {"retrying": 1}
    with inbox.transaction() as conn:
        conn.execute("UPDATE event SET status = 'failed' WHERE call_id = 'failed'")
    assert inbox.entered_totals() == entered | {"retrying": 1, "failed": 2}


@sqlite_only
def test_an_earlier_inbox_gets_the_new_indexes_and_counts_from_its_events(inbox):
    _event(inbox, "a", "applied", OLD)
    inbox.accept("b", '{"callId": "b", "contactId": "c"}')
    with inbox.transaction() as conn:
        for trigger in ("status_count_insert", "status_count_update"):
            conn.execute(f"DROP TRIGGER {trigger}")
        for index in ("queue_call", "queue_replay"):
            conn.execute(f"DROP INDEX {index}")
        conn.execute("DROP TABLE status_count")
    # Another process's change of schema: the next connection brings the inbox up to date.
    again = reopened(inbox)
    assert again.counts() == {"applied": 1, "pending": 1}
    assert again.entered_totals() == {"applied": 1, "pending": 1}
    with again.connect() as conn:
        names = {name for (name,) in conn.execute("SELECT name FROM sqlite_master")}
    assert {"queue_call", "queue_replay", "status_count_insert", "status_count_update"} <= names


@sqlite_only
def test_counts_of_an_earlier_inbox_go_on_from_the_totals_it_showed(inbox):
    _event(inbox, "old", "applied", OLD)
    _event(inbox, "recent", "applied", RECENT)
    inbox.accept("open", '{"callId": "open", "contactId": "c"}')
    inbox.prune(RETENTION)
    # The counts as the earlier version kept them: no `entered`, triggers of their own.
    with inbox.transaction() as conn:
        for trigger in ("status_count_insert", "status_count_update"):
            conn.execute(f"DROP TRIGGER {trigger}")
        conn.execute("ALTER TABLE status_count DROP COLUMN entered")
        conn.execute(
            "CREATE TRIGGER status_count_insert AFTER INSERT ON event BEGIN"
            " INSERT INTO status_count (status, shard, events) VALUES (NEW.status, 0, 1)"
            " ON CONFLICT (status, shard) DO UPDATE SET events = events + 1; END"
        )
    again = reopened(inbox)
    # Its events, kept and pruned: what its counter of finished events showed, never less.
    # (Those that moved on from `pending` are not known: it starts from the ones there now.)
    assert again.entered_totals() == {"applied": 2, "pending": 1}
    again.accept("new", '{"callId": "new", "contactId": "c"}')
    with again.transaction() as conn:
        conn.execute("UPDATE event SET status = 'applied' WHERE call_id = 'open'")
    assert again.counts() == {"applied": 2, "pending": 1}
    assert again.entered_totals() == {"applied": 3, "pending": 2}


@sqlite_only
def test_the_hot_queries_start_from_the_open_events(inbox):
    with inbox.connect() as conn:
        plans = {
            name: [row[-1] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params)]
            for name, sql, params in [
                ("work", inbox_queue._WORK, (4, "pending", "retrying", 4)),
                ("counts", "SELECT status, SUM(events) FROM status_count GROUP BY status", ()),
                (
                    "finished",
                    f"{inbox_statistics._FINISHED} AND e.updated_at >= ?",
                    (*inbox_statistics._FINISHED_PARAMS, "2026"),
                ),
            ]
        }
    # The open events by the status index, then their entries by callId; replays apart; never
    # a scan of the queue or of the events.
    assert "SEARCH e USING INDEX event_due (status=?)" in plans["work"]
    assert "SEARCH q USING INDEX queue_call (call_id=?)" in plans["work"]
    assert "SCAN q USING INDEX queue_replay" in plans["work"]
    assert "SCAN e" not in plans["work"] and "SCAN q" not in plans["work"]
    assert not [step for step in plans["counts"] if "event" in step]
    assert any("USING INDEX event_finished" in step for step in plans["finished"])


@pytest.mark.parametrize("value", ["0", "-3", "abc", "1.5"])
def test_a_retention_that_makes_no_sense_is_one_clear_line(monkeypatch, value):
    monkeypatch.setenv(settings.INBOX_RETENTION_ENV, value)
    with pytest.raises(SettingError) as raised:
        settings.inbox_retention_days()
    assert str(raised.value).startswith(f"SALESOPS_INBOX_RETENTION_DAYS={value!r}")
    assert "\n" not in str(raised.value)


def test_the_retention_is_thirty_days_unless_set(monkeypatch):
    assert settings.inbox_retention_days() == 30
    monkeypatch.setenv(settings.INBOX_RETENTION_ENV, "7")
    assert settings.inbox_retention_days() == 7


postgres_only = pytest.mark.parametrize(
    "any_inbox", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)


@postgres_only
def test_on_postgresql_the_lanes_read_the_open_events_not_the_history(inbox):
    # PostgreSQL plans from its statistics: a history long enough to matter, analysed.
    with inbox.transaction() as conn:
        for table, columns, values in (
            (
                "event",
                "call_id, payload, payload_sha256, received_at, status, next_attempt_at,"
                " updated_at, lane_key",
                "'h-' || i, '{}', 'x', '2026-01-01', 'applied', '2026-01-01', '2026-01-01', i",
            ),
            ("queue", "call_id, reason, queued_at, lane_key", "'h-' || i, 'received', '2026', i"),
        ):
            conn.execute(
                f"INSERT INTO {table} ({columns}) SELECT {values}"
                " FROM generate_series(1, 20000) AS s(i)"
            )
        conn.execute("ANALYZE")
    inbox.accept("open", '{"callId": "open", "contactId": "c"}')
    with inbox.connect() as conn:
        plan = "\n".join(
            row[0]
            for row in conn.execute(
                f"EXPLAIN SELECT w.seq, w.call_id FROM ({inbox_queue._WORK}) w"
                " WHERE w.seq > ? AND w.lane = ? ORDER BY w.seq LIMIT ?",
                (4, "pending", "retrying", 4, 0, 1, 200),
            )
        )
    assert "Seq Scan on queue" not in plan and "Seq Scan on event" not in plan, plan
    assert "event_due" in plan and "queue_call" in plan and "queue_replay" in plan, plan
    assert inbox.lanes_with_work(1) == {0: 20001}


@postgres_only
def test_an_earlier_postgresql_inbox_gets_the_counts_from_its_events(inbox, monkeypatch):
    from salesops_pipeline.post_call.storage import PostgresStore

    _event(inbox, "a", "applied", OLD)
    inbox.accept("b", '{"callId": "b", "contactId": "c"}')
    with inbox.transaction() as conn:
        for trigger in ("status_count_insert", "status_count_update"):
            conn.execute(f"DROP TRIGGER {trigger} ON event")
        conn.execute("DROP TABLE status_count")
        conn.execute("UPDATE meta SET value = 'earlier' WHERE key = 'schema'")
    # A process started after the upgrade: it finds the schema of an earlier version.
    monkeypatch.setattr(PostgresStore, "_ready", set())
    again = reopened(inbox)
    assert again.counts() == {"applied": 1, "pending": 1}
    again.accept("c", '{"callId": "c", "contactId": "c"}')
    assert again.counts() == {"applied": 1, "pending": 2}


_STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("accept"), st.integers(0, 5)),
        st.tuples(st.just("finish"), st.integers(0, 5), st.sampled_from(list(EventStatus))),
        st.tuples(st.just("replay"), st.integers(0, 5)),
        st.tuples(st.just("dismiss"), st.integers(0, 5)),
        st.tuples(st.just("prune")),
    ),
    max_size=25,
)


@settings_for_hypothesis(max_examples=60, deadline=None)
@given(steps=_STEPS)
def test_whatever_happens_to_the_events_no_total_ever_goes_down(tmp_path_factory, steps):
    inbox = Inbox(tmp_path_factory.mktemp("inbox") / "inbox.sqlite")
    totals: dict[str, int] = {}
    for step in steps:
        call_id = f"e-{step[1]}" if len(step) > 1 else None
        if step[0] == "accept":
            inbox.accept(call_id, json.dumps({"callId": call_id, "contactId": "c"}))
        elif step[0] == "finish":
            with inbox.transaction() as conn:
                conn.execute(
                    "UPDATE event SET status = ?, updated_at = ? WHERE call_id = ?",
                    (step[2], _stamp(OLD), call_id),
                )
        elif step[0] == "replay":
            inbox.replay(call_id)
        elif step[0] == "dismiss":
            inbox.dismiss([call_id])
        else:
            inbox.prune(RETENTION)
        now = inbox.entered_totals()
        assert all(now.get(status, 0) >= total for status, total in totals.items()), step
        totals = now
        with inbox.connect() as conn:
            held = dict(conn.execute("SELECT status, COUNT(*) FROM event GROUP BY status"))
        assert inbox.counts() == held
        assert all(totals.get(status, 0) >= n for status, n in held.items())
