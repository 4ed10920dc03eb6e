"""Running the sandbox: as its own process (`salesops sandbox`) or inside another one."""

import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from salesops_pipeline import settings
from salesops_pipeline.sandbox.app import DEFAULT_PAGE_SIZE, create_app
from salesops_pipeline.sandbox.seed import (
    DEFAULT_CONTACTS_PER_CAMPAIGN,
    DEFAULT_SEED,
    seed_sandbox,
)
from salesops_pipeline.sandbox.store import SandboxStore


def default_store_path() -> Path:
    return settings.salesops_home() / "sandbox" / "provider.sqlite"


def ensure_seeded_store(
    path: Path | None = None,
    *,
    contacts_per_campaign: int = DEFAULT_CONTACTS_PER_CAMPAIGN,
    seed: int = DEFAULT_SEED,
) -> SandboxStore:
    """The sandbox's store at `path`, seeded with demo data on first use.

    Seeding happens in a file beside the store that is renamed into place when complete, so an
    interrupted first start never leaves a half-seeded provider behind.
    """
    path = path or default_store_path()
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
        for leftover in (partial, Path(f"{partial}-wal"), Path(f"{partial}-shm")):
            leftover.unlink(missing_ok=True)
        try:
            seed_sandbox(
                SandboxStore(partial), contacts_per_campaign=contacts_per_campaign, seed=seed
            )
            partial.replace(path)
        finally:
            for leftover in (partial, Path(f"{partial}-wal"), Path(f"{partial}-shm")):
                leftover.unlink(missing_ok=True)
    return SandboxStore(path)


@dataclass
class RunningSandbox:
    url: str
    api_key: str
    app: object


@contextmanager
def running_sandbox(
    store: SandboxStore,
    *,
    api_key: str,
    host: str = "127.0.0.1",
    port: int = 0,
    page_size: int = DEFAULT_PAGE_SIZE,
) -> Iterator[RunningSandbox]:
    """Serve the sandbox from a background thread for the duration of the block.

    Port 0 picks a free port; the URL to use is in the yielded value.
    """
    app = create_app(store, api_key=api_key, page_size=page_size)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    bound_port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="sandbox-provider", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            sock.close()
            raise RuntimeError("the sandbox provider did not start")
        time.sleep(0.01)
    try:
        yield RunningSandbox(url=f"http://{host}:{bound_port}", api_key=api_key, app=app)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def serve(store: SandboxStore, *, api_key: str, host: str, port: int, page_size: int) -> None:
    """Serve the sandbox in the foreground until interrupted."""
    app = create_app(store, api_key=api_key, page_size=page_size)
    uvicorn.run(app, host=host, port=port, log_level="info", access_log=False)
