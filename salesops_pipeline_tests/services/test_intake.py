"""The intake service over real HTTP on loopback: authentication, optional signatures,
durable storage before the answer, redelivery, conflicts, and quarantine of bad bodies."""

import asyncio
import json
import logging
import os
import re
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import anyio
import pytest
import requests
import uvicorn

from salesops_pipeline.post_call.inbox import Inbox
from salesops_pipeline.post_call.status import AcceptStatus
from salesops_pipeline.services.http_server import serving_in_thread
from salesops_pipeline.services.intake.app import create_intake_app
from salesops_pipeline.services.intake.committer import GroupCommitter
from salesops_pipeline.services.intake.server import intake_config, log_config
from salesops_pipeline.services.intake.signing import signature_headers
from salesops_pipeline_tests.conftest import reopened

KEY = "intake-key"
EVENT = {"callId": "c-1", "contactId": "contact-1", "wrapup": "Vente", "newField": "kept"}


@pytest.fixture
def inbox(request, tmp_path):
    """The SQLite inbox; or, for the tests `on_each_back_end` marks, each back end in turn."""
    if getattr(request, "param", "sqlite") == "postgres":
        return Inbox(url=request.getfixturevalue("postgres_url"))
    return Inbox(tmp_path / "inbox.sqlite")


# Storing, dedup, conflicts and quarantine, which a shared database must do exactly as a file.
on_each_back_end = pytest.mark.parametrize(
    "inbox", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)


@pytest.fixture
def intake(inbox):
    with serving_in_thread(create_intake_app(inbox, api_key=KEY, max_body_bytes=4096)) as url:
        yield url


def _post(url, body, key=KEY, headers=None):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return requests.post(
        f"{url}/webhooks/post-call",
        data=data,
        headers={"X-API-KEY": key, "Content-Type": "application/json", **(headers or {})},
        timeout=5,
    )


@on_each_back_end
def test_reference_payloads_are_accepted_as_they_are(intake, inbox, reference_events):
    for raw in reference_events.values():
        response = _post(intake, raw)
        assert response.status_code == 202, response.text
    stored = {record.call_id: record for record in inbox.recent()}
    assert set(stored) == {"102224021", "102344028"}
    assert stored["102224021"].payload.encode() == reference_events["post_call_2.1"]


@pytest.mark.parametrize("key", [None, "", "wrong", KEY + "x"])
def test_missing_or_wrong_key_is_401_and_nothing_is_kept(intake, inbox, key):
    headers = {} if key is None else {"X-API-KEY": key}
    response = requests.post(f"{intake}/webhooks/post-call", json=EVENT, headers=headers, timeout=5)
    assert response.status_code == 401
    assert inbox.recent() == [] and inbox.quarantined() == []


@on_each_back_end
def test_event_is_stored_before_the_answer(intake, inbox):
    response = _post(intake, EVENT)
    assert response.status_code == 202
    assert response.json() == {"status": "stored", "callId": "c-1"}
    # A fresh connection sees it: it was committed before the 2xx went out.
    record = reopened(inbox).get("c-1")
    assert json.loads(record.payload) == EVENT
    assert record.status == "pending"
    assert [q.call_id for q in inbox.queued_after(0, 10)] == ["c-1"]


@on_each_back_end
def test_redelivery_is_acknowledged_and_not_stored_twice(intake, inbox):
    assert _post(intake, EVENT).status_code == 202
    again = _post(intake, EVENT)
    assert again.status_code == 200
    assert again.json()["status"] == "duplicate"
    assert inbox.get("c-1").deliveries == 2
    assert len(inbox.queued_after(0, 10)) == 1


@on_each_back_end
def test_same_call_id_with_another_payload_is_kept_for_inspection(intake, inbox):
    assert _post(intake, EVENT).status_code == 202
    changed = {**EVENT, "wrapup": "Rappel"}
    response = _post(intake, changed)
    assert response.status_code == 200 and response.json()["status"] == "conflict"
    assert json.loads(inbox.get("c-1").payload)["wrapup"] == "Vente"
    [conflict] = inbox.conflicts()
    assert json.loads(conflict["payload"]) == changed
    assert len(inbox.queued_after(0, 10)) == 1


