"""Retention: what the inbox forgets, and when, so that it stays bounded.

It owns the pruning of what is finished and old: events in a final status other than
`failed` whose last change is older than the retention, with their `write`, `outcome` and
`queue` rows, and the deliveries kept for inspection (`quarantine`, `conflict`) received before
it. A failed event stays until a person replays or dismisses it; dismissing is here too.

It prunes the transfer ledger only of transfers that no longer count in any agent's load (older
than the load period) and are older than the retention. It never touches `contact_state`
(newest call wins must outlive the calls), nor the open events and their queue entries, so
that what a lane reads is unchanged. Deletion runs in bounded batches, each its own short
transaction, so that the intake and the runs never wait long for the write lock.
"""

import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from salesops_pipeline.post_call.status import EventStatus
from salesops_pipeline.post_call.storage import QUEUE_LOCK, TRANSFER_CHOICE_LOCK, Connection
from salesops_pipeline.post_call.store.base import REPLAY, StoreBase, _iso, _log, _now
from salesops_pipeline.post_call.store.schema import _OPEN_LITERALS

# Events per batch at most, and the write lock a batch aims to hold: a batch that held it
# longer (a slow disk, a busy machine) makes the next ones smaller, down to MIN_BATCH; quick
# ones let them grow back. Measured on SQLite (synchronous=FULL) with a million finished
# events: 1,000 events held it up to 183 ms on a busy machine, about 0.1 ms an event
# (benchmarks/RESULTS.md).
PRUNE_BATCH = 500
LOCK_TARGET_S = 0.05
MIN_BATCH = 20
# Refused or conflicting deliveries per batch: a refused body may weigh up to 64 KB.
DELIVERY_BATCH = 100
# Old finished events, oldest first, read from the partial index `event_finished` (its
# condition spelled the same, and no condition on the status that an index of the status could
# serve: that one would read every finished event to sort them). An event replayed within the
# retention stays, so that a lane still finds its replay.
_OLD_FINISHED = f"""SELECT call_id, status FROM event
    WHERE status NOT IN ({_OPEN_LITERALS}) AND status != '{EventStatus.FAILED}'
    AND updated_at < ?
    AND NOT EXISTS (SELECT 1 FROM queue r WHERE r.call_id = event.call_id
                    AND r.reason = '{REPLAY}' AND r.queued_at >= ?)
    ORDER BY updated_at LIMIT ?"""
# The tables whose rows go with their event, the event last.
_EVENT_TABLES = ("outcome", "write", "queue", "event")
# Bound values per statement, well under SQLite's limit.
_CHUNK = 500


@dataclass
class Pruned:
    """What one pruning deleted: rows per table, and how long its longest batch held the
    write lock."""

    rows: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(
            (*_EVENT_TABLES, "conflict", "quarantine", "transfer"), 0
        )
    )
    events_by_status: dict[str, int] = field(default_factory=dict)
    batches: int = 0
    longest_lock_s: float = 0.0
    largest_batch: int = 0

    def text(self) -> str:
        counts = ", ".join(f"{table} {n:,}" for table, n in self.rows.items())
        return (
            f"Pruned {counts} ({self.batches} batch{'es' if self.batches != 1 else ''},"
            " the longest held the write lock"
            f" {self.longest_lock_s * 1000:.0f} ms)"
        )

    def _batch(self, seconds: float) -> None:
        self.batches += 1
        self.longest_lock_s = max(self.longest_lock_s, seconds)


