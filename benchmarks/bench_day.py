"""A long ordinary day through the real stack (`salesops dev`: sandbox, intake, Dagster daemon,
sensor and runs; SQLite inbox), scored against the post-call contract from the provider's own
write log and the times the CRM's agents changed.

The day alternates quiet stretches (one event every 30 s) with bursts (50 events/s for 20-25
s). Events are callback pairs (two calls of one contact, the newer one posted first half the
time), transfers to support (contacts of campaigns A and B) and calls with nothing to do; some
are delivered twice. During the day support agents are deactivated and reactivated, one is
moved out of the support team and back, the provider has slow spells (every read and write
delayed 3 s for a minute) and applies some writes 20-25 s late after dropping the answer, and
retention prunes the inbox, which starts the day holding a million finished events 40 days old.

Each event's latency runs from the moment it was posted to the moment the provider logged its
write; events that write nothing (nothing to do, the older call of a pair) have none.
"""

import itertools
import json
import os
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import requests

from benchmarks.common import blank_sandbox_contact, cache_dir, table
from salesops_pipeline.clients.wire import format_webhook_datetime
from salesops_pipeline.post_call.inbox import Inbox
from salesops_pipeline.post_call.status import OPEN_STATUSES
from salesops_pipeline_tests.support.post_call_outcome import callback_event

QUIET_EVERY = 30.0
BURST_RATE = 50.0
SLOW_SECONDS = 60.0
SLOW_DELAY = 3.0
LATE_AFTER = (20.0, 25.0)
LATE_PER_BURST = 3
REPEAT_SHARE = 0.05
OLD_EVENTS = 1_000_000
OLD_AGE_DAYS = 40
# A transfer to an agent who left support counts against the contract only this long after
# the CRM said so: the pipeline reads the CRM's agents again once they are 5 s old.
INACTIVE_GRACE = 10.0
# After the last post: how long every event may take to become final.
SETTLE_SECONDS = 600.0
# A write applied late lands up to this long after its PATCH: the log is read after it.
LATE_MARGIN = 30.0
POSTERS = 16
SUPPORT_TEAM = "support"
# The stack is started without the developer's SALESOPS_ settings: it runs the default lanes.
LANES = 4
PHASES = ("quiet", "burst", "slow spell (quiet)", "slow spell (burst)")


@dataclass
class Post:
    at: float  # seconds into the day
    payload: dict


@dataclass
class Action:
    at: float
    kind: str  # agent, slow, fast, late, prune
    detail: dict = field(default_factory=dict)


@dataclass
class Day:
    seconds: float
    bursts: list[tuple[float, float]]
    spells: list[tuple[float, float]]
    posts: list[Post]
    actions: list[Action]
    contacts: dict[str, list[str]]  # campaign → contact ids the day adds to the provider
    expected_retry: dict[str, str]  # contact → the retryDate of its newest call
    newest: set[str]  # the newer call of each pair: it must be written
    transfers: dict[str, str]  # callId → contact
    others: set[str]

    def phase(self, at: float) -> str:
        burst = any(start <= at < end for start, end in self.bursts)
        if any(start <= at < end for start, end in self.spells):
            return "slow spell (burst)" if burst else "slow spell (quiet)"
        return "burst" if burst else "quiet"

    @property
    def events(self) -> int:
        return len({post.payload["callId"] for post in self.posts})