@on_each_back_end
@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b"{not json", 400, "malformed JSON"),
        (b"[]", 400, "expected a JSON object"),
        (
            b'{"callId": "x", "contactId": "y", "callBackDate": "30/02/2025 10:00:00"}',
            422,
            "callBackDate",
        ),
        (b'{"contactId": "y"}', 422, "callId is missing"),
    ],
)
def test_bad_bodies_get_4xx_and_are_quarantined_raw(intake, inbox, body, status, message):
    response = _post(intake, body)
    assert response.status_code == status
    assert message in response.json()["detail"]
    [kept] = inbox.quarantined()
    assert kept["raw_body"] == body
    assert message in kept["reason"]
    assert inbox.recent() == []


def test_oversized_body_is_refused(intake, inbox):
    response = _post(intake, {**EVENT, "wrapupComment": "x" * 10_000})
    assert response.status_code == 413
    assert inbox.recent() == []


def _file_where_the_folder_should_be(tmp_path):
    (tmp_path / "not-a-dir").write_text("a file where the inbox directory should be")
    return tmp_path / "not-a-dir" / "inbox.sqlite"


def _folder_where_the_file_should_be(tmp_path):
    (tmp_path / "inbox.sqlite").mkdir()
    return tmp_path / "inbox.sqlite"


@pytest.mark.parametrize(
    "break_inbox", [_file_where_the_folder_should_be, _folder_where_the_file_should_be]
)
def test_inbox_failure_is_not_acknowledged(tmp_path, break_inbox, caplog):
    """Not stored, so answered 503 with a delay: the provider delivers the webhook again."""
    broken = Inbox(break_inbox(tmp_path))
    with serving_in_thread(create_intake_app(broken, api_key=KEY)) as url:
        response = _post(url, EVENT)
    assert response.status_code == 503
    assert response.json() == {"detail": "inbox unavailable, retry later"}
    assert response.headers["Retry-After"] == "5"
    assert "post-call not stored, inbox unavailable" in caplog.text


def test_an_unreachable_database_is_not_acknowledged(caplog):
    """A shared database that refuses connections: 503, and the password stays out of the log."""
    unreachable = Inbox(url="postgresql://salesops:s3cret-pw@127.0.0.1:1/inbox")
    with serving_in_thread(create_intake_app(unreachable, api_key=KEY)) as url:
        response = _post(url, EVENT)
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert "post-call not stored, inbox unavailable" in caplog.text
    assert "s3cret-pw" not in caplog.text


class _SlowInbox(Inbox):
    """An inbox whose stores wait until the test lets them through, as one whose database is
    out of reach until the network heals."""

    def __init__(self, path):
        super().__init__(path)
        self.let_through = threading.Event()

    def accept_many(self, events):
        self.let_through.wait(timeout=30)
        return super().accept_many(events)


def test_a_store_slower_than_the_deadline_is_answered_503_and_still_kept(
    tmp_path, monkeypatch, caplog
):
    """A database out of reach is answered 503 with Retry-After once the deadline passes,
    rather than holding the sender; what the store commits afterwards is kept, and the
    provider's next delivery of it is acknowledged as a duplicate."""
    from salesops_pipeline.services.intake import app as intake_app

    monkeypatch.setattr(intake_app, "STORE_TIMEOUT_SECONDS", 0.5)
    slow = _SlowInbox(tmp_path / "inbox.sqlite")
    with serving_in_thread(create_intake_app(slow, api_key=KEY)) as url:
        started = time.monotonic()
        response = _post(url, EVENT)
        waited = time.monotonic() - started
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "5"
        assert 0.5 <= waited < 4
        assert "not stored within 0.5s" in caplog.text
        slow.let_through.set()
        deadline = time.monotonic() + 5
        while slow.get(EVENT["callId"]) is None:
            assert time.monotonic() < deadline, "the late store was lost"
            time.sleep(0.05)
        again = _post(url, EVENT)
    assert again.status_code == 200
    assert again.json()["status"] == AcceptStatus.DUPLICATE
    assert slow.get(EVENT["callId"]).deliveries == 2


def test_healthz(intake):
    assert requests.get(f"{intake}/healthz", timeout=5).json() == {"status": "ok"}


