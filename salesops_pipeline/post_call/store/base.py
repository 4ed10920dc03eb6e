"""What every part of the inbox shares: its limits, its clock, the records it hands out, and
the few statements several parts write (queuing an event, logging a handling, renewing a lease).
"""

import hashlib
import json
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from salesops_pipeline.post_call.status import (
    AcceptStatus,
    HandlingStatus,
    Refusal,
    WriteState,
)
from salesops_pipeline.post_call.storage import Connection, PostgresStore, SQLiteStore

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


class StoreBase:
    """Connections and transactions to the inbox's storage, which every part of it uses."""

    _store: SQLiteStore | PostgresStore

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


def _dicts(cursor) -> list[dict]:
    names = [column[0] for column in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


# Rows per multi-row INSERT: well under SQLite's limit of bound values per statement.
_ROWS_PER_INSERT = 200


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
    """Extend the lease `owner` holds. One that ran out is still its holder's until another
    takes the event (a claim) or it is released (a dead worker's): a slow provider alone never
    costs an event its handling."""
    return bool(
        conn.execute(
            "UPDATE event SET lease_until = ? WHERE call_id = ? AND lease_owner = ?",
            (_iso(now + LEASE), call_id, owner),
        ).rowcount
    )


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
