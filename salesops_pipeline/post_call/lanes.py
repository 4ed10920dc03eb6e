"""Post-call work spread over lanes, the lanes over runs.

Every event of a contact falls in the same lane (a hash of its contactId), so a contact's
calls are always handled by one thread of one run, oldest first, while the lanes run side by
side. A run drains a group of lanes, one thread each (all of them by default: one process
holds them all, so that a warm run costs one process, not one per lane).

A run does not stop at the events it was started for. Within the warm hours it stays open,
events or not; outside them it stops once all its lanes have been idle for a while. A lane
with nothing to do sleeps until the inbox changes (`LaneWake`), so a warm run takes an event
within a fraction of a second and costs next to nothing while it waits.

A run that has been open for `max_seconds` hands its lanes over: it asks for a successor and
keeps draining until the successor has started, so that no event waits for a run to start.

The inbox's contract (one write per event, newest call wins, transfers chosen under its lock)
holds whatever the lanes and runs do: they only spare start-ups.
"""

import contextlib
import math
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from salesops_pipeline import settings as env
from salesops_pipeline.errors import SettingError
from salesops_pipeline.post_call.processor import Outcome, PostCallProcessor
from salesops_pipeline.post_call.warm import NEVER, WarmHours

NEVER_WARM = WarmHours.parse(NEVER)
# The shipped run queue starts 8 runs at once; warm runs need two slots each while they hand
# over, and the other jobs need the rest.
MAX_RUNS = 4
MAX_LANES = 64


