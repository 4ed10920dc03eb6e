"""post_call_sensor through build_sensor_context: skipping, requesting one run per lane with new
events and none for a lane a run is draining, keys derived from the lane, its last queue position
and the inbox's epoch, one new run for events whose run failed or was cancelled, queuing due
retries again, and releasing at once the events of workers that died."""

import json
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest

from salesops_pipeline.assets import post_call as post_call_assets
from salesops_pipeline.assets.constants import POST_CALL_LANE_TAG
from salesops_pipeline.assets.post_call import (
    WILL_RETRY_TAG,
    WORKERLESS_RUN_GRACE_SECONDS,
    handed_over,
    post_call_job,
    post_call_sensor,
)
from salesops_pipeline.post_call.inbox import (
    MAX_CRASHES,
    STALE_AFTER,
    Inbox,
    Worker,
    lane_key,
    lane_of,
)
from salesops_pipeline_tests.conftest import inbox_resource, sqlite_only

LANE_CONFIG = {
    "lanes": [0],
    "lane_count": 2,
    "idle_seconds": 5.0,
    "batch": 200,
    "warm_hours": "never",
}


@pytest.fixture
def inbox(any_inbox):
    return any_inbox


LANES = 2


def _tick(inbox, instance=None):
    context = dg.build_sensor_context(
        resources={"inbox": inbox_resource(inbox, lanes=LANES, runs=LANES, idle_seconds=5)},
        instance=instance or dg.DagsterInstance.ephemeral(),
    )
    return post_call_sensor(context)


def _skipped(result) -> bool:
    return isinstance(result, dg.SkipReason) or (
        not result.run_requests and result.skip_reason is not None
    )


def _contact_in_lane(lane: int) -> str:
    return next(
        f"c{n}" for n in range(100) if lane_of(lane_key(_payload("x", f"c{n}")), LANES) == lane
    )


def _payload(call_id, contact):
    return json.dumps({"callId": call_id, "contactId": contact})


def _accept(inbox, n, start=0, lane=0):
    contact = _contact_in_lane(lane)
    for i in range(start, start + n):
        inbox.accept(f"call-{i}", _payload(f"call-{i}", contact))


def _lane_config(request) -> dict:
    return request.run_config["ops"]["apply_post_call_events"]["config"]


def test_skips_when_nothing_is_new(inbox):
    result = _tick(inbox)
    assert _skipped(result)
    assert "no new post-call events" in result.skip_message


def test_requests_one_run_per_lane_with_new_events(inbox):
    _accept(inbox, 3, lane=1)
    epoch = inbox.epoch()
    [request] = _tick(inbox).run_requests
    assert request.run_key == f"post-call-{epoch}-lane1of{LANES}-3"
    assert request.tags[POST_CALL_LANE_TAG] == "1"
    assert _lane_config(request) == {
        "lanes": [1],
        "lane_count": LANES,
        "idle_seconds": 5.0,
        "batch": 200,
        "max_seconds": 3600.0,
        "warm_hours": "never",
        "report_seconds": 60.0,
    }
    _accept(inbox, 1, start=3, lane=0)
    lanes = {_lane_config(r)["lanes"][0]: r.run_key for r in _tick(inbox).run_requests}
    assert lanes == {0: f"post-call-{epoch}-lane0of{LANES}-4", 1: request.run_key}


def test_a_lane_being_drained_gets_no_second_run(inbox):
    instance = dg.DagsterInstance.ephemeral()
    _accept(inbox, 2, lane=0)
    _accept(inbox, 1, start=2, lane=1)
    [draining, _] = sorted(_tick(inbox, instance).run_requests, key=lambda r: r.run_key)
    instance.create_run_for_job(post_call_job, run_config=draining.run_config, tags=draining.tags)
    [other] = _tick(inbox, instance).run_requests
    assert _lane_config(other)["lanes"] == [1]


def test_a_drained_lane_asks_for_nothing_until_new_events_arrive(inbox):
    _accept(inbox, 2, lane=0)
    [request] = _tick(inbox).run_requests
    for call_id in ("call-0", "call-1"):
        inbox.claim(call_id, "run-1")
        inbox.finish(call_id, "run-1", status="applied", decision="d", writes=[])
    inbox.advance_lane(0, LANES, 2)
    assert _skipped(_tick(inbox))
    _accept(inbox, 1, start=2, lane=0)
    [again] = _tick(inbox).run_requests
    assert again.run_key != request.run_key and again.run_key.endswith("-3")


