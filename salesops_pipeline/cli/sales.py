"""`salesops team-sales`, `progression`, `agents` and `demo-db`: the sales reports (Q3) from a
terminal, through the same functions as the Dagster assets.

The reports print on stdout exactly what the original test asked for; anything else a reader
should know, such as figures coming from generated demo data, goes to stderr.
"""

import argparse
import json
import sqlite3
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from salesops_pipeline import settings
from salesops_pipeline.cli.arguments import db_argument, non_negative_int, quiet_argument
from salesops_pipeline.cli.progress import live_progress
from salesops_pipeline.sales import demo, reports
from salesops_pipeline.sales.exports import progression_document
from salesops_pipeline.sales.schema import choose_sales_db, is_demo_db, open_sales_db
from salesops_pipeline.text import terminal_safe
from salesops_pipeline.timezone import BUSINESS_TIMEZONE


def _team_sales_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=("text", "json"), default="text")
    parser.add_argument(
        "--month",
        metavar="YYYY-MM",
        help="the sales booked in that month alone (default: every sale ever made)",
    )
    db_argument(parser)
    parser.set_defaults(handler=_team_sales)


def _progression_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--agent",
        required=True,
        metavar="USERNAME",
        help="the agent's username, or the part before its @ when no other agent has it",
    )
    parser.add_argument("--month", required=True, metavar="YYYY-MM")
    db_argument(parser)
    parser.set_defaults(handler=_progression)


def _agents_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--month",
        metavar="YYYY-MM",
        help="whose targets to show (default: the current month, Paris time)",
    )
    parser.add_argument("--format", choices=("text", "json"), default="text")
    db_argument(parser)
    parser.set_defaults(handler=_agents)


@contextmanager
def _sales_db(option: str | None) -> Iterator[tuple[sqlite3.Connection, Path]]:
    """The sales DB a report reads, saying on stderr when its figures are generated demo data,
    and when that data was generated just now for want of a sales DB."""
    chosen = choose_sales_db(option)
    with open_sales_db(chosen.path) as conn:
        if chosen.generated_now:
            _note(
                f"no sales DB configured ({settings.SALES_DB_ENV} or --db): generated demo data"
                f" at {chosen.path}"
            )
        if is_demo_db(conn):
            _note(
                f"these figures are generated demo data ({chosen.path}), not the company's"
                f" sales: set {settings.SALES_DB_ENV} or pass --db for the real ones"
            )
        yield conn, chosen.path


def _note(text: str) -> None:
    print(f"salesops: {terminal_safe(text)}", file=sys.stderr)


def _demo_db_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--path", type=Path, help="where to write it (default: the demo DB under SALESOPS_HOME)"
    )
    parser.add_argument("--sessions", type=non_negative_int, default=demo.DEFAULT_SESSIONS)
    parser.add_argument("--seed", type=int, default=demo.DEFAULT_SEED)
    quiet_argument(parser)
    parser.set_defaults(handler=_demo_db)


def _team_sales(args: argparse.Namespace) -> int:
    if args.month is not None:
        reports.parse_month(args.month)  # refused before opening anything
    with _sales_db(args.db) as (conn, _):
        report = reports.team_sales(conn, args.month)
    if args.format == "json":
        records = reports.team_sales_records(report)
        if args.month is not None:
            records = [{"month": args.month, **record} for record in records]
        print(json.dumps(records, ensure_ascii=False, indent=2))
    else:
        if args.month is not None:
            print(f"Sales booked in {args.month}")
        print(reports.team_sales_text(report))
    return 0


def _progression(args: argparse.Namespace) -> int:
    reports.parse_month(args.month)  # a malformed month is refused before opening anything
    with _sales_db(args.db) as (conn, path):
        agent = reports.resolve_agent(conn, args.agent, where=f" in sales DB {path}")
        if agent != args.agent:
            _note(f"agent {agent}")
        rows = reports.agent_daily_progression(conn, args.month, agent=agent)
    print(json.dumps(progression_document(rows), indent=2))
    return 0


def _agents(args: argparse.Namespace) -> int:
    month = args.month or datetime.now(BUSINESS_TIMEZONE).strftime("%Y-%m")
    reports.parse_month(month)
    with _sales_db(args.db) as (conn, _):
        agents = reports.agent_listing(conn, month)
    if args.format == "json":
        records = [
            {
                "username": agent.username,
                "teams": list(agent.teams),
                "targets_in_month": agent.has_targets,
                "month": month,
            }
            for agent in agents
        ]
        print(json.dumps(records, ensure_ascii=False, indent=2))
        return 0
    rows = [
        (
            terminal_safe(a.username),
            terminal_safe(", ".join(a.teams) or "no team"),
            "yes" if a.has_targets else "no",
        )
        for a in agents
    ]
    header = ("USERNAME", "TEAMS", f"TARGETS IN {month}")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(2)]
    for row in [header, *rows]:
        print(f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]}")
    return 0


def _demo_db(args: argparse.Namespace) -> int:
    path = (args.path or settings.demo_sales_db_path()).expanduser().absolute()
    with live_progress(args.quiet) as shown:
        written = None
        if shown:
            written = shown.line(
                "Sessions", "written", total=args.sessions, rate_unit="sessions/s"
            ).set
        demo.generate_demo_db(path, sessions=args.sessions, seed=args.seed, on_progress=written)
    print(f"Demo sales DB written to {path} ({args.sessions} sessions, seed {args.seed})")
    return 0


# Each command: the function that adds its arguments and sets its handler.
ARGUMENTS = {
    "team-sales": _team_sales_arguments,
    "progression": _progression_arguments,
    "agents": _agents_arguments,
    "demo-db": _demo_db_arguments,
}
