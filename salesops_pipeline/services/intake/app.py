"""The intake service: authenticates post-call webhooks and stores them in the inbox.

An event is acknowledged (2xx) only once it is on disk. A body that cannot be accepted gets a
4xx naming the problem and is kept raw in quarantine: nothing is silently dropped.
"""

import asyncio
import logging
import secrets
from collections.abc import Callable
from pathlib import Path

import anyio
from fastapi import FastAPI, HTTPException, Request, Security
from fastapi.responses import JSONResponse, Response
from fastapi.security import APIKeyHeader, HTTPBearer
from fastapi_offline import FastAPIOffline
from starlette.routing import Route

from salesops_pipeline import settings
from salesops_pipeline.post_call.events import EventError, parse_event
from salesops_pipeline.post_call.inbox import Inbox
from salesops_pipeline.post_call.status import AcceptStatus
from salesops_pipeline.sales.schema import resolve_sales_db_path
from salesops_pipeline.services.intake.committer import GroupCommitter
from salesops_pipeline.services.intake.frontend import frontend_router
from salesops_pipeline.services.intake.metrics import IntakeMetrics
from salesops_pipeline.services.intake.signing import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    signature_problem,
)

logger = logging.getLogger("salesops.intake")

# A post-call event is well under 2 KB; anything far bigger is not one.
MAX_BODY_BYTES = 64 * 1024
# A sender that takes longer than this to send a body this small is stalling.
BODY_READ_TIMEOUT_SECONDS = 10.0
# A delivery not stored within this long is answered 503 with Retry-After: a database out of
# reach must not hold the provider's sender until its own timeout (often 10 to 30 s), which
# it would take for an answer lost. The event may still be committed afterwards; the
# provider's next delivery is then acknowledged as a duplicate.
STORE_TIMEOUT_SECONDS = 8.0
# Threads for storing webhooks, apart from the ones the frontend's reads use: a burst of
# frontend polls must never make the provider's deliveries wait.
WEBHOOK_STORAGE_THREADS = 16

# Declares the key in the OpenAPI schema, so that the docs' "Authorize" and "Try it out" send
# it. Checking it stays with the routes: a webhook without it must be answered, not raised.
API_KEY_HEADER = APIKeyHeader(
    name="X-API-KEY", auto_error=False, description="The key the stack was started with."
)
# The same for `/metrics`, which takes its own token and nothing else.
METRICS_BEARER = HTTPBearer(
    auto_error=False,
    description="SALESOPS_METRICS_TOKEN, as `Authorization: Bearer <token>`: reads /metrics only.",
)


def _problem(status: int, detail: str, **extra) -> JSONResponse:
    return JSONResponse({"detail": detail, **extra}, status_code=status)


def _refused(status: int, reason: str) -> JSONResponse:
    # The reason only: never the key that was sent, nor the body.
    logger.warning("post-call refused: %s %s", status, reason)
    return _problem(status, reason)


def _scrape_refused(reason: str) -> JSONResponse:
    # The reason only: never the token that was sent.
    logger.warning("metrics refused: %s", reason)
    response = _problem(401, "missing or invalid metrics token (Authorization: Bearer)")
    response.headers["WWW-Authenticate"] = "Bearer"
    return response


class StoreTimeout(Exception):
    """The inbox took longer to store a delivery than the sender should wait."""


def _unavailable(error: Exception) -> JSONResponse:
    # Not stored, so not acknowledged: the provider will deliver it again.
    logger.error("post-call not stored, inbox unavailable: %s", error)
    response = _problem(503, "inbox unavailable, retry later")
    response.headers["Retry-After"] = "5"
    return response


