"""The stack spread over hosts of their own, as in production: the database, two intakes,
Dagster (webserver, daemon and runs) and the provider, each in a network namespace; the test
works from a sixth, the operator's.

Every host that uses the database reaches it over a link of its own, through the fault proxy
on the database's host: taking that link down partitions exactly that host from the database,
and the proxy adds latency, resets and stalls on the way.
"""

import contextlib
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import requests

from salesops_pipeline.devtools.stack import WORKSPACE_YAML
from salesops_pipeline.postgres import with_network_timeouts
from salesops_pipeline_tests.support.fault_proxy import FaultProxy
from salesops_pipeline_tests.support.netns import Host, Network
from salesops_pipeline_tests.support.post_call_outcome import contacts
from salesops_pipeline_tests.support.postgres import _pg_bin

REPO_ROOT = Path(__file__).resolve().parents[2]
PG_PORT = 5432
PROXY_PORT = 6432
SANDBOX_PORT = 8010
INTAKE_PORT = 8020
DAGSTER_PORT = 3000
# The hosts that use the database, each through a route of the proxy of its own.
DATABASE_CLIENTS = ("intake-1", "intake-2", "dagster")
# Settings of the developer's own environment that must not leak into the hosts.
_OWN_SETTINGS = ("SALESOPS_", "REMOTE_API_", "X_API_KEY", "DAGSTER_HOME")


@dataclass
class MultiHostStack:
    network: Network
    root: Path
    intake_key: str
    provider_key: str
    proxy: FaultProxy | None = None
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    pg_data: Path | None = None
    pg_base: Path | None = None
    _contacts: list[str] | None = None
    # Leaves the operator's host when closed (from the thread that entered it).
    inside: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)
    _used: int = 0

    def host(self, name: str) -> Host:
        return self.network.hosts[name]

    @property
    def database(self) -> Host:
        return self.host("db")

    @property
    def admin_url(self) -> str:
        """The database as the test reads it: straight over the LAN, never through the proxy
        nor the links a scenario takes down."""
        return f"postgresql://salesops@{self.database.address}:{PG_PORT}/salesops"

    def database_url(self, client: str) -> str:
        """The database as `client` reaches it: over its own link, through its proxy route."""
        address = self.host(client).address_towards("db")
        return f"postgresql://salesops@{address}:{PROXY_PORT}/salesops"

    @property
    def intake_urls(self) -> list[str]:
        return [f"http://{self.host(n).address}:{INTAKE_PORT}" for n in ("intake-1", "intake-2")]

    @property
    def sandbox_url(self) -> str:
        return f"http://{self.host('provider').address}:{SANDBOX_PORT}"

    @property
    def dagster_url(self) -> str:
        return f"http://{self.host('dagster').address}:{DAGSTER_PORT}"

    def partition(self, client: str, *, cut: bool) -> None:
        """Cut (or heal) the link between `client` and the database."""
        self.network.set_link(self.host(client), self.database, up=not cut)

    def pg_ctl(self, *argv: str) -> None:
        """pg_ctl on the database's host, as its owner: a server it starts listens there."""
        subprocess.run(
            self.database.argv("runuser", "-u", "postgres", "--", _pg_bin("pg_ctl"), *argv),
            check=True,
            capture_output=True,
            text=True,
            timeout=120,
        )

    def restart_database(self) -> None:
        """Restart PostgreSQL with a fast shutdown: every session is ended, in-flight
        transactions are rolled back, the server is back once it accepts connections."""
        # Its output to the log, as at the first start: a server writing to this process's
        # pipes would hold them open, and the call would never return.
        log = str(self.pg_base / "server.log")
        self.pg_ctl("-D", str(self.pg_data), "-l", log, "-m", "fast", "-w", "restart")

    def logs(self, lines: int = 40) -> str:
        """The tail of each host's log, for a failing test's report."""
        parts = []
        logs = sorted(self.root.glob("*/output.log"))
        if self.pg_base is not None:
            logs.append(self.pg_base / "server.log")
        for log in logs:
            with contextlib.suppress(OSError):
                tail = log.read_text(errors="replace").splitlines()[-lines:]
                parts.append(f"--- {log}\n" + "\n".join(tail))
        return "\n".join(parts)

    def pids(self) -> dict[str, int]:
        return {name: process.pid for name, process in self.processes.items()}

    @property
    def provider_view(self) -> "ProviderView":
        return ProviderView(self.sandbox_url, self.provider_key)

    def take_contacts(self, count: int) -> list[str]:
        """`count` contacts of the provider no earlier caller took: each scenario its own."""
        if self._contacts is None:
            self._contacts = list(contacts(self.provider_view))
        taken = self._contacts[self._used : self._used + count]
        assert len(taken) == count, "the provider has too few contacts for the scenarios"
        self._used += count
        return taken


