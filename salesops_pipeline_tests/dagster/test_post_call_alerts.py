"""Alerts from the Dagster side: post_call_lag_sensor tells the chat once when the check starts
failing and once when it has passed again for SALESOPS_ALERT_CLEAR_AFTER_S; a failed post-call
run is alerted once, until runs succeed for as long; a message the chat refused goes at the
next evaluation. Against a local receiver standing in for Slack."""

import time
from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest

from salesops_pipeline.assets.constants import POST_CALL_LANE_TAG
from salesops_pipeline.assets.post_call import (
    post_call_lag_sensor_def,
    post_call_run_failure_alert,
    post_call_run_recovery_alert,
)
from salesops_pipeline.errors import SettingError
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


def _stall(inbox: Inbox, seconds_ago: float = 300, call_id: str = "stuck") -> None:
    inbox.accept(call_id, f'{{"callId": "{call_id}", "contactId": "k1"}}')
    stamp = (datetime.now(UTC) - timedelta(seconds=seconds_ago)).isoformat(timespec="milliseconds")
    with inbox.transaction() as conn:
        conn.execute("UPDATE event SET received_at = ? WHERE call_id = ?", (stamp, call_id))


def _catch_up(inbox: Inbox) -> None:
    with inbox.transaction() as conn:
        conn.execute("UPDATE event SET status = 'nothing_to_do'")


def _evaluate(inbox: Inbox, url: str | None) -> bool:
    context = dg.build_sensor_context(resources=_resources(inbox, url))
    [evaluation] = post_call_lag_sensor_def()(context).asset_events
    return evaluation.passed


def _clear_for(inbox: Inbox, condition: str, seconds: float) -> None:
    """As if `condition` had been seen clear at every evaluation for `seconds` already."""
    stamp = (datetime.now(UTC) - timedelta(seconds=seconds)).isoformat(timespec="milliseconds")
    with inbox.transaction() as conn:
        conn.execute(
            "UPDATE alert SET clear_since = ? WHERE condition = ? AND clear_since IS NOT NULL",
            (stamp, condition),
        )


@pytest.fixture
def no_hold(monkeypatch):
    monkeypatch.setenv("SALESOPS_ALERT_CLEAR_AFTER_S", "0")


def test_the_lag_check_alerts_once_and_recovers_once(chat, inbox, no_hold):
    assert _evaluate(inbox, chat.url)
    _stall(inbox)
    assert [_evaluate(inbox, chat.url) for _ in range(3)] == [False] * 3
    _catch_up(inbox)
    assert _evaluate(inbox, chat.url) and _evaluate(inbox, chat.url)
    alert, recovery = chat.texts()
    assert "post-call is behind" in alert and "backlog 1" in alert
    assert "http://dagster.example/assets/post_call_outcomes?view=checks" in alert
    assert "caught up" in recovery and "backlog 0" in recovery


def test_a_lag_flapping_about_its_limit_alerts_once_and_recovers_once_after_the_hold(
    chat, inbox, monkeypatch
):
    monkeypatch.setenv("SALESOPS_ALERT_CLEAR_AFTER_S", "300")
    for turn in range(4):
        _stall(inbox, call_id=f"stuck-{turn}")
        assert not _evaluate(inbox, chat.url)
        _catch_up(inbox)
        assert _evaluate(inbox, chat.url)
    assert len(chat.texts()) == 1 and "post-call is behind" in chat.texts()[0]
    # Clear, but not for the hold period yet: still nothing.
    _clear_for(inbox, "post_call_lag", 290)
    assert _evaluate(inbox, chat.url)
    assert len(chat.texts()) == 1
    _clear_for(inbox, "post_call_lag", 300)
    assert _evaluate(inbox, chat.url) and _evaluate(inbox, chat.url)
    alert, recovery = chat.texts()
    assert "post-call is behind" in alert
    assert "caught up" in recovery and "backlog 0" in recovery


def test_without_a_webhook_url_the_check_still_fails_and_nothing_is_sent(inbox):
    _stall(inbox)
    assert not _evaluate(inbox, None)
    assert inbox.alert_raised_at("post_call_lag") is None


def test_a_chat_that_is_down_does_not_stop_the_check(chat, inbox):
    _stall(inbox)
    chat.refuse_next, chat.refuse_status, chat.retry_after = 100, 503, "60"
    started = time.monotonic()
    assert not _evaluate(inbox, chat.url)
    # Its Retry-After is not waited for within the tick: the next evaluation sends it.
    assert time.monotonic() - started < 10
    chat.refuse_next = 0
    assert not _evaluate(inbox, chat.url)
    assert len(chat.texts()) == 1


@pytest.mark.parametrize("value", ["-1", "soon", "100000"])
def test_a_hold_period_out_of_bounds_is_refused_by_name(chat, inbox, monkeypatch, value):
    monkeypatch.setenv("SALESOPS_ALERT_CLEAR_AFTER_S", value)
    with pytest.raises(SettingError, match=r"SALESOPS_ALERT_CLEAR_AFTER_S.*at most 86400"):
        _evaluate(inbox, chat.url)


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


def test_a_failed_run_is_alerted_once_until_a_run_succeeds(chat, inbox, no_hold):
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


def test_a_failed_run_the_chat_did_not_take_is_sent_by_the_next_evaluation(chat, inbox):
    instance = dg.DagsterInstance.ephemeral()
    failure = dg.DagsterRunStatus.FAILURE
    chat.refuse_next, chat.refuse_status, chat.retry_after = 100, 503, "60"
    failed = _react(post_call_run_failure_alert, _breaks, failure, instance, inbox, chat.url)
    assert chat.texts() == []
    chat.refuse_next = 0
    # The lag sensor's next tick, whatever the lag: the run's failure is told, once.
    assert _evaluate(inbox, chat.url) and _evaluate(inbox, chat.url)
    [alert] = chat.texts()
    assert f"run {failed} (lane 2) failed" in alert


def test_runs_succeed_again_is_told_once_none_failed_for_the_hold(chat, inbox, monkeypatch):
    monkeypatch.setenv("SALESOPS_ALERT_CLEAR_AFTER_S", "300")
    instance = dg.DagsterInstance.ephemeral()
    failure, success = dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.SUCCESS
    for _ in range(3):
        _react(post_call_run_failure_alert, _breaks, failure, instance, inbox, chat.url)
        healed = _react(post_call_run_recovery_alert, _works, success, instance, inbox, chat.url)
    assert len(chat.texts()) == 1
    assert _evaluate(inbox, chat.url)
    assert len(chat.texts()) == 1
    # No run failed for the hold period: the lag sensor's evaluation tells it.
    _clear_for(inbox, "post_call_run_failed", 300)
    assert _evaluate(inbox, chat.url) and _evaluate(inbox, chat.url)
    alert, recovery = chat.texts()
    assert "failed" in alert
    assert f"succeed again (run {healed})" in recovery and "none has failed since" in recovery