def test_due_retry_is_queued_again_under_a_new_key(inbox):
    _accept(inbox, 1)
    [first] = _tick(inbox).run_requests
    inbox.claim("call-0", "run-1")
    inbox.finish("call-0", "run-1", status="retrying", decision="d", writes=[], error="503")
    inbox.advance_lane(0, LANES, 1)
    assert _skipped(_tick(inbox))  # not due yet
    inbox.requeue_due(now=datetime.now(UTC) + timedelta(hours=2))
    [retry] = _tick(inbox).run_requests
    assert retry.run_key == f"post-call-{inbox.epoch()}-lane0of{LANES}-2" != first.run_key


def test_event_whose_run_never_finished_is_queued_again(inbox):
    _accept(inbox, 1)
    _tick(inbox)
    inbox.advance_lane(0, LANES, 1)
    assert inbox.requeue_due(now=datetime.now(UTC) + STALE_AFTER + timedelta(seconds=1)) == 1
    assert _tick(inbox).run_requests[0].run_key.endswith("-2")


def _launched(instance, result) -> set[str]:
    """Record each requested run in `instance` under its run key, as the daemon would, and
    let it finish."""
    for request in result.run_requests:
        run = instance.create_run_for_job(
            post_call_job,
            run_config=request.run_config,
            tags={**request.tags, "dagster/run_key": request.run_key},
        )
        instance.report_run_failed(run, "finished for the test")
    return {run.tags["dagster/run_key"] for run in instance.get_runs()}


def _start_new_keys(instance, result) -> list[dg.DagsterRun]:
    """Create a run for each request whose key the instance has never seen, as the daemon
    does (it starts a run key once); the runs created."""
    created = []
    for request in getattr(result, "run_requests", None) or []:
        known = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/run_key": request.run_key}))
        if not known:
            created.append(
                instance.create_run_for_job(
                    post_call_job,
                    run_config=request.run_config,
                    tags={**request.tags, "dagster/run_key": request.run_key},
                )
            )
    return created


def _end(instance, run, status: dg.DagsterRunStatus) -> None:
    if status == dg.DagsterRunStatus.FAILURE:
        instance.report_run_failed(run, "inbox unavailable")
    elif status == dg.DagsterRunStatus.CANCELED:
        instance.report_run_canceled(run, "cancelled by an operator")
    else:
        instance.handle_run_event(
            run.run_id,
            dg.DagsterEvent(event_type_value="PIPELINE_SUCCESS", job_name=post_call_job.name),
        )
    assert instance.get_run_by_id(run.run_id).status == status


@pytest.mark.parametrize(
    "ended",
    [dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED],
    ids=["failed", "cancelled"],
)
def test_events_left_by_a_failed_or_cancelled_run_get_one_new_run(inbox, ended):
    with dg.instance_for_test() as instance:
        _accept(inbox, 3, lane=1)
        [first] = _start_new_keys(instance, _tick(inbox, instance))
        _end(instance, first, ended)
        # Nothing was handled: the same events wait, under the key Dagster already started.
        [again] = _start_new_keys(instance, _tick(inbox, instance))
        assert again.tags["dagster/run_key"] != first.tags["dagster/run_key"]
        assert again.tags["dagster/run_key"].startswith(first.tags["dagster/run_key"])
        assert again.tags[POST_CALL_LANE_TAG] == "1"
        # The new run is queued: no third one, whatever the ticks.
        assert _start_new_keys(instance, _tick(inbox, instance)) == []
        assert _start_new_keys(instance, _tick(inbox, instance)) == []
        # It fails too: one more run for that failure, and one only.
        _end(instance, again, ended)
        [third] = _start_new_keys(instance, _tick(inbox, instance))
        assert len({r.tags["dagster/run_key"] for r in (first, again, third)}) == 3
        assert _start_new_keys(instance, _tick(inbox, instance)) == []


def test_a_successful_run_gets_no_new_run(inbox):
    with dg.instance_for_test() as instance:
        _accept(inbox, 2, lane=0)
        [first] = _start_new_keys(instance, _tick(inbox, instance))
        _end(instance, first, dg.DagsterRunStatus.SUCCESS)
        # The events still show as waiting (nothing recorded their handling here): a
        # successful run is no reason to start another.
        assert _start_new_keys(instance, _tick(inbox, instance)) == []


