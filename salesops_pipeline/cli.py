"""`salesops`: quick answers and the local stack, from a terminal.

Every report goes through the same functions as the Dagster assets, so the terminal and the
UI never disagree. Bad input ends with one line on stderr and a non-zero exit, never a
traceback.
"""

import argparse
import json
import os
import secrets
import sqlite3
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import duckdb
from dotenv import load_dotenv

from salesops_pipeline import settings
from salesops_pipeline.campaigns.duplicates import (
    duplicates_json,
    duplicates_text,
    find_duplicates,
)
from salesops_pipeline.campaigns.ingest import check_campaign_pair, load_campaigns
from salesops_pipeline.clients import ApiTransport, CrmClient, VoiceClient
from salesops_pipeline.errors import InvalidInputError, SalesopsError
from salesops_pipeline.exports import progression_document
from salesops_pipeline.intake.app import create_intake_app
from salesops_pipeline.intake.server import LOG_LEVELS, serve_intake
from salesops_pipeline.post_call.events import parse_event
from salesops_pipeline.post_call.inbox import Inbox
from salesops_pipeline.post_call.processor import PostCallProcessor
from salesops_pipeline.post_call.status import EventStatus, HandlingStatus
from salesops_pipeline.resources.sales_db import resolve_sales_db_path
from salesops_pipeline.sales import demo, reports
from salesops_pipeline.sales.schema import open_sales_db
from salesops_pipeline.sandbox import seed as sandbox_seed
from salesops_pipeline.sandbox import server as sandbox_server
from salesops_pipeline.sandbox.app import DEFAULT_PAGE_SIZE
from salesops_pipeline.sandbox.server import ensure_seeded_store, running_sandbox
from salesops_pipeline.simulator import simulate
from salesops_pipeline.stack import (
    StackPorts,
    load_local_keys,
    run_local_stack,
    running_stack,
)
from salesops_pipeline.text import terminal_safe

DEFAULT_SANDBOX_PORT = 8010
DEFAULT_INTAKE_PORT = 8020


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

    duplicates = commands.add_parser(
        "duplicates", help="numbers present in both campaigns, with their last calls (Q1)"
    )
    duplicates.add_argument("--format", choices=("text", "json"), default="text")
    duplicates.add_argument("--campaign-a", default="A", metavar="ID")
    duplicates.add_argument("--campaign-b", default="B", metavar="ID")
    duplicates.add_argument(
        "--timeout",
        type=_positive_float,
        default=30.0,
        metavar="SECONDS",
        help="how long to wait for each answer of the provider (default 30)",
    )
    duplicates.set_defaults(handler=_duplicates)

    sandbox = commands.add_parser(
        "sandbox", help="serve the sandbox voice provider and CRM (offline stand-in)"
    )
    sandbox.add_argument("--host", default="127.0.0.1")
    sandbox.add_argument("--port", type=int, default=DEFAULT_SANDBOX_PORT)
    sandbox.add_argument(
        "--contacts-per-campaign",
        type=_non_negative_int,
        default=sandbox_seed.DEFAULT_CONTACTS_PER_CAMPAIGN,
        help="size of each demo campaign when the sandbox is first seeded",
    )
    sandbox.add_argument("--page-size", type=_positive_int, default=DEFAULT_PAGE_SIZE)
    sandbox.add_argument("--reset", action="store_true", help="discard its state and reseed")
    sandbox.set_defaults(handler=_sandbox)

    serve = commands.add_parser("serve", help="run the intake service for post-call webhooks")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=DEFAULT_INTAKE_PORT)
    serve.add_argument(
        "--local-demo",
        action="store_true",
        help="allow starting without X_API_KEY: a throw-away key is generated and printed",
    )
    serve.add_argument(
        "--docs",
        action="store_true",
        help="serve the API's documentation (/docs, /redoc, /openapi.json); off by default",
    )
    serve.add_argument(
        "--log-level",
        choices=LOG_LEVELS,
        default=os.environ.get(settings.LOG_LEVEL_ENV, "info").lower(),
        help=f"default: {settings.LOG_LEVEL_ENV}, else info",
    )
    serve.set_defaults(handler=_serve)

    post_call = commands.add_parser(
        "post-call", help="apply one post-call event now, through the same rules as the pipeline"
    )
    post_call.add_argument("file", metavar="FILE|-", help="JSON event file, or - for stdin")
    post_call.add_argument("--dry-run", action="store_true", help="show what would be done")
    post_call.set_defaults(handler=_post_call)

    inbox = commands.add_parser("inbox", help="recent post-call events and their status")
    inbox.add_argument("--limit", type=_positive_int, default=20)
    inbox.add_argument("--status", choices=[status.value for status in EventStatus])
    inbox.set_defaults(handler=_inbox)

    replay = commands.add_parser("replay", help="queue a post-call event again")
    replay.add_argument("call_id", metavar="CALL_ID")
    replay.set_defaults(handler=_replay)

    simulate = commands.add_parser(
        "simulate", help="post realistic post-call events to the intake, like a call centre"
    )
    simulate.add_argument("--rate", type=_positive_float, default=1.0, help="events per second")
    simulate.add_argument("--duration", type=_positive_float, default=30.0, help="seconds")
    simulate.add_argument(
        "--intake",
        metavar="URL",
        help=(
            f"the intake to post to (default: {settings.INTAKE_URL_ENV}, else the local stack"
            f" running under SALESOPS_HOME, else http://127.0.0.1:{DEFAULT_INTAKE_PORT})"
        ),
    )
    simulate.add_argument("--seed", type=int)
    simulate.set_defaults(handler=_simulate)

    dev = commands.add_parser(
        "dev", help="start the local stack: sandbox provider, intake service and Dagster"
    )
    dev.add_argument("--host", default="127.0.0.1")
    dev.add_argument("--dagster-port", type=int, default=3000)
    dev.add_argument("--intake-port", type=int, default=DEFAULT_INTAKE_PORT)
    dev.add_argument("--sandbox-port", type=int, default=DEFAULT_SANDBOX_PORT)
    dev.set_defaults(handler=_dev)
    return parser


