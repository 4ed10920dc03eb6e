"""Running the sandbox: as its own process (`salesops sandbox`) or inside another one."""

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from salesops_pipeline import settings
from salesops_pipeline.services.http_server import serving_in_thread
from salesops_pipeline.services.sandbox.app import UNPAGED, create_app
from salesops_pipeline.services.sandbox.seed import (
    DEFAULT_CONTACTS_PER_CAMPAIGN,
    DEFAULT_SEED,
    flawed_contact_ids,
    seed_sandbox,
)
from salesops_pipeline.services.sandbox.store import SandboxStore


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
    store = SandboxStore(path)
    store.upgrade(sorted(flawed_contact_ids(seed)))
    return store


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
    page_size: int = UNPAGED,
    malformed_records: bool = False,
) -> Iterator[RunningSandbox]:
    """Serve the sandbox from a background thread for the duration of the block (by default
    as the reference provider answers: unpaged, clean records; see `create_app`)."""
    app = create_app(
        store, api_key=api_key, page_size=page_size, malformed_records=malformed_records
    )
    with serving_in_thread(app, host=host, port=port) as url:
        yield RunningSandbox(url=url, api_key=api_key, app=app)


def serve(
    store: SandboxStore,
    *,
    api_key: str,
    host: str,
    port: int,
    page_size: int = UNPAGED,
    malformed_records: bool = False,
) -> None:
    """Serve the sandbox in the foreground until interrupted."""
    app = create_app(
        store, api_key=api_key, page_size=page_size, malformed_records=malformed_records
    )
    uvicorn.run(app, host=host, port=port, log_level="info", access_log=False)
