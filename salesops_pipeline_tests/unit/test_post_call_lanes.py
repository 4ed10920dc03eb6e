"""Post-call lanes, without Dagster: a contact's events always fall in the same lane, a run
drains only its lane, takes the events that arrive while it runs, records how far it has read,
and stops once idle (after one pass when it may not linger) or after its time limit."""

import json
import threading
import time
from datetime import UTC, datetime

import pytest

from salesops_pipeline.post_call.inbox import Inbox, lane_key, lane_of
from salesops_pipeline.post_call.lanes import (
    Handover,
    LaneSettings,
    LaneWake,
    drain_lane,
    drain_lanes,
)
from salesops_pipeline.post_call.processor import Outcome
from salesops_pipeline.post_call.status import EventStatus
from salesops_pipeline.post_call.warm import WarmHours


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class Recorder:
    """Stands for the processor: claims each event, marks it applied, remembers the order."""

    def __init__(self, inbox: Inbox, arrivals=None):
        self.inbox = inbox
        self.handled: list[str] = []
        # Events that arrive while the run is handling, keyed by how many were handled before.
        self.arrivals = arrivals or {}

    def in_call_order(self, call_ids):
        return list(call_ids)

    def process(self, call_id: str) -> Outcome:
        assert self.inbox.claim(call_id, "run") is not None
        self.inbox.finish(call_id, "run", status=EventStatus.APPLIED, decision="d", writes=[])
        self.handled.append(call_id)
        for arriving in self.arrivals.pop(len(self.handled), []):
            _accept(self.inbox, *arriving)
        return Outcome(call_id, EventStatus.APPLIED, "d")


def _payload(call_id: str, contact: str) -> str:
    return json.dumps({"callId": call_id, "contactId": contact})


def _accept(inbox: Inbox, call_id: str, contact: str) -> None:
    inbox.accept(call_id, _payload(call_id, contact))


def _contacts_by_lane(lanes: int) -> dict[int, str]:
    found: dict[int, str] = {}
    for n in range(1000):
        found.setdefault(lane_of(lane_key(_payload("x", f"c{n}")), lanes), f"c{n}")
    return found


@pytest.fixture
def inbox(any_inbox):
    return any_inbox


def test_a_contacts_events_always_share_a_lane():
    for lanes in (1, 2, 4, 7):
        keys = {lane_key(_payload(f"call-{n}", "contact-42")) for n in range(20)}
        assert len(keys) == 1 and 0 <= lane_of(keys.pop(), lanes) < lanes
    spread = {lane_of(lane_key(_payload("x", f"c{n}")), 4) for n in range(200)}
    assert spread == {0, 1, 2, 3}


def test_a_run_drains_its_lane_only_and_records_how_far(inbox):
    contacts = _contacts_by_lane(2)
    for n in range(3):
        _accept(inbox, f"mine-{n}", contacts[0])
        _accept(inbox, f"other-{n}", contacts[1])
    clock = FakeClock()
    recorder = Recorder(inbox)
    settings = LaneSettings(lanes=2, idle_seconds=1)
    drain_lane(recorder, 0, settings, clock=clock, sleep=clock.sleep)
    assert recorder.handled == ["mine-0", "mine-1", "mine-2"]
    assert inbox.lane_position(0, 2) == 5  # the last entry of lane 0 in the queue
    assert inbox.get("other-0").status == EventStatus.PENDING
    assert inbox.lanes_with_work(2) == {1: 6}


def test_events_arriving_while_it_runs_are_taken_by_the_same_run(inbox):
    contact = _contacts_by_lane(1)[0]
    _accept(inbox, "first", contact)
    recorder = Recorder(inbox, arrivals={1: [("second", contact)], 2: [("third", contact)]})
    clock = FakeClock()
    passes = []
    drain_lane(
        recorder,
        0,
        LaneSettings(lanes=1, idle_seconds=5),
        on_batch=lambda outcomes, position: passes.append((len(outcomes), position)),
        clock=clock,
        sleep=clock.sleep,
    )
    assert recorder.handled == ["first", "second", "third"]
    assert passes == [(1, 1), (1, 2), (1, 3)]
    assert clock.now >= 5  # it stopped once idle for idle_seconds


