"""The post-call lag, measured from the inbox: the backlog by status, the age of the oldest
waiting event, and the latency of the events finished in the last 5 minutes, each from
storage to the provider's confirmed write (or to the outcome, when nothing was written)."""

from datetime import UTC, datetime, timedelta

import pytest

from salesops_pipeline.post_call.inbox import Inbox
from salesops_pipeline.post_call.lag import percentile
from salesops_pipeline.post_call.store import statistics as inbox_statistics
from salesops_pipeline_tests.conftest import sqlite_only

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def _at(seconds_ago: float) -> str:
    return (NOW - timedelta(seconds=seconds_ago)).isoformat(timespec="milliseconds")


@pytest.fixture
def inbox(any_inbox):
    return any_inbox


def _event(inbox, call_id, status, received_ago, updated_ago, write_confirmed_ago=None):
    inbox.accept(call_id, f'{{"callId": "{call_id}", "contactId": "c-{call_id}"}}')
    with inbox.transaction() as conn:
        conn.execute(
            "UPDATE event SET status = ?, received_at = ?, updated_at = ? WHERE call_id = ?",
            (status, _at(received_ago), _at(updated_ago), call_id),
        )
        if write_confirmed_ago is not None:
            conn.execute(
                "INSERT INTO write (call_id, contact_id, call_time, changes, state, updated_at)"
                " VALUES (?, ?, '2026-03-10T11:00:00', '{}', 'applied', ?)",
                (call_id, f"c-{call_id}", _at(write_confirmed_ago)),
            )


def test_an_empty_inbox_has_nothing_to_measure(inbox):
    assert inbox.lag(NOW).to_json() == {
        "pending": 0,
        "retrying": 0,
        "failed": 0,
        "oldest_pending_age_s": None,
        "finished_last_5m": 0,
        "latency_p50_s": None,
        "latency_p95_s": None,
        "latency_max_s": None,
    }


def test_backlog_lag_and_latency_one_way(inbox):
    _event(inbox, "waiting-long", "pending", received_ago=90, updated_ago=90)
    _event(inbox, "waiting", "pending", received_ago=10, updated_ago=10)
    _event(inbox, "retrying", "retrying", received_ago=45, updated_ago=5)
    # Written: from storage to the provider's confirmation, not to the outcome's record.
    _event(inbox, "written", "applied", received_ago=60, updated_ago=40, write_confirmed_ago=50)
    _event(inbox, "nothing", "nothing_to_do", received_ago=30, updated_ago=28)
    _event(inbox, "failed", "failed", received_ago=200, updated_ago=100)
    # Finished before the last 5 minutes: no longer in the latency.
    _event(inbox, "old", "applied", received_ago=900, updated_ago=800, write_confirmed_ago=800)
    lag = inbox.lag(NOW)
    assert (lag.pending, lag.retrying, lag.failed, lag.backlog) == (2, 1, 1, 3)
    assert lag.oldest_pending_age_s == 90
    assert lag.finished_last_5m == 3
    # Latencies 10 s (written), 2 s (nothing to do), 100 s (failed).
    assert (lag.latency_p50_s, lag.latency_p95_s, lag.latency_max_s) == (10, 100, 100)
    assert "Lag, the oldest waiting event: 90.0 s" in lag.text()


def test_the_lag_grows_while_nothing_finishes(inbox):
    _event(inbox, "stuck", "pending", received_ago=30, updated_ago=30)
    first = inbox.lag(NOW).oldest_pending_age_s
    later = inbox.lag(NOW + timedelta(seconds=60)).oldest_pending_age_s
    assert (first, later) == (30, 90)


@pytest.mark.parametrize(
    ("values", "share", "expected"),
    [([], 0.5, None), ([4.0], 0.95, 4.0), ([1, 2, 3, 4], 0.5, 2), ([*range(1, 101)], 0.95, 95)],
)
def test_percentile_is_nearest_rank(values, share, expected):
    assert percentile(values, share) == expected


def test_a_batchs_latencies_count_only_its_finished_events(inbox):
    _event(inbox, "written", "applied", received_ago=60, updated_ago=40, write_confirmed_ago=50)
    _event(inbox, "nothing", "nothing_to_do", received_ago=30, updated_ago=28)
    _event(inbox, "waiting", "pending", received_ago=10, updated_ago=10)
    assert inbox.latencies(["written", "nothing", "waiting", "unknown"]) == [2.0, 10.0]


def test_keeping_up_is_no_event_waiting_longer_than_the_limit(inbox, tmp_path):
    _event(inbox, "stuck", "pending", received_ago=200, updated_ago=200)
    lag = inbox.lag(NOW)
    assert (lag.lag_s, lag.within(200), lag.within(199)) == (200, True, False)
    assert Inbox(tmp_path / "empty.sqlite").lag(NOW).within(1)


@sqlite_only
def test_recent_latency_is_read_from_an_index_of_finished_events_only(inbox):
    # An index of every event would cost the intake a write per event it stores; the one of
    # finished events is written when post-call finishes them, and the lag's query uses it.
    with inbox.transaction() as conn:
        conn.execute("CREATE INDEX event_updated ON event (updated_at)")  # an earlier version's
    # Another process's change of schema: the next connection brings the inbox up to date.
    with inbox.connect() as conn:
        indexes = {name for (name,) in conn.execute("SELECT name FROM sqlite_master")}
        plan = conn.execute(
            f"EXPLAIN QUERY PLAN {inbox_statistics._FINISHED} AND e.updated_at >= ?",
            (*inbox_statistics._FINISHED_PARAMS, _at(300)),
        ).fetchall()
    assert "event_updated" not in indexes and "event_finished" in indexes
    assert any("USING INDEX event_finished" in row[-1] for row in plan)
