"""Q3.1 and Q3.2 on random small sales DBs, against oracles that share no code with them.

The first oracle is plain Python over the rows written, with exact decimal arithmetic: it must
agree on every count, amount, ratio and on the row order. The second is the reports as they
ran before, SQL inside SQLite: where its float sums are exact (whole euros) it must agree too.
"""

import sqlite3
import tempfile
from collections import defaultdict
from dataclasses import astuple
from decimal import ROUND_HALF_UP, Decimal, localcontext
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from salesops_pipeline.sales import reports
from salesops_pipeline.sales.demo import SCHEMA
from salesops_pipeline.sales.schema import open_sales_db
from salesops_pipeline_tests.support import sqlite_reports

EXAMPLES = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MONTH = "2025-04"

# Names that collide, and that sort differently by bytes than by any locale.
names = st.sampled_from(["sales", "support", "Support", "tech", "émile", "zoé", "b"])
# Cents, with round figures often enough to land on ratios like 57 / 200 = 0.285 exactly.
cents = st.one_of(
    st.integers(-2_000_000, 5_000_000),
    st.integers(-200, 500).map(lambda euros: euros * 100),
    st.sampled_from([0, 100, 5_700, 20_000, 80_000, 145_000]),
)
whole_euros = st.one_of(
    st.integers(-20_000, 50_000).map(lambda euros: euros * 100),
    st.sampled_from([0, 100, 5_700, 20_000, 80_000, 145_000]),
)
# Mostly in the month, some around it, some with a time of day as real dates sometimes carry.
days = st.builds(
    lambda month, day, time: f"2025-{month:02d}-{day:02d}{time}",
    st.sampled_from([3, 4, 4, 4, 5]),
    st.integers(1, 30),
    st.sampled_from(["", "", " 10:30:00"]),
)


def _ids(count: int):
    """1..count, or None, or count + 1: a reference to a row that is not there."""
    return st.integers(0, count + 1).map(lambda i: i or None)


@st.composite
def sales_dbs(draw, money=cents):
    """The rows of a small sales DB: ids may dangle, memberships repeat, owners be missing."""
    teams = draw(st.lists(names, min_size=1, max_size=4))
    agents = draw(st.lists(names.map(lambda name: f"{name}@example.com"), min_size=1, max_size=5))
    memberships = draw(
        st.lists(st.tuples(_ids(len(agents)), _ids(len(teams))), min_size=1, max_size=10)
    )
    statuses = st.sampled_from(["new", "unsubscribed", "pending"])
    sessions = draw(
        st.lists(st.tuples(_ids(len(agents)), statuses, money), min_size=1, max_size=40)
    )
    targets = draw(st.lists(st.tuples(_ids(len(agents)), days, money), min_size=1, max_size=30))
    operations = draw(st.lists(st.tuples(_ids(len(targets)), money), max_size=60))
    return {
        "teams": teams,
        "agents": agents,
        "memberships": memberships,
        "sessions": sessions,
        "targets": targets,
        "operations": operations,
    }


def _euros(cents_amount: int) -> float:
    return cents_amount / 100


def _write(db: dict, path: Path) -> Path:
    conn = sqlite3.connect(path)
    conn.executescript(SCHEMA)
    conn.executemany("INSERT INTO team (name) VALUES (?)", [(name,) for name in db["teams"]])
    conn.executemany("INSERT INTO agent (username) VALUES (?)", [(a,) for a in db["agents"]])
    conn.executemany("INSERT INTO agent_team (agent_id, team_id) VALUES (?, ?)", db["memberships"])
    conn.executemany(
        "INSERT INTO session (owner_id, status, amount) VALUES (?, ?, ?)",
        [(owner, status, _euros(amount)) for owner, status, amount in db["sessions"]],
    )
    conn.executemany(
        "INSERT INTO target (owner_id, date, amount) VALUES (?, ?, ?)",
        [(owner, day, _euros(amount)) for owner, day, amount in db["targets"]],
    )
    conn.executemany(
        "INSERT INTO target_operation (target_id, amount) VALUES (?, ?)",
        [(target, _euros(amount)) for target, amount in db["operations"]],
    )
    conn.commit()
    conn.close()
    return path


