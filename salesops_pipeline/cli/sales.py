"""`salesops team-sales`, `progression` and `demo-db`: the sales reports (Q3) from a terminal,
through the same functions as the Dagster assets."""

import argparse
import json
from pathlib import Path

from salesops_pipeline import settings
from salesops_pipeline.cli.arguments import db_argument, non_negative_int, quiet_argument
from salesops_pipeline.cli.progress import live_progress
from salesops_pipeline.errors import InvalidInputError
from salesops_pipeline.sales import demo, reports
from salesops_pipeline.sales.exports import progression_document
from salesops_pipeline.sales.schema import open_sales_db, resolve_sales_db_path


def _team_sales_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=("text", "json"), default="text")
    db_argument(parser)
    parser.set_defaults(handler=_team_sales)


def _progression_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--agent", required=True, metavar="USERNAME")
    parser.add_argument("--month", required=True, metavar="YYYY-MM")
    db_argument(parser)
    parser.set_defaults(handler=_progression)


def _demo_db_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--path", type=Path, help="where to write it (default: the demo DB under SALESOPS_HOME)"
    )
    parser.add_argument("--sessions", type=non_negative_int, default=demo.DEFAULT_SESSIONS)
    parser.add_argument("--seed", type=int, default=demo.DEFAULT_SEED)
    quiet_argument(parser)
    parser.set_defaults(handler=_demo_db)


def _team_sales(args: argparse.Namespace) -> int:
    with open_sales_db(resolve_sales_db_path(args.db)) as conn:
        report = reports.team_sales(conn)
    if args.format == "json":
        print(json.dumps(reports.team_sales_records(report), ensure_ascii=False, indent=2))
    else:
        print(reports.team_sales_text(report))
    return 0


def _progression(args: argparse.Namespace) -> int:
    reports.parse_month(args.month)  # a malformed month is refused before opening anything
    path = resolve_sales_db_path(args.db)
    with open_sales_db(path) as conn:
        if not reports.agent_exists(conn, args.agent):
            raise InvalidInputError(f"Unknown agent {args.agent!r} in sales DB {path}")
        rows = reports.agent_daily_progression(conn, args.month, agent=args.agent)
    print(json.dumps(progression_document(rows), indent=2))
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
    "demo-db": _demo_db_arguments,
}
