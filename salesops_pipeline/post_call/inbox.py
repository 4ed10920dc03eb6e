"""The post-call inbox: every accepted event, durably, and what became of it.

One SQLite file in WAL mode on one host, or, with SALESOPS_DATABASE_URL, one PostgreSQL
database that several hosts share (see `storage`). Either way an event is durably stored before
the provider hears 2xx.

`Inbox` is the one API the intake, the processor, the sensor and the CLI use. Each concern lives
in a module of `store` that says what it owns: the tables (`schema`), the event queue and its
lanes (`queue`), the write ledger (`ledger`), support transfers (`transfers`), worker leases
(`leases`), alert state (`alert_state`), statistics (`statistics`), what is pruned when
(`retention`) and one contact's history (`contacts`).

No method holds the write lock across a network call: the processor reads from the provider
first, then takes the lock only to decide and record.
"""

from pathlib import Path

from salesops_pipeline import settings
from salesops_pipeline.post_call.storage import PostgresStore, SQLiteStore
from salesops_pipeline.post_call.store.alert_state import AlertState
from salesops_pipeline.post_call.store.base import (
    LEASE,
    MAX_ATTEMPTS,
    MAX_CRASHES,
    REPLAY,
    STALE_AFTER,
    Accepted,
    EventRecord,
    QueuedEvent,
    Worker,
    Write,
    WritePlan,
    lane_key,
    lane_of,
    payload_digest,
    retry_delay,
)
from salesops_pipeline.post_call.store.contacts import ContactHistory
from salesops_pipeline.post_call.store.leases import WorkerLeases
from salesops_pipeline.post_call.store.ledger import WriteLedger
from salesops_pipeline.post_call.store.queue import EventQueue
from salesops_pipeline.post_call.store.retention import Pruned, Retention
from salesops_pipeline.post_call.store.schema import (
    _ensure_postgres_schema,
    _ensure_schema,
    _postgres_schema_version,
)
from salesops_pipeline.post_call.store.statistics import Statistics
from salesops_pipeline.post_call.store.transfers import TransferLedger

__all__ = [
    "LEASE",
    "MAX_ATTEMPTS",
    "MAX_CRASHES",
    "REPLAY",
    "STALE_AFTER",
    "Accepted",
    "EventRecord",
    "Inbox",
    "Pruned",
    "QueuedEvent",
    "Worker",
    "Write",
    "WritePlan",
    "lane_key",
    "lane_of",
    "payload_digest",
    "retry_delay",
]


class Inbox(
    EventQueue,
    WriteLedger,
    TransferLedger,
    WorkerLeases,
    AlertState,
    Statistics,
    Retention,
    ContactHistory,
):
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

    def close(self) -> None:
        """Close the connection the calling thread keeps to a SQLite inbox, for a tool that
        needs the file to itself (its next use here opens one again)."""
        self._store.close()

    def changes(self, poll: float):
        """A watch of this inbox that a waiting run sleeps on: its `wait(timeout)` returns
        True as soon as new work may have been queued (SQLite: any commit of another
        connection, seen within `poll` seconds; PostgreSQL: a notification)."""
        return self._store.changes(poll)

    def errors(self) -> tuple[type[BaseException], ...]:
        """What this inbox raises when its storage is unreachable, full or refusing."""
        return self._store.errors()
