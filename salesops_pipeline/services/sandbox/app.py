"""The sandbox provider's HTTP API: the voice provider's and the CRM's endpoints.

Beside the provider's API it has `/_sandbox/*` endpoints, behind the same key, to add raw
records, to change the CRM's agents, and to inject faults (429 with Retry-After, 5xx, slow
answers, writes applied late), so that retries, timeouts and malformed data can be shown and
tested against a real server.
"""

import asyncio
import contextlib
import json
import random
import secrets
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlencode

from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from salesops_pipeline.clients.wire import provider_local
from salesops_pipeline.services.sandbox.store import SandboxStore

# A page size of 0, the default: each campaign answered as one list, however long, as the
# reference provider does. The answer is streamed, so the sandbox never holds it whole.
UNPAGED = 0
# The demo (`salesops dev`) pages lists with RFC 8288 `Link` headers, as a provider may.
DEMO_PAGE_SIZE = 1000
MAX_PAGE_SIZE = 50_000
_STREAM_ROWS = 5_000


class ContactPatch(BaseModel):
    """The fields of a contact the provider lets us change; anything else is refused."""

    model_config = ConfigDict(extra="forbid")

    retryDate: datetime | None = None
    assignedAgent: str | None = None


class Fault(BaseModel):
    """Make the next `times` matching requests misbehave (each with `probability`):

    - answer `status` without handling them: a 4xx/5xx, a 3xx redirect to `location`, or a
      2xx that claims success (an empty 204, or a body that is not the contact), with
      `Retry-After: <retry_after>` when given (seconds, fractional, or an HTTP date);
    - wait `delay_seconds` first (with `status` null: then handle them normally);
    - with `drop_after_apply`: handle them, then break the connection before the answer
      completes, as a crashing proxy would;
    - with `empty_after_apply`: handle them, then answer 204 with no body;
    - with `apply_after_seconds` (contact PATCHes): answer nothing, and apply the change that
      many seconds later, whether the client is still there or not, as a provider whose queue
      is late would; the connection is then dropped. The write log shows it when applied.
    """

    method: str = "GET"
    path_prefix: str = "/"
    status: int | None = Field(default=503, ge=200, le=599)
    location: str | None = None
    retry_after: int | float | str | None = None
    delay_seconds: float = Field(default=0.0, ge=0, le=120)
    drop_after_apply: bool = False
    empty_after_apply: bool = False
    apply_after_seconds: float | None = Field(default=None, gt=0, le=120)
    probability: float = Field(default=1.0, gt=0, le=1)
    times: int = Field(default=1, ge=1)


@dataclass
class _ArmedFault:
    spec: Fault
    remaining: int


class FaultBox:
    """Faults waiting for their requests; shared by the server's worker threads."""

    def __init__(self):
        self._lock = threading.Lock()
        self._faults: list[_ArmedFault] = []
        self._random = random.Random()
        self.log: list[tuple[str, str, int | None]] = []
        self.requests: Counter = Counter()

    def count(self, method: str) -> None:
        with self._lock:
            self.requests[method] += 1

    def arm(self, fault: Fault) -> None:
        with self._lock:
            self._faults.append(_ArmedFault(fault, fault.times))

    def take(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for armed in self._faults:
                spec = armed.spec
                if (
                    spec.method.upper() == method
                    and path.startswith(spec.path_prefix)
                    and (spec.probability >= 1 or self._random.random() < spec.probability)
                ):
                    armed.remaining -= 1
                    if armed.remaining == 0:
                        self._faults.remove(armed)
                    self.log.append((method, path, spec.status))
                    return spec
        return None

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()


class AgentChange(BaseModel):
    """What `/_sandbox/agents/{agent}` may change of a CRM agent."""

    model_config = ConfigDict(extra="forbid")

    active: bool | None = None
    team: str | None = None


class _BrokenAnswer(Response):
    """An answer cut short: the headers promise more body than is sent, so the server closes
    the connection mid-answer and the client never learns the outcome."""

    async def __call__(self, scope, receive, send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"4096")],
            }
        )
        await send({"type": "http.response.body", "body": b'{"id": ', "more_body": False})


def _json_list(bodies: list[str]) -> Response:
    # Bodies are stored as JSON text: the list is assembled without parsing a single record.
    return Response(content="[" + ",".join(bodies) + "]", media_type="application/json")