@dataclass(frozen=True)
class ProviderView:
    """The provider of the hosts, as the post-call outcome helpers read it."""

    sandbox_url: str
    provider_key: str


def _base_environment() -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(_OWN_SETTINGS)},
        "PYTHONUNBUFFERED": "1",
    }


def _start_database(stack: MultiHostStack) -> None:
    """A PostgreSQL server on the database's host: reached by the proxy on its loopback, and
    by the test over the LAN."""
    # Not under pytest's tmp dir: the server runs as the `postgres` user, who must reach it.
    base = Path(tempfile.mkdtemp(prefix="salesops-pg-", dir="/tmp"))
    stack.pg_base = base
    base.chmod(0o755)
    shutil.chown(base, "postgres", "postgres")
    data = base / "data"
    stack.pg_data = data
    subprocess.run(
        [
            "runuser", "-u", "postgres", "--", _pg_bin("initdb"), "-D", str(data), "-A", "trust",
            "-U", "salesops", "--no-sync", "-E", "UTF8", "--locale", "C.UTF-8",
        ],
        check=True, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    with open(data / "pg_hba.conf", "a") as hba:
        hba.write(f"host all all {stack.network.prefix}.0.0/16 trust\n")
    stack.pg_ctl(
        "-D", str(data), "-w", "-l", str(base / "server.log"), "start", "-o",
        f"-p {PG_PORT} -k {base} -c listen_addresses=127.0.0.1,{stack.database.address}"
        " -c max_connections=200 -c fsync=off",
    )  # fmt: skip
    import psycopg2

    conn = psycopg2.connect(
        f"postgresql://salesops@{stack.database.address}:{PG_PORT}/postgres", connect_timeout=10
    )
    try:
        conn.autocommit = True
        conn.cursor().execute("CREATE DATABASE salesops")
    finally:
        conn.close()


def _start_proxy(stack: MultiHostStack) -> None:
    routes = {
        client: (
            (stack.database.links[client][1], PROXY_PORT),
            ("127.0.0.1", PG_PORT),
        )
        for client in DATABASE_CLIENTS
    }
    stack.proxy = FaultProxy.start(
        routes, stack.root / "proxy.sock", prefix=stack.database.argv(), env=_base_environment()
    )


def _wait_http(stack: MultiHostStack, name: str, url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    process = stack.processes[name]
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited ({process.returncode}):\n{stack.logs()}")
        with contextlib.suppress(requests.RequestException):
            if requests.get(url, timeout=2).status_code == 200:
                return
        time.sleep(0.3)
    raise RuntimeError(f"{name} did not answer {url} within {timeout:.0f}s:\n{stack.logs()}")


def _start_part(stack: MultiHostStack, name: str, argv: list[str], env: dict[str, str]) -> None:
    home = stack.root / name
    home.mkdir(parents=True, exist_ok=True)
    stack.processes[name] = stack.network.start(
        stack.host(name),
        argv,
        env={**_base_environment(), "SALESOPS_HOME": str(home / "salesops"), **env},
        log=home / "output.log",
        cwd=home,
    )


def start_multi_host_stack(root: Path, *, contacts_per_campaign: int = 1000) -> MultiHostStack:
    """Build the hosts and start every part on its own; returns once each one answers. On a
    failure, everything started is removed before the error is raised."""
    network = Network()
    stack = MultiHostStack(network, root, secrets.token_urlsafe(24), secrets.token_urlsafe(24))
    try:
        database = network.add_host("db")
        for name in (*DATABASE_CLIENTS, "provider"):
            host = network.add_host(name)
            if name in DATABASE_CLIENTS:
                network.connect(host, database)
        # The test works from a host of its own on the LAN, as the provider's webhook sender
        # and the operators would: no address of the hosts' network exists outside them.
        stack.inside.enter_context(network.enter(network.add_host("operator")))
        _start_database(stack)
        _start_proxy(stack)
        cli = [sys.executable, "-m", "salesops_pipeline.cli"]
        provider = stack.host("provider").address
        _start_part(
            stack,
            "provider",
            [*cli, "sandbox", "--host", provider, "--port", str(SANDBOX_PORT),
             "--contacts-per-campaign", str(contacts_per_campaign)],
            {"REMOTE_API_KEY": stack.provider_key},
        )  # fmt: skip
        for name in ("intake-1", "intake-2"):
            _start_part(
                stack,
                name,
                [*cli, "serve", "--host", stack.host(name).address, "--port", str(INTAKE_PORT)],
                {"X_API_KEY": stack.intake_key, "SALESOPS_DATABASE_URL": stack.database_url(name)},
            )
        dagster_home = root / "dagster" / "dagster_home"
        dagster_home.mkdir(parents=True)
        instance = resources.files("salesops_pipeline.deploy").joinpath("dagster.database.yaml")
        (dagster_home / "dagster.yaml").write_text(instance.read_text())
        (dagster_home / "workspace.yaml").write_text(WORKSPACE_YAML)
        dagster = stack.host("dagster").address
        _start_part(
            stack,
            "dagster",
            [sys.executable, "-m", "dagster", "dev", "-w", str(dagster_home / "workspace.yaml"),
             "--host", dagster, "--port", str(DAGSTER_PORT)],
            {
                "DAGSTER_HOME": str(dagster_home),
                # As `salesops dev` hands it to Dagster: with the network timeouts.
                "SALESOPS_DATABASE_URL": with_network_timeouts(stack.database_url("dagster")),
                "REMOTE_API_HOST": stack.sandbox_url,
                "REMOTE_API_KEY": stack.provider_key,
                "SALESOPS_DAGSTER_URL": stack.dagster_url,
                "SALESOPS_FRONTEND_API_URL": stack.intake_urls[0],
                "SALESOPS_CHART_LINK_KEY": secrets.token_urlsafe(24),
                # Runs kept open whatever the hour the tests run at.
                "SALESOPS_POST_CALL_WARM_HOURS": "always",
            },
        )  # fmt: skip
        _wait_http(stack, "provider", f"{stack.sandbox_url}/healthz", 60)
        for name, url in zip(("intake-1", "intake-2"), stack.intake_urls, strict=True):
            _wait_http(stack, name, f"{url}/healthz", 60)
        _wait_http(stack, "dagster", f"{stack.dagster_url}/server_info", 180)
    except BaseException:
        stop_multi_host_stack(stack)
        raise
    return stack


def stop_multi_host_stack(stack: MultiHostStack) -> None:
    """Stop every part and remove the hosts, whatever state a scenario left them in."""
    stack.network.stop_processes()
    stack.inside.close()
    if stack.proxy is not None:
        stack.proxy.stop()
    if stack.pg_data is not None and stack.pg_data.exists():
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            stack.pg_ctl("-D", str(stack.pg_data), "-m", "immediate", "stop")
    stack.network.close()
    if stack.pg_base is not None:
        shutil.rmtree(stack.pg_base, ignore_errors=True)