def test_without_lingering_a_run_makes_one_pass(inbox):
    contact = _contacts_by_lane(1)[0]
    for n in range(5):
        _accept(inbox, f"call-{n}", contact)
    recorder = Recorder(inbox)
    drain_lane(recorder, 0, LaneSettings(lanes=1, idle_seconds=0, batch=2))
    assert recorder.handled == ["call-0", "call-1"]
    assert inbox.lane_position(0, 1) == 2
    assert inbox.lanes_with_work(1) == {0: 5}


def test_a_busy_lane_still_ends_its_run_at_the_time_limit(inbox):
    contact = _contacts_by_lane(1)[0]
    _accept(inbox, "call-0", contact)

    class Endless(Recorder):
        def process(self, call_id):
            clock.now += 10
            _accept(self.inbox, f"call-{len(self.handled) + 1}", contact)
            return super().process(call_id)

    clock = FakeClock()
    recorder = Endless(inbox)
    drain_lane(recorder, 0, LaneSettings(lanes=1, max_seconds=30), clock=clock, sleep=clock.sleep)
    assert len(recorder.handled) == 3


def test_a_replayed_final_event_is_handed_to_a_run_to_record_it(inbox):
    contact = _contacts_by_lane(1)[0]
    _accept(inbox, "call-0", contact)
    drain_lane(Recorder(inbox), 0, LaneSettings(lanes=1, idle_seconds=0))
    assert inbox.lanes_with_work(1) == {}
    assert inbox.replay("call-0")
    assert inbox.lanes_with_work(1) == {0: 2}
    assert inbox.open_in_lane(0, 1, inbox.lane_position(0, 1), 10) == (["call-0"], 2)


# Runs of several lanes, each in a thread, woken by the inbox ----------------------------------


class SlowRecorder(Recorder):
    """A processor whose handling takes a while, as a provider's answer does."""

    def __init__(self, inbox, seconds=0.0, fail_on=None):
        super().__init__(inbox)
        self.seconds, self.fail_on = seconds, fail_on
        self.threads: set[str] = set()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None

    def process(self, call_id):
        self.threads.add(threading.current_thread().name)
        if call_id == self.fail_on:
            raise RuntimeError("the provider's client broke")
        time.sleep(self.seconds)
        return super().process(call_id)


def _wake(inbox) -> LaneWake:
    # A fallback far longer than any test waits: only the inbox's own signal wakes a lane.
    return LaneWake(lambda: inbox.changes(0.01), fallback=30.0).start()


def test_an_idle_lane_wakes_on_the_inbox_not_on_its_fallback(inbox):
    watch = inbox.changes(0.01)
    try:
        assert watch.wait(0.2) is False
        reopened_inbox = Inbox(inbox.path) if inbox.url is None else Inbox(url=inbox.url)
        _accept(reopened_inbox, "call-0", _contacts_by_lane(1)[0])
        assert watch.wait(5.0) is True
        assert watch.wait(0.1) is False
    finally:
        watch.close()


def test_a_run_drains_each_of_its_lanes_in_its_own_thread_until_idle(inbox):
    contacts = _contacts_by_lane(2)
    for n in range(3):
        _accept(inbox, f"zero-{n}", contacts[0])
        _accept(inbox, f"one-{n}", contacts[1])
    processors = {0: SlowRecorder(inbox, 0.05), 1: SlowRecorder(inbox, 0.05)}
    passes = []
    wake = _wake(inbox)
    try:
        counts = drain_lanes(
            processors,
            LaneSettings(lanes=2, idle_seconds=0.5),
            lambda done: passes.extend((lane, [o.call_id for o in b]) for lane, b, _ in done),
            wake=wake,
        )
    finally:
        wake.close()
    assert processors[0].handled == ["zero-0", "zero-1", "zero-2"]
    assert processors[1].handled == ["one-0", "one-1", "one-2"]
    assert processors[0].threads == {"post-call-lane-0"}
    assert processors[1].threads == {"post-call-lane-1"}
    assert sorted(passes) == [(0, ["zero-0", "zero-1", "zero-2"]), (1, ["one-0", "one-1", "one-2"])]
    assert counts == {EventStatus.APPLIED: 6}
    assert inbox.lanes_with_work(2) == {}