def _streamed_list(store: SandboxStore, campaign: str | None, flawed: bool) -> Iterator[bytes]:
    yield b"["
    cursor, first = 0, True
    while cursor is not None:
        bodies, cursor = store.contact_page(campaign, cursor, _STREAM_ROWS, flawed=flawed)
        if bodies:
            yield (("" if first else ",") + ",".join(bodies)).encode()
            first = False
    yield b"]"


def create_app(
    store: SandboxStore,
    *,
    api_key: str,
    page_size: int = UNPAGED,
    malformed_records: bool = False,
) -> FastAPI:
    """The sandbox, answering as the reference provider does unless asked otherwise: every
    list unpaged, and only records that fit the provider's schema. `page_size` pages lists
    with `Link` headers; `malformed_records` also serves the demo's deliberately malformed
    record (records added through `/_sandbox/campaigns/{id}/contacts` are always served as
    given)."""
    app = FastAPI(
        title="Sandbox voice provider and CRM",
        description="Offline stand-in for the voice provider's and the CRM's APIs.",
    )
    app.state.store = store
    app.state.faults = FaultBox()
    # Every change applied, in order: what a test or a benchmark checks "written once" against.
    app.state.applied_patches = []
    # Writes held by `apply_after_seconds`, kept until applied (the loop keeps weak references).
    app.state.late_writes = set()

    def apply_patch(contact_id: str, patch: ContactPatch, idempotency_key: str | None):
        """The contact's new JSON body once `patch` is applied; None if there is no contact."""
        changes = {name: getattr(patch, name) for name in patch.model_fields_set}
        if isinstance(changes.get("retryDate"), datetime):
            changes["retryDate"] = provider_local(changes["retryDate"]).isoformat()
        if not changes:
            raise HTTPException(status_code=422, detail="nothing to change")
        body = store.patch_contact(contact_id, changes, idempotency_key, flawed=malformed_records)
        if body is not None:
            app.state.applied_patches.append((contact_id, changes))
        return body

    async def apply_late(request: Request, seconds: float) -> Response:
        contact_id = request.url.path.removeprefix("/voice/contacts/")
        raw, key = await request.body(), request.headers.get("Idempotency-Key")

        async def later() -> None:
            await asyncio.sleep(seconds)
            # A body the endpoint would refuse is dropped here too: nothing to apply.
            with contextlib.suppress(ValueError, HTTPException):
                patch = ContactPatch.model_validate_json(raw)
                await asyncio.to_thread(apply_patch, contact_id, patch, key)

        task = asyncio.create_task(later())
        app.state.late_writes.add(task)
        task.add_done_callback(app.state.late_writes.discard)
        await asyncio.wait({task})
        return _BrokenAnswer()

    def require_key(x_api_key: str | None = Header(default=None)) -> None:
        if x_api_key is None or not secrets.compare_digest(x_api_key.encode(), api_key.encode()):
            raise HTTPException(status_code=401, detail="missing or invalid X-API-KEY")

    @app.middleware("http")
    async def inject_faults(request: Request, call_next):
        if not request.url.path.startswith(("/_sandbox", "/healthz")):
            app.state.faults.count(request.method)  # the provider's API only
        fault = app.state.faults.take(request.method, request.url.path)
        if fault is not None:
            if fault.delay_seconds:
                await asyncio.sleep(fault.delay_seconds)
            if (
                fault.apply_after_seconds is not None
                and request.method == "PATCH"
                and request.url.path.startswith("/voice/contacts/")
            ):
                return await apply_late(request, fault.apply_after_seconds)
            if fault.drop_after_apply:
                await call_next(request)
                return _BrokenAnswer()
            if fault.empty_after_apply:
                await call_next(request)
                return Response(status_code=204)
            if fault.status == 204:
                return Response(status_code=204)
            if fault.status is not None:
                headers = {}
                if fault.retry_after is not None:
                    headers["Retry-After"] = str(fault.retry_after)
                if 300 <= fault.status < 400:
                    headers["Location"] = fault.location or "/moved"
                return JSONResponse(
                    {"detail": "injected fault"}, status_code=fault.status, headers=headers
                )
        return await call_next(request)

    def page_response(request: Request, bodies: list[str], next_cursor: int | None, limit: int):
        response = _json_list(bodies)
        if next_cursor is not None:
            query = {k: v for k, v in request.query_params.items() if k not in ("cursor", "limit")}
            query.update(limit=str(limit), cursor=str(next_cursor))
            next_url = f"{request.url.path}?{urlencode(query)}"
            response.headers["Link"] = f'<{next_url}>; rel="next"'
        return response

    auth = [Depends(require_key)]

    @app.get("/healthz")
    def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/voice/contacts", dependencies=auth)
    def list_contacts(
        request: Request,
        # Optional, as in the reference client: without it, every campaign's contacts.
        campaignId: str | None = Query(default=None),
        limit: int | None = Query(default=None, ge=1, le=MAX_PAGE_SIZE),
        cursor: int = Query(default=0, ge=0),
    ) -> Response:
        if limit is None and page_size == UNPAGED:
            return StreamingResponse(
                _streamed_list(store, campaignId, malformed_records),
                media_type="application/json",
            )
        limit = limit or page_size
        bodies, next_cursor = store.contact_page(
            campaignId, cursor, limit, flawed=malformed_records
        )
        return page_response(request, bodies, next_cursor, limit)

    @app.get("/voice/contacts/{contact_id}", dependencies=auth)
    def get_contact(contact_id: str) -> Response:
        body = store.contact(contact_id, flawed=malformed_records)
        if body is None:
            raise HTTPException(status_code=404, detail=f"contact {contact_id} not found")
        return Response(content=body, media_type="application/json")

    @app.patch("/voice/contacts/{contact_id}", dependencies=auth)
    def patch_contact(
        contact_id: str,
        patch: ContactPatch,
        idempotency_key: str | None = Header(default=None, alias="Idempotency-Key"),
    ) -> Response:
        body = apply_patch(contact_id, patch, idempotency_key)
        if body is None:
            raise HTTPException(status_code=404, detail=f"contact {contact_id} not found")
        return Response(content=body, media_type="application/json")

    @app.get("/crm/agents", dependencies=auth)
    def list_agents(team: str | None = None) -> Response:
        return _json_list(store.agents(team))

    @app.get("/crm/contacts", dependencies=auth)
    def list_crm_contacts(
        request: Request,
        limit: int | None = Query(default=None, ge=1, le=MAX_PAGE_SIZE),
        cursor: int = Query(default=0, ge=0),
    ) -> Response:
        if limit is None and page_size == UNPAGED:
            bodies, after = [], 0
            while after is not None:
                page, after = store.crm_contact_page(after, MAX_PAGE_SIZE)
                bodies += page
            return _json_list(bodies)
        limit = limit or page_size
        bodies, next_cursor = store.crm_contact_page(cursor, limit)
        return page_response(request, bodies, next_cursor, limit)

    @app.get("/_sandbox/patches", dependencies=auth)
    def applied_patches() -> dict:
        """How many contact changes this server applied since it started."""
        return {"count": len(app.state.applied_patches)}

    @app.get("/_sandbox/writes", dependencies=auth)
    def write_log() -> list[dict]:
        """Every contact change ever applied, in order, with the idempotency key it came with."""
        return store.write_log()

    @app.post("/_sandbox/faults", dependencies=auth, status_code=201)
    def arm_fault(fault: Fault) -> dict:
        app.state.faults.arm(fault)
        return {"armed": fault.model_dump()}

    @app.get("/_sandbox/faults", dependencies=auth)
    def fault_stats() -> dict:
        """Requests to the provider's API and faults injected since the server started, per
        method."""
        faults = app.state.faults
        return {
            "requests": dict(faults.requests),
            "faults": dict(Counter(method for method, _, _ in faults.log)),
        }

    @app.delete("/_sandbox/faults", dependencies=auth)
    def clear_faults() -> dict:
        app.state.faults.clear()
        return {"cleared": True}

    @app.patch("/_sandbox/agents/{agent}", dependencies=auth)
    def change_agent(agent: str, change: AgentChange) -> Response:
        """Change a CRM agent (found by id or username): deactivate it, move it to a team."""
        changes = change.model_dump(exclude_unset=True)
        if not changes:
            raise HTTPException(status_code=422, detail="nothing to change")
        body = store.set_agent(agent, changes)
        if body is None:
            raise HTTPException(status_code=404, detail=f"agent {agent} not found")
        return Response(content=body, media_type="application/json")

    @app.post("/_sandbox/campaigns/{campaign}/contacts", dependencies=auth, status_code=201)
    async def add_contacts(campaign: str, request: Request) -> dict:
        try:
            records = json.loads(await request.body())
        except ValueError as error:
            raise HTTPException(status_code=400, detail=f"body is not JSON: {error}") from None
        if not isinstance(records, list):
            raise HTTPException(status_code=400, detail="body must be a JSON list of records")
        return {"added": store.add_contacts(campaign, records)}

    return app
