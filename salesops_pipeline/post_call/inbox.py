"""The post-call inbox: every accepted event, durably, and what became of it.

One SQLite file in WAL mode, written with full synchronisation: an event is on disk before the
provider hears 2xx. Tables:

- `event`: one row per callId, its payload and its current status;
- `queue`: an append-only list of "handle this callId", read by the sensor past its cursor
  (an event is queued when it arrives, on replay, and when a retry falls due);
- `outcome`: an append-only log of every handling: the decision, the writes, or the error;
- `transfer`: the contacts this pipeline handed to support agents, which count in their load;
- `conflict`: a callId delivered again with a different payload, kept for inspection;
- `quarantine`: bodies refused at the door, raw, with the reason.
"""

import hashlib
import json
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS event (
    call_id TEXT PRIMARY KEY,
    payload TEXT NOT NULL,
    payload_sha256 TEXT NOT NULL,
    received_at TEXT NOT NULL,
    deliveries INTEGER NOT NULL DEFAULT 1,
    status TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    lease_owner TEXT,
    lease_until TEXT,
    plan TEXT,
    updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS event_due ON event (status, next_attempt_at);
CREATE TABLE IF NOT EXISTS queue (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    call_id TEXT NOT NULL,
    reason TEXT NOT NULL,
    queued_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS outcome (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    call_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    status TEXT NOT NULL,
    decision TEXT NOT NULL,
    writes TEXT NOT NULL,
    error TEXT,
    run_id TEXT,
    at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS outcome_call ON outcome (call_id, id);
CREATE TABLE IF NOT EXISTS transfer (
    contact_id TEXT PRIMARY KEY,
    agent TEXT NOT NULL,
    call_id TEXT NOT NULL,
    at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS conflict (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    call_id TEXT NOT NULL,
    payload TEXT NOT NULL,
    received_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS quarantine (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    received_at TEXT NOT NULL,
    reason TEXT NOT NULL,
    content_type TEXT,
    raw_body BLOB NOT NULL
);
"""

# Statuses after which an event is never handled again.
FINAL_STATUSES = ("applied", "nothing_to_do", "failed")
OPEN_STATUSES = ("pending", "retrying")

# An event queued but still open this long after is queued again: its run may have crashed.
STALE_AFTER = timedelta(minutes=10)
# How long one run may hold an event before another may take it over.
LEASE = timedelta(minutes=5)
MAX_ATTEMPTS = 8


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


def payload_digest(payload: str) -> str:
    return hashlib.sha256(payload.encode()).hexdigest()


def retry_delay(attempt: int) -> timedelta:
    """Backoff between attempts of a failing event: 30 s, 1 min, 2 min, … capped at 1 h."""
    return timedelta(seconds=min(30 * 2 ** max(attempt - 1, 0), 3600))


@dataclass(frozen=True)
class Accepted:
    status: str  # "stored", "duplicate" or "conflict"
    call_id: str


@dataclass(frozen=True)
class QueuedEvent:
    seq: int
    call_id: str


@dataclass(frozen=True)
class EventRecord:
    call_id: str
    payload: str
    received_at: str
    deliveries: int
    status: str
    attempts: int
    plan: dict | None
    last_decision: str | None = None
    last_error: str | None = None


class Inbox:
    def __init__(self, path: Path):
        self.path = path
        self._ready = False

    @contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        if not self._ready:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            # FULL: a committed event survives a power cut, not only a process crash.
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA busy_timeout = 30000")
            if not self._ready:
                conn.executescript(SCHEMA)
                self._ready = True
            yield conn
        finally:
            conn.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken at once: concurrent writers queue, none sees stale rows."""
        with self.connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    # Intake --------------------------------------------------------------------------------

    def accept(self, call_id: str, payload: str) -> Accepted:
        """Store an event and queue it; a redelivery is acknowledged without storing it twice."""
        digest = payload_digest(payload)
        now = _now()
        with self.transaction() as conn:
            row = conn.execute(
                "SELECT payload_sha256 FROM event WHERE call_id = ?", (call_id,)
            ).fetchone()
            if row is None:
                conn.execute(
                    "INSERT INTO event (call_id, payload, payload_sha256, received_at,"
                    " next_attempt_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)",
                    (call_id, payload, digest, _iso(now), _iso(now + STALE_AFTER), _iso(now)),
                )
                self._queue(conn, call_id, "received", now)
                return Accepted("stored", call_id)
            if row[0] == digest:
                conn.execute(
                    "UPDATE event SET deliveries = deliveries + 1 WHERE call_id = ?", (call_id,)
                )
                return Accepted("duplicate", call_id)
            conn.execute(
                "INSERT INTO conflict (call_id, payload, received_at) VALUES (?, ?, ?)",
                (call_id, payload, _iso(now)),
            )
            return Accepted("conflict", call_id)

    def quarantine(self, reason: str, raw_body: bytes, content_type: str | None) -> int:
        with self.transaction() as conn:
            return conn.execute(
                "INSERT INTO quarantine (received_at, reason, content_type, raw_body)"
                " VALUES (?, ?, ?, ?)",
                (_iso(_now()), reason, content_type, raw_body),
            ).lastrowid

    @staticmethod
    def _queue(conn: sqlite3.Connection, call_id: str, reason: str, now: datetime) -> int:
        return conn.execute(
            "INSERT INTO queue (call_id, reason, queued_at) VALUES (?, ?, ?)",
            (call_id, reason, _iso(now)),
        ).lastrowid

    # The sensor ----------------------------------------------------------------------------

    def queued_after(self, cursor: int, limit: int) -> list[QueuedEvent]:
        with self.connect() as conn:
            rows = conn.execute(
                "SELECT seq, call_id FROM queue WHERE seq > ? ORDER BY seq LIMIT ?",
                (cursor, limit),
            ).fetchall()
        return [QueuedEvent(seq, call_id) for seq, call_id in rows]

    def last_seq(self) -> int:
        with self.connect() as conn:
            return conn.execute("SELECT COALESCE(MAX(seq), 0) FROM queue").fetchone()[0]

    def requeue_due(self, now: datetime | None = None, limit: int = 1000) -> int:
        """Queue again the open events whose retry is due or whose run never finished them."""
        now = now or _now()
        with self.transaction() as conn:
            due = conn.execute(
                "SELECT call_id, status FROM event WHERE status IN ('pending', 'retrying')"
                " AND next_attempt_at <= ? ORDER BY next_attempt_at LIMIT ?",
                (_iso(now), limit),
            ).fetchall()
            for call_id, status in due:
                self._queue(conn, call_id, "retry" if status == "retrying" else "stale", now)
                conn.execute(
                    "UPDATE event SET next_attempt_at = ? WHERE call_id = ?",
                    (_iso(now + STALE_AFTER), call_id),
                )
        return len(due)

    def replay(self, call_id: str) -> bool:
        """Queue an event again, whatever its status; False if the callId is unknown.

        An event already applied is not applied twice: its handling records that and stops.
        """
        now = _now()
        with self.transaction() as conn:
            if conn.execute("SELECT 1 FROM event WHERE call_id = ?", (call_id,)).fetchone() is None:
                return False
            conn.execute(
                "UPDATE event SET status = CASE WHEN status = 'failed' THEN 'retrying'"
                " ELSE status END, next_attempt_at = ? WHERE call_id = ?",
                (_iso(now + STALE_AFTER), call_id),
            )
            self._queue(conn, call_id, "replay", now)
        return True

    # The job -------------------------------------------------------------------------------

    def call_ids_between(self, first_seq: int, last_seq: int) -> list[str]:
        """The distinct callIds queued in [first_seq, last_seq], in queue order."""
        with self.connect() as conn:
            rows = conn.execute(
                "SELECT call_id, MIN(seq) FROM queue WHERE seq BETWEEN ? AND ?"
                " GROUP BY call_id ORDER BY MIN(seq)",
                (first_seq, last_seq),
            ).fetchall()
        return [call_id for call_id, _ in rows]

    def claim(self, call_id: str, owner: str) -> EventRecord | None:
        """Take an open event for handling; None if it is final or another run holds it."""
        now = _now()
        with self.transaction() as conn:
            updated = conn.execute(
                "UPDATE event SET lease_owner = ?, lease_until = ?, attempts = attempts + 1,"
                " updated_at = ? WHERE call_id = ? AND status IN ('pending', 'retrying')"
                " AND (lease_until IS NULL OR lease_until < ? OR lease_owner = ?)",
                (owner, _iso(now + LEASE), _iso(now), call_id, _iso(now), owner),
            ).rowcount
        return self.get(call_id) if updated else None

    def record_plan(self, call_id: str, plan: dict) -> None:
        """Write down what is about to be sent, before sending it (see PostCallProcessor)."""
        with self.transaction() as conn:
            conn.execute("UPDATE event SET plan = ? WHERE call_id = ?", (json.dumps(plan), call_id))

    def finish(
        self,
        call_id: str,
        *,
        status: str,
        decision: str,
        writes: list[dict],
        error: str | None = None,
        run_id: str | None = None,
    ) -> str:
        """Record one handling in the outcomes log and set the event's status.

        A retryable failure becomes `retrying` with a backoff, until MAX_ATTEMPTS; then it is
        `failed`. Returns the status stored.
        """
        now = _now()
        with self.transaction() as conn:
            attempts = conn.execute(
                "SELECT attempts FROM event WHERE call_id = ?", (call_id,)
            ).fetchone()[0]
            if status == "retrying" and attempts >= MAX_ATTEMPTS:
                status = "failed"
                error = f"{error} (gave up after {attempts} attempts)"
            next_attempt = now + (retry_delay(attempts) if status == "retrying" else STALE_AFTER)
            conn.execute(
                "UPDATE event SET status = ?, next_attempt_at = ?, lease_owner = NULL,"
                " lease_until = NULL, updated_at = ? WHERE call_id = ?",
                (status, _iso(next_attempt), _iso(now), call_id),
            )
            conn.execute(
                "INSERT INTO outcome"
                " (call_id, attempt, status, decision, writes, error, run_id, at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (call_id, attempts, status, decision, json.dumps(writes), error, run_id, _iso(now)),
            )
        return status

    def record_skip(self, call_id: str, reason: str, run_id: str | None) -> None:
        """Log that a queued event was not handled (already final, or held by another run)."""
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO outcome"
                " (call_id, attempt, status, decision, writes, error, run_id, at)"
                " SELECT call_id, attempts, 'skipped', ?, '[]', NULL, ?, ? FROM event"
                " WHERE call_id = ?",
                (reason, run_id, _iso(_now()), call_id),
            )

    # Support transfers ---------------------------------------------------------------------

    def assign_transfer(
        self, contact_id: str, call_id: str, choose: Callable[[dict[str, str]], str | None]
    ) -> str | None:
        """Choose and record a support agent for a contact, under the inbox's write lock.

        `choose` gets the ledger of contacts already transferred (contact → agent) and returns
        the agent. Holding the lock while choosing means two runs never pick on stale counts.
        """
        with self.transaction() as conn:
            ledger = dict(conn.execute("SELECT contact_id, agent FROM transfer").fetchall())
            agent = choose(ledger)
            if agent is not None:
                conn.execute(
                    "INSERT INTO transfer (contact_id, agent, call_id, at) VALUES (?, ?, ?, ?)"
                    " ON CONFLICT (contact_id) DO UPDATE SET agent = excluded.agent,"
                    " call_id = excluded.call_id, at = excluded.at",
                    (contact_id, agent, call_id, _iso(_now())),
                )
        return agent

    def transfers(self) -> dict[str, str]:
        with self.connect() as conn:
            return dict(conn.execute("SELECT contact_id, agent FROM transfer").fetchall())

    # Reading -------------------------------------------------------------------------------

    def get(self, call_id: str) -> EventRecord | None:
        with self.connect() as conn:
            row = conn.execute(
                "SELECT e.call_id, e.payload, e.received_at, e.deliveries, e.status, e.attempts,"
                " e.plan, o.decision, o.error FROM event e"
                " LEFT JOIN outcome o ON o.id = (SELECT MAX(id) FROM outcome"
                "   WHERE call_id = e.call_id AND status != 'skipped')"
                " WHERE e.call_id = ?",
                (call_id,),
            ).fetchone()
        return None if row is None else _record(row)

    def recent(self, limit: int = 20, status: str | None = None) -> list[EventRecord]:
        where, params = ("WHERE e.status = ?", [status]) if status else ("", [])
        with self.connect() as conn:
            rows = conn.execute(
                "SELECT e.call_id, e.payload, e.received_at, e.deliveries, e.status, e.attempts,"
                " e.plan, o.decision, o.error FROM event e"
                " LEFT JOIN outcome o ON o.id = (SELECT MAX(id) FROM outcome"
                "   WHERE call_id = e.call_id AND status != 'skipped')"
                f" {where} ORDER BY e.received_at DESC, e.call_id LIMIT ?",
                [*params, limit],
            ).fetchall()
        return [_record(row) for row in rows]

    def outcomes(self, call_id: str) -> list[dict]:
        with self.connect() as conn:
            conn.row_factory = sqlite3.Row
            rows = conn.execute(
                "SELECT * FROM outcome WHERE call_id = ? ORDER BY id", (call_id,)
            ).fetchall()
        return [dict(row) | {"writes": json.loads(row["writes"])} for row in rows]

    def counts(self) -> dict[str, int]:
        with self.connect() as conn:
            return dict(conn.execute("SELECT status, COUNT(*) FROM event GROUP BY status"))

    def quarantined(self) -> list[dict]:
        with self.connect() as conn:
            conn.row_factory = sqlite3.Row
            return [dict(r) for r in conn.execute("SELECT * FROM quarantine ORDER BY id")]

    def conflicts(self) -> list[dict]:
        with self.connect() as conn:
            conn.row_factory = sqlite3.Row
            return [dict(r) for r in conn.execute("SELECT * FROM conflict ORDER BY id")]


def _record(row) -> EventRecord:
    call_id, payload, received_at, deliveries, status, attempts, plan, decision, error = row
    return EventRecord(
        call_id=call_id,
        payload=payload,
        received_at=received_at,
        deliveries=deliveries,
        status=status,
        attempts=attempts,
        plan=json.loads(plan) if plan else None,
        last_decision=decision,
        last_error=error,
    )
