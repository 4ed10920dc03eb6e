"""The sales reports as they ran before DuckDB scanned the sales DB: SQL inside SQLite.

Kept as a second, independent implementation: the property tests compare the reports with it
where its float arithmetic is exact (whole euros), and the benchmarks measure against it.
"""

import sqlite3

from salesops_pipeline.sales.reports import (
    ProgressionRow,
    TeamSalesReport,
    TeamStatusSales,
    parse_month,
)

_MEMBERSHIPS = "SELECT DISTINCT agent_id, team_id FROM agent_team"

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
ORDER BY team.name, per_owner.status, team.id
"""


def team_sales(conn: sqlite3.Connection) -> TeamSalesReport:
    teams = tuple(name for (name,) in conn.execute("SELECT name FROM team ORDER BY name"))
    rows = tuple(
        TeamStatusSales(team=team, status=status, sessions=sessions, amount=amount)
        for team, status, sessions, amount in conn.execute(_TEAM_SALES_SQL)
    )
    return TeamSalesReport(teams=teams, rows=rows)


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
ORDER BY agent.username, accumulated.owner_id, day
"""


def agent_daily_progression(
    conn: sqlite3.Connection, month: str, agent: str | None = None
) -> list[ProgressionRow]:
    start, end = parse_month(month)
    params: dict[str, object] = {"start": start.isoformat(), "end": end.isoformat()}
    agent_filter = ""
    if agent is not None:
        agent_filter = "AND target.owner_id IN (SELECT id FROM agent WHERE username = :agent)"
        params["agent"] = agent
    sql = _PROGRESSION_SQL.replace("{agent_filter}", agent_filter)
    return [ProgressionRow(*row) for row in conn.execute(sql, params)]
