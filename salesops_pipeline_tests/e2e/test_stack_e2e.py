"""The whole local stack with its real processes: `salesops dev` (sandbox provider, intake,
Dagster webserver and daemon). A post-call event posted to the intake reaches the provider
through the sensor and a run; a browser drives the Dagster UI; the frontend API answers;
`salesops simulate` finds the stack on its ports; a second start on busy ports is refused;
generated keys survive restarts; SIGTERM leaves nothing behind and exits 0, a part dying on
its own stops the stack with a non-zero exit."""

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import requests

from salesops_pipeline.assets.constants import POST_CALL_LANE_TAG
from salesops_pipeline.devtools.stack import load_local_keys
from salesops_pipeline.post_call.inbox import Inbox
from salesops_pipeline.services.sandbox.seed import REFERENCE_CONTACT_ID
from salesops_pipeline_tests.conftest import REPO_ROOT, fixture_path
from salesops_pipeline_tests.support.receiver import ChatReceiver
from salesops_pipeline_tests.support.stack_process import port_open, start_stack, stop_stack

ARTIFACTS = REPO_ROOT / "test-artifacts"
EVENT_TIMEOUT = 60.0


# Quick enough for a test to see a stall, a failed check, its alert and its recovery. The
# interval stays above the daemon's own 5 s loop, which no sensor is evaluated faster than.
LAG_CHECK_INTERVAL = 10
MAX_LAG = 5
# An alert is told over once the check has passed for this long: two evaluations.
ALERT_CLEAR_AFTER = 20
RUN_SECONDS = 45
# Runs report their events on post_call_outcomes this often (a minute by default).
REPORT_SECONDS = 5


@pytest.fixture(scope="module")
def chat():
    with ChatReceiver() as receiver:
        yield receiver


@pytest.fixture(scope="module")
def stack(tmp_path_factory, chat):
    running = start_stack(
        tmp_path_factory.mktemp("stack") / "salesops_home",
        generate_keys=True,
        settings={
            "SALESOPS_ALERT_WEBHOOK_URL": chat.url,
            "SALESOPS_POST_CALL_LAG_CHECK_S": str(LAG_CHECK_INTERVAL),
            "SALESOPS_MAX_POST_CALL_LAG_S": str(MAX_LAG),
            "SALESOPS_ALERT_CLEAR_AFTER_S": str(ALERT_CLEAR_AFTER),
            # Warm runs hand over every RUN_SECONDS while the module's tests run.
            "SALESOPS_POST_CALL_RUN_SECONDS": str(RUN_SECONDS),
            "SALESOPS_POST_CALL_REPORT_SECONDS": str(REPORT_SECONDS),
        },
    )
    try:
        yield running
    finally:
        stop_stack(running)
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / "stack-output.log").write_text("".join(running.output))


def _contact(stack) -> dict:
    response = requests.get(
        f"{stack.sandbox_url}/voice/contacts/{REFERENCE_CONTACT_ID}",
        headers={"X-API-KEY": stack.provider_key},
        timeout=5,
    )
    response.raise_for_status()
    return response.json()


# When an event was last posted to the module's stack (monotonic seconds).
_last_post = {"at": 0.0}


def test_event_reaches_the_provider_within_a_minute(stack):
    raw = fixture_path("events/post_call_2.1.json").read_bytes()
    posted = _last_post["at"] = time.monotonic()
    response = requests.post(
        f"{stack.intake_url}/webhooks/post-call",
        data=raw,
        headers={"X-API-KEY": stack.intake_key, "Content-Type": "application/json"},
        timeout=10,
    )
    assert response.status_code == 202, response.text
    while _contact(stack).get("retryDate") != "2025-04-14T10:30:00":
        assert time.monotonic() - posted < EVENT_TIMEOUT, "the event did not reach the provider"
        time.sleep(0.5)
    print(f"event applied {time.monotonic() - posted:.1f}s after it was posted")


LEA = "lea.bernard@salesops.example"
FIRST_REPORTS_TIMEOUT = 240.0


def _this_month() -> str:
    return datetime.now(ZoneInfo("Europe/Paris")).strftime("%Y-%m")


def _current_month_answered(stack) -> bool:
    response = requests.get(
        f"{stack.intake_url}/api/progression",
        params={"agent": LEA, "month": _this_month()},
        headers={"X-API-KEY": stack.intake_key},
        timeout=10,
    )
    return response.status_code == 200 and bool(response.json())


