"""Shared fixtures: an isolated SALESOPS_HOME per test, the reference DB, tiny sales DBs."""

import os
import signal
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from salesops_pipeline.sales.demo import SCHEMA
from salesops_pipeline_tests.support.system_packages import missing_for

REPO_ROOT = Path(__file__).resolve().parent.parent
# Copies of the company's real sales DB and the provider's real webhooks (see fixtures/README.md).
FIXTURES_DIR = Path(__file__).resolve().parent / "fixtures"
REFERENCE_EVENT_NAMES = ("post_call_2.1", "post_call_2.2")


def _import_anyio_now() -> None:
    """anyio imports its parts on first use, so an intake served in a thread would import them
    there. Under pytest that import is an assertion rewrite, which parses the module with `ast`,
    and CPython 3.11's AST conversion keeps its recursion depth in global state (gh-106905): two
    threads parsing at once fail with "AST constructor recursion depth mismatch", and the
    request dies mid-response. Importing them here, before any thread starts, leaves nothing
    for a server thread to parse."""
    import anyio
    import anyio._backends._asyncio  # what the event loop imports on first use

    for name in dir(anyio):
        if not name.startswith("_"):
            getattr(anyio, name)


_import_anyio_now()


def fixture_path(relative: str) -> Path:
    """A file shipped in `fixtures/`; a missing one fails the test at once, naming it."""
    path = FIXTURES_DIR / relative
    if not path.is_file():
        pytest.fail(f"test fixture missing: {path} (it ships with the repository)", pytrace=False)
    return path


# Each folder is a layer, and its tests carry its name as a marker: `pytest -m "not e2e"` is
# the quick loop, without the tests that start the whole stack (the chaos suite among them).
LAYERS = {
    "unit": ("unit",),
    "dagster": ("dagster",),
    "services": ("services",),
    "e2e": ("e2e",),
    "chaos": ("chaos", "e2e"),
    "multihost": ("multihost", "e2e"),
}


def pytest_configure(config):
    """The test command runs the stack tests in the background and stops them with SIGTERM
    when it is interrupted: unwind as Ctrl-C does, so that the stacks they started are
    stopped too rather than left running."""

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"stopped by signal {signum}")

    if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, interrupt)


def pytest_collection_modifyitems(config, items):
    """Mark each test with its layer. Tests that need a system program skip, saying how to
    install it, where it is absent; not in CI, where the test command installs them and a
    missing one must fail loudly."""
    tests_dir = Path(__file__).resolve().parent
    for item in items:
        layer = item.path.resolve().relative_to(tests_dir).parts[0]
        for marker in LAYERS.get(layer, ()):
            item.add_marker(marker)
    if os.environ.get("CI") == "true":
        return
    for marker in ("browser", "postgres"):
        reason = missing_for(marker)
        if reason is None:
            continue
        for item in items:
            if marker in item.keywords:
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(autouse=True)
def restored_environment():
    """The CLI loads .env files into os.environ; no test leaks what it loaded into the next."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(autouse=True)
def isolated_home(restored_environment, tmp_path, monkeypatch) -> Path:
    """Every test gets its own SALESOPS_HOME and working directory, and no configured DB."""
    home = tmp_path / "salesops_home"
    monkeypatch.setenv("SALESOPS_HOME", str(home))
    for name in (
        "SALESOPS_SALES_DB",
        "REMOTE_API_HOST",
        "REMOTE_API_KEY",
        "X_API_KEY",
        "SALESOPS_METRICS_TOKEN",
        "SALESOPS_WEBHOOK_SECRET",
        "SALESOPS_DAGSTER_YAML",
        "SALESOPS_ALERT_WEBHOOK_URL",
        "SALESOPS_DAGSTER_URL",
        "SALESOPS_DATABASE_URL",
    ):
        monkeypatch.delenv(name, raising=False)
    # What the post-call sensor asks for must not depend on the hour the tests run at: warm
    # runs are tested where a test asks for them.
    monkeypatch.setenv("SALESOPS_POST_CALL_WARM_HOURS", "never")
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    return home


@pytest.fixture(scope="session")
def postgres_server():
    """A throw-away PostgreSQL server for this test process, started on first use."""
    from salesops_pipeline_tests.support.postgres import start_server

    server, stop = start_server()
    try:
        yield server
    finally:
        stop()


@pytest.fixture
def postgres_url(postgres_server) -> Iterator[str]:
    """A fresh, empty database on the throw-away server, dropped after the test."""
    from salesops_pipeline import postgres

    url = postgres_server.create_database()
    yield url
    postgres.dispose(url)
    postgres_server.drop_database(url)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def any_inbox(request, isolated_home, monkeypatch):
    """The post-call inbox where `salesops` commands and resources look for it, on each back
    end: the SQLite file under SALESOPS_HOME, and a fresh PostgreSQL database named by
    SALESOPS_DATABASE_URL."""
    from salesops_pipeline.post_call.inbox import Inbox

    if request.param == "postgres":
        url = request.getfixturevalue("postgres_url")
        monkeypatch.setenv("SALESOPS_DATABASE_URL", url)
        return Inbox(url=url)
    return Inbox(isolated_home / "intake" / "inbox.sqlite")


# A test about one back end's own behaviour (a file replaced, a disk too slow), where the
# inbox fixtures would otherwise run it on each.
sqlite_only = pytest.mark.parametrize("any_inbox", ["sqlite"], indirect=True)


def reopened(inbox):
    """Another handle on the same inbox, as another process would open it."""
    from salesops_pipeline.post_call.inbox import Inbox

    return Inbox(inbox.path) if inbox.url is None else Inbox(url=inbox.url)


def inbox_resource(inbox, **settings):
    """The Dagster resource reading this inbox."""
    from salesops_pipeline.resources import InboxResource

    if inbox.url is None:
        return InboxResource(path=str(inbox.path), **settings)
    return InboxResource(url=inbox.url, **settings)


@pytest.fixture
def reference_db() -> Path:
    """The company's real sales DB from the technical test, used as a compatibility fixture."""
    return fixture_path("database.sqlite")


