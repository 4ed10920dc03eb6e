"""The sales reports themselves: plain functions over a sales DB connection.

The aggregation runs inside SQLite (window functions included) so that a year of sales, a
million sessions, never travels row by row through Python. The results are small, typed rows
that the assets, the checks and the command line all share.
"""

import re
import sqlite3
from dataclasses import dataclass
from datetime import date

from salesops_pipeline.errors import InvalidInputError

UNSUBSCRIBED = "unsubscribed"

# The keys of the frontend contract, in the order the frontend expects them.
PROGRESSION_KEYS = (
    "date",
    "target_of_the_day",
    "amount_of_the_day",
    "progression_of_the_day",
    "target_accumulated",
    "amount_accumulated",
    "progression_accumulated",
)

# ASCII digits only, and the whole string: `\d` also takes other scripts' digits (which int()
# then reads), and `$` lets a trailing newline through.
_MONTH_PATTERN = re.compile(r"([0-9]{4})-([0-9]{2})")


@dataclass(frozen=True)
class TeamStatusSales:
    team: str
    status: str
    sessions: int
    amount: float


@dataclass(frozen=True)
class TeamSalesReport:
    """Sessions and amounts per team and status; `teams` also lists teams without sales."""

    teams: tuple[str, ...]
    rows: tuple[TeamStatusSales, ...]

    def rows_of(self, team: str) -> list[TeamStatusSales]:
        return [row for row in self.rows if row.team == team]

    def unsubscription_rate(self, team: str) -> float | None:
        """Share of the team's sessions that were unsubscribed; None for a team with no sale."""
        rows = self.rows_of(team)
        total = sum(row.sessions for row in rows)
        if not total:
            return None
        unsubscribed = sum(row.sessions for row in rows if row.status == UNSUBSCRIBED)
        return round(unsubscribed / total, 4)


# An agent may sit in several teams and then counts in each; DISTINCT guards against the same
# membership recorded twice, which would otherwise double that agent's sales.
_MEMBERSHIPS = "SELECT DISTINCT agent_id, team_id FROM agent_team"

# Sessions are first folded per owner and status (a handful of groups even for a million
# sales), and only those few groups are fanned out to the owners' teams.
_TEAM_SALES_SQL = f"""
WITH per_owner AS (
    SELECT owner_id, status, COUNT(*) AS sessions, TOTAL(amount) AS amount
    FROM session
    GROUP BY owner_id, status
)
SELECT team.name, per_owner.status, SUM(per_owner.sessions), TOTAL(per_owner.amount)
FROM per_owner
JOIN ({_MEMBERSHIPS}) AS membership ON membership.agent_id = per_owner.owner_id
JOIN team ON team.id = membership.team_id
GROUP BY team.id, per_owner.status
ORDER BY team.name, per_owner.status
"""


def team_sales(conn: sqlite3.Connection) -> TeamSalesReport:
    """Q3.1: per team and status, the number of sessions and their total amount."""
    teams = tuple(name for (name,) in conn.execute("SELECT name FROM team ORDER BY name"))
    rows = tuple(
        TeamStatusSales(team=team, status=status, sessions=sessions, amount=amount)
        for team, status, sessions, amount in conn.execute(_TEAM_SALES_SQL)
    )
    return TeamSalesReport(teams=teams, rows=rows)


def raw_team_totals(conn: sqlite3.Connection) -> dict[str, tuple[int, float]]:
    """Sessions and amount per team, counted straight from the sessions (for reconciliation).

    Deliberately written another way than `team_sales` (membership test instead of a join and
    no grouping by status) so that a mistake in one shows up as a difference.
    """
    sql = f"""
    SELECT team.name,
           (SELECT COUNT(*) FROM session WHERE session.owner_id IN
               (SELECT agent_id FROM ({_MEMBERSHIPS}) WHERE team_id = team.id)),
           (SELECT TOTAL(amount) FROM session WHERE session.owner_id IN
               (SELECT agent_id FROM ({_MEMBERSHIPS}) WHERE team_id = team.id))
    FROM team
    """
    return {name: (sessions, amount) for name, sessions, amount in conn.execute(sql)}


def format_amount(amount: float) -> str:
    """`30179.0`, `1234.5`, `99.99`: the way the original report printed euros."""
    text = f"{amount:.2f}".rstrip("0")
    return text + "0" if text.endswith(".") else text


def team_sales_text(report: TeamSalesReport) -> str:
    """The report as the sales-ops team reads it in a terminal."""
    lines: list[str] = []
    for team in report.teams:
        lines.append(f"👉 Sales from {team}")
        rows = report.rows_of(team)
        if not rows:
            lines.append("\tno sales")
        for row in rows:
            lines.append(f"\t{row.status} : {row.sessions} sessions, {format_amount(row.amount)}€")
        rate = report.unsubscription_rate(team)
        if rate is not None:
            lines.append(f"\tunsubscription rate : {rate:.1%}")
    return "\n".join(lines)


def team_sales_records(report: TeamSalesReport) -> list[dict]:
    """One JSON-ready record per team and status, with the team's unsubscription rate."""
    return [
        {
            "team": row.team,
            "status": row.status,
            "sessions": row.sessions,
            "amount": row.amount,
            "team_unsubscription_rate": report.unsubscription_rate(row.team),
        }
        for row in report.rows
    ]