def test_within_warm_hours_a_run_stays_open_and_takes_a_late_event_at_once(inbox):
    contacts = _contacts_by_lane(2)
    processors = {0: SlowRecorder(inbox), 1: SlowRecorder(inbox)}
    settings = LaneSettings(lanes=2, idle_seconds=0.2, warm_hours=WarmHours.parse("08:00-20:00"))
    # Paris time: 10:00 in January, then 20:00.
    moment = {"now": datetime(2026, 1, 15, 9, 0, tzinfo=UTC)}
    taken = {}
    wake = _wake(inbox)
    runner = threading.Thread(
        target=drain_lanes,
        args=(
            processors,
            settings,
            lambda done: taken.update({lane: time.monotonic() for lane, _, _ in done}),
        ),
        kwargs={"wake": wake, "now": lambda: moment["now"], "tick": 0.05},
    )
    runner.start()
    try:
        time.sleep(1.0)  # five times idle_seconds
        assert runner.is_alive()
        posted = time.monotonic()
        _accept(inbox, "late", contacts[1])
        deadline = time.monotonic() + 10
        while 1 not in taken and time.monotonic() < deadline:
            time.sleep(0.01)
        assert processors[1].handled == ["late"]
        # Woken by the inbox: far sooner than the lanes' 30 s fallback.
        assert taken[1] - posted < 5
        # Past the warm hours, the run stops once its lanes are idle.
        moment["now"] = datetime(2026, 1, 15, 19, 0, tzinfo=UTC)
        runner.join(timeout=10)
        assert not runner.is_alive()
    finally:
        wake.close()
        moment["now"] = datetime(2026, 1, 15, 19, 0, tzinfo=UTC)
        runner.join(timeout=10)


def test_at_its_time_limit_a_run_hands_over_and_drains_until_its_successor_has_started(inbox):
    contact = _contacts_by_lane(1)[0]
    calls = []
    ready = threading.Event()
    handover = Handover(
        retire=lambda: calls.append("retire") or True,
        successor_ready=lambda: calls.append("asked") or ready.is_set(),
    )
    processors = {0: SlowRecorder(inbox)}
    settings = LaneSettings(
        lanes=1, idle_seconds=0.1, max_seconds=0.3, warm_hours=WarmHours.parse("always")
    )
    wake = _wake(inbox)
    runner = threading.Thread(
        target=drain_lanes,
        args=(processors, settings, lambda *_: None),
        kwargs={"wake": wake, "handover": handover, "tick": 0.05},
    )
    runner.start()
    try:
        deadline = time.monotonic() + 10
        while "retire" not in calls and time.monotonic() < deadline:
            time.sleep(0.01)
        assert calls[:1] == ["retire"]
        # Retired, it still takes its lanes' events while the successor starts.
        _accept(inbox, "while-handing-over", contact)
        while not processors[0].handled and time.monotonic() < deadline:
            time.sleep(0.01)
        assert processors[0].handled == ["while-handing-over"]
        assert runner.is_alive()
        ready.set()
        runner.join(timeout=5)
        assert not runner.is_alive()
        assert calls.count("retire") == 1
    finally:
        ready.set()
        wake.close()
        runner.join(timeout=5)


def test_a_run_that_cannot_hand_over_stops_at_its_time_limit(inbox):
    settings = LaneSettings(
        lanes=1, idle_seconds=0.1, max_seconds=0.3, warm_hours=WarmHours.parse("always")
    )
    began = time.monotonic()
    drain_lanes(
        {0: SlowRecorder(inbox)},
        settings,
        lambda *_: None,
        handover=Handover(retire=lambda: False, successor_ready=lambda: False),
        tick=0.05,
    )
    assert time.monotonic() - began < 5


def test_a_lane_that_fails_stops_the_others_and_fails_the_run(inbox):
    contacts = _contacts_by_lane(2)
    _accept(inbox, "breaks", contacts[0])
    processors = {0: SlowRecorder(inbox, fail_on="breaks"), 1: SlowRecorder(inbox)}
    settings = LaneSettings(lanes=2, idle_seconds=0.2, warm_hours=WarmHours.parse("always"))
    with pytest.raises(RuntimeError, match="the provider's client broke"):
        drain_lanes(processors, settings, lambda *_: None, tick=0.05)
    assert inbox.lanes_with_work(2) == {0: 1}  # not read past: the next run takes it


def test_a_lane_tag_names_the_lanes_a_run_drains_for_good():
    from salesops_pipeline.post_call.lanes import draining_lanes, group_name, handed_over

    assert draining_lanes(group_name([0, 1, 2, 3])) == {0, 1, 2, 3}
    assert draining_lanes("2") == {2}
    # A run handing its lanes over drains them for the moment only: no successor.
    assert draining_lanes(handed_over("0,1,2,3")) == frozenset()
    assert draining_lanes(None) == draining_lanes("") == frozenset()
