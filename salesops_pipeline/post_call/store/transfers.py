"""The transfer ledger: the contacts this pipeline handed to support agents, which count in
the agents' loads when the next one is chosen."""

from salesops_pipeline.post_call.status import TransferState
from salesops_pipeline.post_call.storage import Connection
from salesops_pipeline.post_call.store.base import StoreBase


class TransferLedger(StoreBase):
    def transfers(self, since: str | None = None) -> dict[str, str]:
        """Contact → agent of the transfers in flight or confirmed (since `since`)."""
        with self.connect() as conn:
            return _recent_transfers(conn, since)


def _recent_transfers(conn: Connection, since: str | None) -> dict[str, str]:
    """Contact → agent of the latest in-flight or confirmed transfer of each contact."""
    rows = conn.execute(
        "SELECT contact_id, agent FROM transfer WHERE state IN (?, ?)"
        " AND at >= ? ORDER BY at, call_id",
        (TransferState.IN_FLIGHT, TransferState.CONFIRMED, since or ""),
    ).fetchall()
    return dict(rows)