def parse_month(month: str) -> tuple[date, date]:
    """`YYYY-MM` to the first day of that month and of the next one."""
    invalid = InvalidInputError(f"Invalid month {month!r}: expected YYYY-MM, e.g. 2025-04")
    match = _MONTH_PATTERN.fullmatch(month) if isinstance(month, str) else None
    if not match or not 1 <= int(match.group(2)) <= 12:
        raise invalid
    year, month_number = int(match.group(1)), int(match.group(2))
    try:
        start = date(year, month_number, 1)
        end = date(year + month_number // 12, month_number % 12 + 1, 1)
    except ValueError:
        # Year 0000, or 9999-12 whose next month is past what a date can hold.
        raise invalid from None
    return start, end


@dataclass(frozen=True)
class ProgressionRow:
    """One agent's target day: what was aimed at, what was booked, and the running totals."""

    agent: str
    date: str
    target_of_the_day: float
    amount_of_the_day: float
    progression_of_the_day: float
    target_accumulated: float
    amount_accumulated: float
    progression_accumulated: float

    def to_frontend(self) -> dict:
        """The frontend's object: exactly its seven keys, in its order."""
        return {key: _json_number(getattr(self, key)) for key in PROGRESSION_KEYS}


def _json_number(value):
    # Amounts are stored as floats; the frontend shows whole euros as 1450, not 1450.0.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# Progression: booked amount over target, rounded to 2 decimals, never below 0 (a day of
# unsubscriptions is a bad day, not a negative one) and 0 when there was nothing to aim at.
_RATIO = "CASE WHEN {t} = 0 THEN 0.0 ELSE MAX(ROUND(1.0 * {a} / {t}, 2), 0.0) END"

_PROGRESSION_SQL = f"""
WITH target_day AS (
    SELECT owner_id, date(date) AS day, TOTAL(amount) AS target_of_the_day
    FROM target
    WHERE date >= :start AND date < :end AND target.owner_id IS NOT NULL {{agent_filter}}
    GROUP BY owner_id, date(date)
),
booked_day AS (
    SELECT target.owner_id, date(target.date) AS day, TOTAL(operation.amount) AS amount
    FROM target_operation AS operation
    JOIN target ON target.id = operation.target_id
    WHERE target.date >= :start AND target.date < :end {{agent_filter}}
    GROUP BY target.owner_id, date(target.date)
),
daily AS (
    SELECT target_day.owner_id, target_day.day, target_day.target_of_the_day,
           COALESCE(booked_day.amount, 0.0) AS amount_of_the_day
    FROM target_day
    LEFT JOIN booked_day
        ON booked_day.owner_id = target_day.owner_id AND booked_day.day = target_day.day
),
accumulated AS (
    SELECT daily.*,
           SUM(target_of_the_day) OVER running AS target_accumulated,
           SUM(amount_of_the_day) OVER running AS amount_accumulated
    FROM daily
    WINDOW running AS (PARTITION BY owner_id ORDER BY day ROWS UNBOUNDED PRECEDING)
)
SELECT agent.username, day,
       target_of_the_day, amount_of_the_day,
       {_RATIO.format(a="amount_of_the_day", t="target_of_the_day")},
       target_accumulated, amount_accumulated,
       {_RATIO.format(a="amount_accumulated", t="target_accumulated")}
FROM accumulated
JOIN agent ON agent.id = accumulated.owner_id
ORDER BY agent.username, day
"""


def agent_daily_progression(
    conn: sqlite3.Connection, month: str, agent: str | None = None
) -> list[ProgressionRow]:
    """Q3.2: for every agent with targets in `month` (or just `agent`), one row per target day."""
    start, end = parse_month(month)
    params: dict[str, object] = {"start": start.isoformat(), "end": end.isoformat()}
    agent_filter = ""
    if agent is not None:
        agent_filter = "AND target.owner_id IN (SELECT id FROM agent WHERE username = :agent)"
        params["agent"] = agent
    sql = _PROGRESSION_SQL.replace("{agent_filter}", agent_filter)
    return [ProgressionRow(*row) for row in conn.execute(sql, params)]


def agent_exists(conn: sqlite3.Connection, username: str) -> bool:
    return (
        conn.execute("SELECT 1 FROM agent WHERE username = ?", (username,)).fetchone() is not None
    )


def team_total_differences(
    stored: dict[str, tuple[int, float]], raw: dict[str, tuple[int, float]]
) -> list[str]:
    """Teams whose stored totals differ from the raw session totals, described for a person.

    A team absent from one side counts as 0 sessions for 0 €: a team without sales has no rows.
    """
    differences = []
    for team in sorted(set(stored) | set(raw)):
        stored_sessions, stored_amount = stored.get(team, (0, 0.0))
        raw_sessions, raw_amount = raw.get(team, (0, 0.0))
        if stored_sessions != raw_sessions or abs(stored_amount - raw_amount) > 0.005:
            differences.append(
                f"{team}: stored {stored_sessions} sessions / {format_amount(stored_amount)}€,"
                f" sessions say {raw_sessions} / {format_amount(raw_amount)}€"
            )
    return differences