def test_a_failed_run_that_run_retries_will_start_again_gets_no_second_run(inbox):
    with dg.instance_for_test() as instance:
        _accept(inbox, 2, lane=0)
        [crashed] = _start_new_keys(instance, _tick(inbox, instance))
        _end(instance, crashed, dg.DagsterRunStatus.FAILURE)
        instance.add_run_tags(crashed.run_id, {WILL_RETRY_TAG: "true"})
        assert _start_new_keys(instance, _tick(inbox, instance)) == []
        # The retry carries its run's tags; once it failed for good, one new run.
        retry = instance.create_run_for_job(
            post_call_job, run_config=crashed.run_config, tags=crashed.tags
        )
        _end(instance, retry, dg.DagsterRunStatus.FAILURE)
        instance.add_run_tags(retry.run_id, {WILL_RETRY_TAG: "false"})
        [after] = _start_new_keys(instance, _tick(inbox, instance))
        assert after.tags["dagster/run_key"].endswith(f"-after-{retry.run_id[:8]}")


@sqlite_only
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
        [request] = _tick(fresh, instance=instance).run_requests
        # The same lane and queue positions as the run the instance already holds, under a
        # new key.
        assert request.run_config == before.run_requests[0].run_config
        assert request.run_key not in used


def test_the_events_of_a_dead_worker_are_queued_again_at_once(inbox):
    _accept(inbox, 1)
    _tick(inbox)
    dead = _dead_worker(run_id=None)
    inbox.register_worker(dead)
    assert inbox.claim("call-0", dead.owner) is not None
    inbox.advance_lane(0, LANES, 1)
    [again] = _tick(inbox).run_requests
    assert again.run_key.endswith("-2")
    assert inbox.get("call-0").crashes == 1
    assert inbox.claim("call-0", "someone-else") is not None  # the lease is free


def test_a_dead_run_is_reported_failed_so_that_dagster_retries_it(inbox):
    instance = dg.DagsterInstance.ephemeral()
    config = {"ops": {"apply_post_call_events": {"config": LANE_CONFIG}}}
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


@pytest.mark.parametrize(
    ("event", "status"),
    [
        ("PIPELINE_START", dg.DagsterRunStatus.STARTED),
        # Launched, its process killed before it could start.
        ("PIPELINE_STARTING", dg.DagsterRunStatus.STARTING),
    ],
)
def test_a_run_that_never_had_a_worker_is_failed(inbox, monkeypatch, event, status):
    instance = dg.DagsterInstance.ephemeral()
    config = {"ops": {"apply_post_call_events": {"config": LANE_CONFIG}}}
    stuck = instance.create_run_for_job(post_call_job, run_config=config)
    instance.handle_run_event(
        stuck.run_id, dg.DagsterEvent(event_type_value=event, job_name=post_call_job.name)
    )
    assert instance.get_run_by_id(stuck.run_id).status == status
    _tick(inbox, instance=instance)
    assert instance.get_run_by_id(stuck.run_id).status == status  # young
    later = time.time() + WORKERLESS_RUN_GRACE_SECONDS + 1
    monkeypatch.setattr("salesops_pipeline.assets.post_call.time.time", lambda: later)
    _tick(inbox, instance=instance)
    assert instance.get_run_by_id(stuck.run_id).status == dg.DagsterRunStatus.FAILURE


# Groups of lanes, warm hours and handovers ----------------------------------------------------


def _warm_tick(inbox, instance, warm_hours="always", runs=1):
    context = dg.build_sensor_context(
        resources={
            "inbox": inbox_resource(
                inbox, lanes=LANES, runs=runs, idle_seconds=5, warm_hours=warm_hours
            )
        },
        instance=instance,
    )
    return post_call_sensor(context)


def _finish_run(instance, request, status=dg.DagsterRunStatus.SUCCESS, tags=None):
    run = instance.create_run_for_job(
        post_call_job, run_config=request.run_config, tags={**request.tags, **(tags or {})}
    )
    instance.handle_run_event(
        run.run_id,
        dg.DagsterEvent(
            event_type_value="PIPELINE_SUCCESS"
            if status == dg.DagsterRunStatus.SUCCESS
            else "PIPELINE_FAILURE",
            job_name=post_call_job.name,
        ),
    )
    return instance.get_run_by_id(run.run_id)


