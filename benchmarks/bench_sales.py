"""Q3 sales reports on a demo DB of N sessions (and as many target operations), then on one of
ten times as many: team sales and one month's progression for all agents.

Ours is DuckDB scanning the SQLite file, on the DB without the indexes the reports want (as the
company's is). Against it, in the same run: the previous way, SQL inside SQLite, without and
with those indexes, and pandas.read_sql + pandas as the baseline. Ours is timed twice: in a
process that has just started (importing DuckDB and loading the scanner included, as a
command pays it) and with the scanner already loaded (as the second report of a run does)."""

import shutil
import sqlite3
from pathlib import Path

import pandas as pd

from benchmarks.common import Case, cache_dir, compare, measure, prepared
from salesops_pipeline.sales import reports, scanner
from salesops_pipeline.sales.demo import generate_demo_db
from salesops_pipeline.sales.schema import open_sales_db
from salesops_pipeline_tests.support import sqlite_reports

MONTH = "2026-03"


def demo_db(scale: int) -> Path:
    path = (cache_dir() / f"sales-{scale}.sqlite").absolute()
    if not path.is_file():
        prepared(_generate, path, scale)
    return path


def _generate(path: Path, scale: int) -> None:
    generate_demo_db(path, sessions=scale)


def without_indexes(path: Path) -> Path:
    """A copy of the demo DB without its indexes, like the company's database today."""
    bare = path.with_name(path.stem + "-no-index.sqlite")
    if not bare.is_file():
        shutil.copyfile(path, bare)
        conn = sqlite3.connect(bare)
        try:
            for (name,) in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
            ).fetchall():
                conn.execute(f'DROP INDEX "{name}"')
            conn.commit()
        finally:
            conn.close()
    return bare


def _path(params: dict) -> Path:
    return Path(params["db"])


def _bare_path(params: dict) -> Path:
    return Path(params["bare_db"])


def _bare_path_scanner_loaded(params: dict) -> Path:
    scanner.load()
    return _bare_path(params)


def _team_sales_digest(report: reports.TeamSalesReport) -> tuple:
    # What a user sees, to the cent: every way must print the same report.
    return tuple((r.team, r.status, r.sessions, f"{r.amount:.2f}") for r in report.rows), None


def _money(*amounts: float) -> tuple[str, ...]:
    return tuple(f"{amount:.2f}" for amount in amounts)


def _progression_digest(rows: list[reports.ProgressionRow]) -> tuple:
    """Every row's amounts to the cent, and its two ratios."""
    money = tuple(
        (
            row.agent,
            row.date,
            *_money(
                row.target_of_the_day,
                row.amount_of_the_day,
                row.target_accumulated,
                row.amount_accumulated,
            ),
        )
        for row in rows
    )
    ratios = tuple((row.progression_of_the_day, row.progression_accumulated) for row in rows)
    return money, ratios


def run_team_sales(path: Path) -> tuple:
    with open_sales_db(path) as conn:
        return _team_sales_digest(reports.team_sales(conn))


def run_team_sales_in_sqlite(path: Path) -> tuple:
    with open_sales_db(path) as conn:
        return _team_sales_digest(sqlite_reports.team_sales(conn))


def run_team_sales_pandas(path: Path) -> tuple:
    conn = sqlite3.connect(path)
    try:
        sessions = pd.read_sql("SELECT owner_id, status, amount FROM session", conn)
        members = pd.read_sql("SELECT DISTINCT agent_id, team_id FROM agent_team", conn)
        teams = pd.read_sql("SELECT id AS team_id, name FROM team", conn)
    finally:
        conn.close()
    joined = sessions.merge(members, left_on="owner_id", right_on="agent_id").merge(teams)
    grouped = joined.groupby(["name", "status", "team_id"])["amount"].agg(["size", "sum"])
    rows = tuple(
        (name, status, int(size), f"{total:.2f}")
        for (name, status, _), size, total in zip(
            grouped.index, grouped["size"], grouped["sum"], strict=True
        )
    )
    return rows, None


