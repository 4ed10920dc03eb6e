"""The warehouse tables the reports are stored in, and the questions the checks ask of them.

Plain functions over a DuckDB connection: the assets decide when to call them.
"""

from collections.abc import Iterable

import duckdb

from salesops_pipeline.sales.reports import ProgressionRow, TeamSalesReport
from salesops_pipeline.transactions import duckdb_transaction

TEAM_SALES_DDL = """
CREATE TABLE IF NOT EXISTS team_sales (
    team VARCHAR NOT NULL,
    status VARCHAR NOT NULL,
    sessions BIGINT NOT NULL,
    amount DOUBLE NOT NULL,
    team_unsubscription_rate DOUBLE
)
"""

MONTHLY_TEAM_SALES_DDL = """
CREATE TABLE IF NOT EXISTS monthly_team_sales (
    month VARCHAR NOT NULL,
    team VARCHAR NOT NULL,
    status VARCHAR NOT NULL,
    sessions BIGINT NOT NULL,
    amount DOUBLE NOT NULL,
    team_unsubscription_rate DOUBLE
);
-- The months computed, so that a month without a sale answers with no rows, not "never".
CREATE TABLE IF NOT EXISTS monthly_team_sales_month (month VARCHAR PRIMARY KEY)
"""

PROGRESSION_DDL = """
CREATE TABLE IF NOT EXISTS agent_daily_progression (
    month VARCHAR NOT NULL,
    agent VARCHAR NOT NULL,
    date DATE NOT NULL,
    target_of_the_day DOUBLE NOT NULL,
    amount_of_the_day DOUBLE NOT NULL,
    progression_of_the_day DOUBLE NOT NULL,
    target_accumulated DOUBLE NOT NULL,
    amount_accumulated DOUBLE NOT NULL,
    progression_accumulated DOUBLE NOT NULL
)
"""


def replace_team_sales(conn: duckdb.DuckDBPyConnection, report: TeamSalesReport) -> None:
    """Swap the whole team_sales table for `report`, atomically."""
    conn.execute(TEAM_SALES_DDL)
    rows = team_sales_records(report)
    with duckdb_transaction(conn):
        conn.execute("DELETE FROM team_sales")
        if rows:
            conn.executemany("INSERT INTO team_sales VALUES (?, ?, ?, ?, ?)", rows)


def team_sales_records(report: TeamSalesReport) -> list[tuple]:
    """`report`'s rows as stored, with each team's unsubscription rate."""
    return [
        (r.team, r.status, r.sessions, r.amount, report.unsubscription_rate(r.team))
        for r in report.rows
    ]


def replace_monthly_team_sales(conn: duckdb.DuckDBPyConnection, report: TeamSalesReport) -> None:
    """Swap one month of monthly_team_sales for `report` (a month's report), atomically."""
    conn.execute(MONTHLY_TEAM_SALES_DDL)
    rows = [(report.month, *row) for row in team_sales_records(report)]
    with duckdb_transaction(conn):
        conn.execute("DELETE FROM monthly_team_sales WHERE month = ?", [report.month])
        conn.execute("INSERT OR IGNORE INTO monthly_team_sales_month VALUES (?)", [report.month])
        if rows:
            conn.executemany("INSERT INTO monthly_team_sales VALUES (?, ?, ?, ?, ?, ?)", rows)


def progression_records(month: str, rows: Iterable[ProgressionRow]) -> list[tuple]:
    """`rows` as stored in agent_daily_progression, column for column."""
    return [
        (
            month,
            r.agent,
            r.date,
            r.target_of_the_day,
            r.amount_of_the_day,
            r.progression_of_the_day,
            r.target_accumulated,
            r.amount_accumulated,
            r.progression_accumulated,
        )
        for r in rows
    ]


def replace_progression_month(
    conn: duckdb.DuckDBPyConnection, month: str, rows: Iterable[ProgressionRow]
) -> None:
    """Swap one month of agent_daily_progression for `rows`, atomically."""
    conn.execute(PROGRESSION_DDL)
    values = progression_records(month, rows)
    with duckdb_transaction(conn):
        conn.execute("DELETE FROM agent_daily_progression WHERE month = ?", [month])
        if values:
            conn.executemany(
                "INSERT INTO agent_daily_progression VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", values
            )


def stored_team_totals(conn: duckdb.DuckDBPyConnection) -> dict[str, tuple[int, float]]:
    """Sessions and amount per team as stored, all statuses together."""
    conn.execute(TEAM_SALES_DDL)
    rows = conn.execute(
        "SELECT team, SUM(sessions), SUM(amount) FROM team_sales GROUP BY team"
    ).fetchall()
    return {team: (int(sessions), float(amount)) for team, sessions, amount in rows}