def plan(minutes: float, seed: int = 1) -> Day:
    """The day's events, the provider's faults and the CRM's changes, all from `seed`."""
    rng = random.Random(seed)
    length = minutes * 60
    n_bursts = max(1, round(minutes / 5))
    burst_seconds = 25.0 if minutes >= 10 else 20.0
    quiet = (length - n_bursts * burst_seconds) / (n_bursts + 1)
    bursts = []
    for n in range(n_bursts):
        start = quiet * (n + 1) + burst_seconds * n
        bursts.append((start, start + burst_seconds))
    quiet_stretches = [(0.0, bursts[0][0])]
    quiet_stretches += [(end, nxt[0]) for (_, end), nxt in itertools.pairwise(bursts)]
    quiet_stretches.append((bursts[-1][1], length))

    def middle(stretch: tuple[float, float]) -> tuple[float, float]:
        start, end = stretch
        spell = min(SLOW_SECONDS, end - start)
        return (start + (end - start - spell) / 2, start + (end - start + spell) / 2)

    spells, slow_burst = [], None
    if n_bursts >= 2:
        # One slow spell straddles a burst: the provider is slow when the work piles up.
        slow_burst = n_bursts // 2
        start = bursts[slow_burst][0] - 15
        spells.append((start, start + SLOW_SECONDS))
        candidates = [n for n in range(n_bursts + 1) if n not in (slow_burst, slow_burst + 1)]
        if minutes >= 10 and candidates:
            chosen = {
                candidates[min(1, len(candidates) - 1)],
                candidates[max(0, len(candidates) - 2)],
            }
            spells += [middle(quiet_stretches[n]) for n in sorted(chosen)]
    else:
        spells.append(middle(quiet_stretches[-1]))
    spells.sort()

    actions = []
    for start, end in spells:
        actions += [Action(start, "slow"), Action(end, "fast")]
    for n, (start, _) in enumerate(bursts):
        # Not under a slow spell: its faults would take the PATCHes first.
        if n != slow_burst:
            seconds = round(rng.uniform(*LATE_AFTER), 1)
            actions.append(Action(start + 1, "late", {"seconds": seconds, "times": LATE_PER_BURST}))
    for fraction, agent, change in (
        (0.12, "cathy.dufour@walter-learning.com", {"active": False}),
        (0.30, "cathy.dufour@walter-learning.com", {"active": True}),
        (0.42, "alexandre.bouleau@walter-learning.com", {"active": False}),
        (0.58, "alexandre.bouleau@walter-learning.com", {"active": True}),
        (0.68, "adrien.argentin@walter-learning.com", {"team": "sales"}),
        (0.85, "adrien.argentin@walter-learning.com", {"team": SUPPORT_TEAM}),
    ):
        actions.append(Action(length * fraction, "agent", {"agent": agent, "change": change}))
    actions.append(Action(length * 0.5, "prune"))
    actions.sort(key=lambda action: action.at)

    slots = [at for start, end in quiet_stretches for at in _every(start + 5, end, QUIET_EVERY)]
    slots += [at for start, end in bursts for at in _every(start, end, 1 / BURST_RATE)]
    slots.sort()
    day = Day(length, bursts, spells, [], actions, {"A": [], "B": []}, {}, set(), {}, set())
    base = datetime(2026, 3, 2, 8, 0)
    counters = Counter()

    def contact(campaign: str) -> str:
        contact_id = f"day-{campaign}-{len(day.contacts[campaign]):05d}"
        day.contacts[campaign].append(contact_id)
        return contact_id

    payloads: list[dict] = []
    while len(payloads) < len(slots):
        kind = rng.choices(("pair", "transfer", "other"), weights=(45, 30, 25))[0]
        if kind == "pair" and len(slots) - len(payloads) < 2:
            kind = "other"  # both calls of a pair are posted, or neither
        n = counters[kind]
        counters[kind] += 1
        end = base + timedelta(seconds=len(payloads) * 7)
        if kind == "pair":
            contact_id = contact("A")
            second_end = end + timedelta(minutes=rng.randint(1, 90))
            older, _ = callback_event(f"day-p{n}a", contact_id, end, days=3)
            newer, expected = callback_event(f"day-p{n}b", contact_id, second_end, days=5)
            pair = [older, newer]
            day.expected_retry[contact_id] = expected.isoformat()
            day.newest.add(f"day-p{n}b")
            if rng.random() < 0.5:
                pair.reverse()  # the newer call's event arrives first
            payloads += pair
        elif kind == "transfer":
            contact_id = contact("A" if n % 2 else "B")
            call_id = f"day-t{n}"
            payloads.append(
                {
                    "callId": call_id,
                    "contactId": contact_id,
                    "wrapup": "support",
                    "callEnd": format_webhook_datetime(end),
                }
            )
            day.transfers[call_id] = contact_id
        else:
            call_id = f"day-o{n}"
            payloads.append(
                {
                    "callId": call_id,
                    "contactId": contact("A"),
                    "wrapup": "Vente",
                    "callEnd": format_webhook_datetime(end),
                }
            )
            day.others.add(call_id)
    for at, payload in zip(slots, payloads, strict=False):
        day.posts.append(Post(at, payload))
        if rng.random() < REPEAT_SHARE:
            day.posts.append(Post(min(length, at + rng.uniform(0.5, 10)), payload))
    day.posts.sort(key=lambda post: post.at)
    return day