@dataclass(frozen=True)
class LaneSettings:
    lanes: int = 4
    # How many runs the lanes are spread over: run g drains the lanes l with l % runs == g.
    runs: int = 1
    # Queue entries read per pass: a pass's events are ordered by call time, then handled.
    batch: int = 200
    # Outside the warm hours, a run stops once its lanes have received nothing for this long;
    # 0: after one pass.
    idle_seconds: float = 20.0
    # A run hands its lanes to a successor after this long, so that each run stays a readable
    # unit in the UI (an hour of a working day). Each handover starts a process: a few seconds
    # of CPU an hour.
    max_seconds: float = 3600.0
    warm_hours: WarmHours = field(default=NEVER_WARM)
    # How often an idle lane's watch of the inbox looks for a change (SQLite); PostgreSQL
    # wakes it with a notification.
    wake_poll_seconds: float = 0.025
    # An idle lane looks at the inbox at least this often, whatever its watch says.
    wake_fallback_seconds: float = 1.0

    def __post_init__(self):
        problems = []
        if not (isinstance(self.lanes, int) and self.lanes >= 1):
            problems.append(f"lanes must be a whole number of at least 1 (got {self.lanes!r})")
        if not (isinstance(self.runs, int) and 1 <= self.runs <= max(self.lanes, 1)):
            problems.append(
                f"runs must be a whole number from 1 to the number of lanes, {self.lanes}"
                f" (got {self.runs!r})"
            )
        elif self.runs > MAX_RUNS:
            problems.append(
                f"runs must be at most {MAX_RUNS} (got {self.runs}): each run holds a slot of"
                " the run queue (8 runs at once) through the warm hours, and a second one"
                " while it hands over"
            )
        if isinstance(self.lanes, int) and self.lanes > MAX_LANES:
            problems.append(f"lanes must be at most {MAX_LANES}, a thread each (got {self.lanes})")
        if not (isinstance(self.batch, int) and self.batch >= 1):
            problems.append(f"batch must be a whole number of at least 1 (got {self.batch!r})")
        for name in ("idle_seconds", "max_seconds", "wake_poll_seconds", "wake_fallback_seconds"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                problems.append(f"{name} must be a finite number of at least 0 (got {value!r})")
        if not problems:
            if self.max_seconds <= self.idle_seconds:
                problems.append(
                    f"idle_seconds ({self.idle_seconds:g}) must be shorter than a run's"
                    f" {self.max_seconds:g} s (max_seconds)"
                )
            if self.idle_seconds == 0 and not self.warm_hours.never:
                problems.append(
                    "idle_seconds 0 (one pass per run) cannot keep runs warm: set the warm"
                    " hours to 'never', or let runs linger"
                )
            if self.wake_poll_seconds <= 0 or self.wake_fallback_seconds <= 0:
                problems.append("the wake intervals must be more than 0")
        if problems:
            raise SettingError("post-call lanes: " + "; ".join(problems))

    def groups(self) -> list[tuple[int, ...]]:
        """The lanes of each run, run by run."""
        return [
            tuple(lane for lane in range(self.lanes) if lane % self.runs == g)
            for g in range(self.runs)
        ]


HANDING_OVER = ":handing-over"


def group_name(lanes: tuple[int, ...] | list[int]) -> str:
    """How a run's lanes are named in its tags and keys: `2`, or `0,1,2,3`."""
    return ",".join(str(lane) for lane in lanes)


def handed_over(group: str) -> str:
    """The lane tag of a run that is handing its lanes to a successor."""
    return f"{group}{HANDING_OVER}"


def draining_lanes(tag: str | None) -> frozenset[int]:
    """The lanes a run with this lane tag drains for good: none while it hands them over."""
    if not tag or tag.endswith(HANDING_OVER):
        return frozenset()
    return frozenset(int(lane) for lane in tag.split(",") if lane.isdigit())


def configured_lane_settings(
    *,
    lanes: int | None = None,
    runs: int | None = None,
    batch: int | None = None,
    idle_seconds: float | None = None,
    max_seconds: float | None = None,
    warm_hours: str | None = None,
) -> LaneSettings:
    """The lane settings from the environment (SALESOPS_POST_CALL_*), each overridden where
    given. Settings that make no sense together raise SettingError naming them."""
    try:
        return LaneSettings(
            lanes=env.post_call_lanes() if lanes is None else lanes,
            runs=env.post_call_runs() if runs is None else runs,
            batch=env.post_call_batch() if batch is None else batch,
            idle_seconds=env.post_call_idle_seconds() if idle_seconds is None else idle_seconds,
            max_seconds=env.post_call_run_seconds() if max_seconds is None else max_seconds,
            warm_hours=WarmHours.parse(
                warm_hours if warm_hours is not None else env.post_call_warm_hours(),
                setting=env.POST_CALL_WARM_HOURS_ENV,
            ),
        )
    except SettingError as error:
        raise SettingError(
            f"{error} (SALESOPS_POST_CALL_LANES, _RUNS, _BATCH, _IDLE_SECONDS, _RUN_SECONDS,"
            " _WARM_HOURS)"
        ) from None


class LaneWake:
    """Wakes a run's idle lanes when the inbox changes.

    One thread watches the inbox (`Inbox.changes`) and counts the changes it sees; a lane
    notes the count before it reads its queue, and sleeps only while the count is the same,
    so that nothing queued after its read goes unseen. A watch that fails is opened again;
    meanwhile the lanes look every `fallback` seconds.
    """

    def __init__(self, open_watch: Callable[[], object] | None, fallback: float):
        self._open_watch = open_watch
        self._fallback = fallback
        self._count = 0
        self._changed = threading.Condition()
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> "LaneWake":
        if self._open_watch is not None:
            self._thread = threading.Thread(target=self._watch, name="post-call-wake", daemon=True)
            self._thread.start()
        return self

    def close(self) -> None:
        self._closed.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def count(self) -> int:
        with self._changed:
            return self._count

    def nudge(self) -> None:
        with self._changed:
            self._count += 1
            self._changed.notify_all()

    def wait(self, seen: int, timeout: float) -> None:
        """Sleep until the count moves past `seen`, for at most `timeout` seconds."""
        with self._changed:
            self._changed.wait_for(
                lambda: self._count != seen or self._closed.is_set(),
                timeout=min(max(timeout, 0.0), self._fallback),
            )

    def _watch(self) -> None:
        watch = None
        while not self._closed.is_set():
            try:
                if watch is None:
                    watch = self._open_watch()
                if watch.wait(0.5):
                    self.nudge()
            except Exception:  # noqa: BLE001 - the lanes fall back to looking every second
                if watch is not None:
                    with contextlib.suppress(Exception):  # already broken
                        watch.close()
                watch = None
                self._closed.wait(self._fallback)
        if watch is not None:
            watch.close()


def _utcnow() -> datetime:
    return datetime.now(UTC)


def drain_lane(
    processor: PostCallProcessor,
    lane: int,
    settings: LaneSettings,
    on_batch: Callable[[list[Outcome], int], None] = lambda outcomes, position: None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    *,
    wake: LaneWake | None = None,
    stop: threading.Event | None = None,
    now: Callable[[], datetime] = _utcnow,
) -> list[Outcome]:
    """Handle the open events of `lane` pass after pass, recording how far the lane has read.
    `on_batch` gets each pass's outcomes and the queue position reached.

    On its own, it stops once the lane has been idle for `idle_seconds` outside the warm
    hours, or has run `max_seconds`. Within a run (`stop` given) the run decides when its
    lanes stop, and the lane goes on until `stop` is set; `idle_seconds` 0 still makes one
    pass. An idle lane sleeps on `wake` when given, else for `wake_poll_seconds`."""
    inbox = processor.inbox
    position = inbox.lane_position(lane, settings.lanes)
    started = last_work = clock()
    outcomes: list[Outcome] = []
    while stop is None or not stop.is_set():
        seen = wake.count() if wake is not None else 0
        call_ids, read_to = inbox.open_in_lane(lane, settings.lanes, position, settings.batch)
        if read_to is None:
            if settings.idle_seconds == 0:
                return outcomes
            # Positions never go back, except in an inbox made anew (a reset): read from
            # where that one stands.
            position = min(position, inbox.lane_position(lane, settings.lanes))
            if (
                stop is None
                and clock() - last_work >= settings.idle_seconds
                and not settings.warm_hours.contains(now())
            ):
                return outcomes
            if wake is not None:
                wake.wait(seen, settings.wake_fallback_seconds)
            else:
                sleep(settings.wake_poll_seconds)
        else:
            batch = [processor.process(call_id) for call_id in processor.in_call_order(call_ids)]
            # Recorded once the pass is handled: a run that dies mid-pass leaves its events to
            # the next run of the lane, besides the release of its leases.
            inbox.advance_lane(lane, settings.lanes, read_to)
            position = read_to
            if stop is None:
                # Within a run the outcomes go to `on_batch` only: a warm run's memory stays
                # flat however many events it takes.
                outcomes.extend(batch)
            if batch:
                on_batch(batch, position)
            last_work = clock()
            if settings.idle_seconds == 0:
                return outcomes
        if stop is None and clock() - started >= settings.max_seconds:
            return outcomes
    return outcomes


@dataclass
class Handover:
    """How a run that has been open for `max_seconds` gives its lanes to the next one:
    `retire()` lets the orchestrator start a successor (False: it cannot, and the run stops),
    `successor_ready()` says when the successor has started handling events."""

    retire: Callable[[], bool]
    successor_ready: Callable[[], bool]


def drain_lanes(
    processors: dict[int, PostCallProcessor],
    settings: LaneSettings,
    on_batch: Callable[[list[tuple[int, list[Outcome], int]]], None],
    *,
    wake: LaneWake | None = None,
    handover: Handover | None = None,
    on_tick: Callable[[], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    now: Callable[[], datetime] = _utcnow,
    tick: float = 0.5,
) -> Counter:
    """Drain each lane of `processors` (lane → its processor) in a thread of its own until the
    run should stop, and return how many events ended in each status.

    The run stops once all its lanes have been idle for `idle_seconds` outside the warm hours
    (after one pass each when it is 0), or, once open for `max_seconds`, when its successor
    has started (`handover`; without one, at `max_seconds`). `on_batch` is called on this
    thread, the caller's, with the passes that ended since its last call, each as (lane,
    outcomes, queue position reached), and `on_tick` (if given) about every `tick` seconds, for
    what is due with time rather than with events. A lane that fails stops the others, and its
    error is raised here once they have stopped."""
    stop = threading.Event()
    passes: queue.Queue = queue.Queue()
    errors: list[BaseException] = []

    def run_lane(lane: int, processor: PostCallProcessor) -> None:
        try:
            with processor:
                drain_lane(
                    processor,
                    lane,
                    settings,
                    on_batch=lambda outcomes, position: passes.put((lane, outcomes, position)),
                    clock=clock,
                    wake=wake,
                    stop=stop,
                    now=now,
                )
        except BaseException as error:  # noqa: BLE001 - raised again on the caller's thread
            errors.append(error)
            stop.set()
        finally:
            passes.put(None)

    threads = [
        threading.Thread(target=run_lane, args=(lane, processor), name=f"post-call-lane-{lane}")
        for lane, processor in sorted(processors.items())
    ]
    counts: Counter = Counter()
    started = last_work = next_look = clock()
    retiring = False
    running = 0
    try:
        for thread in threads:
            thread.start()
            running += 1
        while running:
            try:
                items = [passes.get(timeout=tick)]
            except queue.Empty:
                items = []
            # Every pass that ended meanwhile is reported at once: under load the report keeps
            # up with the lanes however many passes they make.
            while items and not passes.empty():
                items.append(passes.get_nowait())
            running -= items.count(None)
            done = [item for item in items if item]
            if done:
                for _, batch, _ in done:
                    counts.update(o.status for o in batch)
                last_work = clock()
                on_batch(done)
            if on_tick is not None:
                on_tick()
            if stop.is_set():
                continue
            if (
                settings.idle_seconds > 0
                and clock() - last_work >= settings.idle_seconds
                and not settings.warm_hours.contains(now())
            ):
                stop.set()
            elif clock() - started >= settings.max_seconds:
                if handover is None:
                    stop.set()
                elif not retiring:
                    retiring = True
                    if not handover.retire():
                        stop.set()
                elif clock() >= next_look:
                    next_look = clock() + tick
                    if handover.successor_ready():
                        stop.set()
    finally:
        stop.set()
        for thread in threads:
            if thread.is_alive():
                thread.join()
    done = []
    while not passes.empty():
        item = passes.get_nowait()
        if item:
            done.append(item)
    if done:
        for _, batch, _ in done:
            counts.update(o.status for o in batch)
        on_batch(done)
    if errors:
        raise errors[0]
    return counts
