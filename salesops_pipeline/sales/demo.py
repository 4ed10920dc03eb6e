"""A generated sales database in the company's schema, for demos, tests and benchmarks.

Seeded and deterministic: the same seed and size always give the same database, byte for byte
in content. It reproduces what makes the real data awkward: agents in several teams, sales
unsubscribed on a later day, days without sales, days whose target is 0 (Sundays and public
holidays) and an agent with no targets at all.
"""

import os
import random
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from itertools import islice
from pathlib import Path

# The company's schema, as drawn in its database diagram.
SCHEMA = """
CREATE TABLE contact (
    id integer NOT NULL, last_name varchar NOT NULL DEFAULT NULL, first_name varchar DEFAULT NULL,
    phone varchar DEFAULT NULL, email varchar DEFAULT NULL, PRIMARY KEY (id)
);
CREATE TABLE product (
    id integer NOT NULL, name varchar NOT NULL, duration integer NOT NULL, PRIMARY KEY (id)
);
CREATE TABLE agent (
    id integer, username varchar, manager_id integer, PRIMARY KEY (id),
    FOREIGN KEY (manager_id) REFERENCES agent(id)
);
CREATE TABLE team (id integer, name varchar, PRIMARY KEY (id));
CREATE TABLE agent_team (
    id integer, agent_id integer, team_id integer, PRIMARY KEY (id),
    FOREIGN KEY (agent_id) REFERENCES agent(id), FOREIGN KEY (team_id) REFERENCES team(id)
);
CREATE TABLE activity (
    id integer, type varchar NOT NULL, activity_datetime datetime NOT NULL,
    contact_id integer NOT NULL, agent_id integer NOT NULL, PRIMARY KEY (id),
    FOREIGN KEY (contact_id) REFERENCES contact(id), FOREIGN KEY (agent_id) REFERENCES agent(id)
);
CREATE TABLE session (
    id integer NOT NULL, amount float NOT NULL, status varchar NOT NULL,
    starting_date varchar, ending_date varchar, contact_id integer, product_id integer,
    owner_id integer, PRIMARY KEY (id),
    FOREIGN KEY (contact_id) REFERENCES contact(id),
    FOREIGN KEY (product_id) REFERENCES product(id),
    FOREIGN KEY (owner_id) REFERENCES agent(id)
);
CREATE TABLE target (
    id integer NOT NULL, date date NOT NULL, amount float NOT NULL, owner_id integer,
    PRIMARY KEY (id), FOREIGN KEY (owner_id) REFERENCES agent(id)
);
CREATE TABLE target_operation (
    id integer NOT NULL, amount float NOT NULL, target_id integer, session_id integer,
    PRIMARY KEY (id), FOREIGN KEY (target_id) REFERENCES target(id),
    FOREIGN KEY (session_id) REFERENCES session(id)
);
"""

# The indexes that SQL run inside SQLite would want. The reports need none (DuckDB scans the
# tables), and the company's database lacks them: the pipeline opens it read-only and never
# adds any. The demo DB has them so that the benchmarks can compare both ways.
INDEXES = """
CREATE INDEX session_owner_status_amount ON session(owner_id, status, amount);
CREATE INDEX target_owner_date ON target(owner_id, date);
CREATE INDEX target_operation_target_amount ON target_operation(target_id, amount);
"""

TEAMS = ("sales", "support", "supervisor", "tech", "retention")

PRODUCTS = (
    ("Excel", 15, 899.0),
    ("Word", 10, 699.0),
    ("Power Point", 12, 799.0),
    ("Outlook", 8, 499.0),
    ("Python", 30, 2399.0),
    ("SQL", 20, 1899.0),
    ("Management", 25, 2199.0),
    ("English", 40, 1999.0),
    ("Accounting", 35, 1499.0),
    ("Photoshop", 18, 1199.0),
    ("Project management", 28, 1399.0),
    ("Wordpress", 14, 999.0),
)

FIRST_DAY = date(2025, 1, 1)
LAST_DAY = date(2026, 12, 31)

# Days the call centre is closed: no sales, and a target of 0.
HOLIDAYS = {
    date(year, month, day)
    for year in (2025, 2026)
    for month, day in ((1, 1), (5, 1), (5, 8), (7, 14), (8, 15), (11, 1), (11, 11), (12, 25))
}

