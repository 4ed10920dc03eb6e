"""The nightly inbox retention: scheduled at 03:30 on Paris time, on by default, in the
definitions, and its run prunes the inbox of what finished before the retention, logging what
it deleted and how long its longest batch held the lock."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import dagster as dg

from salesops_pipeline.assets.inbox_retention import inbox_retention_job, inbox_retention_schedule
from salesops_pipeline.definitions import defs
from salesops_pipeline_tests.conftest import inbox_resource


def test_the_schedule_runs_nightly_on_paris_time_and_is_on():
    assert inbox_retention_schedule.cron_schedule == "30 3 * * *"
    assert inbox_retention_schedule.execution_timezone == "Europe/Paris"
    assert inbox_retention_schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    assert inbox_retention_schedule.job_name == "inbox_retention_job"
    # 03:30 in Paris is 01:30 UTC in summer, 02:30 in winter.
    context = dg.build_schedule_context(
        scheduled_execution_time=datetime(2026, 7, 1, 3, 30, tzinfo=ZoneInfo("Europe/Paris"))
    )
    assert context.scheduled_execution_time.astimezone(UTC).hour == 1


def test_the_job_and_its_schedule_are_in_the_definitions():
    assert defs.resolve_job_def("inbox_retention_job").name == "inbox_retention_job"
    assert (
        defs.resolve_schedule_def("inbox_retention_schedule").execution_timezone == "Europe/Paris"
    )


def test_a_run_prunes_what_finished_before_the_retention(any_inbox, monkeypatch, capfd):
    monkeypatch.setenv("SALESOPS_INBOX_RETENTION_DAYS", "10")
    for call_id, days_ago in (("old", 11), ("recent", 9)):
        any_inbox.accept(call_id, f'{{"callId": "{call_id}", "contactId": "c"}}')
        moment = datetime.now(UTC) - timedelta(days=days_ago)
        with any_inbox.transaction() as conn:
            conn.execute(
                "UPDATE event SET status = 'applied', updated_at = ? WHERE call_id = ?",
                (moment.isoformat(timespec="milliseconds"), call_id),
            )

    result = inbox_retention_job.execute_in_process(resources={"inbox": inbox_resource(any_inbox)})

    assert result.success
    assert any_inbox.get("old") is None and any_inbox.get("recent") is not None
    pruned = result.output_for_node("prune_inbox")
    assert (pruned["event"], pruned["queue"]) == (1, 1)
    [output] = [
        event.step_output_data.metadata
        for event in result.events_for_node("prune_inbox")
        if event.event_type_value == "STEP_OUTPUT"
    ]
    assert output["pruned_event"].value == 1 and output["retention_days"].value == 10
    assert 0 < output["longest_lock_ms"].value < 5000
    logged = capfd.readouterr().err
    assert "older than 10 days: Pruned outcome 0, write 0, queue 1, event 1" in logged
    assert "the longest held the write lock" in logged
