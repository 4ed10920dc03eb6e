"""`salesops simulate` and `dev`: a call centre's worth of events, and the whole local stack."""

import argparse
import os

from salesops_pipeline import settings
from salesops_pipeline.cli.arguments import (
    DEFAULT_INTAKE_PORT,
    DEFAULT_SANDBOX_PORT,
    positive_float,
    positive_int,
    quiet_argument,
)
from salesops_pipeline.cli.progress import LiveProgress, live_progress
from salesops_pipeline.cli.provider import provider_transport
from salesops_pipeline.clients import VoiceClient
from salesops_pipeline.devtools.simulator import SimulationReport, simulate
from salesops_pipeline.devtools.stack import StackPorts, run_local_stack, running_stack
from salesops_pipeline.errors import InvalidInputError, SalesopsError
from salesops_pipeline.redaction import redact_url


def _simulate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rate", type=positive_float, default=1.0, help="events per second")
    parser.add_argument("--duration", type=positive_float, default=30.0, help="seconds")
    parser.add_argument(
        "--intake",
        metavar="URL",
        help=(
            f"the intake to post to (default: {settings.INTAKE_URL_ENV}, else the local stack"
            " running under SALESOPS_HOME, its intake replicas in turn, else"
            f" http://127.0.0.1:{DEFAULT_INTAKE_PORT})"
        ),
    )
    parser.add_argument("--seed", type=int)
    quiet_argument(parser)
    parser.set_defaults(handler=_simulate)


def _dev_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--dagster-port", type=int, default=3000)
    parser.add_argument("--intake-port", type=int, default=DEFAULT_INTAKE_PORT)
    parser.add_argument("--sandbox-port", type=int, default=DEFAULT_SANDBOX_PORT)
    parser.add_argument(
        "--intake-replicas",
        type=positive_int,
        default=1,
        metavar="N",
        help=(
            "intake processes, on consecutive ports from --intake-port; with 2 or more, one"
            f" that dies is restarted (replicas on several hosts need {settings.DATABASE_URL_ENV})"
        ),
    )
    parser.add_argument(
        "--clean-sandbox",
        action="store_true",
        help="the sandbox answers as the real provider does: each campaign as one list, no"
        " malformed record (by default the demo pages lists and serves one malformed record)",
    )
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="show all of Dagster's output: every sensor tick and run step (the UI keeps them"
        " anyway)",
    )
    parser.set_defaults(handler=_dev)


def _simulate(args: argparse.Namespace) -> int:
    key = settings.intake_api_key()
    if key is None:
        raise InvalidInputError(
            f"{settings.INTAKE_KEY_ENV} is not set: the intake's key is needed to post events"
        )
    with provider_transport(30.0) as transport:
        voice = VoiceClient(transport)
        contact_ids = [
            contact.id
            for campaign in ("A", "B")
            for contact in voice.list_contacts(campaign_id=campaign).items
            if contact.id
        ]
    intake_urls = _intake_urls(args.intake)
    shown_urls = ", ".join(map(redact_url, intake_urls)) + (
        " in turn" if len(intake_urls) > 1 else ""
    )
    expected = int(args.rate * args.duration)
    print(f"Posting {expected} events to {shown_urls} over {args.duration:.0f}s", flush=True)
    with live_progress(args.quiet) as shown:
        report = simulate(
            intake_urls=intake_urls,
            api_key=key,
            contact_ids=contact_ids,
            rate=args.rate,
            duration=args.duration,
            webhook_secret=settings.webhook_secret(),
            seed=args.seed,
            on_progress=_answers_shown(shown, expected) if shown else None,
        )
    if report.aborted:
        raise SalesopsError(
            f"stopped after {report.sent} events: {report.aborted} at {shown_urls}. Is the"
            f" stack running (salesops dev), and is {settings.INTAKE_KEY_ENV} the one it printed?"
        )
    print(report.summary())
    return 0 if not report.errors and set(report.statuses) <= {200, 202} else 1


def _answers_shown(display: LiveProgress, expected: int):
    """Events sent, how many the intake accepted, and how fast it answered so far."""
    sent = display.line("Events", "sent", total=expected)

    def accepted_and_latency(report: SimulationReport) -> str:
        accepted = sum(n for status, n in report.statuses.items() if 200 <= status < 300)
        return f"{accepted:,} accepted · latency {report.latency()}"

    def on_progress(report: SimulationReport) -> None:
        # The latencies are sorted only when the line is drawn, not at every answer.
        sent.set(report.sent, lambda: accepted_and_latency(report))

    return on_progress


def _intake_urls(option: str | None) -> list[str]:
    """Where to post: the option, the variable, else every intake replica of the local stack
    (the load spread over them as a load balancer would), else the default port."""
    if option:
        return [option]
    if configured := os.environ.get(settings.INTAKE_URL_ENV):
        return [configured]
    if local := running_stack(settings.salesops_home()):
        return local.all_intake_urls()
    return [f"http://127.0.0.1:{DEFAULT_INTAKE_PORT}"]


def _dev(args: argparse.Namespace) -> int:
    ports = StackPorts(
        dagster=args.dagster_port,
        intake=args.intake_port,
        sandbox=args.sandbox_port,
        intake_replicas=args.intake_replicas,
    )
    return run_local_stack(
        host=args.host, ports=ports, clean_sandbox=args.clean_sandbox, verbose=args.verbose
    )


# Each command: the function that adds its arguments and sets its handler.
ARGUMENTS = {"simulate": _simulate_arguments, "dev": _dev_arguments}
