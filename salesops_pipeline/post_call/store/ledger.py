"""The write ledger: every write to a customer's record, recorded before it is sent, and
settled by what the provider showed. It holds the contract's per-contact rules: newest call
wins, and one unresolved write per contact at a time.
"""

import json
from collections.abc import Callable
from datetime import datetime, timedelta

from salesops_pipeline.post_call.status import (
    OPEN_STATUSES,
    EventStatus,
    HandlingStatus,
    Refusal,
    TransferState,
    WriteState,
)
from salesops_pipeline.post_call.storage import TRANSFER_CHOICE_LOCK, Connection, contact_lock
from salesops_pipeline.post_call.store import base
from salesops_pipeline.post_call.store.base import (
    STALE_AFTER,
    StoreBase,
    Write,
    WritePlan,
    _iso,
    _log,
    _now,
    _renew,
    retry_delay,
)
from salesops_pipeline.post_call.store.transfers import _counted_transfers
from salesops_pipeline.timezone import paris_time


class WriteLedger(StoreBase):
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
        landing: timedelta,
        choose_agent: Callable[[dict[str, tuple[str, str]]], str | None] | None = None,
        transfers_since: str | None = None,
    ) -> WritePlan:
        """Decide, under the write lock and with no network call, whether this event may write
        to its contact now, and record the write before it is sent.

        Newest call wins: an event older than the newest one applied to the contact is
        superseded. One write per contact at a time: while another call's write to the
        contact is unresolved, or may still land (sent less than `landing` ago), this one
        waits. For a transfer, `choose_agent` gets the transfers that count in the loads (made
        since `transfers_since`: contact → (agent, when)) and picks the agent.
        """
        with self.transaction() as conn:
            now, refusal = self._may_write(
                conn, call_id, owner, contact_id, call_time, landing, choose_agent is not None
            )
            if refusal is not None:
                return refusal
            changes = dict(changes)
            if choose_agent is not None:
                agent = choose_agent(_counted_transfers(conn, transfers_since))
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

    def resend_write(
        self,
        call_id: str,
        owner: str,
        *,
        landing: timedelta,
        rechoose_agent: Callable[[str, dict[str, tuple[str, str]]], str | None] | None = None,
        transfers_since: str | None = None,
    ) -> WritePlan:
        """Record that a write whose earlier send did not apply is sent again, under the same
        rules as the first send. For a transfer, `rechoose_agent` gets the agent chosen before
        and the transfers that count, and keeps that agent or picks another."""
        with self.transaction() as conn:
            # A write's contact never changes: read before the lock, checked under it.
            contact_id, call_time, changes = conn.execute(
                "SELECT contact_id, call_time, changes FROM write WHERE call_id = ?", (call_id,)
            ).fetchone()
            changes = json.loads(changes)
            rechoose = rechoose_agent is not None and "assignedAgent" in changes
            now, refusal = self._may_write(
                conn, call_id, owner, contact_id, call_time, landing, rechoose
            )
            if refusal is not None:
                return refusal
            if rechoose:
                agent = rechoose_agent(
                    changes["assignedAgent"], _counted_transfers(conn, transfers_since)
                )
                if agent is None:
                    return WritePlan(refusal=Refusal.NO_AGENT, detail="no active support agent")
                if agent != changes["assignedAgent"]:
                    changes["assignedAgent"] = agent
                    conn.execute(
                        "UPDATE write SET changes = ? WHERE call_id = ?",
                        (json.dumps(changes), call_id),
                    )
                    conn.execute(
                        "UPDATE transfer SET agent = ? WHERE call_id = ?", (agent, call_id)
                    )
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
            self._lock_written_contact(conn, call_id)
            row = conn.execute(
                "SELECT attempts, lease_owner FROM event WHERE call_id = ?"
                + self._store.for_update,
                (call_id,),
            ).fetchone()
            if row is None or row[1] != owner:
                return None
            attempts = row[0] if count_attempt else max(row[0] - 1, 0)
            if status == EventStatus.RETRYING and attempts >= base.MAX_ATTEMPTS:
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

    def _may_write(
        self,
        conn: Connection,
        call_id: str,
        owner: str,
        contact_id: str,
        call_time: str,
        landing: timedelta,
        choosing_agent: bool,
    ) -> tuple[datetime, WritePlan | None]:
        """Take the locks a write's decision needs (the support agents' choice first, when it
        chooses one, then the contact's), renew the lease, and say why the write may not go
        now, if it may not. Returns the moment taken after the locks, which a `sent_at` must
        not predate."""
        if choosing_agent:
            self._store.lock(conn, TRANSFER_CHOICE_LOCK)
        self._store.lock(conn, contact_lock(contact_id))
        now = _now()
        if not _renew(conn, call_id, owner, now):
            return now, WritePlan(refusal=Refusal.LEASE_LOST)
        return now, _contact_refusal(conn, call_id, contact_id, call_time, now - landing)

    def _lock_written_contact(self, conn: Connection, call_id: str) -> None:
        """Take the lock of the contact the event's write goes to, if it has one: a write's
        contact never changes, so it is read before the lock."""
        written = conn.execute(
            "SELECT contact_id FROM write WHERE call_id = ?", (call_id,)
        ).fetchone()
        if written is not None:
            self._store.lock(conn, contact_lock(written[0]))

    def fail_if_spent(self, call_id: str, owner: str) -> bool:
        """Fail an open event whose attempts are spent and that nobody else holds; its write,
        if one went out, is given up on (it may have landed). True if it was failed."""
        now = _now()
        with self.transaction() as conn:
            self._lock_written_contact(conn, call_id)
            row = conn.execute(
                "SELECT attempts FROM event WHERE call_id = ? AND status IN (?, ?)"
                " AND attempts >= ? AND (lease_until IS NULL OR lease_until < ? OR lease_owner = ?)"
                + self._store.for_update,
                (call_id, *OPEN_STATUSES, base.MAX_ATTEMPTS, _iso(now), owner),
            ).fetchone()
            if row is None:
                return False
            error = f"gave up after {row[0]} attempts, the last of which never finished"
            conn.execute(
                "UPDATE event SET status = ?, next_attempt_at = ?, lease_owner = NULL,"
                " lease_until = NULL, updated_at = ? WHERE call_id = ?",
                (EventStatus.FAILED, _iso(now + STALE_AFTER), _iso(now), call_id),
            )
            _log(conn, call_id, row[0], EventStatus.FAILED, "", [], error, None, now)
            _give_up_write(conn, call_id, now)
        return True


