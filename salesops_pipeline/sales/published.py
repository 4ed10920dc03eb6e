"""The reports the frontend reads, published to the shared PostgreSQL database.

When SALESOPS_DATABASE_URL is set, every intake host serves the frontend from these tables
instead of a local DuckDB warehouse file. DuckDB still computes the reports; the assets publish
the rows they already hold, and each publication replaces what it covers in one transaction, so
a reader sees either the previous figures or the new ones, never a mix or an empty table.

The readers answer exactly as `warehouse.stored_team_sales` and `warehouse.stored_progression`
do, Python types and values included, so the frontend's JSON is the same in both modes.
"""

from collections.abc import Iterable

from salesops_pipeline import postgres
from salesops_pipeline.sales.reports import ProgressionRow, TeamSalesReport
from salesops_pipeline.sales.warehouse import progression_records, team_sales_records

# Texts are ordered byte by byte ("C"), as DuckDB orders them, whatever the server's locale.
_DDL = {
    "team_sales": [
        """
        CREATE TABLE IF NOT EXISTS team_sales (
            team TEXT COLLATE "C" NOT NULL,
            status TEXT COLLATE "C" NOT NULL,
            sessions BIGINT NOT NULL,
            amount DOUBLE PRECISION NOT NULL,
            team_unsubscription_rate DOUBLE PRECISION
        )
        """
    ],
    "monthly_team_sales": [
        """
        CREATE TABLE IF NOT EXISTS monthly_team_sales (
            month TEXT COLLATE "C" NOT NULL,
            team TEXT COLLATE "C" NOT NULL,
            status TEXT COLLATE "C" NOT NULL,
            sessions BIGINT NOT NULL,
            amount DOUBLE PRECISION NOT NULL,
            team_unsubscription_rate DOUBLE PRECISION
        )
        """,
        # The months published, so that a month without a sale answers with no rows.
        'CREATE TABLE IF NOT EXISTS monthly_team_sales_month (month TEXT COLLATE "C" PRIMARY KEY)',
    ],
    "agent_daily_progression": [
        """
        CREATE TABLE IF NOT EXISTS agent_daily_progression (
            month TEXT COLLATE "C" NOT NULL,
            agent TEXT COLLATE "C" NOT NULL,
            date DATE NOT NULL,
            target_of_the_day DOUBLE PRECISION NOT NULL,
            amount_of_the_day DOUBLE PRECISION NOT NULL,
            progression_of_the_day DOUBLE PRECISION NOT NULL,
            target_accumulated DOUBLE PRECISION NOT NULL,
            amount_accumulated DOUBLE PRECISION NOT NULL,
            progression_accumulated DOUBLE PRECISION NOT NULL
        )
        """,
        # The frontend asks for one agent's month at a time.
        "CREATE INDEX IF NOT EXISTS agent_daily_progression_lookup"
        " ON agent_daily_progression (month, agent, date)",
    ],
    "sales_agent": [
        'CREATE TABLE IF NOT EXISTS sales_agent (username TEXT COLLATE "C" PRIMARY KEY)'
    ],
}

_TEAM_SALES_COLUMNS = ("team", "status", "sessions", "amount", "team_unsubscription_rate")
_TEAM_SALES_ORDER = "ORDER BY team, status"

# ProgressionRow's fields in order, the date written as the frontend shows it.
_PROGRESSION_COLUMNS = (
    "agent, to_char(date, 'YYYY-MM-DD'), target_of_the_day, amount_of_the_day,"
    " progression_of_the_day, target_accumulated, amount_accumulated, progression_accumulated"
)


def _create(cursor, *tables: str) -> None:
    # Two hosts publishing at once would otherwise race on the catalog. The lock is held until
    # the publication commits, so a table only ever appears together with its rows.
    cursor.execute("SELECT pg_advisory_xact_lock(%s)", (postgres.advisory_key("schema"),))
    cursor.execute(f"CREATE SCHEMA IF NOT EXISTS {postgres.SCHEMA}")
    for table in tables:
        for statement in _DDL[table]:
            cursor.execute(statement)


def _insert(cursor, table: str, rows: list[tuple]) -> None:
    from psycopg2.extras import execute_values

    if rows:
        execute_values(cursor, f"INSERT INTO {table} VALUES %s", rows, page_size=1000)


def replace_team_sales(url: str, report: TeamSalesReport) -> None:
    """Swap the whole published team_sales table for `report`, atomically."""
    rows = team_sales_records(report)
    with postgres.connection(url) as conn:
        cursor = conn.cursor()
        _create(cursor, "team_sales")
        cursor.execute("DELETE FROM team_sales")
        _insert(cursor, "team_sales", rows)
        conn.commit()


