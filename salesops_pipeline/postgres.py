"""PostgreSQL connections for the state several hosts share (SALESOPS_DATABASE_URL).

One pool per database and process: a blocking pool that checks a connection is alive before
lending it, and rolls it back when it is returned, so no transaction outlives its block. The
statements go through psycopg2's own cursors; the pool is SQLAlchemy's, without its SQL layer.

Every connection commits durably, and is set so that a dead peer cannot hold locks for long:
a transaction left idle for 30 s is ended by the server, a lock waited for 30 s fails the
statement, and TCP keepalives notice a vanished host within about half a minute. Across a
network that partitions, a statement sent into the void fails once nothing it sent has been
acknowledged for 15 s (TCP_USER_TIMEOUT, on both sides), rather than after the kernel's
quarter of an hour of retransmissions; the pool then opens a new connection.
"""

import hashlib
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from salesops_pipeline import settings

# Tables of the project live in their own schema, beside Dagster's in `public`.
SCHEMA = "salesops"

# How long either end of a connection waits on a peer the network lost: keepalive probes
# after 10 s idle, every 5 s, 3 of them; and data left unacknowledged for 15 s (ms).
_KEEPALIVES = {"idle": "10", "interval": "5", "count": "3"}
_TCP_USER_TIMEOUT_MS = str(15_000)

_SESSION = {
    "search_path": SCHEMA,
    # An event is acknowledged once committed: the commit must be on disk, whatever the
    # server's default.
    "synchronous_commit": "on",
    "lock_timeout": "30s",
    "idle_in_transaction_session_timeout": "30s",
    # The server's side: it ends a partitioned host's session, and frees its locks.
    **{f"tcp_keepalives_{name}": value for name, value in _KEEPALIVES.items()},
    "tcp_user_timeout": _TCP_USER_TIMEOUT_MS,
}

# libpq's side of the same: how long a host waits for the database before giving up on a
# connection, so that no caller hangs on one the network lost.
NETWORK_TIMEOUTS = {
    "connect_timeout": "5",
    "keepalives": "1",
    **{f"keepalives_{name}": value for name, value in _KEEPALIVES.items()},
    "tcp_user_timeout": _TCP_USER_TIMEOUT_MS,
}

_engines: dict[tuple[int, str, str], object] = {}
_engines_lock = threading.Lock()


def _engine(url: str, pool: str):
    # Pools are per process: a connection must never cross a fork.
    key = (os.getpid(), url, pool)
    with _engines_lock:
        engine = _engines.get(key)
        if engine is None:
            import sqlalchemy

            size = settings.database_pool_size()
            engine = sqlalchemy.create_engine(
                url,
                pool_size=size,
                max_overflow=size,
                pool_timeout=10,
                pool_pre_ping=True,
                pool_recycle=1800,
                connect_args={
                    **NETWORK_TIMEOUTS,
                    "application_name": "salesops",
                    "options": " ".join(f"-c {name}={value}" for name, value in _SESSION.items()),
                },
            )
            _engines[key] = engine
        return engine


@contextmanager
def connection(url: str, pool: str = "default") -> Iterator:
    """A pooled psycopg2 connection, in a transaction that is rolled back unless the block
    commits it. A `pool` of its own keeps a path's connections from waiting on others'."""
    conn = _engine(url, pool).raw_connection()
    try:
        yield conn
    finally:
        # Returning it to the pool rolls back whatever the block left open.
        conn.close()


def listening_connection(url: str, channel: str):
    """A connection of its own, outside the pools, that receives `channel`'s notifications:
    it stays open and idle for as long as its reader waits."""
    import psycopg2

    conn = psycopg2.connect(url, **NETWORK_TIMEOUTS, application_name="salesops-listen")
    conn.autocommit = True
    conn.cursor().execute(f"LISTEN {channel}")
    return conn


def with_network_timeouts(url: str) -> str:
    """`url` with NETWORK_TIMEOUTS as libpq parameters, for the clients that take a URL and
    nothing else (Dagster's storage); a parameter the URL sets already is kept as it is."""
    parts = urlsplit(url)
    given = dict(parse_qsl(parts.query, keep_blank_values=True))
    merged = {**NETWORK_TIMEOUTS, **given}
    return urlunsplit(parts._replace(query=urlencode(merged)))


def dispose(url: str) -> None:
    """Close this process's pooled connections to `url` (a test drops its database after)."""
    with _engines_lock:
        keys = [key for key in _engines if key[:2] == (os.getpid(), url)]
        engines = [_engines.pop(key) for key in keys]
    for engine in engines:
        engine.dispose()


def errors() -> tuple[type[BaseException], ...]:
    """The errors of a database that is unreachable, slow or refusing: psycopg2's, and the
    pool's own timeout."""
    import psycopg2
    import sqlalchemy.exc

    return (psycopg2.Error, sqlalchemy.exc.DBAPIError, sqlalchemy.exc.TimeoutError)


def advisory_key(name: str) -> int:
    """A stable signed 64-bit key for pg_advisory_xact_lock. Two names sharing a key only
    wait for each other; it never changes a result."""
    return int.from_bytes(
        hashlib.sha256(b"salesops:" + name.encode()).digest()[:8], "big", signed=True
    )


def storage_errors() -> tuple[type[BaseException], ...]:
    """What a failing store raises, whichever back end is configured: an answer of 503 or a
    clear message, never a traceback."""
    import sqlite3

    base: tuple[type[BaseException], ...] = (sqlite3.Error, OSError)
    try:
        configured = settings.database_url()
    except ValueError:
        # Asked while reporting another error: the bad setting is reported where it is read.
        configured = None
    return base + errors() if configured else base
