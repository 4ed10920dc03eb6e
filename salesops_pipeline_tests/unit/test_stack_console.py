"""What the local stack's console shows of `dagster dev`: warnings, errors, tracebacks, runs
launched and what the pipeline's steps say; not every sensor tick and run step."""

from salesops_pipeline.devtools.console import DagsterConsole

T = "\x1b[32m2026-12-05 16:07:08 +0000\x1b[0m"


def _shown(lines: list[str]) -> list[str]:
    console = DagsterConsole()
    return [line for line in lines if console.shows(line + "\n")]


def test_routine_ticks_and_run_steps_stay_off_the_console():
    routine = [
        f"{T} - dagster.daemon.SensorDaemon - \x1b[34mINFO\x1b[0m - Checking for new runs for"
        " sensor: post_call_sensor",
        f"{T} - dagster.daemon.SensorDaemon - INFO - Sensor post_call_sensor skipped: no new"
        " post-call events",
        f"{T} - dagster.daemon.AssetDaemon - INFO - Done prefetching asset records.",
        f"{T} - dagster.daemon.QueuedRunCoordinatorDaemon - INFO - Launched 1 runs.",
        f"{T} - dagster - DEBUG - post_call_job - 0d88 - 28608 - apply_post_call_events -"
        " STEP_START - Started execution of step",
        # A DEBUG record's continuation line goes with it.
        "| 999 | applied | – |",
    ]
    assert _shown(routine) == []


def test_what_a_person_acts_on_is_shown():
    shown = [
        f"{T} - dagster - INFO - Launching Dagster services...",
        f"{T} - dagster-webserver - INFO - Serving dagster-webserver on http://127.0.0.1:3000",
        f"{T} - dagster.daemon.SensorDaemon - INFO - Completed launch of run 0d88 for"
        " post_call_sensor",
        f"{T} - dagster.daemon.SensorDaemon - WARNING - Sensor post_call_lag_sensor failed",
        f"{T} - dagster - INFO - post_call_job - 0d88 - apply_post_call_events - post-call 1:"
        " applied (reschedule to 2025-04-14T10:30:00)",
        "post-call 2: applied (transfer to support: ana (least loaded; loads: ana 1))",
        f"{T} - dagster - ERROR - post_call_job - 0d88 - RUN_FAILURE - Execution failed",
    ]
    assert _shown(shown) == shown


def test_a_traceback_after_a_hidden_record_is_shown():
    lines = [
        f"{T} - dagster - DEBUG - sales_reports_job - 0d88 - STEP_START - Started",
        "Traceback (most recent call last):",
        '  File "x.py", line 1, in <module>',
        "KeyError: 'x'",
        "/venv/lib/dagster/x.py:809: UserWarning: something to look at",
    ]
    assert _shown(lines) == lines[1:]
