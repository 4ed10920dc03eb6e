"""The sales reports themselves: plain functions over a sales DB connection.

The aggregation runs in DuckDB, which scans the SQLite file read-only (`scanner`): a million
sessions are summed in a fraction of a second without any index, and never travel row by row
through Python. Money is summed exactly, so a report is the same however the work is split.
The results are small, typed rows that the assets, the checks and the command line all share.
"""

import difflib
import re
import sqlite3
from collections import defaultdict
from dataclasses import dataclass
from datetime import date
from fractions import Fraction
from itertools import groupby

from salesops_pipeline.errors import InvalidInputError
from salesops_pipeline.sales import scanner

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

# An amount as an exact number: to the billionth of a euro, far below the cent, so that the
# rounding of a stored float never reaches a cent. Text that is not a number reads as NULL and
# adds nothing, as SQLite's TOTAL counted it. An amount of 10^20 € or more (or an infinity) is
# no sale: it stops the report with a message saying where it is, rather than a sum that
# silently overflows.
_MAX_AMOUNT = "1e20"


def _amount(column: str, where: str) -> str:
    number = f"TRY_CAST({column} AS DOUBLE)"
    message = f"'{where} holds an amount of 10^20 or more, or an infinity: '"
    return (
        f"CASE WHEN abs({number}) >= {_MAX_AMOUNT}"
        f" THEN error({message} || CAST({column} AS VARCHAR))"
        f" ELSE CAST({number} AS DECIMAL(38, 9)) END"
    )


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
    month: str | None = None  # None: every sale ever made; else the sales booked that month

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

# Every column is cast (see `scanner.query`), and every amount is read to the billionth of a
# euro and summed as a DECIMAL: exact, so the totals do not depend on the order in which
# DuckDB's threads add them up, unlike a sum of floats. Sessions are first folded per owner
# and status (a handful of groups even for a million sales), and only those few groups are
# fanned out to the owners' teams. NULLS FIRST and the binary order of names are SQLite's.
_TEAM_SALES_SQL = f"""
WITH per_owner AS (
    SELECT TRY_CAST(owner_id AS BIGINT) AS owner_id, CAST(status AS VARCHAR) AS status,
           COUNT(*) AS sessions, SUM({_amount("amount", "session.amount")}) AS amount
    FROM {{sessions}} AS session
    GROUP BY ALL
),
membership AS (
    SELECT DISTINCT TRY_CAST(agent_id AS BIGINT) AS agent_id,
                    TRY_CAST(team_id AS BIGINT) AS team_id
    FROM {scanner.ALIAS}.agent_team
),
team AS (
    SELECT TRY_CAST(id AS BIGINT) AS id, CAST(name AS VARCHAR) AS name FROM {scanner.ALIAS}.team
)
SELECT team.name, per_owner.status, SUM(per_owner.sessions)::BIGINT,
       COALESCE(SUM(per_owner.amount), 0)
FROM per_owner
JOIN membership ON membership.agent_id = per_owner.owner_id
JOIN team ON team.id = membership.team_id
GROUP BY team.id, team.name, per_owner.status
ORDER BY team.name NULLS FIRST, per_owner.status NULLS FIRST, team.id
"""


# A sale belongs to the month it was booked in: the first day it counted toward its agent's
# target (an unsubscription books it back out on a later day, in the same session). A session
# never booked on a target has no such day and counts in the all-time report alone.
_BOOKED_SESSIONS_SQL = f"""(
    SELECT session.* FROM {scanner.ALIAS}.session AS session
    JOIN (
        SELECT TRY_CAST(operation.session_id AS BIGINT) AS session_id,
               MIN(TRY_CAST(target.date AS DATE)) AS day
        FROM {scanner.ALIAS}.target_operation AS operation
        JOIN {scanner.ALIAS}.target AS target
          ON TRY_CAST(target.id AS BIGINT) = TRY_CAST(operation.target_id AS BIGINT)
        GROUP BY 1
    ) AS booked ON booked.session_id = TRY_CAST(session.id AS BIGINT)
    WHERE booked.day >= DATE '{{start}}' AND booked.day < DATE '{{end}}'
)"""

_UNBOOKED_SESSIONS_SQL = f"""
SELECT COUNT(*) FROM {scanner.ALIAS}.session AS session
WHERE NOT EXISTS (
    SELECT 1 FROM {scanner.ALIAS}.target_operation AS operation
    JOIN {scanner.ALIAS}.target AS target
      ON TRY_CAST(target.id AS BIGINT) = TRY_CAST(operation.target_id AS BIGINT)
    WHERE TRY_CAST(operation.session_id AS BIGINT) = TRY_CAST(session.id AS BIGINT)
      AND TRY_CAST(target.date AS DATE) IS NOT NULL
)
"""


