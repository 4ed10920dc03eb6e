"""The transfer ledger: the contacts this pipeline handed to support agents, which count in
the agents' loads when the next one is chosen (see `rules.support_loads`)."""

from salesops_pipeline.post_call.status import TransferState
from salesops_pipeline.post_call.storage import Connection
from salesops_pipeline.post_call.store.base import StoreBase


class TransferLedger(StoreBase):
    def transfers(self, since: str | None = None) -> dict[str, str]:
        """Contact → agent of the latest transfer of each contact, in flight or confirmed
        (since `since`)."""
        return {contact: agent for contact, (agent, _) in self.counted_transfers(since).items()}

    def counted_transfers(self, since: str | None = None) -> dict[str, tuple[str, str]]:
        """Contact → (agent, when) of the latest transfer of each contact, in flight or
        confirmed, made since `since`: what counts in the agents' loads."""
        with self.connect() as conn:
            return _counted_transfers(conn, since)


def _counted_transfers(conn: Connection, since: str | None) -> dict[str, tuple[str, str]]:
    # Oldest first: a contact's later transfer replaces its earlier one.
    rows = conn.execute(
        "SELECT contact_id, agent, at FROM transfer WHERE state IN (?, ?)"
        " AND at >= ? ORDER BY at, call_id",
        (TransferState.IN_FLIGHT, TransferState.CONFIRMED, since or ""),
    ).fetchall()
    return {contact: (agent, at) for contact, agent, at in rows}
