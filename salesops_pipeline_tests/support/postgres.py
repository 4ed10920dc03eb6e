"""A throw-away PostgreSQL server for the tests that need one, and a fresh database per test.

One server per test process (each pytest worker has its own), started on first use and
stopped at the end. Without fsync: these servers hold nothing worth a power cut.
"""

import os
import secrets
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from salesops_pipeline_tests.support.stack_process import free_port
from salesops_pipeline_tests.support.system_packages import missing_for, postgres_binary


def _pg_bin(name: str) -> str:
    found = postgres_binary(name)
    assert found, missing_for("postgres")
    return found


@dataclass(frozen=True)
class PostgresServer:
    host: str
    port: int
    user: str
    base: Path

    def url(self, database: str) -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{database}"

    def create_database(self, prefix: str = "t") -> str:
        """A new empty database; its URL."""
        name = f"{prefix}_{secrets.token_hex(6)}"
        self._administer(f"CREATE DATABASE {name}")
        return self.url(name)

    def drop_database(self, url: str) -> None:
        self._administer(f"DROP DATABASE IF EXISTS {url.rsplit('/', 1)[1]} WITH (FORCE)")

    def _administer(self, statement: str) -> None:
        """Run a statement that cannot run inside a transaction, from the server's own DB."""
        import psycopg2

        conn = psycopg2.connect(self.url("postgres"))
        try:
            conn.autocommit = True
            conn.cursor().execute(statement)
        finally:
            conn.close()


def start_server(max_connections: int = 200, *, durable: bool = False):
    """Start a server; returns (server, stop). `durable`: with fsync, as in production (for
    measurements); else without, as nothing a test stores is worth a power cut."""
    # Not under pytest's tmp dir: the server runs as the `postgres` user, who must reach it.
    base = Path(tempfile.mkdtemp(prefix="salesops-pg-", dir="/tmp"))
    base.chmod(0o755)
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_postgres:
        shutil.chown(base, "postgres", "postgres")
    data, port = base / "data", free_port()

    def run(*argv):
        subprocess.run(
            [*as_postgres, *argv], check=True, capture_output=True, text=True, timeout=120
        )

    # UTF-8, as production servers are; the inbox's own column collation ("C") orders its
    # texts byte for byte whatever the database's.
    run(
        _pg_bin("initdb"),
        "-D",
        str(data),
        "-A",
        "trust",
        "-U",
        "salesops",
        "--no-sync",
        "-E",
        "UTF8",
        "--locale",
        "C.UTF-8",
    )
    run(
        _pg_bin("pg_ctl"),
        "-D",
        str(data),
        "-w",
        "-l",
        str(base / "server.log"),
        "start",
        "-o",
        f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c max_connections={max_connections}"
        + ("" if durable else " -c fsync=off -c synchronous_commit=off"),
    )

    def stop():
        run(_pg_bin("pg_ctl"), "-D", str(data), "-m", "immediate", "stop")
        shutil.rmtree(base, ignore_errors=True)

    return PostgresServer("127.0.0.1", port, "salesops", base), stop
