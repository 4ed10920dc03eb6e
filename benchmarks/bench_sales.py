"""Q3 sales reports on a demo DB of N sessions (and as many target operations): team sales and
one month's progression for all agents, ours (SQL in SQLite) against pandas.read_sql + pandas."""

import shutil
import sqlite3
from pathlib import Path

import pandas as pd

from benchmarks.common import Case, cache_dir, compare, measure
from salesops_pipeline.sales import reports
from salesops_pipeline.sales.demo import generate_demo_db
from salesops_pipeline.sales.schema import open_sales_db

MONTH = "2026-03"


def demo_db(scale: int) -> Path:
    path = (cache_dir() / f"sales-{scale}.sqlite").absolute()
    if not path.is_file():
        generate_demo_db(path, sessions=scale)
    return path


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


def run_team_sales(path: Path) -> int:
    with open_sales_db(path) as conn:
        return len(reports.team_sales(conn).rows)


def run_team_sales_pandas(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        sessions = pd.read_sql("SELECT owner_id, status, amount FROM session", conn)
        members = pd.read_sql("SELECT DISTINCT agent_id, team_id FROM agent_team", conn)
        teams = pd.read_sql("SELECT id AS team_id, name FROM team", conn)
    finally:
        conn.close()
    joined = sessions.merge(members, left_on="owner_id", right_on="agent_id").merge(teams)
    grouped = joined.groupby(["name", "status"])["amount"].agg(["size", "sum"])
    return len(grouped)


def run_progression(path: Path) -> int:
    with open_sales_db(path) as conn:
        return len(reports.agent_daily_progression(conn, MONTH))


def run_progression_pandas(path: Path) -> int:
    start, end = (d.isoformat() for d in reports.parse_month(MONTH))
    conn = sqlite3.connect(path)
    try:
        targets = pd.read_sql(
            "SELECT id, owner_id, date, amount FROM target WHERE date >= ? AND date < ?",
            conn,
            params=(start, end),
        )
        operations = pd.read_sql("SELECT target_id, amount FROM target_operation", conn)
    finally:
        conn.close()
    booked = operations.groupby("target_id")["amount"].sum().rename("booked")
    days = targets.join(booked, on="id").fillna({"booked": 0.0})
    days = days.groupby(["owner_id", "date"], as_index=False)[["amount", "booked"]].sum()
    days = days.sort_values(["owner_id", "date"])
    days[["target_acc", "amount_acc"]] = days.groupby("owner_id")[["amount", "booked"]].cumsum()

    def ratio(amount, target):
        return (amount / target.where(target != 0)).round(2).clip(lower=0).fillna(0)

    days["progression"] = ratio(days["booked"], days["amount"])
    days["progression_acc"] = ratio(days["amount_acc"], days["target_acc"])
    return len(days)


def main(scale: int, repeat: int) -> str:
    path = demo_db(scale)
    params = {"db": str(path), "bare_db": str(without_indexes(path))}
    with open_sales_db(Path(params["db"])) as conn:
        operations = conn.execute("SELECT COUNT(*) FROM target_operation").fetchone()[0]
    sections = []
    for title, ours, pandas_way, unit_count in (
        ("team_sales", run_team_sales, run_team_sales_pandas, scale),
        (
            f"agent_daily_progression, {MONTH}, all agents",
            run_progression,
            run_progression_pandas,
            operations,
        ),
    ):
        figures = [
            measure(Case("SQL in SQLite (ours)", _path, ours), params, repeat),
            measure(Case("ours, DB without indexes", _bare_path, ours), params, repeat),
            measure(
                Case("pandas.read_sql + pandas", _path, pandas_way, baseline=True), params, repeat
            ),
        ]
        assert len({f.result for f in figures}) == 1, f"{title}: results differ"
        sections.append(
            compare(
                f"Sales: {title} ({scale:,} sessions, {operations:,} target operations)",
                figures,
                unit_count,
                "rows",
            )
        )
    return "\n".join(sections)
