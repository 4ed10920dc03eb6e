"""The post-call inbox: every accepted event, durably, and what became of it.

One SQLite file in WAL mode on one host, or, with SALESOPS_DATABASE_URL, one PostgreSQL
database that several hosts share (see `storage`). Either way an event is durably stored before
the provider hears 2xx. Tables:

- `event`: one row per callId, its payload, its current status and who holds it (a lease);
- `queue`: an append-only list of "handle this callId", read by the sensor past its cursor
  (an event is queued when it arrives, on replay, and when a retry falls due);
- `write`: the write each event sends to the provider, recorded before it is sent;
- `contact_state`: per contact, the newest call whose effect was applied, or may have been
  (a write given up on in flight), so that no older call overwrites it (newest call wins);
- `transfer`: the contacts this pipeline handed to support agents, while in flight or confirmed;
- `worker`: the processes handling events, so that the leases of dead ones are released;
- `outcome`: an append-only log of every handling: the decision, the writes, or the error;
- `conflict`: a callId delivered again with a different payload, kept for inspection;
- `quarantine`: bodies refused at the door, raw, with the reason;
- `meta`: the inbox's epoch, which tells one inbox from the next.

No method holds the write lock across a network call: the processor reads from the provider
first, then takes the lock only to decide and record.
"""

import hashlib
import json
import secrets
import sqlite3
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path

from salesops_pipeline import settings
from salesops_pipeline.post_call.lag import RECENT, PostCallLag, percentile
from salesops_pipeline.post_call.status import (
    OPEN_STATUSES,
    AcceptStatus,
    EventStatus,
    HandlingStatus,
    Refusal,
    TransferState,
    WriteState,
)
from salesops_pipeline.post_call.storage import (
    QUEUE_LOCK,
    TRANSFER_CHOICE_LOCK,
    Connection,
    PostgresConnection,
    PostgresStore,
    SQLiteStore,
    contact_lock,
    postgres_ddl,
)

