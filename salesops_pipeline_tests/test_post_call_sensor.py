"""post_call_sensor through build_sensor_context: skipping, requesting bounded batches with
keys derived from their events, advancing the cursor, and queuing due retries again."""

import json
from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest

from salesops_pipeline.constants import POST_CALL_BATCH_SIZE
from salesops_pipeline.post_call.inbox import STALE_AFTER, Inbox
from salesops_pipeline.resources import InboxResource
from salesops_pipeline.sensors import MAX_RUNS_PER_TICK, post_call_sensor


@pytest.fixture
def inbox(tmp_path):
    return Inbox(tmp_path / "inbox.sqlite")


def _tick(inbox, cursor=None):
    context = dg.build_sensor_context(
        cursor=cursor, resources={"inbox": InboxResource(path=str(inbox.path))}
    )
    return post_call_sensor(context)


def _accept(inbox, n, start=0):
    for i in range(start, start + n):
        inbox.accept(f"call-{i}", json.dumps({"callId": f"call-{i}", "contactId": "c"}))


def test_skips_when_nothing_is_new(inbox):
    result = _tick(inbox)
    assert isinstance(result, dg.SkipReason)
    assert "no new post-call events" in result.skip_message


def test_requests_one_run_for_new_events_and_advances_the_cursor(inbox):
    _accept(inbox, 3)
    result = _tick(inbox)
    [request] = result.run_requests
    assert request.run_key == "post-call-1-3"
    assert request.run_config["ops"]["apply_post_call_events"]["config"] == {
        "first_seq": 1,
        "last_seq": 3,
    }
    assert result.cursor == "3"
    assert isinstance(_tick(inbox, cursor=result.cursor), dg.SkipReason)
    _accept(inbox, 1, start=3)
    [next_request] = _tick(inbox, cursor=result.cursor).run_requests
    assert next_request.run_key == "post-call-4-4"


def test_batches_are_bounded(inbox):
    _accept(inbox, POST_CALL_BATCH_SIZE * 2 + 5)
    result = _tick(inbox)
    sizes = [
        r.run_config["ops"]["apply_post_call_events"]["config"]["last_seq"]
        - r.run_config["ops"]["apply_post_call_events"]["config"]["first_seq"]
        + 1
        for r in result.run_requests
    ]
    assert sizes == [POST_CALL_BATCH_SIZE, POST_CALL_BATCH_SIZE, 5]
    assert len({r.run_key for r in result.run_requests}) == 3


def test_one_tick_is_bounded_too(inbox):
    _accept(inbox, POST_CALL_BATCH_SIZE * MAX_RUNS_PER_TICK + 1)
    first = _tick(inbox)
    assert len(first.run_requests) == MAX_RUNS_PER_TICK
    [rest] = _tick(inbox, cursor=first.cursor).run_requests
    assert rest.run_key.endswith(f"-{POST_CALL_BATCH_SIZE * MAX_RUNS_PER_TICK + 1}")


def test_due_retry_is_queued_again_under_a_new_key(inbox):
    _accept(inbox, 1)
    first = _tick(inbox)
    inbox.claim("call-0", "run-1")
    inbox.finish("call-0", status="retrying", decision="d", writes=[], error="503")
    assert isinstance(_tick(inbox, cursor=first.cursor), dg.SkipReason)  # not due yet
    inbox.requeue_due(now=datetime.now(UTC) + timedelta(hours=2))
    [retry] = _tick(inbox, cursor=first.cursor).run_requests
    assert retry.run_key == "post-call-2-2" != first.run_requests[0].run_key


def test_event_whose_run_never_finished_is_queued_again(inbox):
    _accept(inbox, 1)
    first = _tick(inbox)
    assert inbox.requeue_due(now=datetime.now(UTC) + STALE_AFTER + timedelta(seconds=1)) == 1
    assert _tick(inbox, cursor=first.cursor).run_requests[0].run_key == "post-call-2-2"


def test_reset_inbox_restarts_the_cursor(inbox):
    _accept(inbox, 2)
    [request] = _tick(inbox, cursor="500").run_requests
    assert request.run_key == "post-call-1-2"
