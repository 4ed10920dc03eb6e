"""The post_call_lag check: failing with severity ERROR once the oldest waiting event is older
than SALESOPS_MAX_POST_CALL_LAG_S, evaluated by its own sensor whether or not any post-call run
happens (a stalled pipeline starts none), and by hand from the UI."""

from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest

from salesops_pipeline.assets.post_call import (
    POST_CALL_LAG_CHECK,
    post_call_lag,
    post_call_lag_sensor_def,
    post_call_outcomes,
)
from salesops_pipeline.post_call.inbox import Inbox
from salesops_pipeline.resources import AlertsResource, InboxResource


@pytest.fixture
def inbox(tmp_path):
    return Inbox(tmp_path / "inbox.sqlite")


def _waiting(inbox: Inbox, call_id: str, seconds_ago: float) -> None:
    inbox.accept(call_id, f'{{"callId": "{call_id}", "contactId": "c-{call_id}"}}')
    stamp = (datetime.now(UTC) - timedelta(seconds=seconds_ago)).isoformat(timespec="milliseconds")
    with inbox.transaction() as conn:
        conn.execute("UPDATE event SET received_at = ? WHERE call_id = ?", (stamp, call_id))


def _evaluation(inbox: Inbox) -> dg.AssetCheckEvaluation:
    context = dg.build_sensor_context(
        resources={"inbox": InboxResource(path=str(inbox.path)), "alerts": AlertsResource()}
    )
    result = post_call_lag_sensor_def()(context)
    [evaluation] = result.asset_events
    assert (evaluation.asset_key, evaluation.check_name) == (
        post_call_outcomes.key,
        POST_CALL_LAG_CHECK,
    )
    return evaluation


def test_passes_while_events_are_handled_in_time(inbox):
    _waiting(inbox, "fresh", seconds_ago=5)
    evaluation = _evaluation(inbox)
    assert evaluation.passed
    assert evaluation.metadata["backlog"].value == 1
    assert 5 <= evaluation.metadata["lag_s"].value < 60


def test_fails_with_severity_error_when_post_call_stalls(inbox):
    _waiting(inbox, "stuck", seconds_ago=200)
    _waiting(inbox, "later", seconds_ago=10)
    evaluation = _evaluation(inbox)
    assert not evaluation.passed
    assert evaluation.severity == dg.AssetCheckSeverity.ERROR
    assert evaluation.metadata["lag_s"].value >= 200
    assert evaluation.metadata["max_lag_s"].value == 120
    assert evaluation.metadata["backlog"].value == 2


def test_the_limit_is_a_setting(inbox, monkeypatch):
    _waiting(inbox, "stuck", seconds_ago=200)
    monkeypatch.setenv("SALESOPS_MAX_POST_CALL_LAG_S", "300")
    assert _evaluation(inbox).passed


def test_an_empty_inbox_passes(inbox):
    evaluation = _evaluation(inbox)
    assert evaluation.passed and evaluation.metadata["lag_s"].value == 0


def test_the_check_run_by_hand_says_the_same(inbox):
    _waiting(inbox, "stuck", seconds_ago=200)
    result = post_call_lag(inbox=InboxResource(path=str(inbox.path)))
    assert not result.passed
    assert result.severity == dg.AssetCheckSeverity.ERROR


def test_the_evaluation_interval_is_a_setting_of_at_most_a_minute(monkeypatch):
    assert post_call_lag_sensor_def().minimum_interval_seconds == 30
    monkeypatch.setenv("SALESOPS_POST_CALL_LAG_CHECK_S", "5")
    assert post_call_lag_sensor_def().minimum_interval_seconds == 5
    monkeypatch.setenv("SALESOPS_POST_CALL_LAG_CHECK_S", "90")
    with pytest.raises(ValueError, match="at most 60"):
        post_call_lag_sensor_def()