def _contact_refusal(
    conn: Connection, call_id: str, contact_id: str, call_time: str, landing_since: datetime
) -> WritePlan | None:
    """Why this call may not write to its contact now, if it may not: a newer call's effect is
    there, or another call's write is unresolved or may still land (given up on, but sent
    since `landing_since`)."""
    newest = conn.execute(
        "SELECT call_time, call_id FROM contact_state WHERE contact_id = ?", (contact_id,)
    ).fetchone()
    if newest is not None and newest[0] > call_time and newest[1] != call_id:
        return WritePlan(
            refusal=Refusal.SUPERSEDED,
            detail=f"call {newest[1]} of {paris_time(newest[0])} (Paris) is newer and already"
            " applied",
        )
    unresolved = conn.execute(
        "SELECT call_id FROM write WHERE contact_id = ? AND call_id != ?"
        " AND (state IN (?, ?) OR (state = ? AND sent_at > ?))",
        (
            contact_id,
            call_id,
            WriteState.SENDING,
            WriteState.UNKNOWN,
            WriteState.GIVEN_UP,
            _iso(landing_since),
        ),
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


def _write(row) -> Write:
    call_id, contact_id, call_time, changes, state, sends, sent_at = row
    return Write(
        call_id, contact_id, call_time, json.loads(changes), WriteState(state), sends, sent_at
    )
