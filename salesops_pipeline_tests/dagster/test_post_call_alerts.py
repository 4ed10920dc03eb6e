"""Alerts from the Dagster side: post_call_lag_sensor tells the chat once when the check starts
failing and once when it passes again; a failed post-call run is alerted once, until a run
succeeds. Against a local receiver standing in for Slack."""

from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest

from salesops_pipeline.assets.constants import POST_CALL_LANE_TAG
from salesops_pipeline.assets.post_call import (
    post_call_lag_sensor_def,
    post_call_run_failure_alert,
    post_call_run_recovery_alert,
)
from salesops_pipeline.post_call.inbox import Inbox
from salesops_pipeline.resources import AlertsResource, InboxResource


@pytest.fixture
def inbox(tmp_path):
    return Inbox(tmp_path / "inbox.sqlite")


def _resources(inbox: Inbox, url: str | None) -> dict:
    return {
        "inbox": InboxResource(path=str(inbox.path)),
        "alerts": AlertsResource(webhook_url=url, dagster_url="http://dagster.example"),
    }


def _stall(inbox: Inbox, seconds_ago: float = 300) -> None:
    inbox.accept("stuck", '{"callId": "stuck", "contactId": "k1"}')
    stamp = (datetime.now(UTC) - timedelta(seconds=seconds_ago)).isoformat(timespec="milliseconds")
    with inbox.transaction() as conn:
        conn.execute("UPDATE event SET received_at = ?", (stamp,))


def _catch_up(inbox: Inbox) -> None:
    with inbox.transaction() as conn:
        conn.execute("UPDATE event SET status = 'nothing_to_do'")


def _evaluate(inbox: Inbox, url: str | None) -> bool:
    context = dg.build_sensor_context(resources=_resources(inbox, url))
    [evaluation] = post_call_lag_sensor_def()(context).asset_events
    return evaluation.passed


def test_the_lag_check_alerts_once_and_recovers_once(chat, inbox):
    assert _evaluate(inbox, chat.url)
    _stall(inbox)
    assert [_evaluate(inbox, chat.url) for _ in range(3)] == [False] * 3
    _catch_up(inbox)
    assert _evaluate(inbox, chat.url) and _evaluate(inbox, chat.url)
    alert, recovery = chat.texts()
    assert "post-call is behind" in alert and "backlog 1" in alert
    assert "http://dagster.example/assets/post_call_outcomes?view=checks" in alert
    assert "caught up" in recovery and "backlog 0" in recovery


def test_without_a_webhook_url_the_check_still_fails_and_nothing_is_sent(inbox):
    _stall(inbox)
    assert not _evaluate(inbox, None)
    assert inbox.alert_raised_at("post_call_lag") is None


def test_a_chat_that_is_down_does_not_stop_the_check(chat, inbox):
    _stall(inbox)
    chat.refuse_next = 100
    assert not _evaluate(inbox, chat.url)
    chat.refuse_next = 0
    assert not _evaluate(inbox, chat.url)
    assert len(chat.texts()) == 1


@dg.op
def _breaks():
    raise RuntimeError("the provider went away")


@dg.op
def _works():
    return 1


def _run_event(op, instance, status):
    job = dg.GraphDefinition(name="post_call_job", node_defs=[op]).to_job(
        tags={POST_CALL_LANE_TAG: "2"}
    )
    result = job.execute_in_process(instance=instance, raise_on_error=False)
    event = (
        result.get_run_failure_event()
        if status == dg.DagsterRunStatus.FAILURE
        else result.get_run_success_event()
    )
    return result.dagster_run, event


def _react(sensor, op, status, instance, inbox, url):
    run, event = _run_event(op, instance, status)
    context = dg.build_run_status_sensor_context(
        sensor_name=sensor.name,
        dagster_event=event,
        dagster_instance=instance,
        dagster_run=run,
        resources=_resources(inbox, url),
    )
    if status == dg.DagsterRunStatus.FAILURE:
        context = context.for_run_failure()
    sensor(context)
    return run.run_id


def test_a_failed_run_is_alerted_once_until_a_run_succeeds(chat, inbox):
    instance = dg.DagsterInstance.ephemeral()
    failure, success = dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.SUCCESS
    first = _react(post_call_run_failure_alert, _breaks, failure, instance, inbox, chat.url)
    _react(post_call_run_failure_alert, _breaks, failure, instance, inbox, chat.url)
    healed = _react(post_call_run_recovery_alert, _works, success, instance, inbox, chat.url)
    _react(post_call_run_recovery_alert, _works, success, instance, inbox, chat.url)
    alert, recovery = chat.texts()
    assert f"run {first} (lane 2) failed" in alert
    assert f"http://dagster.example/runs/{first}" in alert
    assert "provider went away" not in alert  # the run's page has the details
    assert f"succeed again (run {healed})" in recovery