def accumulation_mismatches(
    conn: duckdb.DuckDBPyConnection, month: str | None = None, limit: int = 20
) -> list[tuple]:
    """Stored rows (of `month`, else of every month) whose accumulated columns differ from the
    running sums of the daily ones."""
    conn.execute(PROGRESSION_DDL)
    return conn.execute(
        """
        WITH recomputed AS (
            SELECT *,
                SUM(target_of_the_day) OVER running AS expected_target,
                SUM(amount_of_the_day) OVER running AS expected_amount
            FROM agent_daily_progression
            WHERE ? IS NULL OR month = ?
            WINDOW running AS (PARTITION BY month, agent ORDER BY date
                               ROWS UNBOUNDED PRECEDING)
        )
        SELECT month, agent, date, target_accumulated, expected_target,
               amount_accumulated, expected_amount
        FROM recomputed
        WHERE abs(target_accumulated - expected_target) > 0.005
           OR abs(amount_accumulated - expected_amount) > 0.005
        ORDER BY month, agent, date
        LIMIT ?
        """,
        [month, month, limit],
    ).fetchall()


def negative_progressions(
    conn: duckdb.DuckDBPyConnection, month: str | None = None, limit: int = 20
) -> list[tuple]:
    """Stored rows (of `month`, else of every month) with a progression below 0, which the
    report promises never to show."""
    conn.execute(PROGRESSION_DDL)
    return conn.execute(
        """
        SELECT month, agent, date, progression_of_the_day, progression_accumulated
        FROM agent_daily_progression
        WHERE (progression_of_the_day < 0 OR progression_accumulated < 0)
          AND (? IS NULL OR month = ?)
        ORDER BY month, agent, date
        LIMIT ?
        """,
        [month, month, limit],
    ).fetchall()


# The stored columns in ProgressionRow's order, the date as the frontend writes it.
_PROGRESSION_COLUMNS = (
    "agent, strftime(date, '%Y-%m-%d'), target_of_the_day, amount_of_the_day,"
    " progression_of_the_day, target_accumulated, amount_accumulated, progression_accumulated"
)


def _table_exists(conn: duckdb.DuckDBPyConnection, table: str) -> bool:
    return bool(
        conn.execute(
            "SELECT COUNT(*) FROM information_schema.tables WHERE table_name = ?", [table]
        ).fetchone()[0]
    )


def stored_progression(
    conn: duckdb.DuckDBPyConnection, month: str, agent: str
) -> list[ProgressionRow] | None:
    """One agent's stored month, in date order; None when that month was never materialized."""
    if not _table_exists(conn, "agent_daily_progression"):
        return None
    if not conn.execute(
        "SELECT COUNT(*) FROM agent_daily_progression WHERE month = ?", [month]
    ).fetchone()[0]:
        return None
    rows = conn.execute(
        f"SELECT {_PROGRESSION_COLUMNS} FROM agent_daily_progression"
        " WHERE month = ? AND agent = ? ORDER BY date",
        [month, agent],
    ).fetchall()
    return [ProgressionRow(*row) for row in rows]


def stored_progression_month(conn: duckdb.DuckDBPyConnection, month: str) -> list[ProgressionRow]:
    """Every agent's stored rows for `month`, by agent then date; empty when none are stored."""
    if not _table_exists(conn, "agent_daily_progression"):
        return []
    rows = conn.execute(
        f"SELECT {_PROGRESSION_COLUMNS} FROM agent_daily_progression"
        " WHERE month = ? ORDER BY agent, date",
        [month],
    ).fetchall()
    return [ProgressionRow(*row) for row in rows]


TEAM_SALES_COLUMNS = ("team", "status", "sessions", "amount", "team_unsubscription_rate")


def stored_team_sales(conn: duckdb.DuckDBPyConnection) -> list[dict] | None:
    """The stored team sales rows; None when team_sales was never materialized."""
    if not _table_exists(conn, "team_sales"):
        return None
    columns = TEAM_SALES_COLUMNS
    rows = conn.execute(f"SELECT {', '.join(columns)} FROM team_sales ORDER BY team, status")
    return [dict(zip(columns, row, strict=True)) for row in rows.fetchall()]


def stored_monthly_team_sales(conn: duckdb.DuckDBPyConnection, month: str) -> list[dict] | None:
    """The stored team sales of `month`, as `stored_team_sales` answers; None when that month
    was never materialized."""
    if not _table_exists(conn, "monthly_team_sales_month"):
        return None
    if not conn.execute(
        "SELECT COUNT(*) FROM monthly_team_sales_month WHERE month = ?", [month]
    ).fetchone()[0]:
        return None
    columns = TEAM_SALES_COLUMNS
    rows = conn.execute(
        f"SELECT {', '.join(columns)} FROM monthly_team_sales WHERE month = ?"
        " ORDER BY team, status",
        [month],
    )
    return [dict(zip(columns, row, strict=True)) for row in rows.fetchall()]
