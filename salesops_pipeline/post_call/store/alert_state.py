"""Alert state: which conditions the operators are told of, and the messages the chat has not
taken yet, so that each condition is told once when it starts and once when it has ended for
good, whichever process evaluates it, and a message the chat refused is sent later, not lost.

Nothing here holds a lock while a message travels: a message is recorded, sent, then marked
sent, each record a short transaction of its own."""

from dataclasses import dataclass
from datetime import datetime

from salesops_pipeline.post_call.store.base import StoreBase, _iso, _parse


@dataclass(frozen=True)
class AlertRecord:
    condition: str
    raised_at: datetime
    # The message telling that the condition started, until the chat takes it.
    pending: str | None
    # Since when the condition has been seen clear, at every evaluation since.
    clear_since: datetime | None
    # The message telling that it ended, sent once it has been clear long enough.
    recovery: str | None


_COLUMNS = "condition, raised_at, pending, clear_since, recovery"


def _record(row) -> AlertRecord:
    condition, raised_at, pending, clear_since, recovery = row
    return AlertRecord(
        condition=condition,
        raised_at=_parse(raised_at),
        pending=pending,
        clear_since=None if clear_since is None else _parse(clear_since),
        recovery=recovery,
    )


class AlertState(StoreBase):
    def alert(self, condition: str) -> AlertRecord | None:
        """`condition`, if it started and its end has not been told yet."""
        with self.connect() as conn:
            row = conn.execute(
                f"SELECT {_COLUMNS} FROM alert WHERE condition = ?", (condition,)
            ).fetchone()
        return None if row is None else _record(row)

    def alerts(self) -> list[AlertRecord]:
        """Every condition started and not ended, oldest first."""
        with self.connect() as conn:
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM alert ORDER BY raised_at, condition"
            ).fetchall()
        return [_record(row) for row in rows]

    def alert_raised_at(self, condition: str) -> datetime | None:
        """When `condition` started, if its end has not been told yet."""
        record = self.alert(condition)
        return None if record is None else record.raised_at

    def raise_alert(self, condition: str, at: datetime, message: str) -> bool:
        """Record that `condition` started, its message to be sent: True. Already recorded
        (another evaluator was first): False, the message is dropped."""
        with self.transaction() as conn:
            inserted = conn.execute(
                "INSERT INTO alert (condition, raised_at, pending) VALUES (?, ?, ?)"
                " ON CONFLICT (condition) DO NOTHING",
                (condition, _iso(at), message),
            ).rowcount
        return inserted == 1

    def still_active(self, condition: str) -> None:
        """`condition` was seen again: whatever clear spell it had is over."""
        with self.transaction() as conn:
            conn.execute(
                "UPDATE alert SET clear_since = NULL, recovery = NULL"
                " WHERE condition = ? AND clear_since IS NOT NULL",
                (condition,),
            )

    def seen_clear(self, condition: str, since: datetime, recovery: str) -> None:
        """`condition` was seen clear: clear since `since` unless it already was since earlier,
        and `recovery` the message to tell its end with."""
        with self.transaction() as conn:
            conn.execute(
                "UPDATE alert SET clear_since = COALESCE(clear_since, ?), recovery = ?"
                " WHERE condition = ?",
                (_iso(since), recovery, condition),
            )

    def raise_sent(self, condition: str, message: str) -> None:
        """The chat took the message that `condition` started."""
        with self.transaction() as conn:
            conn.execute(
                "UPDATE alert SET pending = NULL WHERE condition = ? AND pending = ?",
                (condition, message),
            )

    def recovery_sent(self, condition: str, clear_since: datetime) -> None:
        """The chat took the message that `condition` ended: it is over. Unless it was seen
        again meanwhile, which keeps it."""
        with self.transaction() as conn:
            conn.execute(
                "DELETE FROM alert WHERE condition = ? AND clear_since = ?",
                (condition, _iso(clear_since)),
            )