async def _read_capped(request: Request, limit: int) -> bytes | None:
    """The body, or None as soon as it exceeds `limit` bytes (it is not read further)."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def create_intake_app(
    inbox: Inbox,
    *,
    api_key: str,
    metrics_token: str | None = None,
    webhook_secret: str | None = None,
    max_body_bytes: int = MAX_BODY_BYTES,
    warehouse_path: Path | None = None,
    sales_db_path: Callable[[], Path] = resolve_sales_db_path,
    docs: bool = False,
) -> FastAPI:
    """The intake and frontend API. `docs` serves `/docs`, `/redoc` and `/openapi.json`: on for
    the local stack, off by default so that a production intake does not describe itself to
    whoever asks.

    `/metrics` takes `metrics_token` as `Authorization: Bearer`, and nothing else: a scrape
    credential can read the figures and write nothing, and the key that writes cannot scrape.
    Without a token it answers 404."""
    if not api_key:
        raise ValueError("the intake service needs an API key")
    metrics_token = metrics_token or None
    if metrics_token is not None and secrets.compare_digest(
        metrics_token.encode(), api_key.encode()
    ):
        raise ValueError(
            "the metrics token must differ from the intake's key: whoever can scrape must not"
            " be able to post"
        )
    about = {
        "title": "salesops intake and frontend API",
        "description": (
            "Receives the voice provider's post-call webhooks, and serves the sales reports to"
            " the frontend. Every call needs the header `X-API-KEY`, except `/metrics`: that"
            " one takes its own token (SALESOPS_METRICS_TOKEN) as `Authorization: Bearer`, and"
            " nothing else."
        ),
    }
    # The docs' Swagger UI and ReDoc are served from the installed package, not from a CDN:
    # they work on a machine without internet.
    app: FastAPI = (
        FastAPIOffline(**about)
        if docs
        else FastAPI(**about, docs_url=None, redoc_url=None, openapi_url=None)
    )
    app.state.inbox = inbox
    storage_errors = inbox.errors()
    # Deliveries are stored through connections of their own, which no burst of frontend or
    # metrics reads can take.
    committer = GroupCommitter(inbox.with_own_connections("intake-writes"))
    metrics = IntakeMetrics(inbox)
    app.state.metrics = metrics

    async def in_storage_thread(function, *args):
        if not hasattr(app.state, "storage_threads"):
            app.state.storage_threads = anyio.CapacityLimiter(WEBHOOK_STORAGE_THREADS)
        return await anyio.to_thread.run_sync(function, *args, limiter=app.state.storage_threads)

    async def within_store_timeout(awaitable):
        """`awaitable`'s result, or StoreTimeout once the store has taken too long; the store
        goes on in the background, so that what it commits is kept."""
        try:
            return await asyncio.wait_for(asyncio.shield(awaitable), STORE_TIMEOUT_SECONDS)
        except TimeoutError:
            raise StoreTimeout(
                f"not stored within {STORE_TIMEOUT_SECONDS:g}s (database slow or out of reach)"
            ) from None

    def authenticated(request: Request) -> bool:
        given = request.headers.get("X-API-KEY")
        return given is not None and secrets.compare_digest(given.encode(), api_key.encode())

    def scrape_refusal(request: Request, token: str) -> str | None:
        """Why a scrape is refused, for the log (never the token sent); None when it carries
        `token` as `Authorization: Bearer`, which is what Prometheus's scrape configs send."""
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        given = given.strip()
        if scheme.lower() != "bearer" or not given:
            if request.headers.get("X-API-KEY") is not None:
                return "no token (X-API-KEY is not accepted here: send Authorization: Bearer)"
            return "no token"
        sent = given.encode()
        if secrets.compare_digest(sent, token.encode()):
            return None
        if secrets.compare_digest(sent, api_key.encode()):
            # Said in the log only, for the operator whose Prometheus still sends the old key.
            return "wrong token (the webhook key, not the metrics token)"
        return "wrong token"

    def require_key(request: Request, _key: str | None = Security(API_KEY_HEADER)) -> None:
        if not authenticated(request):
            raise HTTPException(status_code=401, detail="missing or invalid X-API-KEY")

    app.include_router(
        frontend_router(
            warehouse_path=warehouse_path or settings.warehouse_path(),
            sales_db_path=sales_db_path,
            authenticated=require_key,
            chart_link_key=settings.chart_link_key(api_key),
            database_url=settings.database_url(),
        )
    )

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok"}

    @app.get(
        "/metrics",
        tags=["operations"],
        summary="Post-call backlog, lag and latency, in the Prometheus text format",
        responses={401: {"description": "Missing or invalid metrics token"}},
        dependencies=[Security(METRICS_BEARER)],
        include_in_schema=metrics_token is not None,
    )
    async def metrics_endpoint(request: Request):
        if metrics_token is None:
            # Off, as if there were no such page; said once, for the operator who expected it.
            if not getattr(app.state, "said_metrics_off", False):
                app.state.said_metrics_off = True
                logger.info(
                    "metrics off: /metrics answers 404 until %s is set", settings.METRICS_TOKEN_ENV
                )
            return _problem(404, "Not Found")
        refusal = scrape_refusal(request, metrics_token)
        if refusal is not None:
            return _scrape_refused(refusal)
        try:
            body = await anyio.to_thread.run_sync(metrics.exposition)
        except storage_errors as error:
            logger.error("metrics unavailable, inbox unreadable: %s", error)
            return _problem(503, "inbox unavailable, retry later")
        return Response(body, media_type=metrics.content_type)

    @app.post(
        "/webhooks/post-call",
        status_code=202,
        tags=["webhooks"],
        summary="The provider's post-call event",
        responses={
            200: {"description": "Already received (duplicate or conflict)"},
            400: {"description": "Malformed JSON, or not an event object (quarantined)"},
            401: {"description": "Missing or invalid key or signature"},
            413: {"description": "Body too large"},
            422: {"description": "A field cannot be read (quarantined)"},
            503: {"description": "Not stored: deliver again later"},
        },
        dependencies=[Security(API_KEY_HEADER)],
    )
    async def post_call(request: Request):
        response = await handle_post_call(request)
        metrics.answered(response.status_code)
        return response

    async def handle_post_call(request: Request) -> JSONResponse:
        if not authenticated(request):
            return _refused(401, "missing or invalid X-API-KEY")
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_body_bytes:
            return _refused(413, f"body larger than {max_body_bytes} bytes")
        try:
            async with asyncio.timeout(BODY_READ_TIMEOUT_SECONDS):
                raw = await _read_capped(request, max_body_bytes)
        except TimeoutError:
            return _refused(408, f"body not received within {BODY_READ_TIMEOUT_SECONDS:.0f}s")
        if raw is None:
            return _refused(413, f"body larger than {max_body_bytes} bytes")
        if webhook_secret:
            problem = signature_problem(
                webhook_secret,
                request.headers.get(TIMESTAMP_HEADER),
                request.headers.get(SIGNATURE_HEADER),
                raw,
            )
            if problem:
                return _refused(401, problem)
        content_type = request.headers.get("content-type")
        try:
            event = parse_event(raw)
        except EventError as error:
            try:
                await within_store_timeout(
                    in_storage_thread(inbox.quarantine, str(error), raw, content_type)
                )
            except (*storage_errors, StoreTimeout) as storage_error:
                return _unavailable(storage_error)
            logger.warning("post-call quarantined: %s %s", error.http_status, error)
            return _problem(error.http_status, str(error), quarantined=True)
        try:
            accepted = await within_store_timeout(committer.accept(event.callId, raw.decode()))
        # A database error, or the inbox's folder missing, unwritable, full: nothing stored.
        # Or not yet: a store that outlasts the timeout may commit later, and the provider's
        # next delivery is then a duplicate.
        except (*storage_errors, StoreTimeout) as error:
            return _unavailable(error)
        logger.info("post-call %s: %s", event.callId, accepted.status)
        status = 202 if accepted.status == AcceptStatus.STORED else 200
        return JSONResponse({"status": accepted.status, "callId": event.callId}, status_code=status)

    # Webhooks are served by a plain route placed first, running the same function: FastAPI's
    # per-request dependency handling would cost about a third of a webhook's CPU and brings
    # nothing, since the function reads the raw request itself. The FastAPI route above is what
    # the OpenAPI description shows.
    app.router.routes.insert(0, Route("/webhooks/post-call", post_call, methods=["POST"]))
    return app