def _positive_int(text: str) -> int:
    value = _non_negative_int(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0: {text}")
    return value


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


@contextmanager
def _provider_transport(timeout: float) -> Iterator[ApiTransport]:
    """The configured provider (REMOTE_API_HOST); else the provider of the local stack running
    under SALESOPS_HOME; else the sandbox, served over loopback for this command alone."""
    with ExitStack() as stack:
        host = settings.remote_api_host()
        if host is None and (local := running_stack(settings.salesops_home())):
            host = local.provider_url
        key = settings.remote_api_key()
        if host and not key:
            raise InvalidInputError(
                f"{settings.REMOTE_API_KEY_ENV} is not set: the provider at {host} needs it"
            )
        if not host:
            key = secrets.token_urlsafe(24)
            host = stack.enter_context(running_sandbox(ensure_seeded_store(), api_key=key)).url
        transport = ApiTransport(host, key, timeout=(3.05, timeout))
        stack.callback(transport.close)
        yield transport


def _duplicates(args: argparse.Namespace) -> int:
    check_campaign_pair(args.campaign_a, args.campaign_b)
    conn = duckdb.connect()
    try:
        with _provider_transport(args.timeout) as transport:
            loads = load_campaigns(conn, VoiceClient(transport), args.campaign_a, args.campaign_b)
        found = find_duplicates(conn)
    finally:
        conn.close()
    for load in loads:
        if load.contacts == 0 and not load.rejected:
            print(
                f"salesops: campaign {load.campaign} is empty: the provider returned no contacts"
                " for it (is the campaign id right?)",
                file=sys.stderr,
            )
        for rejected in load.rejected:
            print(
                f"salesops: skipped malformed record {rejected.index} of campaign"
                f" {load.campaign} (id {rejected.record_id}): {rejected.reason}",
                file=sys.stderr,
            )
    print(duplicates_json(found) if args.format == "json" else duplicates_text(found))
    return 0


def _sandbox(args: argparse.Namespace) -> int:
    path = sandbox_server.default_store_path()
    if args.reset:
        for leftover in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            leftover.unlink(missing_ok=True)
    store = sandbox_server.ensure_seeded_store(
        path, contacts_per_campaign=args.contacts_per_campaign
    )
    key = settings.remote_api_key()
    if key is None:
        key = secrets.token_urlsafe(24)
        # A throw-away key for a local demo, shown so that a person can call the sandbox.
        print(f"{settings.REMOTE_API_KEY_ENV} not set; this sandbox's key is: {key}")
    print(f"Sandbox provider on http://{args.host}:{args.port} (state: {path})", flush=True)
    sandbox_server.serve(
        store, api_key=key, host=args.host, port=args.port, page_size=args.page_size
    )
    return 0


def _serve(args: argparse.Namespace) -> int:
    if args.log_level not in LOG_LEVELS:  # a default from the environment is not checked
        raise InvalidInputError(
            f"{settings.LOG_LEVEL_ENV}={args.log_level!r}: expected one of {', '.join(LOG_LEVELS)}"
        )
    key = settings.intake_api_key()
    if key is None:
        if not args.local_demo:
            raise InvalidInputError(
                f"{settings.INTAKE_KEY_ENV} is not set: refusing to accept unauthenticated"
                " webhooks (pass --local-demo for a local demo)"
            )
        key = secrets.token_urlsafe(24)
        # A throw-away key for a local demo, shown so that a person can post to it.
        print(f"{settings.INTAKE_KEY_ENV} not set; this local demo's key is: {key}")
    inbox = Inbox(settings.inbox_path())
    app = create_intake_app(
        inbox, api_key=key, webhook_secret=settings.webhook_secret(), docs=args.docs
    )
    print(f"Intake on http://{args.host}:{args.port} (inbox: {inbox.path})", flush=True)
    serve_intake(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0


def _read_event_input(source: str) -> bytes:
    if source == "-":
        return sys.stdin.buffer.read()
    path = Path(source)
    if not path.is_file():
        raise InvalidInputError(f"No such event file: {path}")
    return path.read_bytes()


def _post_call(args: argparse.Namespace) -> int:
    raw = _read_event_input(args.file)
    event = parse_event(raw)
    inbox = Inbox(settings.inbox_path())
    if args.dry_run:
        # A dry run creates no state; it only reads what the inbox already knows, if any.
        handled = inbox.get(event.callId) if inbox.path.is_file() else None
        if handled is not None and EventStatus(handled.status).is_final:
            print(
                f"{terminal_safe(event.callId)}: already {handled.status}"
                f" ({terminal_safe(handled.last_decision or 'no decision recorded')});"
                " handling it again would write nothing"
            )
            return 0
    with _provider_transport(30.0) as transport:
        processor = PostCallProcessor(
            inbox=inbox, voice=VoiceClient(transport), crm=CrmClient(transport)
        )
        if args.dry_run:
            outcome = processor.preview(event)
        else:
            accepted = inbox.accept(event.callId, raw.decode())
            if accepted.status == "conflict":
                raise InvalidInputError(
                    f"callId {event.callId} is already in the inbox with a different payload"
                )
            with processor:
                outcome = processor.process(event.callId)
    print(_describe_outcome(outcome))
    succeeded = (
        EventStatus.APPLIED,
        EventStatus.NOTHING_TO_DO,
        EventStatus.SUPERSEDED,
        HandlingStatus.SKIPPED,
        HandlingStatus.DRY_RUN,
    )
    return 0 if outcome.status in succeeded else 1


def _describe_outcome(outcome) -> str:
    # Every value may come from the event or the provider: shown, never obeyed by the terminal.
    lines = [f"{terminal_safe(outcome.call_id)}: {outcome.status}"]
    if outcome.decision:
        lines.append(f"  decision: {terminal_safe(outcome.decision)}")
    for write in outcome.writes:
        verb = "would PATCH" if outcome.status == HandlingStatus.DRY_RUN else "PATCH"
        changes = ", ".join(f"{name}={value}" for name, value in write["changes"].items())
        lines.append(
            f"  {verb} contact {terminal_safe(write['contact'])}: {terminal_safe(changes)}"
        )
    if outcome.error:
        lines.append(f"  error: {terminal_safe(outcome.error)}")
    return "\n".join(lines)


def _existing_inbox() -> Inbox:
    """The inbox the intake writes to; a read-only command never creates one."""
    path = settings.inbox_path()
    if not path.is_file():
        raise InvalidInputError(
            f"No inbox at {path}: no post-call event was ever received with SALESOPS_HOME"
            f" {settings.describe_home()}. Run this where the stack runs, or set SALESOPS_HOME."
        )
    return Inbox(path)


def _inbox(args: argparse.Namespace) -> int:
    inbox = _existing_inbox()
    records = inbox.recent(limit=args.limit, status=args.status)
    if not records:
        print("No post-call events" + (f" with status {args.status}" if args.status else ""))
        return 0
    print(f"{'received (UTC)':<29} {'callId':<16} {'status':<14} {'tries':>5}  last decision")
    for r in records:
        # The callId and what the decision or error quote came in a webhook: an escape sequence
        # or a newline in them is shown, never obeyed by the terminal.
        call_id = terminal_safe(r.call_id)
        detail = terminal_safe(r.last_error or r.last_decision or "")
        print(f"{r.received_at:<29} {call_id:<16} {r.status:<14} {r.attempts:>5}  {detail}")
    counts = ", ".join(f"{status}: {n}" for status, n in sorted(inbox.counts().items()))
    print(f"\nAll events: {counts}")
    return 0


def _replay(args: argparse.Namespace) -> int:
    inbox = _existing_inbox()
    if not inbox.replay(args.call_id):
        raise InvalidInputError(f"Unknown callId {args.call_id!r}: not in the inbox")
    record = inbox.get(args.call_id)
    note = (
        f" (already {record.status}: it will be recorded, not applied again)"
        if EventStatus(record.status).is_final
        else ""
    )
    print(f"{args.call_id} queued again{note}")
    return 0


def _simulate(args: argparse.Namespace) -> int:
    key = settings.intake_api_key()
    if key is None:
        raise InvalidInputError(
            f"{settings.INTAKE_KEY_ENV} is not set: the intake's key is needed to post events"
        )
    with _provider_transport(30.0) as transport:
        voice = VoiceClient(transport)
        contact_ids = [
            contact.id
            for campaign in ("A", "B")
            for contact in voice.list_contacts(campaign_id=campaign).items
            if contact.id
        ]
    intake_url = _intake_url(args.intake)
    expected = int(args.rate * args.duration)
    print(f"Posting {expected} events to {intake_url} over {args.duration:.0f}s", flush=True)
    report = simulate(
        intake_url=intake_url,
        api_key=key,
        contact_ids=contact_ids,
        rate=args.rate,
        duration=args.duration,
        webhook_secret=settings.webhook_secret(),
        seed=args.seed,
    )
    if report.aborted:
        raise SalesopsError(
            f"stopped after {report.sent} events: {report.aborted} at {intake_url}. Is the"
            f" stack running (salesops dev), and is {settings.INTAKE_KEY_ENV} the one it printed?"
        )
    latencies = sorted(report.latencies_ms) or [0.0]
    print(
        f"Sent {report.sent}: {dict(report.kinds)}; answers {dict(report.statuses)};"
        f" errors {dict(report.errors) or 'none'}; latency p50"
        f" {latencies[len(latencies) // 2]:.1f} ms, max {latencies[-1]:.1f} ms"
    )
    return 0 if not report.errors and set(report.statuses) <= {200, 202} else 1


def _intake_url(option: str | None) -> str:
    if option:
        return option
    if configured := os.environ.get(settings.INTAKE_URL_ENV):
        return configured
    if local := running_stack(settings.salesops_home()):
        return local.intake_url
    return f"http://127.0.0.1:{DEFAULT_INTAKE_PORT}"


def _dev(args: argparse.Namespace) -> int:
    ports = StackPorts(
        dagster=args.dagster_port, intake=args.intake_port, sandbox=args.sandbox_port
    )
    return run_local_stack(host=args.host, ports=ports)


# The locally generated keys each command may take: only those it needs (a service started by
# `salesops dev` gets no more than its part of the stack).
LOCAL_KEYS_FOR = {
    "serve": (settings.INTAKE_KEY_ENV,),
    "sandbox": (settings.REMOTE_API_KEY_ENV,),
    "simulate": (settings.INTAKE_KEY_ENV, settings.REMOTE_API_KEY_ENV),
    "dev": (settings.INTAKE_KEY_ENV, settings.REMOTE_API_KEY_ENV),
}


def _load_local_keys(command: str) -> None:
    """Keys a local `salesops dev` generated, so that its neighbours can talk to it."""
    wanted = LOCAL_KEYS_FOR.get(command, (settings.REMOTE_API_KEY_ENV,))
    for name, value in load_local_keys(settings.salesops_home()).items():
        if name in wanted and not os.environ.get(name):
            os.environ[name] = value


def main(argv: list[str] | None = None) -> int:
    load_dotenv(dotenv_path=Path.cwd() / ".env", override=False)
    parser = build_parser()
    args = parser.parse_args(argv)
    _load_local_keys(args.command)
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