class SalesDbBuilder:
    """Writes a tiny sales DB in the company schema, one explicit row at a time."""

    def __init__(self, path: Path):
        self.path = path
        self.conn = sqlite3.connect(path)
        self.conn.executescript(SCHEMA)

    def _insert(self, sql: str, *values) -> int:
        return self.conn.execute(sql, values).lastrowid

    def team(self, name: str) -> int:
        return self._insert("INSERT INTO team (name) VALUES (?)", name)

    def agent(self, username: str, *team_ids: int) -> int:
        agent_id = self._insert("INSERT INTO agent (username) VALUES (?)", username)
        for team_id in team_ids:
            self._insert(
                "INSERT INTO agent_team (agent_id, team_id) VALUES (?, ?)", agent_id, team_id
            )
        return agent_id

    def session(self, owner_id: int, amount: float, status: str = "new", day: str = "2025-04-01"):
        return self._insert(
            "INSERT INTO session (amount, status, starting_date, owner_id) VALUES (?, ?, ?, ?)",
            amount,
            status,
            day,
            owner_id,
        )

    def target(self, owner_id: int, day: str, amount: float) -> int:
        return self._insert(
            "INSERT INTO target (date, amount, owner_id) VALUES (?, ?, ?)", day, amount, owner_id
        )

    def operation(self, target_id: int, amount: float, session_id: int | None = None) -> int:
        return self._insert(
            "INSERT INTO target_operation (amount, target_id, session_id) VALUES (?, ?, ?)",
            amount,
            target_id,
            session_id,
        )

    def close(self) -> Path:
        self.conn.commit()
        self.conn.close()
        return self.path


@pytest.fixture
def sales_db_builder(tmp_path):
    builder = SalesDbBuilder(tmp_path / "sales.sqlite")
    yield builder
    builder.conn.close()


@pytest.fixture
def small_sales_db(sales_db_builder) -> Path:
    """Two teams, one agent in both, a sale unsubscribed on a later day, a day with target 0.

    April 2025 for lea: 1 → target 1000, sold 1500; 2 → target 1000, refund of the 1st's sale
    (-1500); 3 → target 0, sold 500. Tom (support only) sells 700 on the 1st. Zoe has no target.
    """
    b = sales_db_builder
    sales, support = b.team("sales"), b.team("support")
    b.team("tech")
    lea = b.agent("lea@example.com", sales, support)
    tom = b.agent("tom@example.com", support)
    b.agent("zoe@example.com", sales)
    sold = b.session(lea, 1500.0, "unsubscribed", "2025-04-01")
    kept = b.session(lea, 500.0, "new", "2025-04-03")
    toms = b.session(tom, 700.0, "new", "2025-04-01")
    lea_days = [
        b.target(lea, f"2025-04-0{d}", amount) for d, amount in ((1, 1000), (2, 1000), (3, 0))
    ]
    tom_day = b.target(tom, "2025-04-01", 1000)
    b.operation(lea_days[0], 1500.0, sold)
    b.operation(lea_days[1], -1500.0, sold)
    b.operation(lea_days[2], 500.0, kept)
    b.operation(tom_day, 700.0, toms)
    return b.close()


