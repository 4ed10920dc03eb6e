"""Q1: the numbers two campaigns both call, and when each campaign last called them.

The comparison is one SQL query over the contacts table (`contacts.py`), so a million contacts
per campaign never go through a Python loop.
"""

import json
from dataclasses import dataclass
from datetime import datetime

import duckdb

from salesops_pipeline.campaigns.contacts import CONTACTS

_DUPLICATES_SQL = """
WITH last_calls AS (
    SELECT position, campaign, phone_e164, MAX(last_call_at) AS last_call_at,
           BOOL_AND(phone_valid) AS phone_valid
    FROM {contacts}
    WHERE phone_e164 IS NOT NULL
    GROUP BY position, campaign, phone_e164
)
SELECT first.phone_e164 AS phone,
       first.campaign AS campaign_a, first.last_call_at AS last_call_a,
       second.campaign AS campaign_b, second.last_call_at AS last_call_b,
       first.phone_valid AND second.phone_valid AS phone_valid
FROM last_calls AS first
JOIN last_calls AS second
  ON second.phone_e164 = first.phone_e164 AND first.position = 1 AND second.position = 2
ORDER BY phone
"""


@dataclass(frozen=True)
class Duplicate:
    """A number present in both campaigns, with the last call of each (None: never called),
    and whether it is a valid number today: an invalid one may be mistyped, or in a range
    the numbering plan's metadata does not know yet, and is worth a look before acting on."""

    phone: str
    campaign_a: str
    last_call_a: datetime | None
    campaign_b: str
    last_call_b: datetime | None
    phone_valid: bool


def duplicates_sql(contacts: str = CONTACTS) -> str:
    """The query listing each number in both campaigns, by phone, from the contacts table."""
    return _DUPLICATES_SQL.format(contacts=contacts)


def find_duplicates(conn: duckdb.DuckDBPyConnection) -> list[Duplicate]:
    return [Duplicate(*row) for row in conn.execute(duplicates_sql()).fetchall()]


def build_duplicates_table(conn: duckdb.DuckDBPyConnection, table: str) -> int:
    """Store the duplicates as `table`, computed once; returns how many numbers it holds."""
    conn.execute(f"CREATE OR REPLACE TABLE {table} AS {duplicates_sql()}")
    return conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]


def count_invalid(conn: duckdb.DuckDBPyConnection, table: str) -> int:
    """How many of the numbers stored in `table` are not valid numbers today."""
    sql = f"SELECT COUNT(*) FILTER (WHERE NOT phone_valid) FROM {table}"
    return conn.execute(sql).fetchone()[0]


def read_duplicates(
    conn: duckdb.DuckDBPyConnection, table: str, *, limit: int | None = None
) -> list[Duplicate]:
    """The duplicates stored in `table`, by phone; the first `limit` of them when given."""
    sql = f"SELECT * FROM {table} ORDER BY phone" + (" LIMIT ?" if limit is not None else "")
    rows = conn.execute(sql, [] if limit is None else [limit]).fetchall()
    return [Duplicate(*row) for row in rows]


def duplicates_not_in_both(conn: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    """Phones listed in `table` that are missing from one of the two campaigns' contacts."""
    rows = conn.execute(
        f"""
        SELECT d.phone FROM {table} AS d
        WHERE NOT EXISTS (SELECT 1 FROM {CONTACTS} c
                          WHERE c.position = 1 AND c.phone_e164 = d.phone)
           OR NOT EXISTS (SELECT 1 FROM {CONTACTS} c
                          WHERE c.position = 2 AND c.phone_e164 = d.phone)
        ORDER BY d.phone
        """
    ).fetchall()
    return [phone for (phone,) in rows]


def _seconds(moment: datetime | None) -> str | None:
    return None if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S")


def duplicates_text(duplicates: list[Duplicate]) -> str:
    """Q1.2's format: the number, then one tab-indented line per campaign."""
    lines = []
    for d in duplicates:
        lines.append(d.phone)
        lines.append(f"\t{d.campaign_a}: {_seconds(d.last_call_a) or 'N/A'}")
        lines.append(f"\t{d.campaign_b}: {_seconds(d.last_call_b) or 'N/A'}")
    return "\n".join(lines)


def duplicates_json(duplicates: list[Duplicate]) -> str:
    """Each number with each campaign's last call, and whether it is a valid number today."""
    return json.dumps(
        [
            {
                "phone": d.phone,
                "last_call": {
                    d.campaign_a: _seconds(d.last_call_a),
                    d.campaign_b: _seconds(d.last_call_b),
                },
                "phone_valid": d.phone_valid,
            }
            for d in duplicates
        ],
        indent=2,
    )
