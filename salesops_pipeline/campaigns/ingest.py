"""Bringing two campaigns' contacts from the provider into a DuckDB table.

Each page the provider answers is streamed to a file as it arrives and read from there by
DuckDB, in batches, while the next pages travel: no contact becomes a Python object, and
memory holds a batch, whether the provider pages a campaign or answers it as one list.
"""

import contextlib
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from salesops_pipeline.campaigns.contacts import (
    CONTACTS,
    finish_loading,
    loading_settings,
    page_sizes,
    read_other_phones,
    stage_pages,
    start_loading,
)
from salesops_pipeline.clients.errors import ApiRequestError
from salesops_pipeline.clients.models import Rejected
from salesops_pipeline.clients.transport import prefetched
from salesops_pipeline.clients.voice import VoiceClient
from salesops_pipeline.errors import InvalidInputError
from salesops_pipeline.transactions import duckdb_transaction

# Bytes of saved pages read per batch: enough for DuckDB to read them in parallel, little
# enough that a batch stays a small part of memory.
BATCH_BYTES = 64 << 20
# Pages saved ahead of the reading, by a thread of their own while DuckDB reads the ones
# before; the download waits beyond that, so the disk holds a bounded amount whatever the
# campaign's size.
PAGES_AHEAD = 64


@dataclass
class CampaignLoad:
    campaign: str
    contacts: int = 0
    invalid_phones: int = 0
    unreadable_phones: int = 0
    rejected: list[Rejected] = field(default_factory=list)
    # (contact id, why) of the numbers left out of the comparison, the first few of them.
    unreadable_examples: list[tuple[str | None, str]] = field(default_factory=list)


@dataclass(frozen=True)
class LoadProgress:
    """How far one campaign's load has got: pages received from the provider and contacts
    read into the table so far."""

    campaign: str
    pages: int
    contacts: int


def check_campaign_pair(campaign_a: str, campaign_b: str) -> None:
    if not campaign_a or not campaign_b:
        raise InvalidInputError("Both campaign ids must be given")
    if campaign_a == campaign_b:
        raise InvalidInputError(f"Compare two different campaigns, not {campaign_a!r} with itself")


def load_campaigns(
    conn: duckdb.DuckDBPyConnection,
    client: VoiceClient,
    campaign_a: str,
    campaign_b: str,
    *,
    examples: int = 20,
    on_progress: Callable[[LoadProgress], None] | None = None,
) -> list[CampaignLoad]:
    """Replace `campaign_contacts` with both campaigns' contacts, phones read.

    Loaded into a table of its own, then swapped in at once: readers see the previous load
    until this one is whole. `on_progress`, when given, hears of each page received and of
    the contacts read after each batch, campaign by campaign.
    """
    check_campaign_pair(campaign_a, campaign_b)
    loading = f"{CONTACTS}_loading"
    campaigns = (campaign_a, campaign_b)
    with loading_settings(conn):
        start_loading(conn, loading)
        try:
            with tempfile.TemporaryDirectory(prefix="salesops-pages-") as spool:
                pages = _all_pages(client, campaigns, Path(spool))
                rejected = _stage(conn, pages, campaigns, loading, on_progress)
            loads = [
                _campaign_load(conn, loading, position, campaign, rejected[position])
                for position, campaign in enumerate(campaigns, start=1)
            ]
            finish_loading(conn, loading)
            read_other_phones(conn, loading)
            _count_phones(conn, loading, loads, examples)
        except BaseException:
            conn.execute(f"DROP TABLE IF EXISTS {loading}")
            raise
        with duckdb_transaction(conn):
            conn.execute(f"DROP TABLE IF EXISTS {CONTACTS}")
            conn.execute(f"ALTER TABLE {loading} RENAME TO {CONTACTS}")
        _checkpoint(conn)
    return loads


def _checkpoint(conn: duckdb.DuckDBPyConnection) -> None:
    """Write the new contacts to the database file while the loading settings hold: left to
    a later checkpoint, they would be compressed all at once, with no bound on memory."""
    # Another connection in a transaction forbids it: the next checkpoint writes them then.
    with contextlib.suppress(duckdb.TransactionException):
        conn.execute("CHECKPOINT")


def _all_pages(
    client: VoiceClient, campaigns: tuple[str, str], spool: Path
) -> Iterator[tuple[int, Path]]:
    """(position, saved page) for both campaigns in turn: the second campaign travels while
    the first one is read."""
    for position, campaign in enumerate(campaigns, start=1):
        for path in client.download_contact_pages(campaign, spool / str(position)):
            yield position, path