# The open statuses as SQL literals (fixed enum values), where a partial index and the queries
# that use it must spell the same condition.
_OPEN_LITERALS = ", ".join(f"'{status}'" for status in OPEN_STATUSES)

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS event (
    call_id TEXT PRIMARY KEY,
    payload TEXT NOT NULL,
    payload_sha256 TEXT NOT NULL,
    received_at TEXT NOT NULL,
    deliveries INTEGER NOT NULL DEFAULT 1,
    status TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    crashes INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    lease_owner TEXT,
    lease_until TEXT,
    updated_at TEXT NOT NULL,
    lane_key INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS event_due ON event (status, next_attempt_at);
CREATE INDEX IF NOT EXISTS event_lease ON event (lease_owner);
-- Finished events by their last change: the post-call latency reads the recent ones.
CREATE INDEX IF NOT EXISTS event_finished ON event (updated_at)
    WHERE status NOT IN ({_OPEN_LITERALS});
CREATE TABLE IF NOT EXISTS queue (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    call_id TEXT NOT NULL,
    reason TEXT NOT NULL,
    queued_at TEXT NOT NULL,
    lane_key INTEGER NOT NULL DEFAULT 0
);
-- How far the post-call runs of each lane have read the queue, per number of lanes.
CREATE TABLE IF NOT EXISTS lane (
    lanes INTEGER NOT NULL,
    lane INTEGER NOT NULL,
    position INTEGER NOT NULL,
    PRIMARY KEY (lanes, lane)
);
CREATE TABLE IF NOT EXISTS write (
    call_id TEXT PRIMARY KEY,
    contact_id TEXT NOT NULL,
    call_time TEXT NOT NULL,
    changes TEXT NOT NULL,
    state TEXT NOT NULL,
    sends INTEGER NOT NULL DEFAULT 0,
    sent_at TEXT,
    updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS write_contact ON write (contact_id, state);
CREATE TABLE IF NOT EXISTS contact_state (
    contact_id TEXT PRIMARY KEY,
    call_time TEXT NOT NULL,
    call_id TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS transfer (
    call_id TEXT PRIMARY KEY,
    contact_id TEXT NOT NULL,
    agent TEXT NOT NULL,
    state TEXT NOT NULL,
    at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS transfer_at ON transfer (at);
CREATE TABLE IF NOT EXISTS worker (
    owner TEXT PRIMARY KEY,
    run_id TEXT,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    process_started TEXT,
    started_at TEXT NOT NULL,
    ended_at TEXT
);
CREATE INDEX IF NOT EXISTS worker_run ON worker (run_id);
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
CREATE TABLE IF NOT EXISTS alert (condition TEXT PRIMARY KEY, raised_at TEXT NOT NULL);
"""

# The queue reason of a replay, which a run handles whatever the event's status.
REPLAY = "replay"
# An open event nobody holds and nobody queued again this long after its last queuing is
# queued again: a safety net under the sensor's release of dead workers' leases.
STALE_AFTER = timedelta(minutes=10)
# How long a lease lasts without renewal. The holder renews it at every step, and each step
# is bounded by the HTTP timeouts, well under this.
LEASE = timedelta(seconds=60)
MAX_ATTEMPTS = 8
# Runs that died while holding an event, after which the event is failed: it may be what kills
# them.
MAX_CRASHES = 3

_EVENT_COLUMNS = (
    "e.call_id, e.payload, e.received_at, e.deliveries, e.status, e.attempts, e.crashes,"
    " o.decision, o.error"
)
# Outcomes that record no handling of the event: it was skipped, deferred, or its lease was lost
# before the end. (Fixed enum values, so inlining them in the SQL is safe.)
_NOT_A_HANDLING = ", ".join(
    f"'{status}'"
    for status in (HandlingStatus.SKIPPED, HandlingStatus.DEFERRED, HandlingStatus.LEASE_LOST)
)
# An event with its latest real handling.
_EVENT_SELECT = (
    f"SELECT {_EVENT_COLUMNS} FROM event e"
    " LEFT JOIN outcome o ON o.id = (SELECT MAX(id) FROM outcome"
    f"   WHERE call_id = e.call_id AND status NOT IN ({_NOT_A_HANDLING}))"
)


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


def _parse(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp)


# Finished events, each with when it was stored and when it was done: its write confirmed by
# the provider, or else its outcome recorded.
# The open statuses are spelled out, as in the partial index `event_finished`, so that SQLite
# can use it: an index of finished events alone costs the intake nothing, since it stores
# events pending.
_FINISHED = f"""SELECT e.call_id, e.received_at,
                      CASE WHEN w.state = ? THEN w.updated_at ELSE e.updated_at END
               FROM event e LEFT JOIN write w ON w.call_id = e.call_id
               WHERE e.status NOT IN ({_OPEN_LITERALS})"""
_FINISHED_PARAMS = (WriteState.APPLIED,)


def _latency(received: str, done: str) -> float:
    return max((_parse(done) - _parse(received)).total_seconds(), 0.0)


def payload_digest(payload: str) -> str:
    return hashlib.sha256(payload.encode()).hexdigest()


def lane_key(payload: str) -> int:
    """A stable number for the event's contact: every event of a contact gets the same one,
    so a contact's events always fall in the same lane, whatever the number of lanes."""
    try:
        contact = json.loads(payload).get("contactId")
    except (ValueError, AttributeError):
        contact = None
    return zlib.crc32(str(contact).encode())


def lane_of(key: int, lanes: int) -> int:
    return key % lanes


def retry_delay(attempt: int) -> timedelta:
    """Backoff between attempts of a failing event: 2 s, 4 s, 8 s, … capped at 5 min."""
    return timedelta(seconds=min(2 * 2 ** max(attempt - 1, 0), 300))


@dataclass(frozen=True)
class Accepted:
    status: AcceptStatus
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
    crashes: int = 0
    last_decision: str | None = None
    last_error: str | None = None


@dataclass(frozen=True)
class Write:
    """A write to the provider as recorded before it was sent."""

    call_id: str
    contact_id: str
    call_time: str
    changes: dict
    state: WriteState
    sends: int
    sent_at: str | None


@dataclass(frozen=True)
class WritePlan:
    """What `begin_write` decided: send `write`, or why not."""

    write: Write | None = None
    refusal: Refusal | None = None
    detail: str = ""


@dataclass(frozen=True)
class Worker:
    owner: str
    run_id: str | None
    host: str
    pid: int
    process_started: str | None


class Inbox:
    """The inbox in the SQLite file `path`, or, given `url`, in the PostgreSQL database every
    host uses."""

    def __init__(self, path: Path | None = None, *, url: str | None = None, pool: str = "default"):
        if (path is None) == (url is None):
            raise ValueError("an inbox is either a SQLite file or a PostgreSQL URL")
        self.path, self.url = path, url
        self._store = (
            PostgresStore(url, _ensure_postgres_schema, _postgres_schema_version(), pool)
            if url
            else SQLiteStore(path, _ensure_schema)
        )

    def with_own_connections(self, pool: str) -> "Inbox":
        """The same inbox through connections no other path of this process waits for."""
        return self if self.url is None else Inbox(url=self.url, pool=pool)

    @classmethod
    def configured(cls) -> "Inbox":
        """The inbox the settings name: SALESOPS_DATABASE_URL, else SALESOPS_HOME's file."""
        url = settings.database_url()
        return cls(url=url) if url else cls(settings.inbox_path())

    @property
    def kind(self) -> str:
        return self._store.kind

    def describe(self) -> str:
        """Where the inbox is, for messages: a path, or the URL without its password."""
        return self._store.describe()

    def exists(self) -> bool:
        """Whether anything ever created the inbox here (reading creates it otherwise)."""
        return self._store.exists()

    def errors(self) -> tuple[type[BaseException], ...]:
        """What this inbox raises when its storage is unreachable, full or refusing."""
        return self._store.errors()

    @contextmanager
    def connect(self) -> Iterator:
        with self._store.connect() as conn:
            yield conn

    @contextmanager
    def transaction(self) -> Iterator:
        """One write transaction: concurrent writers never see stale rows for what they decide.

        Callers never make a network call inside it.
        """
        with self._store.transaction() as conn:
            yield conn

    def epoch(self) -> str:
        """This inbox's identity: a new inbox (a reset) has a new epoch."""
        with self.connect() as conn:
            return conn.execute("SELECT value FROM meta WHERE key = 'epoch'").fetchone()[0]

    # Intake --------------------------------------------------------------------------------

    def accept(self, call_id: str, payload: str) -> Accepted:
        """Store an event and queue it; a redelivery is acknowledged without storing it twice."""
        [accepted] = self.accept_many([(call_id, payload)])
        return accepted

    def accept_many(self, events: list[tuple[str, str]]) -> list[Accepted]:
        """`accept` for several (callId, payload) events in one transaction: one write to disk
        for all of them, all stored or none."""
        now = _now()
        with self.transaction() as conn:
            self._store.lock(conn, QUEUE_LOCK)
            return _accept_batch(conn, events, now)

    def quarantine(self, reason: str, raw_body: bytes, content_type: str | None) -> int:
        with self.transaction() as conn:
            return conn.execute(
                "INSERT INTO quarantine (received_at, reason, content_type, raw_body)"
                " VALUES (?, ?, ?, ?) RETURNING id",
                (_iso(_now()), reason, content_type, raw_body),
            ).fetchone()[0]

    # The sensor ----------------------------------------------------------------------------

    def queued_after(self, cursor: int, limit: int) -> list[QueuedEvent]:
        """Queue entries after position `cursor`, in order, whatever their event's status."""
        with self.connect() as conn:
            rows = conn.execute(
                "SELECT seq, call_id FROM queue WHERE seq > ? ORDER BY seq LIMIT ?",
                (cursor, limit),
            ).fetchall()
        return [QueuedEvent(seq, call_id) for seq, call_id in rows]

    def lanes_with_work(self, lanes: int) -> dict[int, int]:
        """Lane → last queue position of the open events queued in it beyond what its runs have
        read; lanes with nothing to do are left out."""
        with self.connect() as conn:
            rows = conn.execute(
                "SELECT q.lane_key % ? AS lane, MAX(q.seq) FROM queue q"
                " JOIN event e ON e.call_id = q.call_id"
                " LEFT JOIN lane p ON p.lanes = ? AND p.lane = q.lane_key % ?"
                " WHERE q.seq > COALESCE(p.position, 0)"
                " AND (e.status IN (?, ?) OR q.reason = ?)"
                " GROUP BY 1",
                (lanes, lanes, lanes, *OPEN_STATUSES, REPLAY),
            ).fetchall()
        return dict(rows)

    def lane_position(self, lane: int, lanes: int) -> int:
        """How far the runs of `lane` (out of `lanes`) have read the queue."""
        with self.connect() as conn:
            row = conn.execute(
                "SELECT position FROM lane WHERE lanes = ? AND lane = ?", (lanes, lane)
            ).fetchone()
        return row[0] if row else 0

    def open_in_lane(
        self, lane: int, lanes: int, after: int, limit: int
    ) -> tuple[list[str], int | None]:
        """The open events queued in `lane` after position `after`, and those replayed (their
        handling records what they already are), each once, in queue order, reading at most
        `limit` entries; and the position read up to (None: nothing new)."""
        with self.connect() as conn:
            rows = conn.execute(
                "SELECT q.seq, q.call_id, e.status IN (?, ?) OR q.reason = ? FROM queue q"
                " JOIN event e ON e.call_id = q.call_id"
                " WHERE q.seq > ? AND q.lane_key % ? = ? ORDER BY q.seq LIMIT ?",
                (*OPEN_STATUSES, REPLAY, after, lanes, lane, limit),
            ).fetchall()
        call_ids = list(dict.fromkeys(call_id for _, call_id, is_open in rows if is_open))
        return call_ids, (rows[-1][0] if rows else None)

    def advance_lane(self, lane: int, lanes: int, position: int) -> None:
        """Record that `lane`'s runs have read the queue up to `position` (never backwards)."""
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO lane (lanes, lane, position) VALUES (?, ?, ?)"
                " ON CONFLICT (lanes, lane)"
                " DO UPDATE SET position = CASE WHEN excluded.position > lane.position"
                " THEN excluded.position ELSE lane.position END",
                (lanes, lane, position),
            )

    def requeue_due(self, now: datetime | None = None, limit: int = 1000) -> int:
        """Queue again the open events whose retry is due, whose lease ran out, or whose run
        never finished them; an event a live holder works on is left to it."""
        now = now or _now()
        with self.transaction() as conn:
            self._store.lock(conn, QUEUE_LOCK)
            # An event another transaction holds right now is being handled: skipped, not
            # waited for.
            due = conn.execute(
                "SELECT call_id, status FROM event WHERE status IN (?, ?)"
                " AND next_attempt_at <= ? AND (lease_until IS NULL OR lease_until < ?)"
                f" ORDER BY next_attempt_at LIMIT ?{self._store.skip_locked}",
                (*OPEN_STATUSES, _iso(now), _iso(now), limit),
            ).fetchall()
            for call_id, status in due:
                _queue(conn, call_id, "retry" if status == EventStatus.RETRYING else "stale", now)
                conn.execute(
                    "UPDATE event SET next_attempt_at = ? WHERE call_id = ?",
                    (_iso(now + STALE_AFTER), call_id),
                )
        return len(due)

    def replay(self, call_id: str) -> bool:
        """Queue an event again, whatever its status; False if the callId is unknown.

        A failed event gets a fresh set of attempts. An event already applied is not applied
        twice: its handling records that and stops.
        """
        now = _now()
        with self.transaction() as conn:
            self._store.lock(conn, QUEUE_LOCK)
            if conn.execute("SELECT 1 FROM event WHERE call_id = ?", (call_id,)).fetchone() is None:
                return False
            failed, retrying = EventStatus.FAILED, EventStatus.RETRYING
            conn.execute(
                "UPDATE event SET status = CASE WHEN status = ? THEN ? ELSE status END,"
                " attempts = CASE WHEN status = ? THEN 0 ELSE attempts END,"
                " crashes = CASE WHEN status = ? THEN 0 ELSE crashes END,"
                " next_attempt_at = ? WHERE call_id = ?",
                (failed, retrying, failed, failed, _iso(now + STALE_AFTER), call_id),
            )
            _queue(conn, call_id, REPLAY, now)
        return True

    # Workers and leases --------------------------------------------------------------------

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
                if crashes >= MAX_CRASHES:
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

    # The processor -------------------------------------------------------------------------

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
        """Take an open event for handling; None if it is final or another holder's lease runs."""
        now = _now()
        with self.transaction() as conn:
            updated = conn.execute(
                "UPDATE event SET lease_owner = ?, lease_until = ?, attempts = attempts + 1,"
                " updated_at = ? WHERE call_id = ? AND status IN (?, ?)"
                " AND (lease_until IS NULL OR lease_until < ? OR lease_owner = ?)",
                (owner, _iso(now + LEASE), _iso(now), call_id, *OPEN_STATUSES, _iso(now), owner),
            ).rowcount
        return self.get(call_id) if updated else None

    def write_of(self, call_id: str) -> Write | None:
        with self.connect() as conn:
            row = conn.execute(
                "SELECT call_id, contact_id, call_time, changes, state, sends, sent_at"
                " FROM write WHERE call_id = ?",
                (call_id,),
            ).fetchone()
        return None if row is None else _write(row)

    def newest_applied(self, contact_id: str) -> tuple[str, str] | None:
        """(call time, callId) of the newest call whose effect is applied to the contact."""
        with self.connect() as conn:
            return conn.execute(
                "SELECT call_time, call_id FROM contact_state WHERE contact_id = ?",
                (contact_id,),
            ).fetchone()

    def begin_write(
        self,
        call_id: str,
        owner: str,
        *,
        contact_id: str,
        call_time: str,
        changes: dict,
        choose_agent: Callable[[dict[str, str]], str | None] | None = None,
        transfers_since: str | None = None,
    ) -> WritePlan:
        """Decide, under the write lock and with no network call, whether this event may write
        to its contact now, and record the write before it is sent.

        Newest call wins: an event older than the newest one applied to the contact is
        superseded. One write per contact at a time: while another call's write to the
        contact is unresolved, this one waits. For a transfer, `choose_agent` gets the
        transfers recorded since `transfers_since` (contact → agent) and picks the agent.
        """
        with self.transaction() as conn:
            if choose_agent is not None:
                self._store.lock(conn, TRANSFER_CHOICE_LOCK)
            self._store.lock(conn, contact_lock(contact_id))
            # After the wait for the locks: `sent_at` must not predate the send.
            now = _now()
            if not _renew(conn, call_id, owner, now):
                return WritePlan(refusal=Refusal.LEASE_LOST)
            refusal = _contact_refusal(conn, call_id, contact_id, call_time)
            if refusal is not None:
                return refusal
            changes = dict(changes)
            if choose_agent is not None:
                agent = choose_agent(_recent_transfers(conn, transfers_since))
                if agent is None:
                    return WritePlan(refusal=Refusal.NO_AGENT, detail="no active support agent")
                changes["assignedAgent"] = agent
                conn.execute(
                    "INSERT INTO transfer (call_id, contact_id, agent, state, at)"
                    " VALUES (?, ?, ?, ?, ?) ON CONFLICT (call_id) DO UPDATE SET"
                    " contact_id = excluded.contact_id, agent = excluded.agent,"
                    " state = excluded.state, at = excluded.at",
                    (call_id, contact_id, agent, TransferState.IN_FLIGHT, _iso(now)),
                )
            conn.execute(
                "INSERT INTO write (call_id, contact_id, call_time, changes, state, sends,"
                " sent_at, updated_at) VALUES (?, ?, ?, ?, ?, 1, ?, ?)",
                (
                    call_id,
                    contact_id,
                    call_time,
                    json.dumps(changes),
                    WriteState.SENDING,
                    _iso(now),
                    _iso(now),
                ),
            )
        return WritePlan(write=self.write_of(call_id))

    def resend_write(self, call_id: str, owner: str) -> WritePlan:
        """Record that a write whose earlier send did not apply is sent again, under the same
        rules as the first send."""
        with self.transaction() as conn:
            # A write's contact never changes: read before the lock, checked under it.
            contact_id, call_time = conn.execute(
                "SELECT contact_id, call_time FROM write WHERE call_id = ?", (call_id,)
            ).fetchone()
            self._store.lock(conn, contact_lock(contact_id))
            now = _now()
            if not _renew(conn, call_id, owner, now):
                return WritePlan(refusal=Refusal.LEASE_LOST)
            refusal = _contact_refusal(conn, call_id, contact_id, call_time)
            if refusal is not None:
                return refusal
            conn.execute(
                "UPDATE write SET state = ?, sends = sends + 1, sent_at = ?, updated_at = ?"
                " WHERE call_id = ?",
                (WriteState.SENDING, _iso(now), _iso(now), call_id),
            )
            conn.execute(
                "UPDATE transfer SET state = ?, at = ? WHERE call_id = ?",
                (TransferState.IN_FLIGHT, _iso(now), call_id),
            )
        return WritePlan(write=self.write_of(call_id))

    def finish(
        self,
        call_id: str,
        owner: str,
        *,
        status: str,
        decision: str,
        writes: list[dict],
        error: str | None = None,
        run_id: str | None = None,
        write_state: WriteState | None = None,
        retry_at: datetime | None = None,
        count_attempt: bool = True,
    ) -> str | None:
        """Record one handling in the outcomes log, settle its write, and set the event's status.

        A retryable failure becomes `retrying` with a backoff (or at `retry_at`), until
        MAX_ATTEMPTS; then it is `failed`. An applied write makes its call the contact's newest
        applied one. Returns the status stored, or None when the lease was lost: another holder
        has the event, and this one records nothing.
        """
        now = _now()
        with self.transaction() as conn:
            # Settling a write decides what its contact's next call may do: under its lock.
            written = conn.execute(
                "SELECT contact_id FROM write WHERE call_id = ?", (call_id,)
            ).fetchone()
            if written is not None:
                self._store.lock(conn, contact_lock(written[0]))
            row = conn.execute(
                "SELECT attempts, lease_owner FROM event WHERE call_id = ?"
                + self._store.for_update,
                (call_id,),
            ).fetchone()
            if row is None or row[1] != owner:
                return None
            attempts = row[0] if count_attempt else max(row[0] - 1, 0)
            if status == EventStatus.RETRYING and attempts >= MAX_ATTEMPTS:
                status = EventStatus.FAILED
                error = f"{error} (gave up after {attempts} attempts)"
            if status == EventStatus.FAILED and (write_state is None or write_state.in_flight):
                # Given up on with no answer about its write: it may have landed.
                _give_up_write(conn, call_id, now)
            elif write_state is None and EventStatus(status).is_final:
                # A final event leaves no write unresolved: it would hold its contact for ever.
                write_state = {
                    EventStatus.APPLIED: WriteState.APPLIED,
                    EventStatus.SUPERSEDED: WriteState.SUPERSEDED,
                }.get(status, WriteState.FAILED)
                _settle_write(conn, call_id, write_state, now)
            elif write_state is not None:
                _settle_write(conn, call_id, write_state, now)
            if status in (EventStatus.RETRYING, EventStatus.PENDING):
                next_attempt = retry_at or now + retry_delay(attempts)
            else:
                next_attempt = now + STALE_AFTER
            conn.execute(
                "UPDATE event SET status = ?, attempts = ?, next_attempt_at = ?,"
                " lease_owner = NULL, lease_until = NULL, updated_at = ? WHERE call_id = ?",
                (status, attempts, _iso(next_attempt), _iso(now), call_id),
            )
            logged = status if count_attempt else HandlingStatus.DEFERRED
            _log(conn, call_id, attempts, logged, decision, writes, error, run_id, now)
        return status

    def record_skip(self, call_id: str, reason: str, run_id: str | None) -> None:
        """Log that a queued event was not handled (already final, or held by another run)."""
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO outcome"
                " (call_id, attempt, status, decision, writes, error, run_id, at)"
                " SELECT call_id, attempts, ?, ?, '[]', NULL, ?, ? FROM event"
                " WHERE call_id = ?",
                (HandlingStatus.SKIPPED, reason, run_id, _iso(_now()), call_id),
            )

    # Support transfers ---------------------------------------------------------------------

    def transfers(self, since: str | None = None) -> dict[str, str]:
        """Contact → agent of the transfers in flight or confirmed (since `since`)."""
        with self.connect() as conn:
            return _recent_transfers(conn, since)

    # Reading -------------------------------------------------------------------------------

    def get(self, call_id: str) -> EventRecord | None:
        with self.connect() as conn:
            row = conn.execute(f"{_EVENT_SELECT} WHERE e.call_id = ?", (call_id,)).fetchone()
        return None if row is None else EventRecord(*row)

    def recent(self, limit: int = 20, status: str | None = None) -> list[EventRecord]:
        where, params = ("WHERE e.status = ?", [status]) if status else ("", [])
        with self.connect() as conn:
            rows = conn.execute(
                f"{_EVENT_SELECT} {where} ORDER BY e.received_at DESC, e.call_id LIMIT ?",
                [*params, limit],
            ).fetchall()
        return [EventRecord(*row) for row in rows]

    def outcomes(self, call_id: str) -> list[dict]:
        with self.connect() as conn:
            rows = _dicts(
                conn.execute("SELECT * FROM outcome WHERE call_id = ? ORDER BY id", (call_id,))
            )
        return [row | {"writes": json.loads(row["writes"])} for row in rows]

    def lag(self, now: datetime | None = None) -> PostCallLag:
        """The backlog, the lag and the recent latency (see `post_call.lag`)."""
        now = now or _now()
        since = _iso(now - RECENT)
        with self.connect() as conn:
            waiting = {
                status: (count, oldest)
                for status, count, oldest in conn.execute(
                    "SELECT status, COUNT(*), MIN(received_at) FROM event"
                    " WHERE status IN (?, ?) GROUP BY status",
                    OPEN_STATUSES,
                )
            }
            [(failed,)] = conn.execute(
                "SELECT COUNT(*) FROM event WHERE status = ?", (EventStatus.FAILED,)
            ).fetchall()
            finished = conn.execute(
                f"{_FINISHED} AND e.updated_at >= ?", (*_FINISHED_PARAMS, since)
            ).fetchall()
        oldest = min((first for _, first in waiting.values()), default=None)
        latencies = sorted(
            _latency(received, done) for _, received, done in finished if done >= since
        )
        return PostCallLag(
            pending=waiting.get(EventStatus.PENDING, (0, None))[0],
            retrying=waiting.get(EventStatus.RETRYING, (0, None))[0],
            failed=failed,
            oldest_pending_age_s=(
                None if oldest is None else max((now - _parse(oldest)).total_seconds(), 0.0)
            ),
            finished_last_5m=len(latencies),
            latency_p50_s=percentile(latencies, 0.50),
            latency_p95_s=percentile(latencies, 0.95),
            latency_max_s=latencies[-1] if latencies else None,
        )

    def latencies(self, call_ids: list[str]) -> list[float]:
        """The latency of each of these events that has finished, in seconds, sorted."""
        with self.connect() as conn:
            rows = [
                row
                for chunk in range(0, len(call_ids), 500)
                for row in conn.execute(
                    f"{_FINISHED} AND e.call_id IN"
                    f" ({', '.join('?' * len(call_ids[chunk : chunk + 500]))})",
                    (*_FINISHED_PARAMS, *call_ids[chunk : chunk + 500]),
                )
            ]
        return sorted(_latency(received, done) for _, received, done in rows)

    def counts(self) -> dict[str, int]:
        with self.connect() as conn:
            return dict(conn.execute("SELECT status, COUNT(*) FROM event GROUP BY status"))

    def alert_raised_at(self, condition: str) -> datetime | None:
        """When the operators were told of `condition`, if it has not cleared since."""
        with self.connect() as conn:
            row = conn.execute(
                "SELECT raised_at FROM alert WHERE condition = ?", (condition,)
            ).fetchone()
        return None if row is None else _parse(row[0])

    def set_alert(self, condition: str, raised_at: datetime | None) -> None:
        """Record that the operators were told of `condition` (or, with None, of its end)."""
        with self.transaction() as conn:
            if raised_at is None:
                conn.execute("DELETE FROM alert WHERE condition = ?", (condition,))
            else:
                conn.execute(
                    "INSERT INTO alert (condition, raised_at) VALUES (?, ?)"
                    " ON CONFLICT (condition) DO UPDATE SET raised_at = excluded.raised_at",
                    (condition, _iso(raised_at)),
                )

    def quarantined(self) -> list[dict]:
        with self.connect() as conn:
            rows = _dicts(conn.execute("SELECT * FROM quarantine ORDER BY id"))
        return [row | {"raw_body": bytes(row["raw_body"])} for row in rows]

    def conflicts(self) -> list[dict]:
        with self.connect() as conn:
            return _dicts(conn.execute("SELECT * FROM conflict ORDER BY id"))


def _ensure_schema(conn: sqlite3.Connection) -> None:
    """Create what is missing, bringing an inbox of an earlier version to this one."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master")}
        if "event" in tables and "crashes" not in _columns(conn, "event"):
            conn.execute("ALTER TABLE event ADD COLUMN crashes INTEGER NOT NULL DEFAULT 0")
        for table in ("event", "queue"):
            if table in tables and "lane_key" not in _columns(conn, table):
                conn.execute(f"ALTER TABLE {table} ADD COLUMN lane_key INTEGER NOT NULL DEFAULT 0")
        # An index of every event's last change, which the intake paid for at each event.
        conn.execute("DROP INDEX IF EXISTS event_updated")
        if "worker" in tables and "ended_at" not in _columns(conn, "worker"):
            conn.execute("ALTER TABLE worker ADD COLUMN ended_at TEXT")
        # The earlier ledger held one transfer per contact, with no state: all confirmed.
        legacy_ledger = "transfer" in tables and "state" not in _columns(conn, "transfer")
        if legacy_ledger:
            conn.execute("ALTER TABLE transfer RENAME TO transfer_v1")
        for statement in SCHEMA.split(";"):
            if statement.strip():
                conn.execute(statement)
        if legacy_ledger:
            conn.execute(
                "INSERT OR IGNORE INTO transfer (call_id, contact_id, agent, state, at)"
                " SELECT call_id, contact_id, agent, 'confirmed', at FROM transfer_v1"
            )
            conn.execute("DROP TABLE transfer_v1")
        conn.execute(
            "INSERT OR IGNORE INTO meta (key, value) VALUES ('epoch', ?)", (secrets.token_hex(4),)
        )
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


@cache
def _postgres_schema_version() -> str:
    """Changes whenever the schema does: a database already at this version is left alone.
    Computed on first use, so that SQLite users never pay for it."""
    return hashlib.sha256(";".join(postgres_ddl(SCHEMA)).encode()).hexdigest()[:16]


def _ensure_postgres_schema(conn: PostgresConnection) -> None:
    """Create what is missing. No earlier PostgreSQL inbox exists, so there is nothing to
    migrate."""
    for statement in postgres_ddl(SCHEMA):
        conn.execute(statement)
    conn.execute(
        "INSERT INTO meta (key, value) VALUES ('epoch', ?) ON CONFLICT (key) DO NOTHING",
        (secrets.token_hex(4),),
    )


def _dicts(cursor) -> list[dict]:
    names = [column[0] for column in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _columns(conn: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}


# Rows per multi-row INSERT: well under SQLite's limit of bound values per statement.
_ROWS_PER_INSERT = 200


def _accept_batch(conn: Connection, events: list[tuple[str, str]], now: datetime) -> list[Accepted]:
    """Store the new events of a batch and queue them, count redeliveries, keep conflicts.

    A few statements per batch rather than a few per event: on a database over the network
    each one is a round trip, made while the queue's lock is held. A callId repeated within the
    batch sees its own first delivery, as it would in its own transaction."""
    known: dict[str, str] = {}
    call_ids = list(dict.fromkeys(call_id for call_id, _ in events))
    for start in range(0, len(call_ids), 500):
        chunk = call_ids[start : start + 500]
        known.update(
            conn.execute(
                "SELECT call_id, payload_sha256 FROM event"
                f" WHERE call_id IN ({', '.join('?' * len(chunk))})",
                chunk,
            ).fetchall()
        )
    accepted, stored, repeats, conflicts = [], [], {}, []
    received, stale = _iso(now), _iso(now + STALE_AFTER)
    for call_id, payload in events:
        digest = payload_digest(payload)
        if call_id not in known:
            known[call_id] = digest
            stored.append((call_id, payload, digest, received, stale, received, lane_key(payload)))
            accepted.append(Accepted(AcceptStatus.STORED, call_id))
        elif known[call_id] == digest:
            repeats[call_id] = repeats.get(call_id, 0) + 1
            accepted.append(Accepted(AcceptStatus.DUPLICATE, call_id))
        else:
            conflicts.append((call_id, payload, received))
            accepted.append(Accepted(AcceptStatus.CONFLICT, call_id))
    _insert_rows(
        conn,
        "event (call_id, payload, payload_sha256, received_at, next_attempt_at, updated_at,"
        " lane_key)",
        stored,
    )
    # Queued in the order received: positions follow arrival within the batch too.
    _insert_rows(
        conn,
        "queue (call_id, reason, queued_at, lane_key)",
        [(row[0], "received", received, row[6]) for row in stored],
    )
    for call_id, count in repeats.items():
        conn.execute(
            "UPDATE event SET deliveries = deliveries + ? WHERE call_id = ?", (count, call_id)
        )
    _insert_rows(conn, "conflict (call_id, payload, received_at)", conflicts)
    return accepted


def _insert_rows(conn: Connection, into: str, rows: list[tuple]) -> None:
    for start in range(0, len(rows), _ROWS_PER_INSERT):
        chunk = rows[start : start + _ROWS_PER_INSERT]
        placeholders = ", ".join(f"({', '.join('?' * len(chunk[0]))})" for _ in chunk)
        conn.execute(
            f"INSERT INTO {into} VALUES {placeholders}",
            [value for row in chunk for value in row],
        )


def _queue(conn: Connection, call_id: str, reason: str, now: datetime) -> None:
    # The caller holds QUEUE_LOCK, taken first in its transaction.
    conn.execute(
        "INSERT INTO queue (call_id, reason, queued_at, lane_key)"
        " SELECT ?, ?, ?, lane_key FROM event WHERE call_id = ?",
        (call_id, reason, _iso(now), call_id),
    )


def _renew(conn: Connection, call_id: str, owner: str, now: datetime) -> bool:
    """Extend a lease that `owner` holds and that has not run out."""
    return bool(
        conn.execute(
            "UPDATE event SET lease_until = ? WHERE call_id = ? AND lease_owner = ?"
            " AND lease_until >= ?",
            (_iso(now + LEASE), call_id, owner, _iso(now)),
        ).rowcount
    )


def _contact_refusal(
    conn: Connection, call_id: str, contact_id: str, call_time: str
) -> WritePlan | None:
    newest = conn.execute(
        "SELECT call_time, call_id FROM contact_state WHERE contact_id = ?", (contact_id,)
    ).fetchone()
    if newest is not None and newest[0] > call_time and newest[1] != call_id:
        return WritePlan(
            refusal=Refusal.SUPERSEDED,
            detail=f"call {newest[1]} of {newest[0]} is newer and already applied",
        )
    unresolved = conn.execute(
        "SELECT call_id FROM write WHERE contact_id = ? AND call_id != ? AND state IN (?, ?)",
        (contact_id, call_id, WriteState.SENDING, WriteState.UNKNOWN),
    ).fetchone()
    if unresolved is not None:
        return WritePlan(
            refusal=Refusal.BUSY, detail=f"waits for call {unresolved[0]}'s write to the contact"
        )
    return None


def _settle_write(conn: Connection, call_id: str, state: WriteState, now: datetime) -> None:
    conn.execute(
        "UPDATE write SET state = ?, updated_at = ? WHERE call_id = ?",
        (state, _iso(now), call_id),
    )
    transfer_state = {
        WriteState.APPLIED: TransferState.CONFIRMED,
        WriteState.SENDING: TransferState.IN_FLIGHT,
        WriteState.UNKNOWN: TransferState.IN_FLIGHT,
    }.get(state, TransferState.FAILED)
    conn.execute("UPDATE transfer SET state = ? WHERE call_id = ?", (transfer_state, call_id))
    row = conn.execute(
        "SELECT contact_id, call_time FROM write WHERE call_id = ?", (call_id,)
    ).fetchone()
    # Applied, or given up on while it may have landed: no older call of the contact may
    # overwrite it.
    if state in (WriteState.APPLIED, WriteState.GIVEN_UP) and row is not None:
        contact_id, call_time = row
        conn.execute(
            "INSERT INTO contact_state (contact_id, call_time, call_id) VALUES (?, ?, ?)"
            " ON CONFLICT (contact_id) DO UPDATE SET call_time = excluded.call_time,"
            " call_id = excluded.call_id WHERE excluded.call_time >= contact_state.call_time",
            (contact_id, call_time, call_id),
        )


def _give_up_write(conn: Connection, call_id: str, now: datetime) -> None:
    """Settle the write of an event that is given up on: `given_up` if it may have landed
    (still in flight, or given up on before and still unread), else `failed`."""
    row = conn.execute("SELECT state FROM write WHERE call_id = ?", (call_id,)).fetchone()
    if row is not None:
        landed = WriteState(row[0]).may_have_landed
        _settle_write(conn, call_id, WriteState.GIVEN_UP if landed else WriteState.FAILED, now)


def _set_status(
    conn: Connection, call_id: str, status: str, next_attempt: datetime, now: datetime
) -> None:
    conn.execute(
        "UPDATE event SET status = ?, next_attempt_at = ?, updated_at = ? WHERE call_id = ?",
        (status, _iso(next_attempt), _iso(now), call_id),
    )


def _log(
    conn: Connection,
    call_id: str,
    attempt: int,
    status: str,
    decision: str,
    writes: list[dict],
    error: str | None,
    run_id: str | None,
    now: datetime,
) -> None:
    conn.execute(
        "INSERT INTO outcome (call_id, attempt, status, decision, writes, error, run_id, at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (call_id, attempt, status, decision, json.dumps(writes), error, run_id, _iso(now)),
    )


def _recent_transfers(conn: Connection, since: str | None) -> dict[str, str]:
    """Contact → agent of the latest in-flight or confirmed transfer of each contact."""
    rows = conn.execute(
        "SELECT contact_id, agent FROM transfer WHERE state IN (?, ?)"
        " AND at >= ? ORDER BY at, call_id",
        (TransferState.IN_FLIGHT, TransferState.CONFIRMED, since or ""),
    ).fetchall()
    return dict(rows)


def _write(row) -> Write:
    call_id, contact_id, call_time, changes, state, sends, sent_at = row
    return Write(
        call_id, contact_id, call_time, json.loads(changes), WriteState(state), sends, sent_at
    )
