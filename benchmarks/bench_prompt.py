"""Post-call promptness through the real stack (`salesops dev`: sandbox, intake, Dagster daemon,
sensor and runs; SQLite inbox), at every rate a call centre sends, and what the post-call
processes cost once the traffic stops.

Goals:
- one event a minute, one every 15 s, 1/s, 20/s and 60/s, 5 minutes each: p50 ≤ 1 s and
  p95 ≤ 2 s;
- 150 events/s sustained for 2 minutes: p95 ≤ 10 s, nothing lost;
- after 10 minutes without traffic, the post-call run workers and the intake hold ≤ 600 MB RSS
  in all and use ≤ 2% of one core.

An event's latency runs from the moment it was posted to the moment the provider logged its
write (the sandbox's write log, matched by Idempotency-Key `post-call-<callId>`). Events are
callbacks ("Rappel"), each to a contact of its own added to the sandbox beforehand, so that no
other call of the contact can supersede it. An event not written when its wait ended counts
with the time it had waited: a percentile that falls among such events is a lower bound, shown
with ">".

Warm lanes (ours) run every rate on one stack per repetition, after its warm run has started,
then stay without traffic and are measured idle. The baselines (runs started by the sensor and
stopped once idle) run each rate on fresh stacks, the rates from 1/s up with a shorter load and
a bounded wait. SALESOPS_BENCH_PROMPT_MINUTES scales every load and the quiet time (1: the
goals' durations).
"""

import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import requests

from benchmarks.common import blank_sandbox_contact, cache_dir, table
from salesops_pipeline.post_call.processor import idempotency_key
from salesops_pipeline.post_call.status import OPEN_STATUSES
from salesops_pipeline.timezone import BUSINESS_TIMEZONE
from salesops_pipeline_tests.support.post_call_outcome import callback_event
from salesops_pipeline_tests.support.stack_process import RunningStack, start_stack, stop_stack


@dataclass(frozen=True)
class Rate:
    label: str
    slug: str  # in the callIds of its events, so that each load's events are told apart
    per_second: float
    seconds: float  # ours' load, before SALESOPS_BENCH_PROMPT_MINUTES scales it
    p50_goal: float | None
    p95_goal: float
    lossless: bool = False  # the goal asks that every event posted be written

    def events(self, seconds: float) -> int:
        return max(1, round(self.per_second * seconds))


MINUTES = float(os.environ.get("SALESOPS_BENCH_PROMPT_MINUTES") or 1.0)
RATES = (
    Rate("1/min", "m1", 1 / 60, 300.0, 1.0, 2.0),
    Rate("1/15 s", "s15", 1 / 15, 300.0, 1.0, 2.0),
    Rate("1/s", "r1", 1.0, 300.0, 1.0, 2.0),
    Rate("20/s", "r20", 20.0, 300.0, 1.0, 2.0),
    Rate("60/s", "r60", 60.0, 300.0, 1.0, 2.0),
    Rate("150/s", "r150", 150.0, 120.0, None, 10.0, lossless=True),
)
# Mostly waiting: the repetitions' stacks run these side by side.
LOW = RATES[:2]
HIGH = RATES[2:]
OURS = "warm lanes (ours)"
DESIGNS = {
    OURS: {"SALESOPS_POST_CALL_WARM_HOURS": "always"},
    "today's lanes (20 s idle)": {
        "SALESOPS_POST_CALL_WARM_HOURS": "never",
        "SALESOPS_POST_CALL_RUNS": "4",
    },
    "one run per event": {
        "SALESOPS_POST_CALL_WARM_HOURS": "never",
        "SALESOPS_POST_CALL_LANES": "1",
        "SALESOPS_POST_CALL_RUNS": "1",
        "SALESOPS_POST_CALL_IDLE_SECONDS": "0",
        "SALESOPS_POST_CALL_BATCH": "1",
    },
}
# Designs that are not tried at a rate once they fell behind at a lower one: they cannot catch
# up at a higher rate, and each try costs a stack.
GIVES_UP_WHEN_BEHIND = {"one run per event"}
# After each of ours' loads: how long its events may take to be written (it stops as soon as
# they are). The next load starts after a pause.
OURS_WAIT = 300.0
PAUSE = 5.0
# The baselines from 1/s up: a shorter load and a bounded wait, as they fall behind.
BASELINE_SECONDS = 60.0
BASELINE_WAIT = 90.0
# Between a baseline's loads: long enough for its runs to have stopped (20 s idle), so that
# each load starts as a quiet call centre's first event would.
BASELINE_PAUSE = 30.0
# Without traffic before the idle measurement, and the window the CPU is measured over.
QUIET_SECONDS = 600.0
# Long enough to be a fair average of an idle stack: its rare handover (a process start)
# falls in it or not, and a spike of a second weighs little.
IDLE_WINDOW = 300.0
# How long a warm stack's first run may take to start.
WARM_WAIT = 120.0
POSTERS = 32
CONTACT_CHUNK = 2000
IDLE_RSS_GOAL_MB = 600.0
IDLE_CPU_GOAL = 2.0