# About one sale per agent and open day: agents hover around their target, as in real life.
DEFAULT_SESSIONS = 6_000
# Written into every demo DB's header (SQLite's `application_id`), so that a report can tell
# generated figures from the company's wherever the file lies, without a table the company's
# schema lacks.
DEMO_APPLICATION_ID = 0x53414C44
DEFAULT_SEED = 20250401
# Sessions written per statement when progress is reported: often enough for a live count on
# a large build, seldom enough to cost nothing measurable over one statement.
SESSIONS_PER_CHUNK = 10_000

STATUS_WEIGHTS = (("new", 86), ("unsubscribed", 10), ("pending", 4))


@dataclass(frozen=True)
class DemoAgent:
    username: str
    teams: tuple[str, ...]
    manager: str | None = None
    daily_target: float | None = None  # None: this agent has no targets at all
    sales_weight: int = 10


AGENTS = (
    DemoAgent("claire.morel@salesops.example", ("supervisor", "sales"), sales_weight=2),
    DemoAgent("hugo.lefevre@salesops.example", ("supervisor",), sales_weight=0),
    DemoAgent("lea.bernard@salesops.example", ("sales",), "claire.morel", 1450.0, 14),
    DemoAgent("tom.girard@salesops.example", ("sales",), "claire.morel", 1450.0, 12),
    DemoAgent("ines.faure@salesops.example", ("sales", "retention"), "claire.morel", 1300.0, 11),
    DemoAgent("nora.petit@salesops.example", ("sales",), "claire.morel", 1200.0, 9),
    DemoAgent("yanis.roux@salesops.example", ("retention",), "hugo.lefevre", 900.0, 6),
    DemoAgent("camille.blanc@salesops.example", ("support",), "hugo.lefevre", 800.0, 5),
    DemoAgent("jules.mercier@salesops.example", ("support", "tech"), "hugo.lefevre", 700.0, 4),
    DemoAgent("sarah.dubois@salesops.example", ("support",), "hugo.lefevre", 800.0, 5),
    DemoAgent("paul.garnier@salesops.example", ("tech",), "hugo.lefevre", None, 0),
)


def _days() -> list[date]:
    return [FIRST_DAY + timedelta(days=n) for n in range((LAST_DAY - FIRST_DAY).days + 1)]


def _is_closed(day: date) -> bool:
    return day.weekday() == 6 or day in HOLIDAYS


def generate_demo_db(
    path: Path,
    *,
    sessions: int = DEFAULT_SESSIONS,
    seed: int = DEFAULT_SEED,
    on_progress: Callable[[int], None] | None = None,
) -> Path:
    """Write a demo sales DB at `path` (replacing any), built from `seed` with `sessions` sales.

    The file appears complete or not at all: it is built beside the target and renamed into
    place, so an interrupted build never leaves a half-written database behind.
    `on_progress`, when given, hears the number of sessions written so far after each chunk.
    """
    if sessions < 0:
        raise ValueError("sessions must be >= 0")
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    partial.unlink(missing_ok=True)
    conn = sqlite3.connect(partial)
    try:
        # A throw-away file being built: durability buys nothing until the final rename.
        conn.execute("PRAGMA journal_mode = OFF")
        conn.execute("PRAGMA synchronous = OFF")
        conn.execute(f"PRAGMA application_id = {DEMO_APPLICATION_ID}")
        conn.executescript(SCHEMA)
        _fill(conn, random.Random(seed), sessions, on_progress)
        conn.executescript(INDEXES)
        conn.commit()
    except BaseException:
        conn.close()
        partial.unlink(missing_ok=True)
        raise
    conn.close()
    partial.replace(path)
    return path