def test_a_new_stack_computes_the_current_month_by_itself(stack):
    started = time.monotonic()
    _wait(
        lambda: _current_month_answered(stack),
        FIRST_REPORTS_TIMEOUT,
        "the current month's progression was never computed",
    )
    print(f"current month answered {time.monotonic() - started:.0f}s into the test")
    headers = {"X-API-KEY": stack.intake_key}
    month = _this_month()
    for params in ({}, {"month": month}):
        answer = _wait(
            lambda params=params: (
                (
                    r := requests.get(
                        f"{stack.intake_url}/api/team-sales",
                        params=params,
                        headers=headers,
                        timeout=10,
                    )
                ).status_code
                == 200
                and r.json()
            ),
            60,
            f"team sales {params} never answered",
        )
        assert {row["team"] for row in answer} >= {"sales", "support"}
    # The files follow once the progression's blocking checks have passed, a tick later.
    exported = stack.home / "exports" / "progression" / month / f"{LEA}.json"
    _wait(exported.is_file, 120, "the current month's frontend files were never written")


def _post_call_runs(stack) -> list[dict]:
    data = stack.graphql(
        """
        { runsOrError(filter: {pipelineName: "post_call_job"}) {
            ... on Runs { results { runId status } } } }
        """
    )
    return data["runsOrError"]["results"]


def test_the_run_and_its_outcome_show_in_dagster(stack):
    # Within the warm hours (always, for the tests' stacks) the run that handled the event is
    # still open: its passes are recorded as it goes.
    runs = _wait(
        lambda: [r for r in _post_call_runs(stack) if r["status"] in ("STARTED", "SUCCESS")],
        EVENT_TIMEOUT,
        "no post_call_job run",
    )
    assert runs

    def reported() -> bool:
        data = stack.graphql(
            """
            { assetOrError(assetKey: {path: ["post_call_outcomes"]}) {
                ... on Asset { assetMaterializations(limit: 5) {
                  runId metadataEntries { label ... on MarkdownMetadataEntry { mdStr } } } } } }
            """
        )
        outcomes = [
            entry["mdStr"]
            for m in data["assetOrError"]["assetMaterializations"]
            for entry in m["metadataEntries"]
            if entry["label"] == "outcomes"
        ]
        return any("102224021" in text and "applied" in text for text in outcomes)

    # The open run reports its window of events once REPORT_SECONDS have passed.
    _wait(reported, REPORT_SECONDS + 30, "the event never showed on post_call_outcomes")


def test_frontend_api_answers_after_a_report_run(stack):
    launched = stack.graphql(
        """
        mutation($params: ExecutionParams!) { launchRun(executionParams: $params) {
            __typename ... on LaunchRunSuccess { run { runId } }
            ... on PythonError { message } } }
        """,
        {
            "params": {
                "selector": {
                    "repositoryLocationName": "salesops_pipeline",
                    "repositoryName": "__repository__",
                    "jobName": "sales_reports_job",
                },
                "executionMetadata": {"tags": [{"key": "dagster/partition", "value": "2026-03"}]},
            }
        },
    )
    assert launched["launchRun"]["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["launchRun"]["run"]["runId"]
    deadline = time.monotonic() + 180
    while True:
        status = stack.graphql(
            "query($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }", {"id": run_id}
        )["runOrError"]["status"]
        if status in ("SUCCESS", "FAILURE", "CANCELED"):
            break
        assert time.monotonic() < deadline
        time.sleep(1)
    assert status == "SUCCESS"
    # The frontend's files, written by progression_exports once the checks passed.
    exported = (
        stack.home / "exports" / "progression" / "2026-03" / "lea.bernard@salesops.example.json"
    )
    assert len(json.loads(exported.read_text())) == 31
    headers = {"X-API-KEY": stack.intake_key}
    teams = requests.get(f"{stack.intake_url}/api/team-sales", headers=headers, timeout=10)
    assert teams.status_code == 200 and {row["team"] for row in teams.json()} >= {
        "sales",
        "support",
    }
    progression = requests.get(
        f"{stack.intake_url}/api/progression",
        params={"agent": "lea.bernard@salesops.example", "month": "2026-03"},
        headers=headers,
        timeout=10,
    )
    assert progression.status_code == 200, progression.text
    assert len(progression.json()) == 31
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "progression-2026-03.json").write_text(json.dumps(progression.json(), indent=2))