def _every(start: float, end: float, step: float) -> list[float]:
    return [start + k * step for k in range(max(0, int((end - start) / step)))]


# Scoring ----------------------------------------------------------------------------------


@dataclass
class Score:
    accepted: int = 0
    refused: int = 0  # events no delivery of which was accepted
    final: int = 0
    failed: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    twice: list[str] = field(default_factory=list)
    reverted: list[str] = field(default_factory=list)
    inactive: list[str] = field(default_factory=list)
    writes: int = 0
    latency: dict[str, list[float]] = field(default_factory=dict)
    posted: Counter = field(default_factory=Counter)


def _unable_since(
    initial: dict[str, dict], changes: list[tuple[datetime, str, dict]], agent: str, at: datetime
) -> datetime | None:
    """When `agent` stopped being able to take support contacts, if it was unable at `at`."""
    record = dict(initial.get(agent, {}))
    since = None if _able(record) else datetime.min.replace(tzinfo=UTC)
    for when, who, change in sorted(changes, key=lambda c: c[0]):
        if when > at:
            break
        if who != agent:
            continue
        was = _able(record)
        record.update(change)
        if was and not _able(record):
            since = when
        elif _able(record):
            since = None
    return since


def _able(record: dict) -> bool:
    return record.get("active") is True and record.get("team") == SUPPORT_TEAM


def score(
    day: Day,
    delivered: dict[str, tuple[float, int]],
    statuses: dict[str, str],
    log: list[dict],
    initial_agents: dict[str, dict],
    agent_changes: list[tuple[datetime, str, dict]],
) -> Score:
    """`delivered`: callId → (wall time of its first accepted post, or of its first post when
    none was accepted; HTTP status, 0 when no post got an answer)."""
    result = Score()
    first_write: dict[str, datetime] = {}
    received: Counter = Counter()
    last_retry: dict[str, str] = {}
    for entry in log:
        key = entry["idempotency_key"] or ""
        received[key] += 1
        at = datetime.fromisoformat(entry["at"])
        first_write.setdefault(key, at)
        if "retryDate" in entry["changes"]:
            last_retry[entry["contact"]] = entry["changes"]["retryDate"]
        agent = entry["changes"].get("assignedAgent")
        call_id = key.removeprefix("post-call-")
        if agent and call_id in day.transfers:
            since = _unable_since(initial_agents, agent_changes, agent, at)
            if since is not None and (at - since).total_seconds() > INACTIVE_GRACE:
                result.inactive.append(call_id)
    result.writes = sum(received.values())
    result.twice = sorted(key for key, n in received.items() if n > 1)
    phase_of = {}
    for post in day.posts:
        phase_of.setdefault(post.payload["callId"], day.phase(post.at))
    result.posted = Counter(phase_of.values())
    result.latency = {phase: [] for phase in PHASES}
    lost = set()
    for call_id, (posted_at, status) in delivered.items():
        if not 200 <= status < 300:
            result.refused += 1
            continue
        result.accepted += 1
        state = statuses.get(call_id)
        key = f"post-call-{call_id}"
        if state is None or state in OPEN_STATUSES:
            lost.add(call_id)
            continue
        result.final += 1
        if state == "failed":
            result.failed.append(call_id)
        should_write = call_id in day.newest or call_id in day.transfers
        if received[key] == 0 and (should_write or state == "applied"):
            lost.add(call_id)
        if key in first_write:
            waited = (first_write[key] - datetime.fromtimestamp(posted_at, UTC)).total_seconds()
            result.latency[phase_of[call_id]].append(waited)
    result.lost = sorted(lost)
    result.reverted = sorted(
        contact
        for contact, expected in day.expected_retry.items()
        if last_retry.get(contact) != expected
    )
    result.failed.sort()
    result.inactive.sort()
    return result