@pytest.fixture
def sandbox_store(tmp_path):
    """A freshly seeded sandbox provider state (the demo campaigns at their default size)."""
    from salesops_pipeline.services.sandbox.server import ensure_seeded_store

    return ensure_seeded_store(tmp_path / "sandbox" / "provider.sqlite")


@pytest.fixture
def sandbox(sandbox_store):
    """The sandbox provider served on loopback as the demo serves it, but with small pages:
    lists are paged, and campaign B holds the demo's malformed record."""
    from salesops_pipeline.services.sandbox.server import running_sandbox

    with running_sandbox(
        sandbox_store, api_key="test-key", page_size=97, malformed_records=True
    ) as running:
        yield running


def sales_report_resources(db_path, home) -> dict:
    """The sales reports' resources over the sales DB at `db_path`, with their warehouse and
    files under `home`."""
    from salesops_pipeline.resources import (
        PublishedReportsResource,
        SalesDatabaseResource,
        WarehouseResource,
    )

    return {
        "sales_db": SalesDatabaseResource(path=str(db_path)),
        "warehouse": WarehouseResource(home=str(home)),
        "published_reports": PublishedReportsResource(),
    }


@pytest.fixture
def provider_env(sandbox, monkeypatch):
    """The sandbox as the provider a `salesops` command is configured with."""
    monkeypatch.setenv("REMOTE_API_HOST", sandbox.url)
    monkeypatch.setenv("REMOTE_API_KEY", sandbox.api_key)
    return sandbox


def arm_fault(sandbox, **fault) -> None:
    """Ask the running sandbox, over HTTP, to misbehave on its next matching requests."""
    import requests

    response = requests.post(
        f"{sandbox.url}/_sandbox/faults",
        json=fault,
        headers={"X-API-KEY": sandbox.api_key},
        timeout=5,
    )
    response.raise_for_status()


@pytest.fixture
def chat():
    """A chat's incoming webhook on loopback, keeping what alerts post to it."""
    from salesops_pipeline_tests.support.receiver import ChatReceiver

    with ChatReceiver() as receiver:
        yield receiver


@pytest.fixture
def reference_events() -> dict[str, bytes]:
    """The provider's two real post-call payloads, byte for byte."""
    return {
        name: fixture_path(f"events/{name}.json").read_bytes() for name in REFERENCE_EVENT_NAMES
    }


def query_warehouse(home: Path, sql: str) -> list[tuple]:
    """Rows of `sql` on the DuckDB warehouse under `home`, read-only."""
    import duckdb

    conn = duckdb.connect(str(home / "warehouse.duckdb"), read_only=True)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def post_call_processor(sandbox, inbox, run_id=None, **settings):
    """A post-call processor on `sandbox`, with short timeouts: a write whose answer was lost
    may still land for 5 s (the client's timeouts, with no margin unless
    `write_landing_margin_seconds` says otherwise)."""
    from salesops_pipeline.clients import ApiTransport, CrmClient, VoiceClient
    from salesops_pipeline.post_call.processor import PostCallProcessor, PostCallSettings

    transport = ApiTransport(sandbox.url, sandbox.api_key, timeout=(3.05, 2.0))
    return PostCallProcessor(
        inbox=inbox,
        voice=VoiceClient(transport),
        crm=CrmClient(transport),
        run_id=run_id,
        settings=PostCallSettings(**{"write_landing_margin_seconds": 0, **settings}),
    )


def markdown_table_cells(row: str) -> list[str]:
    """A markdown table row split the way a GFM renderer splits it: escaped pipes stay."""
    cells, current, escaped = [], "", False
    for char in row.strip().removeprefix("|").removesuffix("|"):
        if char == "|" and not escaped:
            cells.append(current)
            current = ""
            continue
        current += char
        escaped = char == "\\" and not escaped
    return [*cells, current]
