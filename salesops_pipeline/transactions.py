"""All-or-nothing writes to the DuckDB warehouse, shared by the domains that store tables there."""

from collections.abc import Iterator
from contextlib import contextmanager

import duckdb


@contextmanager
def duckdb_transaction(conn: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """Commit what the block wrote if it finishes, roll all of it back if it raises.

    Readers see the previous table until the commit: a report is never half replaced.
    """
    conn.execute("BEGIN TRANSACTION")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
