"""Contacts into the contacts table the way the provider's pages reach it: as JSON files read
by DuckDB, without a provider in between."""

import json
import tempfile
from datetime import datetime
from pathlib import Path

import duckdb

from salesops_pipeline.campaigns import contacts as contacts_table


def record(phone, last_call: datetime | None = None, contact_id: str = "c", **fields) -> dict:
    """A provider contact record."""
    return {
        "id": contact_id,
        "phone": phone,
        "lastCallAt": None if last_call is None else last_call.isoformat(),
        **fields,
    }


def write_pages(directory: Path, records: list, page_size: int | None = None) -> list[Path]:
    """`records` as the provider's JSON pages (one list when `page_size` is None)."""
    directory.mkdir(parents=True, exist_ok=True)
    size = page_size or max(len(records), 1)
    pages = []
    for number, start in enumerate(range(0, max(len(records), 1), size), start=1):
        path = directory / f"page-{number:06d}.json"
        path.write_text(json.dumps(records[start : start + size]))
        pages.append(path)
    return pages


def load_records(
    conn: duckdb.DuckDBPyConnection,
    campaigns: list[tuple[str, list]],
    *,
    page_size: int | None = None,
    table: str = contacts_table.CONTACTS,
) -> list[dict]:
    """Each (campaign, records) into `table` at positions 1, 2, …, phones read; the malformed
    records of each campaign, by page."""
    rejected = []
    contacts_table.start_loading(conn, table)
    with tempfile.TemporaryDirectory() as spool:
        for position, (campaign, records) in enumerate(campaigns, start=1):
            pages = write_pages(Path(spool) / str(position), records, page_size)
            rejected.append(
                contacts_table.stage_pages(
                    conn,
                    dict(enumerate(pages, start=1)),
                    table=table,
                    position=position,
                    campaign=campaign,
                )
            )
    contacts_table.finish_loading(conn, table)
    contacts_table.read_other_phones(conn, table)
    return rejected
