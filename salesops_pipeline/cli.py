"""`salesops`: quick answers and the local stack, from a terminal.

Every report goes through the same functions as the Dagster assets, so the terminal and the
UI never disagree. Bad input ends with one line on stderr and a non-zero exit, never a
traceback.
"""

import argparse
import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

from dotenv import load_dotenv

from salesops_pipeline import settings
from salesops_pipeline.errors import InvalidInputError, SalesopsError
from salesops_pipeline.exports import progression_document
from salesops_pipeline.resources.sales_db import resolve_sales_db_path
from salesops_pipeline.sales import demo, reports
from salesops_pipeline.sales.schema import open_sales_db

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def _db_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--db",
        metavar="PATH",
        help="SQLite sales DB to read (default: SALESOPS_SALES_DB, else the demo DB)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="salesops",
        description="Sales operations: reports, demo data and the local Dagster stack.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    team_sales = commands.add_parser(
        "team-sales", help="sessions and amounts per team and status (Q3.1)"
    )
    team_sales.add_argument("--format", choices=("text", "json"), default="text")
    _db_argument(team_sales)
    team_sales.set_defaults(handler=_team_sales)

    progression = commands.add_parser(
        "progression", help="an agent's day-by-day progression over a month, as JSON (Q3.2)"
    )
    progression.add_argument("--agent", required=True, metavar="USERNAME")
    progression.add_argument("--month", required=True, metavar="YYYY-MM")
    _db_argument(progression)
    progression.set_defaults(handler=_progression)

    demo_db = commands.add_parser("demo-db", help="generate a demo sales DB in the company schema")
    demo_db.add_argument(
        "--path", type=Path, help="where to write it (default: the demo DB under SALESOPS_HOME)"
    )
    demo_db.add_argument("--sessions", type=_non_negative_int, default=demo.DEFAULT_SESSIONS)
    demo_db.add_argument("--seed", type=int, default=demo.DEFAULT_SEED)
    demo_db.set_defaults(handler=_demo_db)

    dev = commands.add_parser("dev", help="start the Dagster UI and daemon on this project")
    dev.add_argument("--host", default="127.0.0.1")
    dev.add_argument("--dagster-port", type=int, default=3000)
    dev.set_defaults(handler=_dev)
    return parser


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more: {text}")
    return value


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
    demo.generate_demo_db(path, sessions=args.sessions, seed=args.seed)
    print(f"Demo sales DB written to {path} ({args.sessions} sessions, seed {args.seed})")
    return 0


def _dev(args: argparse.Namespace) -> int:
    home = settings.salesops_home()
    dagster_home = home / "dagster"
    dagster_home.mkdir(parents=True, exist_ok=True)
    sales_db = resolve_sales_db_path()
    print(f"Sales DB: {sales_db}")
    print(f"State:    {home}")
    print(f"Dagster UI: http://{args.host}:{args.dagster_port}")
    env = {**os.environ, "DAGSTER_HOME": str(dagster_home), settings.HOME_ENV: str(home)}
    command = [
        sys.executable,
        "-m",
        "dagster",
        "dev",
        "-m",
        "salesops_pipeline.definitions",
        "--host",
        args.host,
        "--port",
        str(args.dagster_port),
    ]
    child = subprocess.Popen(command, env=env)  # noqa: S603 - fixed argv, no shell

    def _stop(signum, _frame):
        # Passed on so that `dagster dev` shuts its webserver and daemon down cleanly.
        child.send_signal(signum)

    signal.signal(signal.SIGTERM, _stop)
    try:
        return child.wait()
    except KeyboardInterrupt:
        # The terminal already sent Ctrl-C to the whole process group; give it time to stop.
        return child.wait()


def main(argv: list[str] | None = None) -> int:
    load_dotenv(dotenv_path=Path.cwd() / ".env", override=False)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except SalesopsError as error:
        print(f"salesops: {error}", file=sys.stderr)
        return EXIT_ERROR
    except (OSError, sqlite3.Error) as error:
        print(f"salesops: {type(error).__name__}: {error}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
