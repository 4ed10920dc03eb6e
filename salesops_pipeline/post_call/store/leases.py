"""Worker leases: the processes handling events, and what becomes of the events a dead one
held (queued again at once, or failed once runs kept dying on them)."""

from datetime import timedelta

from salesops_pipeline.post_call.status import OPEN_STATUSES, EventStatus
from salesops_pipeline.post_call.storage import QUEUE_LOCK
from salesops_pipeline.post_call.store import base
from salesops_pipeline.post_call.store.base import (
    STALE_AFTER,
    StoreBase,
    Worker,
    _iso,
    _log,
    _now,
    _queue,
    _set_status,
)
from salesops_pipeline.post_call.store.ledger import _give_up_write


class WorkerLeases(StoreBase):
    def register_worker(self, worker: Worker) -> None:
        now = _now()
        with self.transaction() as conn:
            # Ended workers are kept a day: "this run had a worker" is worth knowing that long.
            conn.execute("DELETE FROM worker WHERE ended_at < ?", (_iso(now - timedelta(days=1)),))
            conn.execute(
                "INSERT INTO worker (owner, run_id, host, pid, process_started, started_at)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (owner) DO UPDATE SET"
                " run_id = excluded.run_id, host = excluded.host, pid = excluded.pid,"
                " process_started = excluded.process_started,"
                " started_at = excluded.started_at, ended_at = NULL",
                (
                    worker.owner,
                    worker.run_id,
                    worker.host,
                    worker.pid,
                    worker.process_started,
                    _iso(now),
                ),
            )

    def unregister_worker(self, owner: str) -> None:
        with self.transaction() as conn:
            conn.execute("UPDATE worker SET ended_at = ? WHERE owner = ?", (_iso(_now()), owner))

    def workers(self) -> list[Worker]:
        """The processors at work (registered and not ended)."""
        with self.connect() as conn:
            rows = conn.execute(
                "SELECT owner, run_id, host, pid, process_started FROM worker"
                " WHERE ended_at IS NULL ORDER BY owner"
            ).fetchall()
        return [Worker(*row) for row in rows]

    def run_had_worker(self, run_id: str) -> bool:
        with self.connect() as conn:
            return (
                conn.execute("SELECT 1 FROM worker WHERE run_id = ?", (run_id,)).fetchone()
                is not None
            )

    def release_dead_worker(self, owner: str, reason: str) -> list[str]:
        """Free what a dead processor held: its events go back to the queue at once, or to
        `failed` once processors died MAX_CRASHES times on them. Returns their callIds."""
        now = _now()
        with self.transaction() as conn:
            self._store.lock(conn, QUEUE_LOCK)
            held = conn.execute(
                "SELECT call_id, crashes, attempts FROM event WHERE lease_owner = ?"
                f" AND status IN (?, ?) ORDER BY call_id{self._store.for_update}",
                (owner, *OPEN_STATUSES),
            ).fetchall()
            for call_id, crashes, attempts in held:
                crashes += 1
                if crashes >= base.MAX_CRASHES:
                    error = f"its run died {crashes} times while handling it ({reason})"
                    _set_status(conn, call_id, EventStatus.FAILED, now + STALE_AFTER, now)
                    _log(conn, call_id, attempts, EventStatus.FAILED, "", [], error, None, now)
                    _give_up_write(conn, call_id, now)
                else:
                    conn.execute(
                        "UPDATE event SET next_attempt_at = ? WHERE call_id = ?",
                        (_iso(now + STALE_AFTER), call_id),
                    )
                    _queue(conn, call_id, "recovery", now)
                conn.execute(
                    "UPDATE event SET crashes = ?, lease_owner = NULL, lease_until = NULL"
                    " WHERE call_id = ?",
                    (crashes, call_id),
                )
            conn.execute("UPDATE worker SET ended_at = ? WHERE owner = ?", (_iso(now), owner))
        return [call_id for call_id, _, _ in held]