def _quantiles(values: list[float]) -> tuple[str, str, str]:
    if not values:
        return ("–", "–", "–")
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
    return (f"{statistics.median(ordered):.1f} s", f"{p95:.1f} s", f"{ordered[-1]:.1f} s")


def _names(items: list[str], limit: int = 5) -> str:
    return str(len(items)) + (f" ({', '.join(items[:limit])}…)" if items else "")


def render(title: str, day: Day, result: Score, inbox_rows: list[list[str]], notes: list[str]):
    contract = table(
        f"{title}: the contract, from the provider's write log",
        [
            [
                f"{day.events:,}",
                f"{result.accepted:,}",
                str(result.refused),
                f"{result.final:,}",
                _names(result.failed),
                _names(result.lost),
                _names(result.twice),
                _names(result.reverted),
                _names(result.inactive),
                f"{result.writes:,}",
            ]
        ],
        [
            "events",
            "accepted",
            "refused",
            "final",
            "failed",
            "lost",
            "written twice",
            "reverted",
            "to an inactive agent",
            "writes logged",
        ],
    )
    rows = []
    for phase in PHASES:
        values = result.latency.get(phase, [])
        rows.append(
            [phase, str(result.posted.get(phase, 0)), str(len(values)), *_quantiles(values)]
        )
    everything = [v for values in result.latency.values() for v in values]
    rows.append(["whole day", str(day.events), str(len(everything)), *_quantiles(everything)])
    latency = table(
        f"{title}: post to the provider's write, per phase",
        rows,
        ["phase", "events posted", "with a write", "p50", "p95", "max"],
    )
    parts = [contract, latency]
    if inbox_rows:
        parts.append(table(f"{title}: the inbox", inbox_rows, ["measure", "start", "end"]))
    return "\n".join(parts) + ("\n\n" + "\n".join(f"- {note}" for note in notes) if notes else "")


# The inbox --------------------------------------------------------------------------------


def fill_inbox(path: Path, events: int, age_days: int) -> float:
    """`events` finished events (with their outcome, queue and write rows) ended `age_days` ago
    and over the day before, written in one transaction; seconds taken."""
    schema = Inbox(path)
    schema.counts()  # the schema, as the intake creates it
    schema.close()  # the journal mode changes only with the file to itself
    started = time.perf_counter()
    oldest = (datetime.now(UTC) - timedelta(days=age_days + 1)).strftime("%Y-%m-%d %H:%M:%S")
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        # A rollback journal for the load: in WAL the whole load would be written twice.
        conn.execute("PRAGMA journal_mode=DELETE")
        conn.execute("PRAGMA synchronous=OFF")
        conn.execute("PRAGMA cache_size=-1000000")
        conn.execute("BEGIN")
        conn.execute(
            "CREATE TEMP TABLE old AS WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1"
            " FROM n WHERE i < ?) SELECT i, printf('old-%08d', i) AS call_id,"
            " strftime('%Y-%m-%dT%H:%M:%f', ?, '+' || (i * 86400 / ?) || ' seconds')"
            " || '+00:00' AS at,"
            " CASE WHEN i % 20 < 12 THEN 'applied' WHEN i % 20 < 17 THEN 'nothing_to_do'"
            " ELSE 'superseded' END AS status FROM n",
            (events, oldest, max(events, 1)),
        )
        conn.execute(
            "INSERT INTO event (call_id, payload, payload_sha256, received_at, status, attempts,"
            " next_attempt_at, updated_at, lane_key)"
            " SELECT call_id, json_object('callId', call_id, 'contactId', 'c' || (i % 5000),"
            " 'wrapup', 'Rappel', 'callEnd', '02/01/2026 10:26:14',"
            " 'callBackDate', '05/01/2026 10:00:00'), hex(randomblob(32)), at, status, 1, at, at,"
            " i % 4 FROM old"
        )
        conn.execute(
            "INSERT INTO queue (call_id, reason, queued_at, lane_key)"
            " SELECT call_id, 'received', at, i % 4 FROM old"
        )
        conn.execute(
            "INSERT INTO write (call_id, contact_id, call_time, changes, state, sends, sent_at,"
            " updated_at) SELECT call_id, 'c' || (i % 5000), at,"
            " '{\"retryDate\": \"2026-01-05T10:00:00\"}', 'applied', 1, at, at FROM old"
            " WHERE status = 'applied'"
        )
        conn.execute(
            "INSERT INTO outcome (call_id, attempt, status, decision, writes, error, run_id, at)"
            " SELECT call_id, 1, status, 'handled before the day', CASE status WHEN 'applied'"
            " THEN '[{\"retryDate\": \"2026-01-05T10:00:00\"}]' ELSE '[]' END, NULL, NULL, at"
            " FROM old"
        )
        conn.execute("DROP TABLE old")
        conn.execute("COMMIT")
        conn.execute("PRAGMA journal_mode=WAL")
    finally:
        conn.close()
    return time.perf_counter() - started