def team_sales(conn: sqlite3.Connection, month: str | None = None) -> TeamSalesReport:
    """Q3.1: per team and status, the number of sessions and their total amount; with `month`
    (`YYYY-MM`), of the sales booked in that month alone.

    `conn` is the open sales DB (`open_sales_db`); the sessions are aggregated by DuckDB
    scanning the same file, read-only, which needs no index to be fast.
    """
    if month is None:
        sessions = f"{scanner.ALIAS}.session"
    else:
        start, end = parse_month(month)
        sessions = _BOOKED_SESSIONS_SQL.replace("{start}", start.isoformat()).replace(
            "{end}", end.isoformat()
        )
    teams = tuple(name for (name,) in conn.execute("SELECT name FROM team ORDER BY name"))
    rows = tuple(
        TeamStatusSales(team=team, status=status, sessions=sessions, amount=float(amount))
        for team, status, sessions, amount in scanner.query(
            scanner.database_file(conn), _TEAM_SALES_SQL.replace("{sessions}", sessions)
        )
    )
    return TeamSalesReport(teams=teams, rows=rows, month=month)


def unbooked_sessions(conn: sqlite3.Connection) -> int:
    """Sessions never booked on a target day: in the all-time team sales, in no month's."""
    [(count,)] = scanner.query(scanner.database_file(conn), _UNBOOKED_SESSIONS_SQL)
    return int(count)


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


# One row per agent and target day of the month, with the day's target and booked amount as
# exact sums; the running totals and the ratios of these few rows are computed in Python.
# The month is compared as a date, so a target dated `2025-04-30 10:00` is on April 30th as it
# was for SQLite's date(); a date that cannot be read as one is in no month.
_DAILY_SQL = f"""
WITH target AS (
    SELECT TRY_CAST(id AS BIGINT) AS id, TRY_CAST(owner_id AS BIGINT) AS owner_id,
           TRY_CAST(date AS DATE) AS day, {_amount("amount", "target.amount")} AS amount
    FROM {scanner.ALIAS}.target
),
month_target AS (
    SELECT * FROM target
    WHERE day >= DATE '{{start}}' AND day < DATE '{{end}}' AND owner_id IS NOT NULL
),
target_day AS (
    SELECT owner_id, day, COALESCE(SUM(amount), 0) AS target_of_the_day
    FROM month_target
    GROUP BY owner_id, day
),
booked_day AS (
    SELECT month_target.owner_id, month_target.day,
           SUM({_amount("operation.amount", "target_operation.amount")}) AS amount_of_the_day
    FROM {scanner.ALIAS}.target_operation AS operation
    JOIN month_target ON month_target.id = TRY_CAST(operation.target_id AS BIGINT)
    GROUP BY month_target.owner_id, month_target.day
),
agent AS (
    SELECT TRY_CAST(id AS BIGINT) AS id, CAST(username AS VARCHAR) AS username
    FROM {scanner.ALIAS}.agent
)
SELECT agent.username, target_day.owner_id, target_day.day, target_day.target_of_the_day,
       COALESCE(booked_day.amount_of_the_day, 0)
FROM target_day
LEFT JOIN booked_day USING (owner_id, day)
JOIN agent ON agent.id = target_day.owner_id
ORDER BY agent.username NULLS FIRST, target_day.owner_id, target_day.day
"""


def progression_ratio(amount: Fraction, target: Fraction) -> float:
    """Booked amount over target, to 2 decimals (half up, as SQLite's ROUND did), never below 0
    (a day of unsubscriptions is a bad day, not a negative one), 0 with nothing to aim at.

    Exact: the amounts are exact sums, and 0.285 rounds to 0.29 whatever a float makes of it.
    """
    if target == 0:
        return 0.0
    ratio = amount / target
    if ratio <= 0:
        return 0.0
    return float(Fraction(int(ratio * 100 + Fraction(1, 2)), 100))


