"""Alert state: which conditions the operators were told of, so that each is told once when it
starts and once when it ends, whichever process evaluates it."""

from datetime import datetime

from salesops_pipeline.post_call.store.base import StoreBase, _iso, _parse


class AlertState(StoreBase):
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