def _fill(
    conn: sqlite3.Connection,
    rng: random.Random,
    sessions: int,
    on_progress: Callable[[int], None] | None = None,
) -> None:
    days = _days()
    agent_ids = {agent.username: index + 1 for index, agent in enumerate(AGENTS)}
    team_ids = {team: index + 1 for index, team in enumerate(TEAMS)}

    conn.executemany("INSERT INTO team VALUES (?, ?)", [(i, t) for t, i in team_ids.items()])
    conn.executemany(
        "INSERT INTO agent VALUES (?, ?, ?)",
        [
            (
                agent_ids[a.username],
                a.username,
                agent_ids[f"{a.manager}@salesops.example"] if a.manager else None,
            )
            for a in AGENTS
        ],
    )
    memberships = [(agent_ids[a.username], team_ids[t]) for a in AGENTS for t in a.teams]
    conn.executemany(
        "INSERT INTO agent_team VALUES (?, ?, ?)",
        [(i + 1, agent, team) for i, (agent, team) in enumerate(memberships)],
    )
    conn.executemany(
        "INSERT INTO product VALUES (?, ?, ?)",
        [(i + 1, name, duration) for i, (name, duration, _) in enumerate(PRODUCTS)],
    )
    contact_count = max(200, sessions // 10)
    conn.executemany(
        "INSERT INTO contact VALUES (?, ?, ?, ?, ?)",
        (
            (i, f"Contact{i}", f"Demo{i}", f"06{i % 100_000_000:08d}", f"contact{i}@mail.example")
            for i in range(1, contact_count + 1)
        ),
    )

    # Target ids are positional (agent-major, one per day), so a sale finds its target by
    # arithmetic instead of a lookup table the size of the calendar.
    target_agents = [a for a in AGENTS if a.daily_target is not None]
    target_base = {a.username: n * len(days) for n, a in enumerate(target_agents)}
    day_index = {day: n for n, day in enumerate(days)}

    def target_rows():
        for agent in target_agents:
            base = target_base[agent.username]
            for n, day in enumerate(days):
                amount = 0.0 if _is_closed(day) else agent.daily_target
                yield base + n + 1, day.isoformat(), amount, agent_ids[agent.username]

    conn.executemany("INSERT INTO target VALUES (?, ?, ?, ?)", target_rows())

    open_days = [day for day in days if not _is_closed(day)]
    sellers = [a for a in AGENTS if a.sales_weight]
    statuses = [status for status, _ in STATUS_WEIGHTS]
    status_weights = [weight for _, weight in STATUS_WEIGHTS]
    operations: list[tuple] = []

    def session_rows():
        owners = rng.choices(sellers, weights=[a.sales_weight for a in sellers], k=sessions)
        for session_id, owner in enumerate(owners, start=1):
            product_id = rng.randrange(len(PRODUCTS)) + 1
            _, duration, price = PRODUCTS[product_id - 1]
            start = rng.choice(open_days)
            status = rng.choices(statuses, weights=status_weights)[0]
            if owner.username in target_base:
                base = target_base[owner.username]
                operations.append((price, base + day_index[start] + 1, session_id))
                if status == "unsubscribed":
                    # The refund lands on the day the customer withdrew, within the
                    # 14-day cooling-off period: a later target day than the sale's.
                    withdrawal = start + timedelta(days=rng.randint(1, 14))
                    if withdrawal in day_index:
                        operations.append((-price, base + day_index[withdrawal] + 1, session_id))
            yield (
                session_id,
                price,
                status,
                start.isoformat(),
                (start + timedelta(days=duration * 2)).isoformat(),
                rng.randint(1, contact_count),
                product_id,
                agent_ids[owner.username],
            )

    rows = session_rows()
    insert_sessions = "INSERT INTO session VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
    if on_progress is None:
        conn.executemany(insert_sessions, rows)
    else:
        # The same rows in the same order, hence the same database: only cut into chunks.
        written = 0
        while chunk := list(islice(rows, SESSIONS_PER_CHUNK)):
            conn.executemany(insert_sessions, chunk)
            written += len(chunk)
            on_progress(written)
    conn.executemany(
        "INSERT INTO target_operation VALUES (?, ?, ?, ?)",
        ((i, amount, target, session) for i, (amount, target, session) in enumerate(operations, 1)),
    )
    conn.executemany(
        "INSERT INTO activity VALUES (?, ?, ?, ?, ?)",
        (
            (
                i,
                rng.choice(("call", "call", "call", "email")),
                f"{rng.choice(open_days).isoformat()} {rng.randint(8, 19):02d}:"
                f"{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}",
                rng.randint(1, contact_count),
                agent_ids[rng.choice(sellers).username],
            )
            for i in range(1, sessions // 5 + 1)
        ),
    )