def agent_daily_progression(
    conn: sqlite3.Connection, month: str, agent: str | None = None
) -> list[ProgressionRow]:
    """Q3.2: for every agent with targets in `month` (or just `agent`), one row per target day.

    `conn` is the open sales DB (`open_sales_db`); the day's sums are computed by DuckDB
    scanning the same file, read-only.
    """
    start, end = parse_month(month)
    # Dates written into the SQL (they come from `parse_month`), and the agent picked in Python
    # from the month's few rows: DuckDB's Python client imports pandas, a third of a second,
    # to bind any query parameter.
    sql = _DAILY_SQL.replace("{start}", start.isoformat()).replace("{end}", end.isoformat())
    daily = [
        row
        for row in scanner.query(scanner.database_file(conn), sql)
        if agent is None or row[0] == agent
    ]
    rows: list[ProgressionRow] = []
    for _, days in groupby(daily, key=lambda row: row[1]):
        target_accumulated = amount_accumulated = Fraction(0)
        for username, _, day, target_of_the_day, amount_of_the_day in days:
            target, amount = Fraction(target_of_the_day), Fraction(amount_of_the_day)
            target_accumulated += target
            amount_accumulated += amount
            rows.append(
                ProgressionRow(
                    agent=username,
                    date=day.isoformat(),
                    target_of_the_day=float(target),
                    amount_of_the_day=float(amount),
                    progression_of_the_day=progression_ratio(amount, target),
                    target_accumulated=float(target_accumulated),
                    amount_accumulated=float(amount_accumulated),
                    progression_accumulated=progression_ratio(
                        amount_accumulated, target_accumulated
                    ),
                )
            )
    return rows


def agent_exists(conn: sqlite3.Connection, username: str) -> bool:
    return (
        conn.execute("SELECT 1 FROM agent WHERE username = ?", (username,)).fetchone() is not None
    )


def agent_usernames(conn: sqlite3.Connection) -> list[str]:
    """Every agent's username, for hosts that must tell an unknown agent without the sales DB."""
    # Text only: a number or a blob never equals the username `agent_exists` is asked about.
    sql = "SELECT DISTINCT username FROM agent WHERE typeof(username) = 'text' ORDER BY 1"
    return [name for (name,) in conn.execute(sql)]


@dataclass(frozen=True)
class AgentListing:
    """An agent as a manager looks one up: username, teams, and targets in a given month."""

    username: str
    teams: tuple[str, ...]
    has_targets: bool


def agent_listing(conn: sqlite3.Connection, month: str) -> list[AgentListing]:
    """Every agent, by username, with their teams and whether they have targets in `month`."""
    start, end = parse_month(month)
    teams: dict[object, set[str]] = defaultdict(set)
    memberships = (
        "SELECT DISTINCT agent_team.agent_id, team.name FROM agent_team"
        " JOIN team ON team.id = agent_team.team_id WHERE typeof(team.name) = 'text'"
    )
    for agent_id, team in conn.execute(memberships):
        teams[agent_id].add(team)
    # date() reads `2025-04-30 10:00` as April 30th, as the progression does.
    with_targets = {
        owner
        for (owner,) in conn.execute(
            "SELECT DISTINCT owner_id FROM target WHERE date(date) >= ? AND date(date) < ?",
            (start.isoformat(), end.isoformat()),
        )
    }
    # The same username recorded twice is one agent to the reader: its rows are folded.
    by_name: dict[str, tuple[set[str], bool]] = {}
    agents = "SELECT id, username FROM agent WHERE typeof(username) = 'text'"
    for agent_id, username in conn.execute(agents):
        known_teams, targets = by_name.get(username, (set(), False))
        by_name[username] = (known_teams | teams[agent_id], targets or agent_id in with_targets)
    return [
        AgentListing(username=name, teams=tuple(sorted(found)), has_targets=targets)
        for name, (found, targets) in sorted(by_name.items())
    ]


class UnknownAgentError(InvalidInputError):
    """No agent goes by the name given; `closest` holds the usernames it most resembles."""

    def __init__(self, message: str, closest: list[str]):
        super().__init__(message)
        self.closest = closest


def _short_name(username: str) -> str:
    return username.split("@", 1)[0]


def resolve_agent(conn: sqlite3.Connection, name: str, where: str = "") -> str:
    """The username `name` stands for: the username itself, or the part before its `@` when
    only one agent has it (either in any case). Otherwise an error naming the closest agents;
    `where` (" in sales DB …") says where they were looked for."""
    usernames = agent_usernames(conn)
    if name in usernames:
        return name
    wanted = name.casefold()
    found = [u for u in usernames if wanted in (u.casefold(), _short_name(u).casefold())]
    if len(found) == 1:
        return found[0]
    if found:
        raise InvalidInputError(
            f"{name!r} is several agents{where} ({', '.join(found)}): give the full username"
        )
    by_key: dict[str, str] = {}
    for username in usernames:
        by_key.setdefault(username.casefold(), username)
        by_key.setdefault(_short_name(username).casefold(), username)
    closest: list[str] = []
    for key in difflib.get_close_matches(wanted, list(by_key), n=6, cutoff=0.6):
        if by_key[key] not in closest:
            closest.append(by_key[key])
    hint = f"; closest: {', '.join(closest[:3])}" if closest else ""
    raise UnknownAgentError(
        f"Unknown agent {name!r}{where}{hint} (`salesops agents` lists them all)", closest[:3]
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