@pytest.mark.browser
def test_browser_finds_every_group_and_the_sensor(stack, tmp_path):
    from salesops_pipeline_tests.support.browser import (
        chromium,
        dismiss_welcome_dialog,
        wait_for_text,
    )

    with chromium(tmp_path / "chromium-profile") as driver:
        driver.get(f"{stack.dagster_url}/assets")
        for name in (
            "sales_database",
            "team_sales",
            "monthly_team_sales",
            "agent_daily_progression",
            "progression_exports",
            "voice_provider",
            "campaign_contacts",
            "cross_campaign_duplicates",
            "post_call_outcomes",
        ):
            wait_for_text(driver, name)
        dismiss_welcome_dialog(driver)
        time.sleep(1)
        ARTIFACTS.mkdir(exist_ok=True)
        driver.save_screenshot(str(ARTIFACTS / "dagster-assets.png"))
        for group in ("sales_reporting", "voice_campaigns", "post_call"):
            driver.get(f"{stack.dagster_url}/locations/salesops_pipeline/asset-groups/{group}/list")
            wait_for_text(driver, group)
        driver.get(f"{stack.dagster_url}/locations/salesops_pipeline/sensors/post_call_sensor")
        wait_for_text(driver, "post_call_sensor")
        wait_for_text(driver, "post_call_job")
        driver.save_screenshot(str(ARTIFACTS / "dagster-post-call-sensor.png"))
        # The README's tour: Jobs → campaign_duplicates_job → Materialize all ▾ → Open launchpad.
        driver.get(f"{stack.dagster_url}/locations/salesops_pipeline/jobs/campaign_duplicates_job")
        wait_for_text(driver, "Materialize all")
        dismiss_welcome_dialog(driver)
        driver.find_element(
            "xpath", "//button[normalize-space()='Materialize all']/following::button[1]"
        ).click()
        wait_for_text(driver, "Open launchpad")
        driver.find_element("xpath", "//*[normalize-space()='Open launchpad']").click()
        wait_for_text(driver, "Scaffold missing config")
        assert driver.find_elements("xpath", "//button[normalize-space()='Materialize']")
        driver.save_screenshot(str(ARTIFACTS / "dagster-launchpad.png"))
    assert Path(ARTIFACTS / "dagster-assets.png").stat().st_size > 10_000


@pytest.mark.browser
def test_post_call_outcomes_reads_as_a_table(stack, tmp_path):
    from salesops_pipeline_tests.support.browser import (
        chromium,
        dismiss_welcome_dialog,
        wait_for_text,
    )

    with chromium(tmp_path / "chromium-profile") as driver:
        driver.get(f"{stack.dagster_url}/assets/post_call_outcomes")
        dismiss_welcome_dialog(driver)
        wait_for_text(driver, "102224021", timeout=REPORT_SECONDS + 60)
        # The outcomes table in view, for the picture.
        for cell in driver.find_elements("css selector", "td"):
            if cell.text.strip() == "102224021":
                driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", cell)
                break
        time.sleep(1)
        ARTIFACTS.mkdir(exist_ok=True)
        driver.save_screenshot(str(ARTIFACTS / "dagster-post-call-outcomes.png"))
        # Each cell of the outcomes table a few lines at most: none squeezed to a character a
        # line by a long neighbour.
        cells = driver.execute_script(
            """return [...document.querySelectorAll('td')]
                 .filter(td => td.closest('table') && td.innerText.trim().length > 0)
                 .map(td => [td.innerText, td.getBoundingClientRect().height,
                             parseFloat(getComputedStyle(td).lineHeight) || 20]);"""
        )
    table = [(text, height, line) for text, height, line in cells if "102224021" in text]
    assert table, cells
    assert all(height <= 6 * line for _, height, line in cells), cells


