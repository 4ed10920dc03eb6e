"""The sandbox provider's state: campaign contacts, CRM agents and contacts, in SQLite."""

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS contact (
    seq INTEGER PRIMARY KEY,
    id TEXT UNIQUE,
    campaign TEXT NOT NULL,
    body TEXT NOT NULL,
    -- A record the demo seeds on purpose to break the provider's schema: served only when the
    -- sandbox is asked to (`--malformed-records`), so that by default it answers clean records.
    flawed INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS contact_campaign ON contact (campaign, seq);
CREATE TABLE IF NOT EXISTS crm_agent (seq INTEGER PRIMARY KEY, team TEXT, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS crm_contact (seq INTEGER PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS write_log (
    seq INTEGER PRIMARY KEY,
    contact_id TEXT NOT NULL,
    changes TEXT NOT NULL,
    idempotency_key TEXT,
    at TEXT NOT NULL
);
"""


class SandboxStore:
    """State kept in one SQLite file (WAL), shared safely by several server processes."""

    def __init__(self, path: Path):
        self.path = path

    @contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            yield conn
        finally:
            conn.close()

    def create(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.connect() as conn:
            conn.executescript(SCHEMA)

    def upgrade(self, flawed_ids: list[str]) -> None:
        """Bring a store seeded before flawed records were marked up to date: the column is
        added and the demo's flawed records, known by id, are marked, so that an existing
        sandbox keeps what the pipeline wrote and still serves clean records by default."""
        with self.connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            columns = {row[1] for row in conn.execute("PRAGMA table_info(contact)")}
            if "flawed" in columns:
                conn.execute("ROLLBACK")
                return
            conn.execute("ALTER TABLE contact ADD COLUMN flawed INTEGER NOT NULL DEFAULT 0")
            conn.executemany(
                "UPDATE contact SET flawed = 1 WHERE id = ?", ((i,) for i in flawed_ids)
            )
            conn.execute("COMMIT")

    # Writing -----------------------------------------------------------------------------

    def add_contacts(self, campaign: str, records: list) -> int:
        """Store records as given, malformed ones included: they are the provider's data."""
        with self.connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(
                "INSERT INTO contact (id, campaign, body) VALUES (?, ?, ?)",
                (
                    (
                        record.get("id") if isinstance(record, dict) else None,
                        campaign,
                        json.dumps(record),
                    )
                    for record in records
                ),
            )
            conn.execute("COMMIT")
        return len(records)

    def add_raw_contacts(self, rows: Iterator[tuple[str, str, str, bool]]) -> None:
        """Bulk load of (id, campaign, JSON body, flawed) rows, for seeding."""
        with self.connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(
                "INSERT INTO contact (id, campaign, body, flawed) VALUES (?, ?, ?, ?)", rows
            )
            conn.execute("COMMIT")

    def add_agents(self, agents: list[dict]) -> None:
        with self.connect() as conn:
            conn.executemany(
                "INSERT INTO crm_agent (team, body) VALUES (?, ?)",
                ((agent.get("team"), json.dumps(agent)) for agent in agents),
            )

    def add_crm_contacts(self, contacts: list[dict]) -> None:
        with self.connect() as conn:
            conn.executemany(
                "INSERT INTO crm_contact (body) VALUES (?)",
                ((json.dumps(contact),) for contact in contacts),
            )

    def patch_contact(
        self,
        contact_id: str,
        changes: dict,
        idempotency_key: str | None = None,
        *,
        flawed: bool = True,
    ) -> str | None:
        """Apply `changes` to a contact; its new JSON body, or None if it does not exist (or,
        without `flawed`, is one of the demo's flawed records).

        Every change applied is logged with the client's idempotency key, duplicates included:
        it is what "each write received at most once" is checked against.
        """
        with self.connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            row = conn.execute(
                "SELECT body FROM contact WHERE id = ? AND (? OR NOT flawed)", (contact_id, flawed)
            ).fetchone()
            if row is None:
                conn.execute("ROLLBACK")
                return None
            body = json.loads(row[0])
            body.update(changes)
            text = json.dumps(body)
            conn.execute("UPDATE contact SET body = ? WHERE id = ?", (text, contact_id))
            conn.execute(
                "INSERT INTO write_log (contact_id, changes, idempotency_key, at)"
                " VALUES (?, ?, ?, ?)",
                (
                    contact_id,
                    json.dumps(changes),
                    idempotency_key,
                    # To the millisecond: tests time writes against what they changed.
                    datetime.now(UTC).isoformat(timespec="milliseconds"),
                ),
            )
            conn.execute("COMMIT")
            return text

    def set_agent(self, agent: str, changes: dict) -> str | None:
        """Change a CRM agent (`active`, `team`), found by id or username; its new JSON body,
        or None if there is no such agent."""
        with self.connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            rows = conn.execute("SELECT seq, body FROM crm_agent ORDER BY seq").fetchall()
            for seq, body in rows:
                record = json.loads(body)
                if agent in (record.get("id"), record.get("username")):
                    record.update(changes)
                    text = json.dumps(record)
                    conn.execute(
                        "UPDATE crm_agent SET team = ?, body = ? WHERE seq = ?",
                        (record.get("team"), text, seq),
                    )
                    conn.execute("COMMIT")
                    return text
            conn.execute("ROLLBACK")
            return None

    def write_log(self) -> list[dict]:
        with self.connect() as conn:
            rows = conn.execute(
                "SELECT contact_id, changes, idempotency_key, at FROM write_log ORDER BY seq"
            ).fetchall()
        return [
            {"contact": contact, "changes": json.loads(changes), "idempotency_key": key, "at": at}
            for contact, changes, key, at in rows
        ]

    # Reading -----------------------------------------------------------------------------

    def _page(
        self, table: str, after: int, limit: int, where: str = "TRUE", params: tuple = ()
    ) -> tuple[list[str], int | None]:
        """Raw JSON bodies of one page, and the cursor of the next page (None at the end)."""
        with self.connect() as conn:
            rows = conn.execute(
                f"SELECT seq, body FROM {table} WHERE ({where}) AND seq > ? ORDER BY seq LIMIT ?",
                (*params, after, limit + 1),
            ).fetchall()
        more = len(rows) > limit
        rows = rows[:limit]
        return [body for _, body in rows], (rows[-1][0] if more else None)

    def contact_page(
        self, campaign: str | None, after: int, limit: int, *, flawed: bool = True
    ) -> tuple[list[str], int | None]:
        """One page of a campaign's contacts (of every campaign when `campaign` is None), and
        the cursor of the next (None at the end); the demo's flawed records only if `flawed`."""
        where, params = ("(? OR NOT flawed)", (flawed,))
        if campaign is not None:
            where, params = f"campaign = ? AND {where}", (campaign, *params)
        return self._page("contact", after, limit, where, params)

    def contact(self, contact_id: str, *, flawed: bool = True) -> str | None:
        with self.connect() as conn:
            row = conn.execute(
                "SELECT body FROM contact WHERE id = ? AND (? OR NOT flawed)", (contact_id, flawed)
            ).fetchone()
        return None if row is None else row[0]

    def agents(self, team: str | None) -> list[str]:
        with self.connect() as conn:
            if team is None:
                rows = conn.execute("SELECT body FROM crm_agent ORDER BY seq").fetchall()
            else:
                rows = conn.execute(
                    "SELECT body FROM crm_agent WHERE team = ? ORDER BY seq", (team,)
                ).fetchall()
        return [body for (body,) in rows]

    def crm_contact_page(self, after: int, limit: int) -> tuple[list[str], int | None]:
        """One page of the CRM's contacts, and the cursor of the next (None at the end)."""
        return self._page("crm_contact", after, limit)
