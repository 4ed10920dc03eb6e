"""Bringing two campaigns' contacts from the provider into a DuckDB table, page by page."""

from dataclasses import dataclass, field

import duckdb

from salesops_pipeline.campaigns.contacts import (
    CONTACTS,
    contact_columns,
    insert_contacts,
    normalize_phones,
    reset_contacts,
)
from salesops_pipeline.clients.models import Rejected
from salesops_pipeline.clients.voice import VoiceClient
from salesops_pipeline.errors import InvalidInputError
from salesops_pipeline.transactions import duckdb_transaction

# Contacts written per commit: each commit costs a write to disk, and what is not committed
# stays in memory.
INSERT_BATCH = 100_000


@dataclass
class CampaignLoad:
    campaign: str
    contacts: int = 0
    invalid_phones: int = 0
    rejected: list[Rejected] = field(default_factory=list)


def check_campaign_pair(campaign_a: str, campaign_b: str) -> None:
    if not campaign_a or not campaign_b:
        raise InvalidInputError("Both campaign ids must be given")
    if campaign_a == campaign_b:
        raise InvalidInputError(f"Compare two different campaigns, not {campaign_a!r} with itself")


def load_campaigns(
    conn: duckdb.DuckDBPyConnection, client: VoiceClient, campaign_a: str, campaign_b: str
) -> list[CampaignLoad]:
    """Replace `campaign_contacts` with both campaigns' contacts, phones normalised.

    Pages are inserted as they arrive, so memory holds one page, not a whole campaign. The
    table is swapped in one transaction: readers see the previous load until this one is whole.
    """
    check_campaign_pair(campaign_a, campaign_b)
    # Loaded into a table of its own, committed page by page so that DuckDB can spill to
    # disk, then swapped in at once: readers see the previous load until this one is whole.
    loading = f"{CONTACTS}_loading"
    reset_contacts(conn, loading)
    loads = []
    try:
        for position, campaign in ((1, campaign_a), (2, campaign_b)):
            load = CampaignLoad(campaign)
            batch: list = []
            for page in client.iter_contact_pages(campaign_id=campaign):
                batch.extend(page.items)
                if len(batch) >= INSERT_BATCH:
                    insert_contacts(conn, contact_columns(position, campaign, batch), loading)
                    batch = []
                load.contacts += len(page.items)
                offset = load.contacts + len(load.rejected) - len(page.items)
                load.rejected.extend(
                    Rejected(r.index + offset, r.record_id, r.reason) for r in page.rejected
                )
            insert_contacts(conn, contact_columns(position, campaign, batch), loading)
            loads.append(load)
        normalize_phones(conn, loading)
        invalid = dict(
            conn.execute(
                f"SELECT position, COUNT(*) FROM {loading}"
                " WHERE phone_e164 IS NULL GROUP BY position"
            ).fetchall()
        )
        for position, load in enumerate(loads, start=1):
            load.invalid_phones = invalid.get(position, 0)
    except BaseException:
        conn.execute(f"DROP TABLE IF EXISTS {loading}")
        raise
    with duckdb_transaction(conn):
        conn.execute(f"DROP TABLE IF EXISTS {CONTACTS}")
        conn.execute(f"ALTER TABLE {loading} RENAME TO {CONTACTS}")
    return loads
