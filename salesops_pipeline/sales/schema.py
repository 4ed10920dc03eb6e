"""What the reports need from the company's sales database, and how to open it safely."""

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from salesops_pipeline import settings
from salesops_pipeline.errors import SalesDatabaseError
from salesops_pipeline.sales.demo import DEMO_APPLICATION_ID, generate_demo_db

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


@dataclass(frozen=True)
class ChosenSalesDb:
    """The sales DB a report reads, and whether it was generated just now for want of one."""

    path: Path
    generated_now: bool = False


def choose_sales_db(path: str | None = None) -> ChosenSalesDb:
    """The sales DB to read: `path`, else SALESOPS_SALES_DB, else the demo DB (made if missing)."""
    if path:
        return ChosenSalesDb(Path(path).expanduser().resolve())
    configured = settings.configured_sales_db()
    if configured is not None:
        return ChosenSalesDb(configured)
    demo_path = settings.demo_sales_db_path()
    if demo_path.is_file():
        return ChosenSalesDb(demo_path)
    return ChosenSalesDb(generate_demo_db(demo_path), generated_now=True)


def resolve_sales_db_path(path: str | None = None) -> Path:
    """The path of `choose_sales_db(path)`."""
    return choose_sales_db(path).path


def is_demo_db(conn: sqlite3.Connection) -> bool:
    """Whether the open sales DB holds generated demo data rather than the company's sales.

    Any DB `salesops demo-db` wrote says so in its header, wherever it lies; so does the file
    at the demo path, in case it was written before demo DBs carried the mark.
    """
    (application_id,) = conn.execute("PRAGMA application_id").fetchone()
    if application_id == DEMO_APPLICATION_ID:
        return True
    for _, name, file in conn.execute("PRAGMA database_list"):
        if name == "main" and file:
            return Path(file).resolve() == settings.demo_sales_db_path().resolve()
    return False


def describe_sales_db(conn: sqlite3.Connection) -> str:
    """Which data a report read, for the people who read the report: the company's sales DB or
    generated demo data, and where."""
    path = next(
        (file for _, name, file in conn.execute("PRAGMA database_list") if name == "main"), ""
    )
    what = "generated demo data" if is_demo_db(conn) else "the company's sales DB"
    return f"{what} ({path})" if path else what


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
