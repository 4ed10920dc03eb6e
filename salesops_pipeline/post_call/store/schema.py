"""The inbox's tables, on SQLite and on PostgreSQL, and bringing an earlier inbox to this
version.

- `event`: one row per callId, its payload, its current status and who holds it (a lease);
- `queue`: an append-only list of "handle this callId", read by the lanes past their position
  (an event is queued when it arrives, on replay, and when a retry falls due);
- `lane`: how far each lane's runs have read the queue;
- `write`: the write each event sends to the provider, recorded before it is sent;
- `contact_state`: per contact, the newest call whose effect was applied, or may have been
  (a write given up on in flight), so that no older call overwrites it (newest call wins);
- `transfer`: the contacts this pipeline handed to support agents, while in flight or confirmed;
- `worker`: the processes handling events, so that the leases of dead ones are released;
- `outcome`: an append-only log of every handling: the decision, the writes, or the error;
- `conflict`: a callId delivered again with a different payload, kept for inspection;
- `quarantine`: bodies refused at the door, raw, with the reason;
- `alert`: the conditions the operators were told of;
- `meta`: the inbox's epoch, which tells one inbox from the next.
"""

import hashlib
import secrets
import sqlite3
from functools import cache

from salesops_pipeline.post_call.status import OPEN_STATUSES
from salesops_pipeline.post_call.storage import PostgresConnection, postgres_ddl

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


def _columns(conn: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
