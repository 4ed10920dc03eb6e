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
- `alert`: the conditions the operators are told of, and the messages the chat has not taken yet;
- `status_count`: events per status, those retention pruned, and how many times an event
  entered each status (a counter that never goes down), kept by triggers;
- `meta`: the inbox's epoch, which tells one inbox from the next.
"""

import hashlib
import secrets
import sqlite3
from functools import cache

from salesops_pipeline.post_call.status import OPEN_STATUSES
from salesops_pipeline.post_call.storage import QUEUED_CHANNEL, PostgresConnection, postgres_ddl
from salesops_pipeline.post_call.store.base import REPLAY

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
-- The lanes start from the open events and find their entries here, so that what they read
-- grows with the open events, not with the queue's history. Pruning deletes by it too.
CREATE INDEX IF NOT EXISTS queue_call ON queue (call_id);
-- A replay is handled whatever its event's status: the few replays are found apart.
CREATE INDEX IF NOT EXISTS queue_replay ON queue (seq) WHERE reason = '{REPLAY}';
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
-- Retention prunes the oldest deliveries of both.
CREATE INDEX IF NOT EXISTS conflict_received ON conflict (received_at);
CREATE INDEX IF NOT EXISTS quarantine_received ON quarantine (received_at);
-- A condition that started: `pending` holds its message until the chat has taken it. Once
-- seen clear, `clear_since` says since when (at every evaluation since) and `recovery` holds
-- the message that ends it, sent when that has lasted long enough.
CREATE TABLE IF NOT EXISTS alert (
    condition TEXT PRIMARY KEY,
    raised_at TEXT NOT NULL,
    pending TEXT,
    clear_since TEXT,
    recovery TEXT
);
-- Events per status, kept by triggers on `event` so that counting never reads the history.
-- `pruned` adds the events retention deleted. `entered` counts every time an event entered the
-- status, stored or changed into it, and is never lowered: a replay takes an event out of
-- `failed` without unsaying that it failed, and pruning forgets events, not what they did.
-- On PostgreSQL each session adds to a shard of its own: lanes finishing events side by side
-- do not queue on one row.
CREATE TABLE IF NOT EXISTS status_count (
    status TEXT NOT NULL,
    shard INTEGER NOT NULL DEFAULT 0,
    events INTEGER NOT NULL DEFAULT 0,
    pruned INTEGER NOT NULL DEFAULT 0,
    entered INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (status, shard)
);
"""

_SQLITE_TRIGGERS = (
    """CREATE TRIGGER IF NOT EXISTS status_count_insert AFTER INSERT ON event BEGIN
    INSERT INTO status_count (status, shard, events, entered) VALUES (NEW.status, 0, 1, 1)
        ON CONFLICT (status, shard) DO UPDATE SET events = events + 1, entered = entered + 1;
END""",
    """CREATE TRIGGER IF NOT EXISTS status_count_update AFTER UPDATE OF status ON event
WHEN NEW.status != OLD.status BEGIN
    INSERT INTO status_count (status, shard, events) VALUES (OLD.status, 0, -1)
        ON CONFLICT (status, shard) DO UPDATE SET events = events - 1;
    INSERT INTO status_count (status, shard, events, entered) VALUES (NEW.status, 0, 1, 1)
        ON CONFLICT (status, shard) DO UPDATE SET events = events + 1, entered = entered + 1;
END""",
)

# Stored events are counted once per statement, from its new rows: a batch of the intake adds
# to its status's row once, not once per event (each change of a row in one transaction leaves
# a version the next one must step over). A change of status is counted per row: the two rows
# it touches are taken in the order of their status, whichever way the change goes, so that two
# transactions never wait for each other's.
_POSTGRES_TRIGGERS = (
    """CREATE OR REPLACE FUNCTION count_stored_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO status_count (status, shard, events, entered)
        SELECT status, mod(pg_backend_pid(), 8), COUNT(*), COUNT(*) FROM stored
        GROUP BY status ORDER BY status
        ON CONFLICT (status, shard) DO UPDATE SET events = status_count.events + excluded.events,
            entered = status_count.entered + excluded.entered;
    RETURN NULL;
END $$ SET search_path FROM CURRENT""",
    """CREATE OR REPLACE FUNCTION count_status_change() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    my_shard BIGINT := mod(pg_backend_pid(), 8);
    ordered TEXT[] := ARRAY[LEAST(OLD.status, NEW.status), GREATEST(OLD.status, NEW.status)];
    one TEXT;
BEGIN
    FOREACH one IN ARRAY ordered LOOP
        INSERT INTO status_count (status, shard, events, entered)
            VALUES (one, my_shard, CASE WHEN one = NEW.status THEN 1 ELSE -1 END,
                CASE WHEN one = NEW.status THEN 1 ELSE 0 END)
            ON CONFLICT (status, shard) DO UPDATE SET
                events = status_count.events + excluded.events,
                entered = status_count.entered + excluded.entered;
    END LOOP;
    RETURN NULL;
END $$ SET search_path FROM CURRENT""",
    "DROP TRIGGER IF EXISTS status_count_insert ON event",
    "CREATE TRIGGER status_count_insert AFTER INSERT ON event REFERENCING NEW TABLE AS stored"
    " FOR EACH STATEMENT EXECUTE FUNCTION count_stored_events()",
    # Runs waiting for work sleep on QUEUED_CHANNEL: one notification per statement that
    # queues, delivered when it commits.
    f"""CREATE OR REPLACE FUNCTION notify_queued() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('{QUEUED_CHANNEL}', '');
    RETURN NULL;
END $$""",
    "DROP TRIGGER IF EXISTS queue_notify ON queue",
    "CREATE TRIGGER queue_notify AFTER INSERT ON queue FOR EACH STATEMENT"
    " EXECUTE FUNCTION notify_queued()",
    "DROP TRIGGER IF EXISTS status_count_update ON event",
    "CREATE TRIGGER status_count_update AFTER UPDATE OF status ON event"
    " FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)"
    " EXECUTE FUNCTION count_status_change()",
)

