"""Bringing two campaigns' contacts from the provider into a DuckDB table, page by page."""

from dataclasses import dataclass, field

import duckdb

from salesops_pipeline.campaigns.duplicates import (
    contact_columns,
    insert_contacts,
    normalize_phones,
    reset_contacts,
)
from salesops_pipeline.clients.models import Rejected
from salesops_pipeline.clients.voice import VoiceClient
from salesops_pipeline.errors import InvalidInputError


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
    loads = []
    conn.execute("BEGIN TRANSACTION")
    try:
        reset_contacts(conn)
        for position, campaign in ((1, campaign_a), (2, campaign_b)):
            load = CampaignLoad(campaign)
            for page in client.iter_contact_pages(campaign_id=campaign):
                columns = contact_columns(position, campaign, page.items)
                insert_contacts(conn, columns)
                load.contacts += len(page.items)
                load.invalid_phones += sum(1 for e164 in columns["phone_e164"] if e164 is None)
                offset = load.contacts + len(load.rejected) - len(page.items)
                load.rejected.extend(
                    Rejected(r.index + offset, r.record_id, r.reason) for r in page.rejected
                )
            loads.append(load)
        normalize_phones(conn)
        invalid = dict(
            conn.execute(
                "SELECT position, COUNT(*) FROM campaign_contacts"
                " WHERE phone_e164 IS NULL GROUP BY position"
            ).fetchall()
        )
        for position, load in enumerate(loads, start=1):
            load.invalid_phones = invalid.get(position, 0)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return loads