def run_progression(path: Path) -> tuple:
    with open_sales_db(path) as conn:
        return _progression_digest(reports.agent_daily_progression(conn, MONTH))


def run_progression_in_sqlite(path: Path) -> tuple:
    with open_sales_db(path) as conn:
        return _progression_digest(sqlite_reports.agent_daily_progression(conn, MONTH))


def run_progression_pandas(path: Path) -> tuple:
    start, end = (d.isoformat() for d in reports.parse_month(MONTH))
    conn = sqlite3.connect(path)
    try:
        targets = pd.read_sql(
            "SELECT id, owner_id, date, amount FROM target WHERE date >= ? AND date < ?",
            conn,
            params=(start, end),
        )
        operations = pd.read_sql("SELECT target_id, amount FROM target_operation", conn)
        agents = pd.read_sql("SELECT id AS owner_id, username FROM agent", conn)
    finally:
        conn.close()
    booked = operations.groupby("target_id")["amount"].sum().rename("booked")
    days = targets.join(booked, on="id").fillna({"booked": 0.0})
    days = days.groupby(["owner_id", "date"], as_index=False)[["amount", "booked"]].sum()
    days = days.merge(agents).sort_values(["username", "owner_id", "date"])
    days[["target_acc", "amount_acc"]] = days.groupby("owner_id")[["amount", "booked"]].cumsum()

    def ratio(amount, target):
        return (amount / target.where(target != 0)).round(2).clip(lower=0).fillna(0)

    days["progression"] = ratio(days["booked"], days["amount"])
    days["progression_acc"] = ratio(days["amount_acc"], days["target_acc"])
    money = tuple(
        (row.username, row.date, *_money(row.amount, row.booked, row.target_acc, row.amount_acc))
        for row in days.itertuples(index=False)
    )
    # pandas rounds floats half to even (0.125 to 0.12), the reports half up: its ratios are
    # computed, and timed, but not compared.
    return money, None


def _sections(scale: int, repeat: int) -> list[str]:
    path = demo_db(scale)
    params = {"db": str(path), "bare_db": str(without_indexes(path))}
    with open_sales_db(Path(params["db"])) as conn:
        operations = conn.execute("SELECT COUNT(*) FROM target_operation").fetchone()[0]
    sections = []
    for title, ours, in_sqlite, pandas_way, unit_count in (
        ("team_sales", run_team_sales, run_team_sales_in_sqlite, run_team_sales_pandas, scale),
        (
            f"agent_daily_progression, {MONTH}, all agents",
            run_progression,
            run_progression_in_sqlite,
            run_progression_pandas,
            operations,
        ),
    ):
        figures = [
            measure(Case("DuckDB scanner (ours), no indexes", _bare_path, ours), params, repeat),
            measure(
                Case("ours, no indexes, scanner already loaded", _bare_path_scanner_loaded, ours),
                params,
                repeat,
            ),
            measure(
                Case("SQL in SQLite (before), no indexes", _bare_path, in_sqlite), params, repeat
            ),
            measure(Case("SQL in SQLite (before), with indexes", _path, in_sqlite), params, repeat),
            measure(
                Case("pandas.read_sql + pandas, no indexes", _bare_path, pandas_way, baseline=True),
                params,
                repeat,
            ),
        ]
        ours_money, ours_ratios = figures[0].result
        differing = [
            f.name
            for f in figures
            if f.result[0] != ours_money or f.result[1] not in (None, ours_ratios)
        ]
        assert not differing, f"{title}: {differing} differ from ours"
        sections.append(
            compare(
                f"Sales: {title} ({scale:,} sessions, {operations:,} target operations)",
                figures,
                unit_count,
                "rows",
            )
        )
    return sections


def main(scale: int, repeat: int) -> str:
    """At `scale` sessions, then at ten times as many (the 10x demo DB is generated once)."""
    return "\n".join(_sections(scale, repeat) + _sections(scale * 10, repeat))
