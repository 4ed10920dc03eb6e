"""Post-call lanes, without Dagster: a contact's events always fall in the same lane, a run
drains only its lane, takes the events that arrive while it runs, records how far it has read,
and stops once idle (after one pass when it may not linger) or after its time limit."""

import json

import pytest

from salesops_pipeline.post_call.inbox import Inbox, lane_key, lane_of
from salesops_pipeline.post_call.lanes import LaneSettings, drain_lane
from salesops_pipeline.post_call.processor import Outcome
from salesops_pipeline.post_call.status import EventStatus


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
