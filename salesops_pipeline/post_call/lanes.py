"""Post-call work spread over lanes, each drained by one run at a time.

Every event of a contact falls in the same lane (a hash of its contactId), so a contact's
calls are always handled by one run, oldest first, while the lanes run side by side. A run
does not stop at the events it was started for: it keeps taking what its lane receives until
the lane has been idle for a while, so that under load an event waits for an open run rather
than for a new one to start. The inbox's contract (one write per event, newest call wins,
transfers chosen under its lock) holds whatever the lanes do: they only spare start-ups.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass

from salesops_pipeline.post_call.processor import Outcome, PostCallProcessor


@dataclass(frozen=True)
class LaneSettings:
    lanes: int = 4
    # Queue entries read per pass: a pass's events are ordered by call time, then handled.
    batch: int = 200
    # A run stops once its lane has received nothing for this long; 0: after one pass.
    idle_seconds: float = 20.0
    # And after this long in any case, so that each run stays a readable unit in the UI.
    max_seconds: float = 600.0
    poll_seconds: float = 0.2


def drain_lane(
    processor: PostCallProcessor,
    lane: int,
    settings: LaneSettings,
    on_batch: Callable[[list[Outcome], int], None] = lambda outcomes, position: None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> list[Outcome]:
    """Handle the open events of `lane` pass after pass, recording how far the lane has read,
    until it has been idle for `idle_seconds` or has run `max_seconds`. `on_batch` gets each
    pass's outcomes and the queue position reached."""
    inbox = processor.inbox
    position = inbox.lane_position(lane, settings.lanes)
    started = last_work = clock()
    outcomes: list[Outcome] = []
    while True:
        call_ids, read_to = inbox.open_in_lane(lane, settings.lanes, position, settings.batch)
        now = clock()
        if read_to is None:
            if now - last_work >= settings.idle_seconds:
                return outcomes
            sleep(settings.poll_seconds)
        else:
            batch = [processor.process(call_id) for call_id in processor.in_call_order(call_ids)]
            # Recorded once the pass is handled: a run that dies mid-pass leaves its events to
            # the next run of the lane, besides the release of its leases.
            inbox.advance_lane(lane, settings.lanes, read_to)
            position = read_to
            outcomes.extend(batch)
            if batch:
                on_batch(batch, position)
            last_work = clock()
            if settings.idle_seconds == 0:
                return outcomes
        if clock() - started >= settings.max_seconds:
            return outcomes