def _stage(
    conn: duckdb.DuckDBPyConnection,
    pages: Iterator[tuple[int, Path]],
    campaigns: tuple[str, str],
    table: str,
    on_progress: Callable[[LoadProgress], None] | None = None,
) -> dict[int, dict[int, list[Rejected]]]:
    """Every saved page into `table`, batch by batch; the malformed records by campaign
    position and page."""
    rejected: dict[int, dict[int, list[Rejected]]] = {1: {}, 2: {}}
    received = prefetched(pages, ahead=PAGES_AHEAD)
    progress = _Progress(campaigns, on_progress) if on_progress else None
    if progress:
        received = progress.received(received)
    for position, batch in _batches(received):
        numbered = {_page_number(path): path for path in batch}
        try:
            rejected[position] |= stage_pages(
                conn, numbered, table=table, position=position, campaign=campaigns[position - 1]
            )
        except ValueError as error:
            raise ApiRequestError("GET /voice/contacts", str(error)) from None
        finally:
            for path in batch:
                path.unlink(missing_ok=True)
        if progress:
            progress.read(conn, table, position)
    return rejected


class _Progress:
    """Pages received and contacts read so far, per campaign position, told to a callback."""

    def __init__(self, campaigns: tuple[str, str], on_progress: Callable[[LoadProgress], None]):
        self._campaigns = campaigns
        self._on_progress = on_progress
        self._pages = {1: 0, 2: 0}
        self._contacts = {1: 0, 2: 0}

    def received(self, pages: Iterator[tuple[int, Path]]) -> Iterator[tuple[int, Path]]:
        # A page counts once the reading has taken it and asks for the next: the second
        # campaign then starts when the first one's last batch is read, not while it is.
        for position, path in pages:
            yield position, path
            self._pages[position] += 1
            self._tell(position)

    def read(self, conn: duckdb.DuckDBPyConnection, table: str, position: int) -> None:
        # Counted in the table rather than added up per page: the careful reading takes rows
        # out and puts some back. One count per batch, over one column.
        (self._contacts[position],) = conn.execute(
            f"SELECT COUNT(*) FROM {table} WHERE position = ?", [position]
        ).fetchone()
        self._tell(position)

    def _tell(self, position: int) -> None:
        self._on_progress(
            LoadProgress(
                self._campaigns[position - 1], self._pages[position], self._contacts[position]
            )
        )


def _campaign_load(
    conn: duckdb.DuckDBPyConnection,
    table: str,
    position: int,
    campaign: str,
    rejected: dict[int, list[Rejected]],
) -> CampaignLoad:
    # A malformed record's place in the campaign's list counts every record before it, kept
    # or not, page after page in the provider's order.
    load = CampaignLoad(campaign)
    kept = page_sizes(conn, table, position)
    for page in sorted(kept.keys() | rejected.keys()):
        offset = load.contacts + len(load.rejected)
        load.rejected.extend(
            Rejected(r.index + offset, r.record_id, r.reason) for r in rejected.get(page, [])
        )
        load.contacts += kept.get(page, 0)
    return load


def _page_number(path: Path) -> int:
    return int(path.stem.rsplit("-", 1)[1])


def _batches(pages: Iterator[tuple[int, Path]]) -> Iterator[tuple[int, list[Path]]]:
    """Pages grouped into batches of about BATCH_BYTES, one campaign per batch."""
    batch: list[Path] = []
    size = 0
    current = None
    for position, page in pages:
        if batch and position != current:
            yield current, batch
            batch, size = [], 0
        current = position
        batch.append(page)
        size += page.stat().st_size
        if size >= BATCH_BYTES:
            yield current, batch
            batch, size = [], 0
    if batch:
        yield current, batch


def _count_phones(
    conn: duckdb.DuckDBPyConnection, table: str, loads: list[CampaignLoad], examples: int
) -> None:
    counts = conn.execute(
        f"""SELECT position, COUNT(*) FILTER (WHERE NOT phone_valid),
                   COUNT(*) FILTER (WHERE phone_e164 IS NULL)
            FROM {table} GROUP BY position"""
    ).fetchall()
    for position, invalid, unreadable in counts:
        loads[position - 1].invalid_phones = invalid
        loads[position - 1].unreadable_phones = unreadable
    for position, load in enumerate(loads, start=1):
        load.unreadable_examples = conn.execute(
            f"""SELECT contact_id, phone_problem FROM {table}
                WHERE position = ? AND phone_e164 IS NULL ORDER BY contact_id LIMIT ?""",
            [position, examples],
        ).fetchall()