SMOKE_RATES = (
    Rate("1/s", "r1", 1.0, 10.0, 1.0, 2.0),
    Rate("20/s", "r20", 20.0, 10.0, 1.0, 2.0),
)
SMOKE_WAIT = 60.0
SMOKE_QUIET = 5.0
SMOKE_WINDOW = 20.0

# Processes of the stack, by what they are; the first ones are what the idle goal counts.
POST_CALL_RUN = "post-call run worker"
RUN_LOGS = "post-call run's compute-log capture (tail, watch_orphans)"
INTAKE = "intake"
COUNTED = (POST_CALL_RUN, RUN_LOGS, INTAKE)
CONTEXT = (
    "other run worker",
    "Dagster daemon",
    "Dagster webserver",
    "code server",
    "sandbox provider",
    "dagster dev",
    "salesops dev",
    "other",
)


def scaled(seconds: float) -> float:
    return seconds * MINUTES


def _say(text: str) -> None:
    print(f"(prompt {datetime.now(UTC):%H:%M:%S}: {text})", file=sys.stderr, flush=True)


# A load and its score --------------------------------------------------------------------


@dataclass
class Load:
    design: str
    rate: Rate
    seconds: float
    repetition: int
    # callId → (wall time of its first post, HTTP status of its delivery; 0: no answer)
    posts: dict[str, tuple[float, int]] = field(default_factory=dict)
    behind: float = 0.0  # how far posting fell behind its schedule at worst, s
    runs: int = 0  # post_call_job runs started from its first post to the end of its wait
    open_at_end: int = 0  # events still open when its wait ended
    accepted: int = 0
    written: int = 0
    lost: int = 0  # accepted, never final
    failed: int = 0  # final without a write
    twice: int = 0  # written more than once
    latencies: list[tuple[float, bool]] = field(default_factory=list)  # (s, lower bound)

    @property
    def posted(self) -> int:
        return len(self.posts)

    def quantile(self, q: float) -> tuple[float, bool]:
        if not self.latencies:
            return (float("nan"), False)
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(len(ordered) * q))]

    def meets(self) -> bool:
        p50, p50_bound = self.quantile(0.5)
        p95, p95_bound = self.quantile(0.95)
        if not self.latencies or p95_bound or p95 > self.rate.p95_goal:
            return False
        if self.rate.p50_goal is not None and (p50_bound or p50 > self.rate.p50_goal):
            return False
        return not self.rate.lossless or self.written == self.posted

    def summary(self) -> dict:
        p50, p95 = self.quantile(0.5), self.quantile(0.95)
        return {
            "design": self.design,
            "rate": self.rate.label,
            "seconds": self.seconds,
            "repetition": self.repetition,
            "posted": self.posted,
            "accepted": self.accepted,
            "written": self.written,
            "lost": self.lost,
            "failed": self.failed,
            "twice": self.twice,
            "p50": p50,
            "p95": p95,
            "max": max((v for v, _ in self.latencies), default=None),
            "runs": self.runs,
            "behind": self.behind,
        }


def score(loads: list[Load], log: list[dict], statuses: dict[str, str], read_at: float) -> None:
    """Each load's counts and latencies from the provider's write log and the inbox's statuses,
    both read at `read_at` (wall time)."""
    first: dict[str, float] = {}
    logged: Counter = Counter()
    for entry in log:
        key = entry["idempotency_key"] or ""
        logged[key] += 1
        first.setdefault(key, datetime.fromisoformat(entry["at"]).timestamp())
    for load in loads:
        for call_id, (sent, status) in load.posts.items():
            if not 200 <= status < 300:
                continue
            load.accepted += 1
            key = idempotency_key(call_id)
            if key in first:
                load.written += 1
                load.twice += logged[key] > 1
                load.latencies.append((first[key] - sent, False))
            elif statuses.get(call_id) in (None, *OPEN_STATUSES):
                load.lost += 1
                load.latencies.append((read_at - sent, True))
            else:
                load.failed += 1


# A stack under load ---------------------------------------------------------------------


