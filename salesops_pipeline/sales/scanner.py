"""The sales DB read by DuckDB's SQLite scanner: a million sessions aggregated in a fraction of a
second, without the indexes the company's database lacks and the pipeline may not add.

The scanner reads the SQLite file itself, read-only; nothing is copied and nothing is written.
DuckDB is imported only when a report runs, so commands that do not report never pay for it.
"""

import logging
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from salesops_pipeline.errors import SalesDatabaseError

log = logging.getLogger(__name__)

EXTENSION_PACKAGE = "duckdb_extension_sqlite_scanner"
# The alias under which the sales DB is attached; the report SQL names its tables through it.
ALIAS = "sales"

_lock = threading.Lock()
_connection = None


def extension_path() -> Path:
    """The scanner shipped as a wheel (`duckdb-extension-sqlite-scanner`), matching DuckDB's
    version exactly: DuckDB refuses an extension built for another version."""
    import duckdb

    try:
        import duckdb_extension_sqlite_scanner as package
    except ImportError:
        raise SalesDatabaseError(
            f"The SQLite scanner for DuckDB is not installed (package {EXTENSION_PACKAGE},"
            f" version {duckdb.__version__}): reinstall the project with pip install -e ."
        ) from None
    return (
        Path(package.__file__).parent
        / "extensions"
        / f"v{duckdb.__version__}"
        / "sqlite_scanner.duckdb_extension"
    )


def _scanner_connection():
    global _connection
    if _connection is None:
        import duckdb

        path = extension_path()
        if not path.is_file():
            raise SalesDatabaseError(
                f"The SQLite scanner for DuckDB {duckdb.__version__} is missing ({path}):"
                f" reinstall {EXTENSION_PACKAGE}=={duckdb.__version__}"
            )
        # Never fetch anything at run time: the extension is loaded from the installed wheel,
        # by path, and DuckDB may not install or autoload any other.
        conn = duckdb.connect(
            config={"autoinstall_known_extensions": False, "autoload_known_extensions": False}
        )
        try:
            conn.execute(f"LOAD {_sql_string(str(path))}")
        except duckdb.Error as error:
            conn.close()
            raise SalesDatabaseError(
                f"Cannot load the SQLite scanner {path}: {_first_line(error)}"
            ) from None
        # Loading costs about a quarter of a second, mostly checking the extension's
        # signature: once per process, then reused.
        _connection = conn
    return _connection


def load() -> None:
    """Load the scanner now rather than on the first report (a long-lived process may)."""
    with _lock:
        _scanner_connection()


def _first_line(error: Exception, limit: int = 300) -> str:
    # DuckDB's messages run on with hints, and may quote a whole 300-digit value.
    line = str(error).splitlines()[0] if str(error) else type(error).__name__
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def database_file(conn: sqlite3.Connection) -> Path:
    """The file behind an open sales DB connection, for the scanner to read the same DB."""
    for _, name, file in conn.execute("PRAGMA database_list"):
        if name == "main" and file:
            return Path(file)
    raise SalesDatabaseError("The sales database is not a file: the reports read it from disk")


@contextmanager
def _attached(conn, path: Path, all_varchar: bool) -> Iterator[None]:
    conn.execute(f"SET sqlite_all_varchar = {'true' if all_varchar else 'false'}")
    conn.execute(f"ATTACH {_sql_string(str(path))} AS {ALIAS} (TYPE sqlite, READ_ONLY)")
    try:
        yield
    finally:
        conn.execute(f"DETACH {ALIAS}")


def query(path: Path, sql: str) -> list[tuple]:
    """The rows of `sql` over the sales DB at `path`, opened read-only by the scanner.

    The scanner reads each column as the type the table declares (`amount float`, `date
    date`). SQLite lets a column hold other values (text in a float column, say); on such a DB
    the query runs again with every column read as text, and the SQL's own casts decide (text
    that is not a number or a date reads as NULL). The SQL must therefore cast every column it
    uses, which costs nothing when the types already match.
    """
    import duckdb

    with _lock:
        conn = _scanner_connection()
        try:
            try:
                with _attached(conn, path, all_varchar=False):
                    return conn.execute(sql).fetchall()
            except duckdb.DataError as error:
                reason = _first_line(error)
                log.warning(
                    "Sales DB %s holds values that do not match their declared column type"
                    " (%s); reading every column as text instead",
                    path,
                    reason,
                )
                with _attached(conn, path, all_varchar=True):
                    return conn.execute(sql).fetchall()
        except duckdb.Error as error:
            reason = _first_line(error)
            raise SalesDatabaseError(f"Cannot read sales database {path}: {reason}") from None