# Added to `alert` since its first version; an alert already there was sent.
_ALERT_COLUMNS = ("pending", "clear_since", "recovery")
_POSTGRES_UPGRADES = (
    *(
        f'ALTER TABLE alert ADD COLUMN IF NOT EXISTS {column} TEXT COLLATE "C"'
        for column in _ALERT_COLUMNS
    ),
    "ALTER TABLE status_count ADD COLUMN IF NOT EXISTS entered BIGINT NOT NULL DEFAULT 0",
)

# What the counts start from when an inbox of an earlier version gets them.
_SEED_COUNTS = (
    "INSERT INTO status_count (status, shard, events, entered)"
    " SELECT status, 0, COUNT(*), COUNT(*) FROM event GROUP BY status"
)
# What the transitions start from when counts of an earlier version get them: those of the
# events kept and pruned, the figures the earlier totals showed, so that no counter goes back.
_SEED_ENTERED = "UPDATE status_count SET entered = events + pruned"


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
        if "alert" in tables and "pending" not in _columns(conn, "alert"):
            for column in _ALERT_COLUMNS:
                conn.execute(f"ALTER TABLE alert ADD COLUMN {column} TEXT")
        # The earlier ledger held one transfer per contact, with no state: all confirmed.
        legacy_ledger = "transfer" in tables and "state" not in _columns(conn, "transfer")
        if legacy_ledger:
            conn.execute("ALTER TABLE transfer RENAME TO transfer_v1")
        counts_without_entered = "status_count" in tables and "entered" not in _columns(
            conn, "status_count"
        )
        if counts_without_entered:
            conn.execute("ALTER TABLE status_count ADD COLUMN entered INTEGER NOT NULL DEFAULT 0")
            conn.execute(_SEED_ENTERED)
            # Their triggers leave `entered` alone: made again below.
            conn.execute("DROP TRIGGER IF EXISTS status_count_insert")
            conn.execute("DROP TRIGGER IF EXISTS status_count_update")
        for statement in SCHEMA.split(";"):
            if statement.strip():
                conn.execute(statement)
        for trigger in _SQLITE_TRIGGERS:
            conn.execute(trigger)
        if "status_count" not in tables:
            conn.execute(_SEED_COUNTS)
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
    ddl = [*postgres_ddl(SCHEMA), *_POSTGRES_UPGRADES, *_POSTGRES_TRIGGERS]
    return hashlib.sha256(";".join(ddl).encode()).hexdigest()[:16]


def _ensure_postgres_schema(conn: PostgresConnection) -> None:
    """Create what is missing; an inbox made before the status counts gets them from its
    events, and counts made before `entered` get it from themselves."""
    [(counted,)] = conn.execute("SELECT to_regclass('status_count')").fetchall()
    entered = conn.execute(
        "SELECT 1 FROM information_schema.columns WHERE table_schema = current_schema()"
        " AND table_name = 'status_count' AND column_name = 'entered'"
    ).fetchone()
    for statement in (*postgres_ddl(SCHEMA), *_POSTGRES_UPGRADES):
        conn.execute(statement)
    # The triggers lock `event` against writers until this transaction ends: no event escapes
    # both the seed and the triggers.
    for statement in _POSTGRES_TRIGGERS:
        conn.execute(statement)
    if counted is None:
        conn.execute(_SEED_COUNTS)
    elif entered is None:
        conn.execute(_SEED_ENTERED)
    conn.execute(
        "INSERT INTO meta (key, value) VALUES ('epoch', ?) ON CONFLICT (key) DO NOTHING",
        (secrets.token_hex(4),),
    )


def _columns(conn: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
