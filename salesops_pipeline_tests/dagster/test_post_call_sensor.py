"""post_call_sensor through build_sensor_context: skipping, requesting bounded batches with
keys derived from their queue positions and the inbox's epoch, advancing the cursor, queuing
due retries again, and releasing at once the events of workers that died."""

import json
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest

from salesops_pipeline.assets.constants import POST_CALL_BATCH_SIZE
from salesops_pipeline.assets.post_call import (
    MAX_RUNS_PER_TICK,
    WORKERLESS_RUN_GRACE_SECONDS,
    post_call_job,
    post_call_sensor,
)
from salesops_pipeline.post_call.inbox import MAX_CRASHES, STALE_AFTER, Inbox, Worker
from salesops_pipeline.resources import InboxResource


@pytest.fixture
def inbox(tmp_path):
    return Inbox(tmp_path / "inbox.sqlite")


def _tick(inbox, cursor=None, instance=None):
    context = dg.build_sensor_context(
        cursor=cursor,
        resources={"inbox": InboxResource(path=str(inbox.path))},
        instance=instance or dg.DagsterInstance.ephemeral(),
    )
    return post_call_sensor(context)


def _skipped(result) -> bool:
    return not result.run_requests and result.skip_reason is not None


def _accept(inbox, n, start=0):
    for i in range(start, start + n):
        inbox.accept(f"call-{i}", json.dumps({"callId": f"call-{i}", "contactId": "c"}))


def test_skips_when_nothing_is_new(inbox):
    result = _tick(inbox)
    assert _skipped(result)
    assert "no new post-call events" in result.skip_reason.skip_message


def test_requests_one_run_for_new_events_and_advances_the_cursor(inbox):
    _accept(inbox, 3)
    epoch = inbox.epoch()
    result = _tick(inbox)
    [request] = result.run_requests
    assert request.run_key == f"post-call-{epoch}-1-3"
    assert request.run_config["ops"]["apply_post_call_events"]["config"] == {
        "first_seq": 1,
        "last_seq": 3,
    }
    assert result.cursor == f"{epoch}:3"
    assert _skipped(_tick(inbox, cursor=result.cursor))
    _accept(inbox, 1, start=3)
    [next_request] = _tick(inbox, cursor=result.cursor).run_requests
    assert next_request.run_key == f"post-call-{epoch}-4-4"


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
    inbox.finish("call-0", "run-1", status="retrying", decision="d", writes=[], error="503")
    assert _skipped(_tick(inbox, cursor=first.cursor))  # not due yet
    inbox.requeue_due(now=datetime.now(UTC) + timedelta(hours=2))
    [retry] = _tick(inbox, cursor=first.cursor).run_requests
    assert retry.run_key == f"post-call-{inbox.epoch()}-2-2" != first.run_requests[0].run_key


def test_event_whose_run_never_finished_is_queued_again(inbox):
    _accept(inbox, 1)
    first = _tick(inbox)
    assert inbox.requeue_due(now=datetime.now(UTC) + STALE_AFTER + timedelta(seconds=1)) == 1
    assert _tick(inbox, cursor=first.cursor).run_requests[0].run_key.endswith("-2-2")


def _launched(instance, result) -> set[str]:
    """Record each requested run in `instance` under its run key, as the daemon would."""
    for request in result.run_requests:
        instance.create_run_for_job(
            post_call_job,
            run_config=request.run_config,
            tags={**request.tags, "dagster/run_key": request.run_key},
        )
    return {run.tags["dagster/run_key"] for run in instance.get_runs()}