@pytest.mark.browser
def test_the_progression_chart_shows_on_its_asset_page(stack, tmp_path):
    from selenium.webdriver.support.ui import WebDriverWait

    from salesops_pipeline_tests.support.browser import (
        chromium,
        dismiss_welcome_dialog,
        wait_for_text,
    )

    _wait(lambda: _current_month_answered(stack), FIRST_REPORTS_TIMEOUT, "never computed")

    def chart_shown(driver):
        return [
            image
            for image in driver.find_elements("css selector", "img")
            if "/api/progression/chart" in (image.get_attribute("src") or "")
            and driver.execute_script(
                "return arguments[0].complete && arguments[0].naturalWidth", image
            )
        ]

    with chromium(tmp_path / "chromium-profile") as driver:
        driver.get(f"{stack.dagster_url}/assets/agent_daily_progression")
        dismiss_welcome_dialog(driver)
        [image] = WebDriverWait(driver, 90).until(
            chart_shown, message="no progression chart on the asset page"
        )
        # The page shows the latest materialization, whichever month an earlier test computed.
        assert "month=20" in image.get_attribute("src")
        assert driver.execute_script("return arguments[0].naturalWidth", image) >= 600
        driver.execute_script("arguments[0].scrollIntoView()", image)
        time.sleep(1)
        ARTIFACTS.mkdir(exist_ok=True)
        driver.save_screenshot(str(ARTIFACTS / "dagster-progression-chart.png"))
        # The lineage of the reports, from the company's sales DB.
        driver.get(f"{stack.dagster_url}/locations/salesops_pipeline/asset-groups/sales_reporting")
        wait_for_text(driver, "sales_database")
        wait_for_text(driver, "monthly_team_sales")
        time.sleep(2)
        driver.save_screenshot(str(ARTIFACTS / "dagster-sales-lineage.png"))


def _post_callback_now(stack, call_id: str, callback: str) -> None:
    """The reference contact's newest call, ended now, asking for a callback at `callback`."""
    event = json.loads(fixture_path("events/post_call_2.1.json").read_text())
    now = datetime.now(ZoneInfo("Europe/Paris")).strftime("%d/%m/%Y %H:%M:%S")
    event |= {"callId": call_id, "callStart": now, "callEnd": now, "callBackDate": callback}
    response = requests.post(
        f"{stack.intake_url}/webhooks/post-call",
        json=event,
        headers={"X-API-KEY": stack.intake_key},
        timeout=10,
    )
    assert response.status_code == 202, response.text


SILENCE = 60.0
# Timing goals live in the benchmark: this only proves the warm path, far below the 5-8 s a
# sensor tick and a run's start would take.
AFTER_SILENCE_DEADLINE = 5.0


def test_an_event_after_a_minute_of_silence_reaches_the_provider_within_seconds(stack):
    inbox = Inbox(stack.home / "intake" / "inbox.sqlite")
    _wait(lambda: inbox.lag().backlog == 0, 120, "the earlier tests' events never finished")
    _wait(
        lambda: any(r["status"] == "STARTED" for r in _post_call_runs(stack)),
        60,
        "no warm post_call_job run",
    )
    quiet_for = time.monotonic() - _last_post["at"]
    if quiet_for < SILENCE:
        time.sleep(SILENCE - quiet_for)
    assert inbox.lag().backlog == 0
    posted = _last_post["at"] = time.monotonic()
    _post_callback_now(stack, "after-silence-1", "16/04/2030 09:30:00")
    while _contact(stack).get("retryDate") != "2030-04-16T09:30:00":
        waited = time.monotonic() - posted
        assert waited < AFTER_SILENCE_DEADLINE, f"not at the provider after {waited:.1f} s"
        time.sleep(0.05)
    print(f"after {SILENCE:.0f} s of silence: applied {time.monotonic() - posted:.2f} s after")


def test_warm_runs_hand_over_and_one_run_drains_the_lanes_at_a_time(stack):
    """By now the module's stack has been up for over a minute: its warm run handed its lanes
    over after RUN_SECONDS, retagged, its successor started before it ended, and one run at a
    time drains the lanes."""
    # Looked at until one run drains the lanes: a look taken during a hand-over sees the old
    # run retagged and its successor still starting. Never two at once.
    deadline = time.monotonic() + 60
    while True:
        data = stack.graphql(
            """
            { runsOrError(filter: {pipelineName: "post_call_job"}) {
                ... on Runs { results { runId status startTime endTime tags { key value } } } } }
            """
        )
        runs = [
            {**r, "lanes": next(t["value"] for t in r["tags"] if t["key"] == POST_CALL_LANE_TAG)}
            for r in data["runsOrError"]["results"]
        ]
        handed = [r for r in runs if r["lanes"] == "0,1,2,3:handing-over"]
        assert len(handed) >= 1, runs
        assert all(r["status"] == "SUCCESS" for r in handed if r["endTime"]), runs
        draining = [r for r in runs if r["lanes"] == "0,1,2,3" and r["status"] == "STARTED"]
        assert len(draining) <= 1, runs
        if draining:
            break
        assert time.monotonic() < deadline, f"no run drains the lanes: {runs}"
        time.sleep(0.5)
    # Each run lasted about RUN_SECONDS and its successor started before it ended.
    ended = sorted((r for r in handed if r["endTime"]), key=lambda r: r["startTime"])
    starts = sorted(r["startTime"] for r in runs if r["startTime"])
    for run in ended:
        later = [t for t in starts if t > run["startTime"]]
        assert later and later[0] < run["endTime"], (run, later[:1])


