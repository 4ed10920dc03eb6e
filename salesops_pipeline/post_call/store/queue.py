"""The event queue and its lanes: storing what the intake accepts, queuing it, and handing
each lane's open events to the run that drains it, once each, in queue order.

Positions are taken under the queue's lock and committed in that order, so that a lane run
that has read past a position never has to go back to it.
"""

import json
from datetime import datetime

from salesops_pipeline.post_call.status import (
    OPEN_STATUSES,
    AcceptStatus,
    EventStatus,
    HandlingStatus,
)
from salesops_pipeline.post_call.storage import QUEUE_LOCK, Connection
from salesops_pipeline.post_call.store import base
from salesops_pipeline.post_call.store.base import (
    _EVENT_SELECT,
    LEASE,
    REPLAY,
    STALE_AFTER,
    Accepted,
    EventRecord,
    QueuedEvent,
    StoreBase,
    _dicts,
    _insert_rows,
    _iso,
    _now,
    _queue,
    lane_key,
    payload_digest,
)

# The queue entries a lane may have to hand out, with their lane (out of `?` lanes): those of
# the open events, found from the events (an index of their status, then one of the queue's
# callIds), and the replays, found apart. What it reads grows with the open events and the
# kept replays, not with the queue's history. CROSS JOIN keeps SQLite starting from the events;
# the replay's reason is spelled out, as in the partial index `queue_replay`, for SQLite to
# use it.
_WORK = (
    "SELECT q.seq, q.call_id, q.lane_key % ? AS lane FROM event e CROSS JOIN queue q"
    " WHERE e.status IN (?, ?) AND q.call_id = e.call_id"
    " UNION SELECT q.seq, q.call_id, q.lane_key % ? AS lane FROM queue q"
    f" WHERE q.reason = '{REPLAY}'"
)


class EventQueue(StoreBase):
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
                f"SELECT w.lane, MAX(w.seq) FROM ({_WORK}) w"
                " LEFT JOIN lane p ON p.lanes = ? AND p.lane = w.lane"
                " WHERE w.seq > COALESCE(p.position, 0)"
                " GROUP BY w.lane",
                (lanes, *OPEN_STATUSES, lanes, lanes),
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
        # Entries of events already final are never handed out, so they need not be read: the
        # position returned is the last entry handed out, and every entry before it that is
        # not read belongs to an event that was final when read (a replay queues it anew).
        with self.connect() as conn:
            rows = conn.execute(
                f"SELECT w.seq, w.call_id FROM ({_WORK}) w"
                " WHERE w.seq > ? AND w.lane = ? ORDER BY w.seq LIMIT ?",
                (lanes, *OPEN_STATUSES, lanes, after, lane, limit),
            ).fetchall()
        call_ids = list(dict.fromkeys(call_id for _, call_id in rows))
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

        A failed (or dismissed) event gets a fresh set of attempts. An event already applied is
        not applied twice: its handling records that and stops.
        """
        now = _now()
        with self.transaction() as conn:
            self._store.lock(conn, QUEUE_LOCK)
            if conn.execute("SELECT 1 FROM event WHERE call_id = ?", (call_id,)).fetchone() is None:
                return False
            # A dismissed event is a failed one a person gave up on: replaying it changes their
            # mind.
            failed = f"'{EventStatus.FAILED}', '{EventStatus.DISMISSED}'"
            conn.execute(
                f"UPDATE event SET status = CASE WHEN status IN ({failed}) THEN ? ELSE status END,"
                f" attempts = CASE WHEN status IN ({failed}) THEN 0 ELSE attempts END,"
                f" crashes = CASE WHEN status IN ({failed}) THEN 0 ELSE crashes END,"
                " next_attempt_at = ? WHERE call_id = ?",
                (EventStatus.RETRYING, _iso(now + STALE_AFTER), call_id),
            )
            _queue(conn, call_id, REPLAY, now)
        return True

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
        """Take an open event for handling; None if it is final, if another holder's lease
        runs, or if its attempts are spent. Every claim is an attempt, so the limit holds even
        for handlings that never finished (their leases ran out): such an event is failed."""
        now = _now()
        with self.transaction() as conn:
            updated = conn.execute(
                "UPDATE event SET lease_owner = ?, lease_until = ?, attempts = attempts + 1,"
                " updated_at = ? WHERE call_id = ? AND status IN (?, ?) AND attempts < ?"
                " AND (lease_until IS NULL OR lease_until < ? OR lease_owner = ?)",
                (
                    owner,
                    _iso(now + LEASE),
                    _iso(now),
                    call_id,
                    *OPEN_STATUSES,
                    base.MAX_ATTEMPTS,
                    _iso(now),
                    owner,
                ),
            ).rowcount
        if updated:
            return self.get(call_id)
        # Most refused claims are of events final or held elsewhere: only a spent one is
        # worth a write transaction.
        with self.connect() as conn:
            spent = conn.execute(
                "SELECT 1 FROM event WHERE call_id = ? AND status IN (?, ?) AND attempts >= ?",
                (call_id, *OPEN_STATUSES, base.MAX_ATTEMPTS),
            ).fetchone()
        if spent is not None:
            self.fail_if_spent(call_id, owner)
        return None

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