class Stack:
    """One `salesops dev` with `design`'s settings, its contacts added for the loads it will
    run, and what it was asked and did."""

    def __init__(self, design: str, repetition: int, loads: list[tuple[Rate, float]]):
        self.design = design
        self.repetition = repetition
        self.planned = loads
        self.loads: list[Load] = []
        self.notes: list[str] = []
        self.quiet_since = 0.0
        self._tmp: tempfile.TemporaryDirectory | None = None
        self.stack: RunningStack | None = None

    # The stack's life

    def start(self) -> None:
        # A Dagster code server may outlive the stack by a few seconds, still writing to its home.
        self._tmp = tempfile.TemporaryDirectory(ignore_cleanup_errors=True)
        started = time.monotonic()
        self.stack = start_stack(
            Path(self._tmp.name) / "salesops_home",
            settings=DESIGNS[self.design],
            generate_keys=True,
        )
        _say(f"{self.name}: up in {time.monotonic() - started:.0f} s")
        contacts = [
            _contact(rate, n) for rate, seconds in self.planned for n in range(rate.events(seconds))
        ]
        for start in range(0, len(contacts), CONTACT_CHUNK):
            records = [
                blank_sandbox_contact(contact_id, "A")
                for contact_id in contacts[start : start + CONTACT_CHUNK]
            ]
            self._provider("POST", "/_sandbox/campaigns/A/contacts", json=records)

    def stop(self) -> None:
        if self.stack is not None:
            stop_stack(self.stack)
            self.stack = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    @property
    def name(self) -> str:
        return f"{self.design}, run {self.repetition + 1}"

    def wait_warm(self) -> None:
        """Until the warm run has started: a warm design's promise starts there."""
        started = time.monotonic()
        query = (
            '{ runsOrError(filter: {pipelineName: "post_call_job", statuses: [STARTED]})'
            " { ... on Runs { count } } }"
        )
        while time.monotonic() - started < WARM_WAIT:
            if self.stack.graphql(query)["runsOrError"]["count"]:
                took = time.monotonic() - started
                self.notes.append(f"warm run started {took:.0f} s after the stack was up")
                _say(f"{self.name}: warm run started after {took:.0f} s")
                return
            time.sleep(1)
        self.notes.append(f"no warm run had started {WARM_WAIT:.0f} s after the stack was up")

    # Loads

    def run(self, rate: Rate, seconds: float, wait: float, offset: float = 0.0) -> Load:
        """Post `rate` for `seconds` (starting `offset` s from now), then wait for every event
        to be final, `wait` s at most."""
        if offset:
            time.sleep(offset)
        load = Load(self.design, rate, seconds, self.repetition)
        runs_before = self._runs()
        _say(f"{self.name}: {rate.label} for {seconds:g} s ({rate.events(seconds):,} events)")
        self._post(load)
        deadline = time.monotonic() + wait
        load.open_at_end = self._open(rate)
        while load.open_at_end and time.monotonic() < deadline:
            time.sleep(1)
            load.open_at_end = self._open(rate)
        load.runs = self._runs() - runs_before
        self.quiet_since = time.monotonic()
        self.loads.append(load)
        return load

    def _post(self, load: Load) -> None:
        rate, stack = load.rate, self.stack
        url = f"{stack.intake_url}/webhooks/post-call"
        lock, local = threading.Lock(), threading.local()
        # The call ended moments before its webhook, as on a working day.
        end = datetime.now(BUSINESS_TIMEZONE).replace(tzinfo=None, microsecond=0)
        events = [
            callback_event(f"prompt-{rate.slug}-{n:06d}", _contact(rate, n), end, days=2)[0]
            for n in range(rate.events(load.seconds))
        ]

        def deliver(payload: dict, due: float) -> None:
            session = getattr(local, "session", None)
            if session is None:
                session = local.session = requests.Session()
                session.headers.update({"X-API-KEY": stack.intake_key})
            sent = time.time()
            status = 0
            # The intake closes a keep-alive connection left idle for a few seconds: a post
            # that found it closed goes again (the intake answers a callId it stored as a
            # duplicate). Its latency still runs from the first post.
            for _ in range(2):
                try:
                    status = session.post(url, json=payload, timeout=30).status_code
                    break
                except requests.ConnectionError:
                    continue
                except requests.RequestException:
                    break
            with lock:
                load.posts[payload["callId"]] = (sent, status)
                load.behind = max(load.behind, sent - due)

        started_wall, started = time.time(), time.monotonic()
        with ThreadPoolExecutor(POSTERS) as pool:
            for n, payload in enumerate(events):
                wait = started + n / rate.per_second - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                pool.submit(deliver, payload, started_wall + n / rate.per_second)
        # A load lasts its whole time, also at rates whose last event comes well before.
        time.sleep(max(0.0, started + load.seconds - time.monotonic()))

    # Reading the stack

    def _provider(self, method: str, path: str, **kwargs):
        response = requests.request(
            method,
            f"{self.stack.sandbox_url}{path}",
            headers={"X-API-KEY": self.stack.provider_key},
            timeout=300,
            **kwargs,
        )
        response.raise_for_status()
        return response.json()

    def _inbox(self) -> sqlite3.Connection:
        return sqlite3.connect(self.stack.home / "intake" / "inbox.sqlite", timeout=30)

    def _open(self, rate: Rate) -> int:
        marks = ",".join("?" * len(OPEN_STATUSES))
        with self._inbox() as conn:
            return conn.execute(
                f"SELECT COUNT(*) FROM event WHERE call_id >= ? AND call_id < ?"
                f" AND status IN ({marks})",
                (f"prompt-{rate.slug}-", f"prompt-{rate.slug}.", *OPEN_STATUSES),
            ).fetchone()[0]

    def _runs(self) -> int:
        query = '{ runsOrError(filter: {pipelineName: "post_call_job"}) { ... on Runs { count } } }'
        return self.stack.graphql(query)["runsOrError"]["count"]

    def post_call_run_ids(self) -> set[str]:
        query = (
            '{ runsOrError(filter: {pipelineName: "post_call_job"}, limit: 200)'
            " { ... on Runs { results { runId } } } }"
        )
        return {r["runId"] for r in self.stack.graphql(query)["runsOrError"]["results"]}

    def score(self) -> None:
        """Score every load run so far, from the provider's write log and the inbox."""
        read_at = time.time()
        log = self._provider("GET", "/_sandbox/writes")
        with self._inbox() as conn:
            statuses = dict(
                conn.execute(
                    "SELECT call_id, status FROM event"
                    " WHERE call_id >= 'prompt-' AND call_id < 'prompt.'"
                ).fetchall()
            )
        score(self.loads, log, statuses, read_at)