def test_simulate_finds_the_stack_on_its_ports(stack):
    # Run beside the stack: its SALESOPS_HOME, no intake option, no key in the environment.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SALESOPS_", "X_API", "REM"))}
    command = ["simulate", "--rate", "10", "--duration", "1", "--seed", "7"]
    simulated = subprocess.run(
        [sys.executable, "-m", "salesops_pipeline.cli", *command],
        env={**env, "SALESOPS_HOME": str(stack.home)},
        cwd=stack.home.parent,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert simulated.returncode == 0, simulated.stderr
    assert f"Posting 10 events to {stack.intake_url}" in simulated.stdout
    assert "\nAnswers      202 Accepted: 10\n" in simulated.stdout


def _lag_checks(stack, limit: int = 20) -> list[dict]:
    """The latest evaluations of post_call_lag, newest first."""
    data = stack.graphql(
        """
        query($limit: Int!) { assetCheckExecutions(
            assetKey: {path: ["post_call_outcomes"]}, checkName: "post_call_lag", limit: $limit)
          { evaluation { timestamp success severity } } }
        """,
        {"limit": limit},
    )
    return [e["evaluation"] for e in data["assetCheckExecutions"] if e["evaluation"]]


def _checks_since(stack, moment: float) -> list[dict]:
    return [e for e in _lag_checks(stack) if e["timestamp"] > moment]


def _provider_refuses_writes(stack, refuse: bool) -> None:
    """Every write to a contact answered 503 (come back in 15 s: the event's 8 attempts then
    outlast the stall), or none."""
    fault = {
        "path_prefix": "/voice/contacts",
        "method": "PATCH",
        "status": 503,
        "retry_after": 15,
        "times": 100_000,
        "probability": 1.0,
    }
    response = requests.request(
        "POST" if refuse else "DELETE",
        f"{stack.sandbox_url}/_sandbox/faults",
        json=fault if refuse else None,
        headers={"X-API-KEY": stack.provider_key},
        timeout=5,
    )
    response.raise_for_status()


def _wait(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        assert time.monotonic() < deadline, what
        time.sleep(0.5)
    return result


def test_a_stall_fails_post_call_lag_within_two_intervals_alerting_once(stack, chat):
    # At rest first: nothing waiting, the check passing, any earlier alert of the module cleared.
    inbox = Inbox(stack.home / "intake" / "inbox.sqlite")
    _wait(lambda: inbox.lag().backlog == 0, 120, "the earlier tests' events never finished")
    _wait(lambda: (last := _lag_checks(stack, 1)) and last[0]["success"], 60, "never passed")
    _wait(
        lambda: not chat.texts() or ":rotating_light:" not in chat.texts()[-1],
        60,
        f"an earlier alert never cleared: {chat.texts()}",
    )
    seen = len(chat.texts())
    _provider_refuses_writes(stack, True)
    # The reference contact's newest call, asking for a callback the provider now refuses.
    _post_callback_now(stack, "stall-1", "15/04/2030 11:00:00")
    behind_from = time.time() + MAX_LAG

    # The check fails within two intervals of the lag passing its limit, with severity ERROR.
    failures = _wait(
        lambda: [e for e in _checks_since(stack, behind_from - 1) if not e["success"]],
        MAX_LAG + 4 * LAG_CHECK_INTERVAL,
        "post_call_lag never failed",
    )
    failed_after = min(e["timestamp"] for e in failures) - behind_from
    print(f"post_call_lag failed {failed_after:.1f} s after the lag passed {MAX_LAG} s")
    assert failed_after <= 2 * LAG_CHECK_INTERVAL
    assert all(e["severity"] == "ERROR" for e in failures)
    # The chat hears of it from the same evaluation, once: pending or already retrying.
    _wait(lambda: len(chat.texts()) > seen, LAG_CHECK_INTERVAL, "no alert")
    alerted = chat.arrivals[seen]
    assert alerted - behind_from <= 2 * LAG_CHECK_INTERVAL
    assert "post-call is behind" in chat.texts()[seen] and "backlog 1 (" in chat.texts()[seen]

    # While the stall lasts the check keeps failing, and the chat hears nothing more.
    # A later evaluation than the alert's own (stored a moment after the alert was sent).
    _wait(lambda: _checks_since(stack, alerted + 3), 3 * LAG_CHECK_INTERVAL, "no later check")
    assert not any(e["success"] for e in _checks_since(stack, alerted))
    assert len(chat.texts()) == seen + 1

    _provider_refuses_writes(stack, False)
    _wait(
        lambda: len(chat.texts()) > seen + 1,
        90 + ALERT_CLEAR_AFTER,
        "no recovery after the stall ended",
    )
    assert "caught up" in chat.texts()[seen + 1]
    assert _contact(stack)["retryDate"] == "2030-04-15T11:00:00"
    recovered = chat.arrivals[seen + 1]
    # Told only once the check had passed for the hold period, at every evaluation since.
    passed_again = min(e["timestamp"] for e in _checks_since(stack, alerted) if e["success"])
    assert recovered - passed_again >= ALERT_CLEAR_AFTER - 3
    assert all(e["success"] for e in _checks_since(stack, passed_again - 0.001))
    _wait(lambda: _checks_since(stack, recovered + 3), 3 * LAG_CHECK_INTERVAL, "no later check")
    assert all(e["success"] for e in _checks_since(stack, recovered))
    assert len(chat.texts()) == seen + 2


def test_a_second_start_on_busy_ports_is_refused(stack):
    kept = {name: (stack.home / name).read_bytes() for name in ("local-keys.env", "stack.json")}
    ports = {"--dagster-port": stack.dagster_port, "--intake-port": stack.intake_port}
    ports["--sandbox-port"] = stack.sandbox_port
    second = subprocess.run(
        [sys.executable, "-m", "salesops_pipeline.cli", "dev"]
        + [str(part) for option in ports.items() for part in option],
        env={**os.environ, "SALESOPS_HOME": str(stack.home)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert second.returncode == 1
    assert "stack is up" not in second.stdout
    [line] = second.stderr.strip().splitlines()
    assert f"port {stack.dagster_port} (Dagster UI)" in line and "already in use" in line
    # The running stack is untouched: same records, still answering.
    assert {name: (stack.home / name).read_bytes() for name in kept} == kept
    assert requests.get(f"{stack.intake_url}/healthz", timeout=5).status_code == 200


def test_restarts_keep_keys_sigterm_exits_0_and_a_dead_part_exits_1(tmp_path):
    # A stack of its own, so that stopping it does not disturb the module's.
    home = tmp_path / "salesops_home"
    first = start_stack(home, generate_keys=True)
    assert all(port_open(port) for port in first.ports())
    assert "generated local key" in "".join(first.output)
    stop_stack(first)
    assert first.process.returncode == 0
    _wait_until_closed(first.ports())

    again = start_stack(home, generate_keys=True)
    printed = "".join(again.output)
    assert (again.intake_key, again.provider_key) == (first.intake_key, first.provider_key)
    assert f"X_API_KEY         {first.intake_key}  (kept local key" in printed
    # The metrics token, generated and kept like the keys, is the only way into /metrics.
    token = load_local_keys(home)["SALESOPS_METRICS_TOKEN"]
    assert f"SALESOPS_METRICS_TOKEN {token}  (kept local key" in printed
    metrics = f"{again.intake_url}/metrics"
    scraped = requests.get(metrics, headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert scraped.status_code == 200 and "salesops_post_call_backlog" in scraped.text
    for webhook_key in (
        {"X-API-KEY": again.intake_key},
        {"Authorization": f"Bearer {again.intake_key}"},
    ):
        assert requests.get(metrics, headers=webhook_key, timeout=10).status_code == 401

    # The intake dies on its own: the supervisor stops the rest and says so in its exit code.
    intake_pid = subprocess.run(
        ["pgrep", "-P", str(again.process.pid), "-f", "salesops_pipeline.cli serve"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()[0]
    os.kill(int(intake_pid), signal.SIGKILL)
    assert again.process.wait(timeout=90) == 1
    _wait_until_closed(again.ports())
    assert not (home / "stack.json").exists()


def _wait_until_closed(ports: list[int]) -> None:
    deadline = time.monotonic() + 30
    while any(port_open(port) for port in ports):
        assert time.monotonic() < deadline, "a process of the stack is still listening"
        time.sleep(0.5)
