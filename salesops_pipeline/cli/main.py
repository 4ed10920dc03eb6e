"""`salesops`: quick answers and the local stack, from a terminal.

Every report goes through the same functions as the Dagster assets, so the terminal and the
UI never disagree. Bad input ends with one line on stderr and a non-zero exit, never a
traceback. A command's module, and the domain behind it, is imported only when that command
runs: a report answers without loading the services, the stack or Dagster.
"""

import argparse
import importlib
import os
import sys
from pathlib import Path

from dotenv import load_dotenv

from salesops_pipeline import settings
from salesops_pipeline.errors import SalesopsError
from salesops_pipeline.postgres import storage_errors

EXIT_ERROR = 1
EXIT_INTERRUPTED = 130

# Each command: the module of `salesops_pipeline.cli` that defines its arguments and runs it,
# and its one-line help.
COMMANDS = {
    "team-sales": ("sales", "sessions sold and their amounts, per team and status"),
    "progression": (
        "sales",
        "an agent's day-by-day progression toward their monthly target, as JSON",
    ),
    "agents": ("sales", "the agents: usernames, teams, and who has targets in a month"),
    "demo-db": ("sales", "generate a demo sales DB in the company schema"),
    "duplicates": (
        "campaigns",
        "phone numbers two campaigns both call, with each campaign's last call",
    ),
    "sandbox": ("services", "serve the sandbox voice provider and CRM (offline stand-in)"),
    "serve": ("services", "run the intake service for post-call webhooks"),
    "post-call": (
        "post_call",
        "apply one post-call event now, through the same rules as the pipeline",
    ),
    "inbox": ("post_call", "recent post-call events and their status"),
    "replay": ("post_call", "queue a post-call event again"),
    "dismiss": ("post_call", "give up on failed post-call events for good (never replayed)"),
    "contact": (
        "post_call",
        "why a customer's record looks as it does: each post-call event of the contact, what"
        " was decided and written, and the contact at the provider now",
    ),
    "simulate": ("devtools", "post realistic post-call events to the intake, like a call centre"),
    "dev": ("devtools", "start the local stack: sandbox provider, intake service and Dagster"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser. Only `command`'s arguments are loaded; every other command shows its help
    line alone."""
    parser = argparse.ArgumentParser(
        prog="salesops",
        description="Sales operations: reports, demo data and the local Dagster stack.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        subparser = commands.add_parser(name, help=help_text, description=help_text)
        if name == command:
            module = importlib.import_module(f"salesops_pipeline.cli.{module}")
            module.ARGUMENTS[name](subparser)
    return parser


def _command_in(argv: list[str]) -> str | None:
    return next((word for word in argv if word in COMMANDS), None)


# The locally generated keys each command may take: only those it needs (a service started by
# `salesops dev` gets no more than its part of the stack).
LOCAL_KEYS_FOR = {
    "serve": (settings.INTAKE_KEY_ENV, settings.METRICS_TOKEN_ENV),
    "sandbox": (settings.REMOTE_API_KEY_ENV,),
    "simulate": (settings.INTAKE_KEY_ENV, settings.REMOTE_API_KEY_ENV),
    "dev": (settings.INTAKE_KEY_ENV, settings.REMOTE_API_KEY_ENV, settings.METRICS_TOKEN_ENV),
    # The reports read the sales DB alone.
    "team-sales": (),
    "progression": (),
    "agents": (),
    "demo-db": (),
}


def _load_local_keys(command: str) -> None:
    """Keys a local `salesops dev` generated, so that its neighbours can talk to it."""
    wanted = LOCAL_KEYS_FOR.get(command, (settings.REMOTE_API_KEY_ENV,))
    if not wanted:
        return
    from salesops_pipeline.devtools.stack import load_local_keys

    for name, value in load_local_keys(settings.salesops_home()).items():
        if name in wanted and not os.environ.get(name):
            os.environ[name] = value


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    load_dotenv(dotenv_path=Path.cwd() / ".env", override=False)
    args = build_parser(_command_in(argv)).parse_args(argv)
    _load_local_keys(args.command)
    try:
        return args.handler(args)
    except SalesopsError as error:
        print(f"salesops: {error}", file=sys.stderr)
        return EXIT_ERROR
    except storage_errors() as error:
        # The driver's own error, not the pool's wrapping of it; its first line says it all.
        cause = getattr(error, "orig", None) or error
        first_line = (str(cause).strip().splitlines() or [""])[0]
        print(f"salesops: {type(cause).__name__}: {first_line}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