def test_one_run_drains_every_lane_by_default(inbox):
    _accept(inbox, 1, lane=0)
    _accept(inbox, 1, start=1, lane=1)
    [request] = _warm_tick(inbox, dg.DagsterInstance.ephemeral(), warm_hours="never").run_requests
    assert _lane_config(request)["lanes"] == [0, 1]
    assert request.tags[POST_CALL_LANE_TAG] == "0,1"
    assert request.run_key.endswith(f"-lane0,1of{LANES}-2")


def test_within_warm_hours_every_group_gets_a_run_without_events(inbox):
    instance = dg.DagsterInstance.ephemeral()
    assert _skipped(_warm_tick(inbox, instance, warm_hours="never"))
    requests = _warm_tick(inbox, instance, runs=2).run_requests
    assert sorted(r.tags[POST_CALL_LANE_TAG] for r in requests) == ["0", "1"]
    assert all(r.run_key.endswith("-warm") for r in requests)
    assert {_lane_config(r)["warm_hours"] for r in requests} == {"always"}
    # While they are queued or running, nothing more is asked.
    for request in requests:
        instance.create_run_for_job(post_call_job, run_config=request.run_config, tags=request.tags)
    result = _warm_tick(inbox, instance, runs=2)
    assert _skipped(result)
    assert "every warm lane has its run" in result.skip_message


def test_a_warm_run_that_ended_earns_exactly_one_successor(inbox):
    instance = dg.DagsterInstance.ephemeral()
    [first] = _warm_tick(inbox, instance).run_requests
    ended = _finish_run(instance, first)
    [successor] = _warm_tick(inbox, instance).run_requests
    assert successor.run_key == f"{first.run_key}-after-{ended.run_id[:8]}"
    instance.create_run_for_job(post_call_job, run_config=successor.run_config, tags=successor.tags)
    assert _skipped(_warm_tick(inbox, instance))


def test_a_warm_run_that_failed_waits_for_its_run_retry_then_half_a_minute(inbox, monkeypatch):
    instance = dg.DagsterInstance.ephemeral()
    [first] = _warm_tick(inbox, instance).run_requests
    failed = _finish_run(instance, first, dg.DagsterRunStatus.FAILURE, {WILL_RETRY_TAG: "true"})
    assert failed.status == dg.DagsterRunStatus.FAILURE
    assert _skipped(_warm_tick(inbox, instance))
    instance.add_run_tags(failed.run_id, {WILL_RETRY_TAG: "false"})
    # No retry coming: replaced, though not at once, so that a fault failing every run does
    # not start one per tick.
    assert _skipped(_warm_tick(inbox, instance))
    monkeypatch.setattr(post_call_assets, "WARM_RETRY_AFTER_SECONDS", 0)
    [replacement] = _warm_tick(inbox, instance).run_requests
    assert replacement.run_key.endswith(f"-after-{failed.run_id[:8]}")


def test_a_run_handing_its_lanes_over_gets_one_successor_though_still_running(inbox):
    instance = dg.DagsterInstance.ephemeral()
    [first] = _warm_tick(inbox, instance).run_requests
    running = instance.create_run_for_job(
        post_call_job, run_config=first.run_config, tags=first.tags
    )
    assert _skipped(_warm_tick(inbox, instance))
    instance.add_run_tags(running.run_id, {POST_CALL_LANE_TAG: handed_over("0,1")})
    [successor] = _warm_tick(inbox, instance).run_requests
    assert successor.tags[POST_CALL_LANE_TAG] == "0,1"
    assert successor.run_key.endswith(f"-after-{running.run_id[:8]}")
    # New events during the handover go to the successor's key, never the retiring run.
    _accept(inbox, 1, lane=1)
    [for_events] = _warm_tick(inbox, instance).run_requests
    assert for_events.tags[POST_CALL_LANE_TAG] == "0,1"
    assert not for_events.run_key.endswith("-warm")


def test_outside_warm_hours_an_idle_inbox_asks_for_nothing(inbox):
    assert _skipped(_warm_tick(inbox, dg.DagsterInstance.ephemeral(), warm_hours="never"))