class Retention(StoreBase):
    def prune(
        self,
        older_than: timedelta,
        now: datetime | None = None,
        batch: int = PRUNE_BATCH,
        delivery_batch: int = DELIVERY_BATCH,
        load_period: timedelta | None = None,
    ) -> Pruned:
        """Delete what is finished and older than `older_than`: `batch` events, or
        `delivery_batch` deliveries, per transaction; and the transfers older than both
        `older_than` and `load_period` (the support loads' period), which count for no one."""
        now = now or _now()
        cutoff = _iso(now - older_than)
        transfers_cutoff = _iso(now - max(older_than, load_period or older_than))
        pruned = Pruned()
        size = batch
        while True:
            deleted, seconds = self._prune_events(cutoff, size, pruned)
            if deleted < size:
                break
            if seconds > LOCK_TARGET_S:
                size = max(min(MIN_BATCH, batch), int(size * LOCK_TARGET_S / seconds))
            elif seconds < LOCK_TARGET_S / 2:
                size = min(batch, size * 2)
        for table in ("conflict", "quarantine"):
            while self._prune_deliveries(table, cutoff, delivery_batch, pruned):
                pass
        while self._prune_transfers(transfers_cutoff, batch, pruned):
            pass
        return pruned

    def _prune_transfers(self, cutoff: str, batch: int, pruned: Pruned) -> bool:
        with self.transaction() as conn:
            # As the choice of an agent does, which reads the ledger.
            self._store.lock(conn, TRANSFER_CHOICE_LOCK)
            started = time.perf_counter()
            deleted = conn.execute(
                "DELETE FROM transfer WHERE call_id IN (SELECT call_id FROM transfer"
                " WHERE at < ? ORDER BY at LIMIT ?)",
                (cutoff, batch),
            ).rowcount
        if deleted:
            pruned._batch(time.perf_counter() - started)
            pruned.rows["transfer"] += deleted
        return deleted == batch

    def _prune_events(self, cutoff: str, batch: int, pruned: Pruned) -> tuple[int, float]:
        """Prune up to `batch` events in one transaction: how many, and how long it held the
        lock."""
        with self.transaction() as conn:
            # SQLite: the lock was taken at BEGIN. PostgreSQL: the queue's, as every writer of
            # the queue takes it, so that a replay never queues an event being deleted.
            self._store.lock(conn, QUEUE_LOCK)
            started = time.perf_counter()
            rows = conn.execute(
                _OLD_FINISHED + self._store.for_update, (cutoff, cutoff, batch)
            ).fetchall()
            if rows:
                call_ids = [call_id for call_id, _ in rows]
                for table in _EVENT_TABLES:
                    pruned.rows[table] += _delete(conn, table, call_ids)
                by_status: dict[str, int] = {}
                for _, status in rows:
                    by_status[status] = by_status.get(status, 0) + 1
                # In the order of their status, as the triggers take them.
                for status, n in sorted(by_status.items()):
                    pruned.events_by_status[status] = pruned.events_by_status.get(status, 0) + n
                    conn.execute(
                        "INSERT INTO status_count (status, shard, events, pruned)"
                        " VALUES (?, 0, ?, ?) ON CONFLICT (status, shard) DO UPDATE SET"
                        " events = status_count.events + excluded.events,"
                        " pruned = status_count.pruned + excluded.pruned",
                        (status, -n, n),
                    )
        seconds = time.perf_counter() - started
        if rows:
            pruned._batch(seconds)
            pruned.largest_batch = max(pruned.largest_batch, len(rows))
        return len(rows), seconds

    def _prune_deliveries(self, table: str, cutoff: str, batch: int, pruned: Pruned) -> bool:
        with self.transaction() as conn:
            started = time.perf_counter()
            deleted = conn.execute(
                f"DELETE FROM {table} WHERE id IN (SELECT id FROM {table}"
                " WHERE received_at < ? ORDER BY received_at LIMIT ?)",
                (cutoff, batch),
            ).rowcount
        if deleted:
            pruned._batch(time.perf_counter() - started)
            pruned.rows[table] += deleted
        return deleted == batch

    def dismiss(self, call_ids: list[str]) -> dict[str, str | None]:
        """Give up for good on failed events: they become `dismissed`, final, with an outcome
        saying so, and retention prunes them like any finished event.

        All or nothing: when one of them is not a failed event, nothing is dismissed and the
        answer maps each such callId to its status (None: not in the inbox).
        """
        wanted = list(dict.fromkeys(call_ids))
        now = _now()
        with self.transaction() as conn:
            # As a replay does: the two never cross on the same event.
            self._store.lock(conn, QUEUE_LOCK)
            found = {}
            for start in range(0, len(wanted), _CHUNK):
                chunk = wanted[start : start + _CHUNK]
                found.update(
                    (call_id, (status, attempts))
                    for call_id, status, attempts in conn.execute(
                        "SELECT call_id, status, attempts FROM event"
                        f" WHERE call_id IN ({', '.join('?' * len(chunk))})"
                        + self._store.for_update,
                        chunk,
                    )
                )
            refused = {
                call_id: found[call_id][0] if call_id in found else None
                for call_id in wanted
                if call_id not in found or found[call_id][0] != EventStatus.FAILED
            }
            if refused:
                return refused
            for call_id in wanted:
                # Its last change stays the failure's: retention counts from when it ended.
                conn.execute(
                    "UPDATE event SET status = ? WHERE call_id = ?",
                    (EventStatus.DISMISSED, call_id),
                )
                _log(
                    conn,
                    call_id,
                    found[call_id][1],
                    EventStatus.DISMISSED,
                    "dismissed by an operator: it will not be replayed",
                    [],
                    None,
                    None,
                    now,
                )
        return {}


def _delete(conn: Connection, table: str, call_ids: list[str]) -> int:
    deleted = 0
    for start in range(0, len(call_ids), _CHUNK):
        chunk = call_ids[start : start + _CHUNK]
        deleted += conn.execute(
            f"DELETE FROM {table} WHERE call_id IN ({', '.join('?' * len(chunk))})", chunk
        ).rowcount
    return deleted