def test_a_reset_inbox_gets_run_keys_never_used_before(inbox):
    """Dagster skips a run key it has seen: after an inbox reset, keys must not repeat."""
    with dg.instance_for_test() as instance:
        _accept(inbox, 2)
        before = _tick(inbox, instance=instance)
        used = _launched(instance, before)
        assert len(used) == 1
        for suffix in ("", "-wal", "-shm"):
            inbox.path.with_name(inbox.path.name + suffix).unlink(missing_ok=True)
        fresh = Inbox(inbox.path)
        _accept(fresh, 2)
        after = _tick(fresh, cursor=before.cursor, instance=instance)
        [request] = after.run_requests
        # The same queue positions as the runs the instance already holds, under a new key.
        assert request.run_config == before.run_requests[0].run_config
        assert request.run_key not in used
        assert after.cursor == f"{fresh.epoch()}:2" != before.cursor


def test_the_events_of_a_dead_worker_are_queued_again_at_once(inbox):
    _accept(inbox, 1)
    first = _tick(inbox)
    dead = _dead_worker(run_id=None)
    inbox.register_worker(dead)
    assert inbox.claim("call-0", dead.owner) is not None
    [again] = _tick(inbox, cursor=first.cursor).run_requests
    assert again.run_key.endswith("-2-2")
    assert inbox.get("call-0").crashes == 1
    assert inbox.claim("call-0", "someone-else") is not None  # the lease is free


def test_a_dead_run_is_reported_failed_so_that_dagster_retries_it(inbox):
    instance = dg.DagsterInstance.ephemeral()
    config = {"ops": {"apply_post_call_events": {"config": {"first_seq": 1, "last_seq": 1}}}}
    run = instance.create_run_for_job(post_call_job, run_config=config)
    assert not instance.get_run_by_id(run.run_id).is_finished
    _accept(inbox, 1)
    dead = _dead_worker(run_id=run.run_id)
    inbox.register_worker(dead)
    inbox.claim("call-0", dead.owner)
    _tick(inbox, instance=instance)
    assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.FAILURE
    assert inbox.workers() == []
    assert inbox.get("call-0").crashes == 1


def test_an_event_whose_runs_keep_dying_fails_with_that_reason(inbox):
    _accept(inbox, 1)
    for _ in range(MAX_CRASHES):
        dead = _dead_worker(run_id=None)
        inbox.register_worker(dead)
        assert inbox.claim("call-0", dead.owner) is not None
        _tick(inbox)
    record = inbox.get("call-0")
    assert record.status == "failed"
    assert f"its run died {MAX_CRASHES} times" in record.last_error
    assert inbox.claim("call-0", "another") is None  # never handed out again
    assert inbox.replay("call-0")  # replay gives it a fresh set of attempts
    assert inbox.get("call-0").status == "retrying"
    assert inbox.claim("call-0", "another") is not None


def _dead_worker(run_id):
    """A worker registered by a process that has since exited."""
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    return Worker(
        owner=f"run:{run_id}:{socket.gethostname()}:{gone.pid}:x" if run_id else f"cli:{gone.pid}",
        run_id=run_id,
        host=socket.gethostname(),
        pid=gone.pid,
        process_started=None,
    )


def test_a_started_run_that_never_had_a_worker_is_failed(inbox, monkeypatch):
    instance = dg.DagsterInstance.ephemeral()
    config = {"ops": {"apply_post_call_events": {"config": {"first_seq": 1, "last_seq": 1}}}}
    stuck = instance.create_run_for_job(post_call_job, run_config=config)
    instance.handle_run_event(
        stuck.run_id,
        dg.DagsterEvent(event_type_value="PIPELINE_START", job_name=post_call_job.name),
    )
    assert instance.get_run_by_id(stuck.run_id).status == dg.DagsterRunStatus.STARTED
    _tick(inbox, instance=instance)
    assert instance.get_run_by_id(stuck.run_id).status == dg.DagsterRunStatus.STARTED  # young
    later = time.time() + WORKERLESS_RUN_GRACE_SECONDS + 1
    monkeypatch.setattr("salesops_pipeline.assets.post_call.time.time", lambda: later)
    _tick(inbox, instance=instance)
    assert instance.get_run_by_id(stuck.run_id).status == dg.DagsterRunStatus.FAILURE