def replace_monthly_team_sales(url: str, report: TeamSalesReport) -> None:
    """Swap one published month of monthly_team_sales for `report`, atomically."""
    rows = [(report.month, *row) for row in team_sales_records(report)]
    with postgres.connection(url) as conn:
        cursor = conn.cursor()
        _create(cursor, "monthly_team_sales")
        cursor.execute("DELETE FROM monthly_team_sales WHERE month = %s", (report.month,))
        cursor.execute(
            "INSERT INTO monthly_team_sales_month VALUES (%s) ON CONFLICT DO NOTHING",
            (report.month,),
        )
        _insert(cursor, "monthly_team_sales", rows)
        conn.commit()


def replace_progression_month(
    url: str, month: str, rows: Iterable[ProgressionRow], agents: Iterable[str]
) -> None:
    """Swap one published month of agent_daily_progression for `rows`, and the list of agents
    the sales DB knows for `agents`, in one transaction: the frontend tells an unknown agent
    from one without targets by that list."""
    values = progression_records(month, rows)
    usernames = [(name,) for name in sorted(set(agents))]
    with postgres.connection(url) as conn:
        cursor = conn.cursor()
        _create(cursor, "agent_daily_progression", "sales_agent")
        cursor.execute("DELETE FROM agent_daily_progression WHERE month = %s", (month,))
        _insert(cursor, "agent_daily_progression", values)
        cursor.execute("DELETE FROM sales_agent")
        _insert(cursor, "sales_agent", usernames)
        conn.commit()


def _published(cursor, table: str) -> bool:
    cursor.execute("SELECT to_regclass(%s)", (f"{postgres.SCHEMA}.{table}",))
    return cursor.fetchone()[0] is not None


def stored_team_sales(url: str) -> list[dict] | None:
    """The published team sales rows; None when team_sales was never published."""
    with postgres.connection(url) as conn:
        cursor = conn.cursor()
        if not _published(cursor, "team_sales"):
            return None
        cursor.execute(
            f"SELECT {', '.join(_TEAM_SALES_COLUMNS)} FROM team_sales {_TEAM_SALES_ORDER}"
        )
        return [dict(zip(_TEAM_SALES_COLUMNS, row, strict=True)) for row in cursor.fetchall()]


def stored_monthly_team_sales(url: str, month: str) -> list[dict] | None:
    """The published team sales of `month`; None when that month was never published."""
    with postgres.connection(url) as conn:
        cursor = conn.cursor()
        if not _published(cursor, "monthly_team_sales_month"):
            return None
        cursor.execute(
            "SELECT EXISTS (SELECT 1 FROM monthly_team_sales_month WHERE month = %s)", (month,)
        )
        if not cursor.fetchone()[0]:
            return None
        cursor.execute(
            f"SELECT {', '.join(_TEAM_SALES_COLUMNS)} FROM monthly_team_sales WHERE month = %s"
            f" {_TEAM_SALES_ORDER}",
            (month,),
        )
        return [dict(zip(_TEAM_SALES_COLUMNS, row, strict=True)) for row in cursor.fetchall()]


def stored_progression_month(url: str, month: str) -> list[ProgressionRow] | None:
    """Every agent's published rows of `month`, by agent then date; None when never published."""
    with postgres.connection(url) as conn:
        cursor = conn.cursor()
        if not _published(cursor, "agent_daily_progression"):
            return None
        cursor.execute(
            f"SELECT {_PROGRESSION_COLUMNS} FROM agent_daily_progression WHERE month = %s"
            " ORDER BY agent, date",
            (month,),
        )
        rows = [ProgressionRow(*row) for row in cursor.fetchall()]
        return rows or None


def stored_progression(url: str, month: str, agent: str) -> list[ProgressionRow] | None:
    """One agent's published month, in date order; None when that month was never published."""
    with postgres.connection(url) as conn:
        cursor = conn.cursor()
        if not _published(cursor, "agent_daily_progression"):
            return None
        cursor.execute(
            "SELECT EXISTS (SELECT 1 FROM agent_daily_progression WHERE month = %s)", (month,)
        )
        if not cursor.fetchone()[0]:
            return None
        cursor.execute(
            f"SELECT {_PROGRESSION_COLUMNS} FROM agent_daily_progression"
            " WHERE month = %s AND agent = %s ORDER BY date",
            (month, agent),
        )
        return [ProgressionRow(*row) for row in cursor.fetchall()]


def agent_known(url: str, agent: str) -> bool | None:
    """Whether the sales DB had `agent` when the agents were last published; None when they
    never were."""
    with postgres.connection(url) as conn:
        cursor = conn.cursor()
        if not _published(cursor, "sales_agent"):
            return None
        cursor.execute("SELECT EXISTS (SELECT 1 FROM sales_agent WHERE username = %s)", (agent,))
        return bool(cursor.fetchone()[0])