def _contact(rate: Rate, n: int) -> str:
    return f"prompt-contact-{rate.slug}-{n:06d}"


def _together(jobs: list[Callable[[], object]]) -> list:
    """Run `jobs` side by side, each in a thread; their results, or the first error raised."""
    results: list = [None] * len(jobs)
    errors: list[BaseException] = []

    def run(index: int, job: Callable[[], object]) -> None:
        try:
            results[index] = job()
        except BaseException as error:  # noqa: BLE001 - raised again on the caller's thread
            errors.append(error)

    threads = [threading.Thread(target=run, args=(n, job)) for n, job in enumerate(jobs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results


# The processes of an idle stack ---------------------------------------------------------


@dataclass
class Idle:
    window: float
    quiet: float  # seconds without traffic when the window started
    count: Counter = field(default_factory=Counter)  # kind → processes at the window's end
    rss_mb: Counter = field(default_factory=Counter)  # kind → RSS at the window's end
    cpu: Counter = field(default_factory=Counter)  # kind → % of one core over the window
    changes: list[str] = field(default_factory=list)  # processes started or ended meanwhile

    def total(self, kinds: tuple[str, ...]) -> tuple[float, float]:
        return (sum(self.rss_mb[k] for k in kinds), sum(self.cpu[k] for k in kinds))

    def meets(self) -> bool:
        rss, cpu = self.total(COUNTED)
        return self.count[POST_CALL_RUN] > 0 and rss <= IDLE_RSS_GOAL_MB and cpu <= IDLE_CPU_GOAL


def _process_table() -> dict[int, tuple[int, str]]:
    """Every process: pid → (parent pid, command line)."""
    table_ = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue  # ended meanwhile
        # The command name, in parentheses, may hold spaces: the fields follow its last ")".
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        table_[int(entry)] = (parent, cmdline.replace(b"\0", b" ").decode(errors="replace"))
    return table_


def _kind(cmdline: str) -> str:
    if "salesops_pipeline.cli serve" in cmdline:
        return INTAKE
    if "salesops_pipeline.cli sandbox" in cmdline:
        return "sandbox provider"
    if "salesops_pipeline.cli dev" in cmdline:
        return "salesops dev"
    if "dagster._daemon" in cmdline or "dagster-daemon" in cmdline:
        return "Dagster daemon"
    if "dagster_webserver" in cmdline or "dagster-webserver" in cmdline:
        return "Dagster webserver"
    if "api grpc" in cmdline or "code-server" in cmdline or "resource_tracker" in cmdline:
        return "code server"
    if "dagster dev" in cmdline:
        return "dagster dev"
    return "other"


def stack_processes(root: int, post_call_runs: set[str]) -> dict[int, str]:
    """The processes under `root` (the stack's `salesops dev`), pid → kind.

    A run worker is what the code server starts for a run (`dagster api execute_run`, or a
    process it spawns): the job of each is told by its run id, which its compute-log capture
    names. A worker whose run cannot be told counts as a post-call one."""
    processes = _process_table()
    children: dict[int, list[int]] = {}
    for pid, (parent, _) in processes.items():
        children.setdefault(parent, []).append(pid)

    def below(pid: int) -> list[int]:
        found, todo = [], list(children.get(pid, []))
        while todo:
            child = todo.pop()
            found.append(child)
            todo.extend(children.get(child, []))
        return found

    kinds: dict[int, str] = {}
    todo = [root] if root in processes else []
    while todo:
        pid = todo.pop()
        parent, cmdline = processes[pid]
        parent_kind = kinds.get(parent)
        worker = "execute_run" in cmdline or (
            parent_kind == "code server"
            and "multiprocessing-fork" in cmdline
            and "resource_tracker" not in cmdline
        )
        if worker:
            named = " ".join(processes[p][1] for p in below(pid))
            other = "storage/" in named and not any(run in named for run in post_call_runs)
            kinds[pid] = "other run worker" if other else POST_CALL_RUN
            for descendant in below(pid):
                kinds[descendant] = RUN_LOGS if kinds[pid] == POST_CALL_RUN else "other run worker"
            continue
        kinds[pid] = _kind(cmdline)
        todo.extend(children.get(pid, []))
    return kinds


def _sample(pids) -> dict[int, tuple[float, float]]:
    """pid → (CPU seconds used so far, RSS in MB), for those still running."""
    tick = os.sysconf("SC_CLK_TCK")
    found = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        rss_kb = next(
            (int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")),
            0,
        )
        found[pid] = ((int(fields[11]) + int(fields[12])) / tick, rss_kb / 1024)
    return found


def measure_idle(stack: Stack, window: float) -> Idle:
    """The stack's processes by kind: RSS at the end of `window` seconds, CPU over it."""
    root = stack.stack.process.pid
    idle = Idle(window, time.monotonic() - stack.quiet_since)
    before = stack_processes(root, stack.post_call_run_ids())
    first = _sample(before)
    started = time.monotonic()
    time.sleep(window)
    after = stack_processes(root, stack.post_call_run_ids())
    last = _sample(after)
    elapsed = time.monotonic() - started
    for pid, kind in after.items():
        if pid not in last:
            continue
        cpu, rss = last[pid]
        idle.count[kind] += 1
        idle.rss_mb[kind] += rss
        # A process started during the window used all its CPU within it.
        idle.cpu[kind] += (cpu - first.get(pid, (0.0, 0.0))[0]) / elapsed * 100
    for pid in before.keys() - after.keys():
        idle.changes.append(f"a {before[pid]} ended during the window (its CPU not counted)")
    for pid in after.keys() - before.keys():
        idle.changes.append(f"a {after[pid]} started during the window")
    return idle


# The runs -------------------------------------------------------------------------------


def main(scale: int, repeat: int, smoke: bool = False) -> str:
    return _smoke() if smoke else _full(repeat)


def _run_header() -> str:
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    memory = next(
        (
            int(line.split()[1]) / 1024 / 1024
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal:")
        ),
        0.0,
    )
    return (
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, commit {commit or '?'}, {os.cpu_count()} cores,"
        f" {memory:.0f} GiB of memory, Python {sys.version.split()[0]}"
    )


def _smoke() -> str:
    """Ours only, on one stack, at two rates for a few seconds each, and a short idle window:
    the whole path, measured, in about a minute."""
    header = _run_header()
    stack = Stack(OURS, 0, [(rate, rate.seconds) for rate in SMOKE_RATES])
    try:
        stack.start()
        stack.wait_warm()
        for rate in SMOKE_RATES:
            stack.run(rate, rate.seconds, SMOKE_WAIT)
            time.sleep(PAUSE)
        stack.score()
        time.sleep(max(0.0, stack.quiet_since + SMOKE_QUIET - time.monotonic()))
        idle = measure_idle(stack, SMOKE_WINDOW)
    finally:
        stack.stop()
    by_rate = {(load.rate.label, OURS): [load] for load in stack.loads}
    loads = ", ".join(f"{rate.label} for {rate.seconds:g} s" for rate in SMOKE_RATES)
    notes = [
        f"Run: {header}. Smoke: one stack, {loads}; idle measured {SMOKE_QUIET:g} s after the"
        f" last event, over {SMOKE_WINDOW:g} s.",
        *_stack_notes([stack]),
    ]
    return "\n".join(
        [
            _latency_table(
                "Prompt post-call (smoke): post to the provider's write", SMOKE_RATES, by_rate, {}
            ),
            _idle_table("Prompt post-call (smoke): without traffic", [idle]),
            "",
            *(f"- {note}" for note in notes),
        ]
    )


def _full(repeat: int) -> str:
    header = _run_header()
    low_plan = [(rate, scaled(rate.seconds)) for rate in LOW]
    high_plan = [(rate, scaled(rate.seconds)) for rate in HIGH]
    _say(
        f"at most about {_estimate(repeat) / 3600:.1f} h: ours {repeat} run(s) of "
        + ", ".join(f"{rate.label} × {seconds:g} s" for rate, seconds in low_plan + high_plan)
        + f", {scaled(QUIET_SECONDS):g} s quiet, and the baselines"
    )
    loads: dict[tuple[str, str], list[Load]] = {}
    skipped: dict[tuple[str, str], str] = {}
    stagger = min(5.0, 15.0 / repeat)
    # 1. The low rates, mostly waiting: ours' stacks side by side, then kept without traffic
    # and measured idle; then the baselines' low rates, one design at a time.
    low_stacks = [Stack(OURS, n, low_plan) for n in range(repeat)]
    try:
        for stack in low_stacks:
            stack.start()
            stack.wait_warm()
        _together(
            [lambda s=s, k=k: _low(s, k * stagger, OURS_WAIT) for k, s in enumerate(low_stacks)]
        )
        idles = _together([lambda s=s: _idle_after_quiet(s) for s in low_stacks])
    finally:
        for stack in low_stacks:
            stack.stop()
    baseline_low = _baselines_low(repeat, stagger)
    # 2. From 1/s up, one stack alive at a time.
    high_stacks = []
    for n in range(repeat):
        stack = Stack(OURS, n, high_plan)
        high_stacks.append(stack)
        try:
            stack.start()
            stack.wait_warm()
            for rate, seconds in high_plan:
                stack.run(rate, seconds, OURS_WAIT)
                time.sleep(PAUSE)
            stack.score()
        finally:
            stack.stop()
    for stack in low_stacks + high_stacks:
        for load in stack.loads:
            loads.setdefault((load.rate.label, OURS), []).append(load)
    ours_text = _latency_table("Prompt post-call: warm lanes (ours)", RATES, loads, {})
    print(ours_text, file=sys.stderr, flush=True)
    baseline_high = _baselines_high(repeat, loads, skipped, baseline_low)
    for stack in baseline_low:
        for load in stack.loads:
            loads.setdefault((load.rate.label, stack.design), []).append(load)
    notes = [
        f"Run: {header}.",
        f"Loads: ours {', '.join(f'{r.label} × {s:g} s' for r, s in low_plan + high_plan)},"
        f" {PAUSE:g} s apart, each followed by a wait of up to {OURS_WAIT:g} s for its events"
        f" to be final; the baselines the same at 1/min and 1/15 s, and"
        f" {scaled(BASELINE_SECONDS):g} s with a wait of up to {BASELINE_WAIT:g} s from 1/s up,"
        f" {BASELINE_PAUSE:g} s apart so that their runs have stopped before the next load.",
        f"The {repeat} runs of each design ran their 1/min and 1/15 s loads side by side, one"
        f" stack each, their events {stagger:g} s apart, one design at a time; ours' stacks then"
        f" stayed without traffic for {scaled(QUIET_SECONDS):g} s and were measured idle, side"
        " by side, before the baselines started. From 1/s up, one stack was alive at a time, a"
        " fresh one per run of each design.",
        f"Idle: {scaled(QUIET_SECONDS):g} s or more without traffic, then RSS at the end and CPU"
        f" over {IDLE_WINDOW:g} s of each process (utime + stime from /proc).",
        *_stack_notes(low_stacks + high_stacks + baseline_low + baseline_high),
    ]
    _keep(loads, idles)
    return "\n".join(
        [
            _latency_table("Prompt post-call: post to the provider's write", RATES, loads, skipped),
            _idle_table(
                f"Prompt post-call: after {scaled(QUIET_SECONDS) / 60:g} minutes without traffic"
                " (warm lanes)",
                idles,
            ),
            "",
            *(f"- {note}" for note in notes),
        ]
    )


def _low(stack: Stack, offset: float, wait: float) -> None:
    for n, rate in enumerate(LOW):
        stack.run(rate, scaled(rate.seconds), wait, offset if n == 0 else 0.0)
        time.sleep(PAUSE)
    stack.score()


def _idle_after_quiet(stack: Stack) -> Idle:
    time.sleep(max(0.0, stack.quiet_since + scaled(QUIET_SECONDS) - time.monotonic()))
    return measure_idle(stack, IDLE_WINDOW)


def _baselines_low(repeat: int, stagger: float) -> list[Stack]:
    """Each baseline's low rates, its runs side by side, one design after the other."""
    done: list[Stack] = []
    plan = [(rate, scaled(rate.seconds)) for rate in LOW]
    for design in DESIGNS:
        if design == OURS:
            continue
        stacks = [Stack(design, n, plan) for n in range(repeat)]
        try:
            for stack in stacks:
                stack.start()
            _together(
                [lambda s=s, k=k: _low(s, k * stagger, BASELINE_WAIT) for k, s in enumerate(stacks)]
            )
        finally:
            for stack in stacks:
                stack.stop()
        done += stacks
    return done


def _baselines_high(
    repeat: int,
    loads: dict[tuple[str, str], list[Load]],
    skipped: dict[tuple[str, str], str],
    low: list[Stack],
) -> list[Stack]:
    """Each baseline from 1/s up, one stack alive at a time. A design that gives up once behind
    (events open when a wait ended) is not tried at higher rates; the others take their rates
    on one stack per run, started afresh after a load that left events open."""
    done: list[Stack] = []
    for design in DESIGNS:
        if design == OURS:
            continue
        if design in GIVES_UP_WHEN_BEHIND:
            behind_at = next(
                (
                    load.rate.label
                    for stack in low
                    if stack.design == design
                    for load in stack.loads
                    if load.open_at_end
                ),
                None,
            )
            for rate in HIGH:
                if behind_at is not None:
                    skipped[(rate.label, design)] = f"not run (falls behind at {behind_at})"
                    continue
                for n in range(repeat):
                    stack = Stack(design, n, [(rate, scaled(BASELINE_SECONDS))])
                    done.append(stack)
                    try:
                        stack.start()
                        stack.run(rate, scaled(BASELINE_SECONDS), BASELINE_WAIT)
                        stack.score()
                    finally:
                        stack.stop()
                    loads.setdefault((rate.label, design), []).extend(stack.loads)
                if any(load.open_at_end for load in loads[(rate.label, design)]):
                    behind_at = rate.label
            continue
        plan = [(rate, scaled(BASELINE_SECONDS)) for rate in HIGH]
        for n in range(repeat):
            stack: Stack | None = None
            try:
                for rate, seconds in plan:
                    if stack is None:
                        stack = Stack(design, n, plan)
                        done.append(stack)
                        stack.start()
                    load = stack.run(rate, seconds, BASELINE_WAIT)
                    loads.setdefault((rate.label, design), []).append(load)
                    if load.open_at_end:
                        stack.score()
                        stack.stop()
                        stack = None
                    else:
                        time.sleep(BASELINE_PAUSE)
                if stack is not None:
                    stack.score()
            finally:
                if stack is not None:
                    stack.stop()
    return done


def _estimate(repeat: int) -> float:
    """Seconds the whole module takes at most, roughly (a stack starts and stops in about 45 s)."""
    start = 45.0
    low = sum(scaled(rate.seconds) + PAUSE for rate in LOW)
    high = sum(scaled(rate.seconds) + PAUSE + 30 for rate in HIGH)
    ours = repeat * start + low + repeat * (start + high)
    baseline_low = 2 * (repeat * start + low + len(LOW) * 10)
    per_load = scaled(BASELINE_SECONDS) + BASELINE_PAUSE + 15
    baseline_high = repeat * (start + len(HIGH) * per_load) + repeat * (start + per_load)
    return ours + scaled(QUIET_SECONDS) + IDLE_WINDOW + baseline_low + baseline_high


def _stack_notes(stacks: list[Stack]) -> list[str]:
    notes = []
    for stack in stacks:
        behind = [load for load in stack.loads if load.behind > 0.5]
        said = list(stack.notes)
        said += [
            f"posting {load.rate.label} fell up to {load.behind:.1f} s behind its schedule"
            for load in behind
        ]
        said += [
            f"{load.posted - load.accepted} post(s) of {load.rate.label} refused or unanswered"
            for load in stack.loads
            if load.posted > load.accepted
        ]
        said += [
            f"{load.failed} event(s) of {load.rate.label} final without a write"
            for load in stack.loads
            if load.failed
        ]
        if said:
            notes.append(f"{stack.name}: " + "; ".join(said) + ".")
    return notes


def _keep(loads: dict[tuple[str, str], list[Load]], idles: list[Idle]) -> None:
    """The figures of every load and idle measurement, so that a miss can be looked into once
    the stacks are gone."""
    path = cache_dir() / "prompt.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "loads": [load.summary() for runs in loads.values() for load in runs],
        "idle": [
            {
                "quiet": idle.quiet,
                "window": idle.window,
                "count": dict(idle.count),
                "rss_mb": dict(idle.rss_mb),
                "cpu": dict(idle.cpu),
                "changes": idle.changes,
            }
            for idle in idles
        ],
    }
    path.write_text(json.dumps(record, default=str))
    _say(f"figures kept in {path}")


# Tables ---------------------------------------------------------------------------------


def _spread(values: list[float], bound: bool, digits: int = 2, unit: str = " s") -> str:
    mark = ">" if bound else ""
    text = f"{mark}{statistics.median(values):.{digits}f}{unit}"
    if len(values) > 1:
        text += f" ({min(values):.{digits}f}–{max(values):.{digits}f})"
    return text


def _goal(rate: Rate) -> str:
    if rate.p50_goal is None:
        return f"p95 ≤ {rate.p95_goal:g} s" + (", nothing lost" if rate.lossless else "")
    return f"p50 ≤ {rate.p50_goal:g} s, p95 ≤ {rate.p95_goal:g} s"


def _latency_table(
    title: str,
    rates: tuple[Rate, ...],
    loads: dict[tuple[str, str], list[Load]],
    skipped: dict[tuple[str, str], str],
) -> str:
    rows = []
    for rate in rates:
        for design in DESIGNS:
            key = (rate.label, design)
            if key in skipped:
                rows.append([rate.label, design, "–", "0", skipped[key], *["–"] * 7])
                continue
            runs = loads.get(key)
            if not runs:
                continue
            written = [load for load in runs if load.latencies]
            p50 = [load.quantile(0.5) for load in written]
            p95 = [load.quantile(0.95) for load in written]
            met = sum(load.meets() for load in runs)
            verdict = "yes" if _median_meets(rate, runs) else "no"
            if 0 < met < len(runs):
                verdict += f" ({met} of {len(runs)} runs met it)"
            if design != OURS and runs[0].seconds < scaled(rate.seconds):
                verdict += " (shorter load)"
            rows.append(
                [
                    rate.label,
                    design,
                    f"{runs[0].seconds:g} s",
                    str(len(runs)),
                    _spread([v for v, _ in p50], any(b for _, b in p50)) if p50 else "–",
                    _spread([v for v, _ in p95], any(b for _, b in p95)) if p95 else "–",
                    f"{max(v for load in written for v, _ in load.latencies):.2f} s"
                    if written
                    else "–",
                    f"{sum(load.posted for load in runs):,} /"
                    f" {sum(load.written for load in runs):,}",
                    str(sum(load.lost for load in runs)),
                    str(sum(load.twice for load in runs)),
                    _spread([float(load.runs) for load in runs], False, 0, ""),
                    verdict,
                ]
            )
    text = table(
        title + ", median of runs (spread)",
        rows,
        [
            "rate",
            "design",
            "load",
            "runs",
            "p50",
            "p95",
            "max",
            "posted / written",
            "lost",
            "applied twice",
            "post_call_job runs",
            "goal met",
        ],
    )
    goals = "; ".join(f"{rate.label}: {_goal(rate)}" for rate in rates)
    return (
        f"{text}\n\nGoals: {goals}. Latency: from the event's post to the provider's log of its"
        ' write; ">": a lower bound, the percentile falls among events not written when the'
        " wait ended. Lost: accepted, never final."
    )


def _median_meets(rate: Rate, runs: list[Load]) -> bool:
    written = [load for load in runs if load.latencies]
    if len(written) < len(runs):
        return False
    p50 = [load.quantile(0.5) for load in runs]
    p95 = [load.quantile(0.95) for load in runs]
    if any(b for _, b in p95) or statistics.median(v for v, _ in p95) > rate.p95_goal:
        return False
    if rate.p50_goal is not None and (
        any(b for _, b in p50) or statistics.median(v for v, _ in p50) > rate.p50_goal
    ):
        return False
    return not rate.lossless or all(load.written == load.posted for load in runs)


def _idle_table(title: str, idles: list[Idle]) -> str:
    rows = []
    for kind in (*COUNTED, *CONTEXT):
        if not any(idle.count[kind] for idle in idles):
            continue
        rows.append(
            [
                kind,
                "yes" if kind in COUNTED else "no (context)",
                _spread([float(idle.count[kind]) for idle in idles], False, 0, ""),
                _spread([idle.rss_mb[kind] for idle in idles], False, 0, " MB"),
                _spread([idle.cpu[kind] for idle in idles], False, 2, "%"),
                "",
            ]
        )
    counted = [idle.total(COUNTED) for idle in idles]
    met = sum(idle.meets() for idle in idles)
    rss = statistics.median(r for r, _ in counted)
    cpu = statistics.median(c for _, c in counted)
    verdict = "yes" if rss <= IDLE_RSS_GOAL_MB and cpu <= IDLE_CPU_GOAL else "no"
    if not all(idle.count[POST_CALL_RUN] for idle in idles):
        verdict = "no (no warm run found)"
    if 0 < met < len(idles):
        verdict += f" ({met} of {len(idles)} runs met it)"
    rows.append(
        [
            f"**post-call total** (goal ≤ {IDLE_RSS_GOAL_MB:g} MB, ≤ {IDLE_CPU_GOAL:g}%)",
            "yes",
            _spread([float(sum(idle.count[k] for k in COUNTED)) for idle in idles], False, 0, ""),
            _spread([r for r, _ in counted], False, 0, " MB"),
            _spread([c for _, c in counted], False, 2, "%"),
            verdict,
        ]
    )
    everything = [idle.total((*COUNTED, *CONTEXT)) for idle in idles]
    rows.append(
        [
            "whole stack",
            "no (context)",
            _spread(
                [float(sum(idle.count.values())) for idle in idles],
                False,
                0,
                "",
            ),
            _spread([r for r, _ in everything], False, 0, " MB"),
            _spread([c for _, c in everything], False, 2, "%"),
            "",
        ]
    )
    text = table(
        title + ", median of runs (spread)",
        rows,
        ["processes", "counted in the goal", "count", "RSS", "CPU (% of one core)", "goal met"],
    )
    changes = [f"run {n + 1}: {change}" for n, idle in enumerate(idles) for change in idle.changes]
    quiet = ", ".join(f"{idle.quiet:.0f} s" for idle in idles)
    text += (
        f"\n\nMeasured after this long without traffic, run by run: {quiet}; RSS at the end of a"
        f" {idles[0].window:g} s window, CPU over it."
    )
    if changes:
        text += " During the window: " + "; ".join(changes) + "."
    return text
