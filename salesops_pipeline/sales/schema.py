"""What the reports need from the company's sales database, and how to open it safely."""

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

from salesops_pipeline import settings
from salesops_pipeline.errors import SalesDatabaseError
from salesops_pipeline.sales.demo import ensure_demo_db

# Only what the reports read: the company may add tables and columns freely.
REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    "agent": ("id", "username"),
    "team": ("id", "name"),
    "agent_team": ("agent_id", "team_id"),
    "session": ("id", "amount", "status", "owner_id"),
    "target": ("id", "date", "amount", "owner_id"),
    "target_operation": ("id", "amount", "target_id"),
}


def missing_schema(conn: sqlite3.Connection) -> list[str]:
    """Tables and `table.column`s the reports need but the database lacks."""
    missing: list[str] = []
    for table, columns in REQUIRED_COLUMNS.items():
        present = {row[1] for row in conn.execute(f'PRAGMA table_info("{table}")')}
        if not present:
            missing.append(f"table {table}")
            continue
        missing.extend(f"column {table}.{column}" for column in columns if column not in present)
    return missing


def resolve_sales_db_path(path: str | None = None) -> Path:
    """The sales DB to read: `path`, else SALESOPS_SALES_DB, else the demo DB (made if missing)."""
    if path:
        return Path(path).expanduser().resolve()
    configured = settings.configured_sales_db()
    if configured is not None:
        return configured
    return ensure_demo_db(settings.demo_sales_db_path())


@contextmanager
def open_sales_db(path: Path) -> Iterator[sqlite3.Connection]:
    """Open the sales DB read-only and check its schema; the pipeline never writes to it."""
    if not path.is_file():
        raise SalesDatabaseError(f"Sales database not found: {path}")
    # mode=ro makes SQLite itself refuse any write, whatever a query tries.
    conn = sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True)
    try:
        try:
            missing = missing_schema(conn)
        except sqlite3.DatabaseError as error:
            raise SalesDatabaseError(f"Cannot read sales database {path}: {error}") from None
        if missing:
            raise SalesDatabaseError(
                f"Sales database {path} lacks what the reports need: {', '.join(missing)}"
            )
        yield conn
    finally:
        conn.close()