class TestSignatures:
    SECRET = "webhook-secret"

    @pytest.fixture
    def signed_intake(self, inbox):
        app = create_intake_app(inbox, api_key=KEY, webhook_secret=self.SECRET)
        with serving_in_thread(app) as url:
            yield url

    def _body(self):
        return json.dumps(EVENT).encode()

    def test_valid_signature_is_accepted(self, signed_intake):
        body = self._body()
        assert (
            _post(signed_intake, body, headers=signature_headers(self.SECRET, body)).status_code
            == 202
        )

    @pytest.mark.parametrize(
        ("make_headers", "reason"),
        [
            (lambda body: {}, "missing"),
            (lambda body: signature_headers("other-secret", body), "bad signature"),
            (lambda body: signature_headers(TestSignatures.SECRET, body + b" "), "bad signature"),
            (
                lambda body: signature_headers(TestSignatures.SECRET, body, now=time.time() - 3600),
                "stale",
            ),
        ],
    )
    def test_invalid_signatures_are_refused(self, signed_intake, inbox, make_headers, reason):
        body = self._body()
        response = _post(signed_intake, body, headers=make_headers(body))
        assert response.status_code == 401
        assert reason in response.json()["detail"]
        assert inbox.recent() == []


def _serve(args, env):
    return subprocess.run(
        [sys.executable, "-m", "salesops_pipeline.cli", "serve", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_service_refuses_to_start_without_a_key(isolated_home):
    env = {k: v for k, v in os.environ.items() if k != "X_API_KEY"}
    result = _serve(["--port", "0"], env)
    assert result.returncode == 1
    assert "X_API_KEY is not set" in result.stderr
    assert "Traceback" not in result.stderr


def test_local_demo_starts_with_a_generated_key(isolated_home):
    import socket

    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k != "X_API_KEY"}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "salesops_pipeline.cli",
            "serve",
            "--local-demo",
            "--port",
            str(port),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        first_line = process.stdout.readline()
        assert "this local demo's key is:" in first_line
        key = first_line.rsplit(" ", 1)[-1].strip()
        deadline = time.monotonic() + 20
        while True:
            try:
                response = _post(f"http://127.0.0.1:{port}", EVENT, key=key)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline
                time.sleep(0.2)
        assert response.status_code == 202
    finally:
        process.terminate()
        process.communicate(timeout=20)


@pytest.fixture
def intake_with_docs(inbox):
    with serving_in_thread(create_intake_app(inbox, api_key=KEY, docs=True)) as url:
        yield url


@pytest.mark.parametrize("page", ["docs", "redoc", "openapi.json"])
def test_no_docs_unless_asked(intake, page):
    assert requests.get(f"{intake}/{page}", timeout=5).status_code == 404


@pytest.mark.parametrize(("page", "script"), [("docs", "swagger-ui-bundle.js"), ("redoc", "redoc")])
def test_docs_pages_load_everything_from_the_service(intake_with_docs, page, script):
    intake = intake_with_docs
    html = requests.get(f"{intake}/{page}", timeout=5)
    assert html.status_code == 200
    sources = re.findall(r'(?:src|href)="([^"]+)"', html.text)
    assert sources and all(src.startswith("/") for src in sources), sources
    assert any(script in src for src in sources)
    for src in sources:
        asset = requests.get(f"{intake}{src}", timeout=5)
        assert asset.status_code == 200 and len(asset.content) > 1000, src


def test_openapi_declares_the_key_for_try_it_out(intake_with_docs):
    intake = intake_with_docs
    schema = requests.get(f"{intake}/openapi.json", timeout=5).json()
    [(scheme_name, scheme)] = schema["components"]["securitySchemes"].items()
    assert scheme == {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-KEY",
        "description": "The key the stack was started with.",
    }
    for path, method in (
        ("/webhooks/post-call", "post"),
        ("/api/progression", "get"),
        ("/api/team-sales", "get"),
    ):
        assert schema["paths"][path][method]["security"] == [{scheme_name: []}], path


def test_the_intake_survives_its_inbox_file_being_replaced(intake, inbox):
    assert _post(intake, EVENT).status_code == 202
    epoch = inbox.epoch()
    for suffix in ("", "-wal", "-shm"):
        inbox.path.with_name(inbox.path.name + suffix).unlink(missing_ok=True)
    second = {**EVENT, "callId": "c-2"}
    response = _post(intake, second)
    assert response.status_code == 202, response.text
    fresh = Inbox(inbox.path)
    assert fresh.get("c-2") is not None and fresh.get("c-1") is None
    assert fresh.epoch() != epoch


@on_each_back_end
def test_a_deeply_nested_body_is_refused_and_quarantined(intake, inbox):
    response = _post(intake, b"[" * 2000 + b"]" * 2000)
    assert response.status_code == 400
    assert "nested too deeply" in response.json()["detail"]
    assert len(inbox.quarantined()) == 1


def test_a_non_ascii_signature_is_a_bad_signature(inbox):
    app = create_intake_app(inbox, api_key=KEY, webhook_secret="s3cret")
    with serving_in_thread(app) as url:
        headers = {"X-Signature-Timestamp": str(int(time.time())), "X-Signature": "sha256=é"}
        response = _post(url, EVENT, headers={k: v.encode("latin-1") for k, v in headers.items()})
    assert response.status_code == 401
    assert response.json()["detail"] == "bad signature"


def test_one_log_line_per_delivery_without_secrets(intake, caplog):
    caplog.set_level(logging.INFO, logger="salesops.intake")
    with_phone = {**EVENT, "contactPhone": "+33612345678"}
    _post(intake, with_phone)  # stored
    _post(intake, with_phone)  # duplicate
    _post(intake, {**with_phone, "wrapup": "changed"})  # conflict
    _post(intake, b"{oops")  # quarantined
    _post(intake, EVENT, key="wrong-key")  # refused
    lines = [r.getMessage() for r in caplog.records if r.name == "salesops.intake"]
    assert [line.split(":")[0] for line in lines] == [
        "post-call c-1",
        "post-call c-1",
        "post-call c-1",
        "post-call quarantined",
        "post-call refused",
    ]
    assert lines[0].endswith("stored") and lines[2].endswith("conflict")
    assert "401" in lines[4]
    text = "\n".join(lines)
    assert KEY not in text and "wrong-key" not in text and "612345678" not in text


def test_log_lines_are_formatted_like_uvicorns_at_the_chosen_level():
    config = log_config("warning")
    assert config["loggers"]["salesops"] == {"handlers": ["default"], "level": "WARNING"}
    assert config["handlers"]["default"]["formatter"] == "default"


def _serve_for_real(app, monkeypatch, **timeouts):
    """The intake as `salesops serve` runs it (its protocol, timeouts and limits)."""
    for name, value in timeouts.items():
        monkeypatch.setattr(name, value)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(intake_config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    return server, thread, sock.getsockname()[1]


def test_connections_are_bounded_and_idle_ones_closed(inbox):
    config = intake_config(create_intake_app(inbox, api_key=KEY), host="127.0.0.1", port=0)
    assert config.limit_concurrency == 500
    assert config.timeout_keep_alive == 5
    assert config.access_log is False


def test_a_client_trickling_its_headers_is_cut_off(inbox, monkeypatch):
    app = create_intake_app(inbox, api_key=KEY)
    server, thread, port = _serve_for_real(
        app,
        monkeypatch,
        **{"salesops_pipeline.services.intake.server.HEADER_READ_TIMEOUT_SECONDS": 1.0},
    )
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as slow:
            slow.sendall(b"POST /webhooks/post-call HTTP/1.1\r\nHost: x\r\n")
            started = time.monotonic()
            assert slow.recv(1024) == b""  # closed by the server
            assert time.monotonic() - started < 5
        # Meanwhile and after, others are served.
        response = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
        assert response.status_code == 200
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_a_client_stalling_its_body_gets_408(inbox, monkeypatch):
    monkeypatch.setattr("salesops_pipeline.services.intake.app.BODY_READ_TIMEOUT_SECONDS", 1.0)
    app = create_intake_app(inbox, api_key=KEY)
    server, thread, port = _serve_for_real(app, monkeypatch)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as slow:
            slow.sendall(
                b"POST /webhooks/post-call HTTP/1.1\r\nHost: x\r\nX-API-KEY: "
                + KEY.encode()
                + b"\r\nContent-Length: 100\r\n\r\n{"
            )
            assert slow.recv(1024).startswith(b"HTTP/1.1 408")
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_webhooks_are_stored_while_the_frontend_fills_every_thread(inbox):
    app = create_intake_app(inbox, api_key=KEY)
    finished = []

    @app.get("/test/one-thread")
    async def one_thread():
        anyio.to_thread.current_default_thread_limiter().total_tokens = 1
        return {}

    @app.get("/test/slow-read")
    def slow_read():  # a frontend read waiting on the warehouse, in the shared threads
        time.sleep(3)
        finished.append("frontend")
        return {}

    with serving_in_thread(app) as url:
        requests.get(f"{url}/test/one-thread", timeout=5)
        reader = threading.Thread(
            target=requests.get, args=(f"{url}/test/slow-read",), kwargs={"timeout": 10}
        )
        reader.start()
        time.sleep(0.3)
        assert _post(url, EVENT).status_code == 202
        finished.append("webhook")
        reader.join(timeout=10)
    assert finished == ["webhook", "frontend"]


class SlowDiskInbox(Inbox):
    """An inbox whose every commit takes 50 ms, and that counts the events of each commit."""

    def __init__(self, path):
        super().__init__(path)
        self.commits: list[int] = []

    def accept_many(self, events):
        time.sleep(0.05)
        accepted = super().accept_many(events)
        self.commits.append(len(events))
        return accepted


def test_a_burst_shares_commits_and_each_answer_follows_its_commit(tmp_path):
    inbox = SlowDiskInbox(tmp_path / "inbox.sqlite")
    reader = Inbox(inbox.path)

    def deliver(n):
        response = _post(url, {**EVENT, "callId": f"burst-{n}"})
        # By the time the 2xx arrives, the event is on disk for any other reader.
        return response.status_code, reader.get(f"burst-{n}") is not None

    with serving_in_thread(create_intake_app(inbox, api_key=KEY)) as url:
        with ThreadPoolExecutor(max_workers=20) as pool:
            answers = list(pool.map(deliver, range(40)))
    assert answers == [(202, True)] * 40
    assert sum(inbox.commits) == 40
    assert len(inbox.commits) < 40  # requests waiting on a commit shared the next one


@on_each_back_end
@pytest.mark.parametrize("call_id", ["a\u0000b", "a\ud800b"])
def test_an_identifier_no_text_can_store_is_quarantined(intake, inbox, call_id):
    response = _post(intake, json.dumps({**EVENT, "callId": call_id}).encode())
    assert response.status_code == 422, response.text
    assert "NUL or a lone surrogate" in response.json()["detail"]
    assert inbox.recent() == [] and len(inbox.quarantined()) == 1


class PoisonInbox(Inbox):
    """An inbox with a bug that one event triggers: any commit holding it fails. Its first
    commit waits for `gate`, so that deliveries pile up behind it."""

    def __init__(self, path):
        super().__init__(path)
        self.gate = threading.Event()
        self.tried: list[list[str]] = []

    def accept_many(self, events):
        self.tried.append([call_id for call_id, _ in events])
        if len(self.tried) == 1:
            self.gate.wait(10)
        if any(call_id == "poison" for call_id, _ in events):
            raise ValueError("a bug this event triggers")
        return super().accept_many(events)


def test_an_event_that_breaks_its_commit_fails_alone(tmp_path):
    inbox = PoisonInbox(tmp_path / "inbox.sqlite")
    committer = GroupCommitter(inbox)
    call_ids = [f"burst-{n}" for n in range(40)]
    call_ids.insert(20, "poison")

    async def deliver():
        first = asyncio.ensure_future(committer.accept("first", json.dumps(EVENT)))
        while not inbox.tried:  # the writer holds the first commit
            await asyncio.sleep(0.01)
        rest = [
            asyncio.ensure_future(committer.accept(c, json.dumps({**EVENT, "callId": c})))
            for c in call_ids
        ]
        await asyncio.sleep(0)  # every delivery is waiting for the next commit
        inbox.gate.set()
        return await asyncio.gather(first, *rest, return_exceptions=True)

    answers = dict(zip(["first", *call_ids], asyncio.run(deliver()), strict=True))
    assert inbox.tried[1] == call_ids  # one commit held them all, and failed
    assert isinstance(answers.pop("poison"), ValueError)
    assert {answer.status for answer in answers.values()} == {AcceptStatus.STORED}
    assert {record.call_id for record in inbox.recent(limit=100)} == set(answers)