def _oracle_team_sales(db: dict) -> tuple[tuple, list[tuple]]:
    # NULL joins nothing, in SQL.
    members = {(agent, team) for agent, team in db["memberships"] if agent and team}
    totals: dict[tuple[int, str], list] = defaultdict(lambda: [0, 0])
    for owner, status, amount in db["sessions"]:
        for team_id in range(1, len(db["teams"]) + 1):
            if (owner, team_id) in members:
                totals[(team_id, status)][0] += 1
                totals[(team_id, status)][1] += amount
    rows = sorted(
        (db["teams"][team_id - 1], status, team_id, count, amount)
        for (team_id, status), (count, amount) in totals.items()
    )
    return (
        tuple(sorted(db["teams"])),
        [
            (team, status, count, float(Decimal(amount) / 100))
            for team, status, _, count, amount in rows
        ],
    )


def _oracle_ratio(amount: int, target: int) -> float:
    if target == 0:
        return 0.0
    with localcontext() as context:
        context.prec = 60
        ratio = (Decimal(amount) / Decimal(target)).quantize(Decimal("0.01"), ROUND_HALF_UP)
    return max(float(ratio), 0.0)


def _oracle_progression(db: dict, agent: str | None) -> list[tuple]:
    agents = dict(enumerate(db["agents"], start=1))
    day_of = {}
    targets: dict[tuple[int, str], int] = defaultdict(int)
    for target_id, (owner, day, amount) in enumerate(db["targets"], start=1):
        if owner is None or owner not in agents or not day.startswith(MONTH):
            continue
        if agent is not None and agents[owner] != agent:
            continue
        day_of[target_id] = (owner, day[:10])
        targets[(owner, day[:10])] += amount
    booked: dict[tuple[int, str], int] = defaultdict(int)
    for target_id, amount in db["operations"]:
        if target_id in day_of:
            booked[day_of[target_id]] += amount
    rows = []
    accumulated: dict[int, tuple[int, int]] = defaultdict(lambda: (0, 0))
    for owner, day in sorted(targets, key=lambda key: (agents[key[0]], key[0], key[1])):
        target, amount = targets[(owner, day)], booked[(owner, day)]
        target_acc, amount_acc = accumulated[owner]
        target_acc, amount_acc = target_acc + target, amount_acc + amount
        accumulated[owner] = (target_acc, amount_acc)
        rows.append(
            (
                agents[owner],
                day,
                _euros(target),
                _euros(amount),
                _oracle_ratio(amount, target),
                float(Decimal(target_acc) / 100),
                float(Decimal(amount_acc) / 100),
                _oracle_ratio(amount_acc, target_acc),
            )
        )
    return rows


def _reports(db: dict, agent: str | None):
    with tempfile.TemporaryDirectory() as folder:
        with open_sales_db(_write(db, Path(folder) / "sales.sqlite")) as conn:
            return (
                reports.team_sales(conn),
                reports.agent_daily_progression(conn, MONTH, agent),
                sqlite_reports.team_sales(conn),
                sqlite_reports.agent_daily_progression(conn, MONTH, agent),
            )


def _visible_team_sales(report: reports.TeamSalesReport) -> tuple:
    return (
        report.teams,
        [(r.team, r.status, r.sessions, r.amount) for r in report.rows],
        reports.team_sales_text(report),
        reports.team_sales_records(report),
    )


agents_to_filter = st.one_of(st.none(), names.map(lambda name: f"{name}@example.com"))


@EXAMPLES
@given(db=sales_dbs(), agent=agents_to_filter)
def test_reports_equal_the_exact_python_oracle(db, agent):
    team_sales, progression, _, _ = _reports(db, agent)
    teams, rows = _oracle_team_sales(db)
    assert team_sales.teams == teams
    assert [(r.team, r.status, r.sessions, r.amount) for r in team_sales.rows] == rows
    assert [astuple(row) for row in progression] == _oracle_progression(db, agent)


@EXAMPLES
@given(db=sales_dbs(money=whole_euros), agent=agents_to_filter)
def test_reports_equal_the_previous_sqlite_reports_where_floats_are_exact(db, agent):
    team_sales, progression, old_team_sales, old_progression = _reports(db, agent)
    assert _visible_team_sales(team_sales) == _visible_team_sales(old_team_sales)
    assert [row.to_frontend() for row in progression] == [
        row.to_frontend() for row in old_progression
    ]
    assert [astuple(row) for row in progression] == [astuple(row) for row in old_progression]
