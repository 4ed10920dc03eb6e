"""The campaigns' contacts table: one row per contact of the two campaigns compared, each
number as the campaign wrote it and in E.164.

Stored in DuckDB column by column, so a million contacts per campaign are normalised and
compared without a Python loop over rows.
"""

import duckdb
import numpy as np

from salesops_pipeline.campaigns.phones import (
    FRENCH_SHAPE,
    normalize_phone,
    valid_national_number_pattern,
)
from salesops_pipeline.clients.models import VoiceContact

CONTACTS = "campaign_contacts"

CONTACTS_DDL = """
CREATE TABLE IF NOT EXISTS {table} (
    position INTEGER NOT NULL,      -- 1 for the first campaign compared, 2 for the second
    campaign VARCHAR NOT NULL,
    contact_id VARCHAR,
    phone VARCHAR,                  -- as the provider wrote it
    phone_e164 VARCHAR,             -- NULL when not a valid number
    last_call_at TIMESTAMP,         -- naive Europe/Paris time, as the provider sends it
    retry_date TIMESTAMP,
    assigned_agent VARCHAR,
    wrapup VARCHAR,
    total_calls INTEGER,
    crm_id VARCHAR
)
"""

_COLUMNS = (
    "position",
    "campaign",
    "contact_id",
    "phone",
    "phone_e164",
    "last_call_at",
    "retry_date",
    "assigned_agent",
    "wrapup",
    "total_calls",
    "crm_id",
)


def contact_columns(position: int, campaign: str, contacts: list[VoiceContact]) -> dict:
    """Column arrays of a campaign's contacts, ready for DuckDB to scan (`phone_e164` is
    filled in afterwards, for the whole table at once, by `normalize_phones`)."""
    return {
        "position": np.full(len(contacts), position, dtype=np.int32),
        "campaign": np.array([campaign] * len(contacts), dtype=object),
        "contact_id": np.array([c.id for c in contacts], dtype=object),
        "phone": np.array([c.phone for c in contacts], dtype=object),
        # Filled in by normalize_phones, in one pass over the table.
        "phone_e164": np.full(len(contacts), None, dtype=object),
        "last_call_at": np.array([c.last_call_at for c in contacts], dtype=object),
        "retry_date": np.array([c.retry_date for c in contacts], dtype=object),
        "assigned_agent": np.array([c.assigned_agent for c in contacts], dtype=object),
        "wrapup": np.array([c.wrapup for c in contacts], dtype=object),
        "total_calls": np.array([c.total_calls for c in contacts], dtype=object),
        "crm_id": np.array([c.crm_id for c in contacts], dtype=object),
    }


# Separators stripped before reading a number; what this misses (exotic spaces) is left to
# the Python path, which strips more.
_SQL_COMPACT = r"regexp_replace(phone, '[ \t.()/-]', '', 'g')"


def normalize_phones(conn: duckdb.DuckDBPyConnection, table: str = CONTACTS) -> None:
    """Fill `phone_e164` for the whole table.

    French numbers in the usual shapes are read inside DuckDB with phonenumbers' own validity
    patterns; the few others (foreign, unusual shapes) go through `normalize_phone` one
    distinct value at a time. Both paths give phonenumbers' answer.
    """
    national = f"regexp_extract({_SQL_COMPACT}, '^{FRENCH_SHAPE}$', 1)"
    conn.execute(
        f"""
        UPDATE {table} SET phone_e164 = CASE
            WHEN regexp_full_match({national}, ?) THEN '+33' || {national} END
        WHERE phone IS NOT NULL
        """,
        [valid_national_number_pattern("FR")],
    )
    others = [
        phone
        for (phone,) in conn.execute(
            f"""
            SELECT DISTINCT phone FROM {table}
            WHERE phone IS NOT NULL AND NOT regexp_full_match({_SQL_COMPACT}, '{FRENCH_SHAPE}')
            """
        ).fetchall()
    ]
    if not others:
        return
    mapping = {
        "phone": np.array(others, dtype=object),
        "e164": np.array([normalize_phone(phone) for phone in others], dtype=object),
    }
    conn.register("phone_mapping", mapping)
    try:
        conn.execute(
            f"UPDATE {table} SET phone_e164 = phone_mapping.e164 FROM phone_mapping"
            f" WHERE {table}.phone = phone_mapping.phone"
        )
    finally:
        conn.unregister("phone_mapping")


def reset_contacts(conn: duckdb.DuckDBPyConnection, table: str = CONTACTS) -> None:
    conn.execute(f"DROP TABLE IF EXISTS {table}")
    conn.execute(CONTACTS_DDL.format(table=table))


def insert_contacts(conn: duckdb.DuckDBPyConnection, columns: dict, table: str = CONTACTS) -> None:
    if not len(columns["position"]):
        return
    conn.register("incoming_contacts", columns)
    try:
        conn.execute(f"INSERT INTO {table} SELECT {', '.join(_COLUMNS)} FROM incoming_contacts")
    finally:
        conn.unregister("incoming_contacts")
