"""`salesops sandbox` and `serve`: the sandbox provider and the webhook intake, one at a time."""

import argparse
import os
import secrets
from pathlib import Path

from salesops_pipeline import settings
from salesops_pipeline.cli.arguments import (
    DEFAULT_INTAKE_PORT,
    DEFAULT_SANDBOX_PORT,
    non_negative_int,
)
from salesops_pipeline.errors import InvalidInputError
from salesops_pipeline.post_call.inbox import Inbox
from salesops_pipeline.services.intake.app import create_intake_app
from salesops_pipeline.services.intake.server import LOG_LEVELS, serve_intake
from salesops_pipeline.services.sandbox import seed as sandbox_seed
from salesops_pipeline.services.sandbox import server as sandbox_server
from salesops_pipeline.services.sandbox.app import UNPAGED


def _sandbox_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_SANDBOX_PORT)
    parser.add_argument(
        "--contacts-per-campaign",
        type=non_negative_int,
        default=sandbox_seed.DEFAULT_CONTACTS_PER_CAMPAIGN,
        help="size of each demo campaign when the sandbox is first seeded",
    )
    parser.add_argument(
        "--page-size",
        type=non_negative_int,
        default=UNPAGED,
        help="contacts per page, linked by Link headers; 0 (the default) answers each"
        " campaign as one list, as the real provider does",
    )
    parser.add_argument(
        "--malformed-records",
        action="store_true",
        help="also serve the demo's deliberately malformed record (campaign B,"
        ' totalCalls "many"); off by default: only records that fit the provider\'s schema',
    )
    parser.add_argument("--reset", action="store_true", help="discard its state and reseed")
    parser.set_defaults(handler=_sandbox)


def _serve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_INTAKE_PORT)
    parser.add_argument(
        "--local-demo",
        action="store_true",
        help="allow starting without X_API_KEY: a throw-away key is generated and printed",
    )
    parser.add_argument(
        "--docs",
        action="store_true",
        help="serve the API's documentation (/docs, /redoc, /openapi.json); off by default",
    )
    parser.add_argument(
        "--log-level",
        choices=LOG_LEVELS,
        default=os.environ.get(settings.LOG_LEVEL_ENV, "info").lower(),
        help=f"default: {settings.LOG_LEVEL_ENV}, else info",
    )
    parser.set_defaults(handler=_serve)


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
        store,
        api_key=key,
        host=args.host,
        port=args.port,
        page_size=args.page_size,
        malformed_records=args.malformed_records,
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
    metrics_token = settings.metrics_token()
    if metrics_token is not None and secrets.compare_digest(metrics_token.encode(), key.encode()):
        raise InvalidInputError(
            f"{settings.METRICS_TOKEN_ENV} must differ from {settings.INTAKE_KEY_ENV}: whoever"
            " can scrape /metrics must not be able to post webhooks"
        )
    inbox = Inbox.configured()
    app = create_intake_app(
        inbox,
        api_key=key,
        metrics_token=metrics_token,
        webhook_secret=settings.webhook_secret(),
        docs=args.docs,
    )
    print(f"Intake on http://{args.host}:{args.port} (inbox: {inbox.describe()})", flush=True)
    print(
        f"Metrics at /metrics with Authorization: Bearer <{settings.METRICS_TOKEN_ENV}>"
        if metrics_token
        else f"Metrics off (/metrics answers 404): set {settings.METRICS_TOKEN_ENV} to serve them",
        flush=True,
    )
    serve_intake(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0


# Each command: the function that adds its arguments and sets its handler.
ARGUMENTS = {"sandbox": _sandbox_arguments, "serve": _serve_arguments}