def inbox_size(path: Path) -> dict[str, float]:
    with sqlite3.connect(path) as conn:
        events = conn.execute("SELECT COUNT(*) FROM event").fetchone()[0]
        page = conn.execute("PRAGMA page_size").fetchone()[0]
        free = conn.execute("PRAGMA freelist_count").fetchone()[0] * page
    wal = Path(f"{path}-wal")
    size = path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)
    return {"bytes": size, "free": free, "events": events}


def tick_seconds(path: Path, lanes: int, tries: int = 5) -> float:
    """What the sensor reads of the inbox at every tick, `lanes_with_work` and `requeue_due`:
    the median of `tries`."""
    inbox = Inbox(path)
    times = []
    for _ in range(tries):
        started = time.perf_counter()
        inbox.lanes_with_work(lanes)
        inbox.requeue_due()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _inbox_rows(start: dict, end: dict, tick: tuple[float, float], sensor: str) -> list[list[str]]:
    mb = 1024 * 1024
    return [
        [
            "file size (with its WAL)",
            f"{start['bytes'] / mb:,.0f} MB",
            f"{end['bytes'] / mb:,.0f} MB",
        ],
        ["of which free pages", f"{start['free'] / mb:,.0f} MB", f"{end['free'] / mb:,.0f} MB"],
        ["events", f"{start['events']:,}", f"{end['events']:,}"],
        [
            "lanes_with_work + requeue_due",
            f"{tick[0] * 1000:,.1f} ms",
            f"{tick[1] * 1000:,.1f} ms",
        ],
        ["post_call_sensor's ticks, as Dagster timed them (p50 / p95 / max)", "–", sensor],
    ]


# Through the stack ------------------------------------------------------------------------


def main(scale: int, repeat: int, smoke: bool = False, minutes: float = 30.0) -> str:
    if smoke:
        return _smoke()
    return run_day(minutes)


def _smoke() -> str:
    """The scenario, the inbox filling, the tick timing and the scoring, without a stack: a
    stack and a day of even one minute would add minutes to the test suite's smoke run."""
    day = plan(1.0)
    assert day.bursts and day.spells and day.transfers and day.newest and day.others
    now = time.time()
    delivered = {post.payload["callId"]: (now + post.at, 202) for post in day.posts}
    statuses, log = {}, []
    for post in day.posts:
        call_id = post.payload["callId"]
        if call_id in statuses:
            continue
        if call_id in day.others or (call_id.startswith("day-p") and call_id not in day.newest):
            statuses[call_id] = "nothing_to_do" if call_id in day.others else "superseded"
            continue
        statuses[call_id] = "applied"
        at = datetime.fromtimestamp(now + post.at + 1.5, UTC).isoformat(timespec="milliseconds")
        contact = post.payload["contactId"]
        if call_id in day.transfers:
            changes = {"assignedAgent": "alexandre.bouleau@walter-learning.com"}
        else:
            changes = {"retryDate": day.expected_retry[contact]}
        log.append(
            {
                "contact": contact,
                "changes": changes,
                "idempotency_key": f"post-call-{call_id}",
                "at": at,
            }
        )
    initial = {
        "alexandre.bouleau@walter-learning.com": {"active": True, "team": SUPPORT_TEAM},
    }
    clean = score(day, delivered, statuses, log, initial, [])
    assert not (clean.lost or clean.twice or clean.reverted or clean.inactive), clean
    # The same day with one write applied twice, and its agent deactivated from the start: the
    # scorer must see both.
    broken = score(
        day,
        delivered,
        statuses,
        [*log, log[-1]],
        initial,
        [(datetime.fromtimestamp(now - 60, UTC), next(iter(initial)), {"active": False})],
    )
    assert broken.twice and (broken.inactive or not day.transfers), broken
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "inbox.sqlite"
        filled = fill_inbox(path, 2_000, OLD_AGE_DAYS)
        start = inbox_size(path)
        tick = tick_seconds(path, LANES)
        pruned = Inbox(path).prune(timedelta(days=30))
        end = inbox_size(path)
        assert start["events"] == 2_000 and end["events"] == 0, (start, end)
    rows = _inbox_rows(start, end, (tick, tick), "not run")
    notes = [
        "Smoke: the scenario and the scoring on a made-up write log, and 2,000 old events"
        f" filled in {filled:.2f} s and pruned ({pruned.text()}); no stack was started.",
    ]
    return render("Day (smoke, 1 min, no stack)", day, clean, rows, notes)


def _stack_env(home: Path) -> dict[str, str]:
    # As start_stack gives the stack: the developer's own settings must not leak into it.
    kept = ("SALESOPS_", "REMOTE_API_", "X_API_KEY", "DAGSTER_HOME")
    env = {k: v for k, v in os.environ.items() if not k.startswith(kept)}
    env["SALESOPS_HOME"] = str(home)
    return env


def _prune_available() -> bool:
    answer = subprocess.run(
        [sys.executable, "-m", "salesops_pipeline.cli", "inbox", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return "--prune" in answer.stdout


def run_day(minutes: float) -> str:
    from salesops_pipeline_tests.support.stack_process import start_stack, stop_stack

    day = plan(minutes)
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    header = (
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, commit {commit or '?'}, {os.cpu_count()} cores,"
        f" Python {sys.version.split()[0]}"
    )
    print(
        f"(day: {minutes:g} min, {day.events:,} events, {len(day.posts):,} posts; filling the"
        f" inbox with {OLD_EVENTS:,} old events)",
        file=sys.stderr,
        flush=True,
    )
    # A Dagster code server may outlive the stack by a few seconds, still writing to its home.
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as tmp:
        home = Path(tmp) / "salesops_home"
        path = home / "intake" / "inbox.sqlite"
        path.parent.mkdir(parents=True)
        filled = fill_inbox(path, OLD_EVENTS, OLD_AGE_DAYS)
        start_size = inbox_size(path)
        start_tick = tick_seconds(path, LANES)
        prune_exists = _prune_available()
        stack = start_stack(home)
        try:
            outcome = _live_day(stack, day, path, home, prune_exists)
        finally:
            stop_stack(stack)
        end_size = inbox_size(path)
        end_tick = tick_seconds(path, LANES)
    _keep(minutes, outcome)
    result = score(
        day,
        outcome["delivered"],
        outcome["statuses"],
        outcome["log"],
        outcome["initial_agents"],
        outcome["agent_changes"],
    )
    title = f"Day: {minutes:g} minutes through the real stack"
    notes = [
        f"Run: {header}. One run, not a median.",
        f"Before the day: {OLD_EVENTS:,} finished events {OLD_AGE_DAYS} days old written into"
        f" the inbox in {filled:.0f} s.",
        "Bursts (s into the day): "
        + ", ".join(f"{a:.0f}–{b:.0f}" for a, b in day.bursts)
        + "; slow spells (every read and write delayed"
        f" {SLOW_DELAY:g} s): " + ", ".join(f"{a:.0f}–{b:.0f}" for a, b in day.spells) + ".",
        *outcome["notes"],
    ]
    if not result.lost and outcome["open_at_end"]:
        notes.append(f"Open when the wait ended: {outcome['open_at_end']}.")
    sensor = outcome["sensor"]
    return render(
        title, day, result, _inbox_rows(start_size, end_size, (start_tick, end_tick), sensor), notes
    )


def _live_day(stack, day: Day, path: Path, home: Path, prune_exists: bool) -> dict:
    key = {"X-API-KEY": stack.provider_key}
    provider = requests.Session()
    provider.headers.update(key)
    for campaign, ids in day.contacts.items():
        for start in range(0, len(ids), 2000):
            records = [
                blank_sandbox_contact(contact_id, campaign)
                for contact_id in ids[start : start + 2000]
            ]
            provider.post(
                f"{stack.sandbox_url}/_sandbox/campaigns/{campaign}/contacts",
                json=records,
                timeout=60,
            ).raise_for_status()
    initial_agents = {
        agent["username"]: agent
        for agent in provider.get(f"{stack.sandbox_url}/crm/agents", timeout=30).json()
    }

    delivered: dict[str, tuple[float, int]] = {}
    lock = threading.Lock()
    local = threading.local()
    url = f"{stack.intake_url}/webhooks/post-call"

    def deliver(payload: dict) -> None:
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
            session.headers.update({"X-API-KEY": stack.intake_key})
        sent = time.time()
        try:
            status = session.post(url, json=payload, timeout=30).status_code
        except requests.RequestException:
            status = 0
        with lock:
            earlier = delivered.get(payload["callId"])
            if earlier is None or not 200 <= earlier[1] < 300:
                delivered[payload["callId"]] = (sent, status)

    t0, day_start = time.monotonic(), datetime.now(UTC)

    def post_all() -> None:
        with ThreadPoolExecutor(POSTERS) as pool:
            for post in day.posts:
                wait = t0 + post.at - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                pool.submit(deliver, post.payload)

    poster = threading.Thread(target=post_all)
    poster.start()
    agent_changes: list[tuple[datetime, str, dict]] = []
    notes: list[str] = []
    prune_thread = None
    late_armed = 0
    late_at = 0.0
    for action in day.actions:
        wait = t0 + action.at - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        if action.kind == "agent":
            agent, change = action.detail["agent"], action.detail["change"]
            provider.patch(
                f"{stack.sandbox_url}/_sandbox/agents/{agent}", json=change, timeout=30
            ).raise_for_status()
            agent_changes.append((datetime.now(UTC), agent, change))
        elif action.kind == "slow":
            for method, prefix in (("GET", "/voice/"), ("GET", "/crm/"), ("PATCH", "/voice/")):
                provider.post(
                    f"{stack.sandbox_url}/_sandbox/faults",
                    json={
                        "method": method,
                        "path_prefix": prefix,
                        "status": None,
                        "delay_seconds": SLOW_DELAY,
                        "times": 10_000_000,
                    },
                    timeout=30,
                ).raise_for_status()
        elif action.kind == "fast":
            provider.delete(f"{stack.sandbox_url}/_sandbox/faults", timeout=30).raise_for_status()
        elif action.kind == "late":
            provider.post(
                f"{stack.sandbox_url}/_sandbox/faults",
                json={
                    "method": "PATCH",
                    "path_prefix": "/voice/contacts/",
                    "status": None,
                    "apply_after_seconds": action.detail["seconds"],
                    "times": action.detail["times"],
                },
                timeout=30,
            ).raise_for_status()
            late_armed += action.detail["times"]
            late_at = time.monotonic()
        elif action.kind == "prune":
            if prune_exists:
                prune_thread = threading.Thread(
                    target=_prune, args=(home, notes, time.monotonic() - t0)
                )
                prune_thread.start()
            else:
                notes.append("Retention not run: `salesops inbox --prune` does not exist yet.")
    poster.join()
    if prune_thread is not None:
        prune_thread.join()
    posted_until = time.monotonic()

    # Every event final, then time for a late write to land.
    deadline = posted_until + SETTLE_SECONDS
    open_counts: dict[str, int] = {}
    while time.monotonic() < deadline:
        open_counts = _open(path)
        if not open_counts:
            break
        time.sleep(2)
    settled = time.monotonic() - posted_until
    time.sleep(max(0.0, late_at + max(LATE_AFTER) + LATE_MARGIN - time.monotonic()))
    log = provider.get(f"{stack.sandbox_url}/_sandbox/writes", timeout=120).json()
    faults = provider.get(f"{stack.sandbox_url}/_sandbox/faults", timeout=30).json()
    with sqlite3.connect(path) as conn:
        statuses = dict(
            conn.execute(
                "SELECT call_id, status FROM event WHERE call_id >= 'day-' AND call_id < 'day.'"
            ).fetchall()
        )
    notes.append(
        f"Every accepted event final {settled:.0f} s after the last post."
        if not open_counts
        else f"Still open {SETTLE_SECONDS:.0f} s after the last post: {open_counts}"
    )
    notes.append(
        "CRM changes (s into the day): "
        + ", ".join(
            f"{(when - day_start).total_seconds():.0f} {agent.split('@')[0]} {json.dumps(change)}"
            for when, agent, change in agent_changes
        )
        + "."
    )
    notes.append(
        f"Late writes: {late_armed} PATCHes armed to be applied {LATE_AFTER[0]:g}–"
        f"{LATE_AFTER[1]:g} s late; faults injected by the provider (late and slow):"
        f" {faults.get('faults', {})}; requests to its API: {faults.get('requests', {})}."
    )
    return {
        "delivered": delivered,
        "statuses": statuses,
        "log": log,
        "initial_agents": initial_agents,
        "agent_changes": agent_changes,
        "notes": notes,
        "open_at_end": open_counts,
        "sensor": _sensor_ticks(stack),
    }


def _keep(minutes: float, outcome: dict) -> None:
    """The run's raw record (posts, statuses, the provider's write log, the CRM's changes), so
    that a miss can be looked into once the stack and its files are gone."""
    path = cache_dir() / f"day-{minutes:g}min.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {
        **{k: v for k, v in outcome.items() if k != "agent_changes"},
        "agent_changes": [
            (when.isoformat(), who, what) for when, who, what in outcome["agent_changes"]
        ],
    }
    path.write_text(json.dumps(record, default=str))
    print(f"(day: raw record in {path})", file=sys.stderr, flush=True)


def _open(path: Path) -> dict[str, int]:
    with sqlite3.connect(path) as conn:
        marks = ", ".join("?" * len(OPEN_STATUSES))
        return dict(
            conn.execute(
                f"SELECT status, COUNT(*) FROM event WHERE status IN ({marks}) GROUP BY status",
                tuple(OPEN_STATUSES),
            ).fetchall()
        )


def _prune(home: Path, notes: list[str], at: float) -> None:
    started = time.monotonic()
    answer = subprocess.run(
        [sys.executable, "-m", "salesops_pipeline.cli", "inbox", "--prune"],
        env=_stack_env(home),
        cwd=home.parent,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    took = time.monotonic() - started
    said = (answer.stdout.strip() or answer.stderr.strip()[-500:]).replace("\n", " ")
    notes.append(
        f"Retention: `salesops inbox --prune` at {at:.0f} s into the day took {took:.1f} s"
        f" (exit {answer.returncode}): {said}"
    )


def _sensor_ticks(stack) -> str:
    """post_call_sensor's evaluation times as Dagster recorded them, if it can say."""
    query = """{ repositoriesOrError { ... on RepositoryConnection { nodes { sensors {
        name sensorState { ticks(limit: 5000) { timestamp endTimestamp status } } } } } } }"""
    try:
        data = stack.graphql(query)
    except Exception as error:  # noqa: BLE001 - a figure missing, not a failed benchmark
        return f"– ({type(error).__name__})"
    durations = [
        tick["endTimestamp"] - tick["timestamp"]
        for repository in data["repositoriesOrError"].get("nodes", [])
        for sensor in repository["sensors"]
        if sensor["name"] == "post_call_sensor"
        for tick in sensor["sensorState"]["ticks"]
        if tick.get("endTimestamp")
    ]
    if not durations:
        return "–"
    durations.sort()
    p95 = durations[min(len(durations) - 1, int(len(durations) * 0.95))]
    return (
        f"{statistics.median(durations) * 1000:,.0f} / {p95 * 1000:,.0f} /"
        f" {durations[-1] * 1000:,.0f} ms ({len(durations)} ticks)"
    )
