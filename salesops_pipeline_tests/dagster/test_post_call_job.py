"""The post-call automation end to end, over loopback: the provider's payloads posted to the
intake, the sensor's run requests, post_call_job against the sandbox provider, and the
guarantees: applied once, replays and retries write nothing twice, transfers spread evenly and
only to agents the CRM says are active support agents, and what a webhook sent is shown in the
run's outcomes table, never rendered."""

import json
import re
import sqlite3
import threading
from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest
import requests

from salesops_pipeline.assets.constants import POST_CALL_LANE_TAG
from salesops_pipeline.assets.post_call import handed_over, post_call_job, post_call_sensor
from salesops_pipeline.clients.models import CrmAgent, Parsed
from salesops_pipeline.post_call.inbox import Inbox, lane_key, lane_of
from salesops_pipeline.resources import InboxResource, PostCallRulesResource, ProviderResource
from salesops_pipeline.services.http_server import serving_in_thread
from salesops_pipeline.services.intake.app import create_intake_app
from salesops_pipeline.services.sandbox.seed import (
    REFERENCE_CONTACT_ID,
    SUPPORT_AGENTS,
    demo_agents,
)
from salesops_pipeline.services.sandbox.server import running_sandbox
from salesops_pipeline.services.sandbox.store import SandboxStore
from salesops_pipeline_tests.conftest import arm_fault, markdown_table_cells, post_call_processor
from salesops_pipeline_tests.support.post_call_outcome import callback_event

KEY = "intake-key"


def _inbox_resource(inbox: Inbox) -> InboxResource:
    # One pass per run, as a run of the instance would do once its lane is idle.
    return InboxResource(path=str(inbox.path), lanes=2, idle_seconds=0)


class Pipeline:
    """The intake, the inbox, the sensor and the job wired to one sandbox provider."""

    def __init__(self, sandbox, inbox: Inbox, intake_url: str):
        self.sandbox = sandbox
        self.inbox = inbox
        self.intake_url = intake_url
        self.results = []
        self.instance = dg.DagsterInstance.ephemeral()

    def post(self, payload) -> requests.Response:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        return requests.post(
            f"{self.intake_url}/webhooks/post-call",
            data=data,
            headers={"X-API-KEY": KEY, "Content-Type": "application/json"},
            timeout=5,
        )

    def resources(self):
        return {
            "inbox": _inbox_resource(self.inbox),
            "provider": ProviderResource(
                host=self.sandbox.url, api_key=self.sandbox.api_key, read_timeout_seconds=5
            ),
            "post_call_rules": PostCallRulesResource(),
        }

    def tick_and_run(self) -> list[dg.ExecuteInProcessResult]:
        """One sensor tick, then every run it requested, in process."""
        context = dg.build_sensor_context(
            resources={"inbox": _inbox_resource(self.inbox)}, instance=self.instance
        )
        result = post_call_sensor(context)
        if isinstance(result, dg.SkipReason):
            return []
        runs = [
            post_call_job.execute_in_process(
                run_config=request.run_config, resources=self.resources()
            )
            for request in result.run_requests
        ]
        self.results.extend(runs)
        return runs

    def contact(self, contact_id=REFERENCE_CONTACT_ID) -> dict:
        return json.loads(self.sandbox.app.state.store.contact(contact_id))

    def patches(self, contact_id=REFERENCE_CONTACT_ID) -> list[dict]:
        return [c for cid, c in self.sandbox.app.state.applied_patches if cid == contact_id]


@pytest.fixture
def pipeline(sandbox, tmp_path):
    inbox = Inbox(tmp_path / "inbox.sqlite")
    with serving_in_thread(create_intake_app(inbox, api_key=KEY)) as url:
        yield Pipeline(sandbox, inbox, url)


def _expected_support_agent(store: SandboxStore) -> str:
    """Least loaded active support agent, counted straight from the sandbox's campaign B."""
    active = sorted(name for name, is_active, _ in SUPPORT_AGENTS if is_active)
    loads = dict.fromkeys(active, 0)
    with store.connect() as conn:
        for (body,) in conn.execute("SELECT body FROM contact WHERE campaign = 'B'"):
            agent = json.loads(body).get("assignedAgent")
            if agent in loads:
                loads[agent] += 1
    return min(active, key=lambda name: (loads[name], name))


def test_reference_payloads_reschedule_and_transfer(pipeline, reference_events):
    expected_agent = _expected_support_agent(pipeline.sandbox.app.state.store)
    for raw in reference_events.values():
        assert pipeline.post(raw).status_code == 202
    [run] = pipeline.tick_and_run()
    assert run.success
    contact = pipeline.contact()
    assert contact["retryDate"] == "2025-04-14T10:30:00"
    assert contact["assignedAgent"] == expected_agent
    assert pipeline.patches() == [
        {"retryDate": "2025-04-14T10:30:00"},
        {"assignedAgent": expected_agent},
    ]
    # What the run did is visible in the Dagster UI, on the post_call_outcomes asset.
    [materialization] = run.get_asset_materialization_events()
    metadata = materialization.materialization.metadata
    assert metadata["events_applied"].value == 2
    # Numbers the asset's plots chart: the batch's latency, the inbox's backlog and lag.
    assert 0 <= metadata["latency_p50_s"].value <= metadata["latency_p95_s"].value < 60
    assert (metadata["backlog"].value, metadata["lag_s"].value) == (0.0, 0.0)
    assert "reschedule to 2025-04-14T10:30:00" in metadata["outcomes"].value
    # ... and kept in the inbox's outcomes log.
    [outcome] = pipeline.inbox.outcomes("102344028")
    assert outcome["writes"] == [
        {
            "method": "PATCH",
            "contact": REFERENCE_CONTACT_ID,
            "changes": {"assignedAgent": expected_agent},
        }
    ]


def test_a_late_older_call_shows_superseded_in_the_runs_outcomes(pipeline, reference_events):
    pipeline.post(reference_events["post_call_2.2"])  # 11:22, the newer call
    pipeline.tick_and_run()
    pipeline.post(reference_events["post_call_2.1"])  # 10:26, delivered late
    [run] = pipeline.tick_and_run()
    [materialization] = run.get_asset_materialization_events()
    metadata = materialization.materialization.metadata
    assert metadata["events_superseded"].value == 1
    assert "| 102224021 | superseded |" in metadata["outcomes"].value
    assert "retryDate" not in pipeline.contact() or pipeline.contact()["retryDate"] is None
    assert pipeline.inbox.get("102224021").status == "superseded"


def test_replayed_and_redelivered_events_make_no_second_write(pipeline, reference_events):
    raw = reference_events["post_call_2.1"]
    pipeline.post(raw)
    pipeline.tick_and_run()
    assert len(pipeline.patches()) == 1
    assert pipeline.post(raw).json()["status"] == "duplicate"
    assert pipeline.inbox.replay("102224021")
    [run] = pipeline.tick_and_run()
    assert run.success
    assert len(pipeline.patches()) == 1
    assert [o["status"] for o in pipeline.inbox.outcomes("102224021")] == ["applied", "skipped"]


def test_rerun_of_the_same_batch_writes_nothing(pipeline, reference_events):
    pipeline.post(reference_events["post_call_2.1"])
    [run] = pipeline.tick_and_run()
    again = post_call_job.execute_in_process(
        run_config=run.dagster_run.run_config, resources=pipeline.resources()
    )
    assert again.success
    assert len(pipeline.patches()) == 1


def test_503_on_the_patch_is_retried_and_applied_once(pipeline, reference_events):
    arm_fault(pipeline.sandbox, method="PATCH", path_prefix="/voice/contacts/", status=503)
    pipeline.post(reference_events["post_call_2.1"])
    pipeline.tick_and_run()
    assert pipeline.sandbox.app.state.faults.log[0][2] == 503
    assert pipeline.patches() == [{"retryDate": "2025-04-14T10:30:00"}]
    assert pipeline.inbox.get("102224021").status == "applied"
    assert pipeline.inbox.write_of("102224021").sends == 2  # refused, then sent again


def test_unknown_contact_fails_for_good(pipeline):
    pipeline.post({"callId": "u1", "contactId": "no-such-contact", "wrapup": "support"})
    [run] = pipeline.tick_and_run()
    assert run.success  # the run records the failure; it does not crash
    record = pipeline.inbox.get("u1")
    assert record.status == "failed"
    assert "unknown contact no-such-contact" in record.last_error
    assert pipeline.inbox.requeue_due(now=datetime.now(UTC) + timedelta(days=1)) == 0


def test_one_bad_event_does_not_block_the_others(pipeline, reference_events):
    pipeline.post({"callId": "u1", "contactId": "no-such-contact", "wrapup": "support"})
    pipeline.post(reference_events["post_call_2.1"])
    pipeline.tick_and_run()
    assert pipeline.inbox.get("u1").status == "failed"
    assert pipeline.inbox.get("102224021").status == "applied"


def test_provider_down_is_retried_later_until_applied(pipeline, reference_events):
    arm_fault(
        pipeline.sandbox, method="PATCH", path_prefix="/voice/contacts/", status=503, times=50
    )
    pipeline.post(reference_events["post_call_2.1"])
    pipeline.tick_and_run()
    assert pipeline.inbox.get("102224021").status == "retrying"
    assert pipeline.patches() == []
    requests.delete(
        f"{pipeline.sandbox.url}/_sandbox/faults", headers={"X-API-KEY": "test-key"}, timeout=5
    )
    assert pipeline.tick_and_run() == []  # the retry is not due yet
    pipeline.inbox.requeue_due(now=datetime.now(UTC) + timedelta(hours=1))
    [run] = pipeline.tick_and_run()
    assert run.success
    assert pipeline.inbox.get("102224021").status == "applied"
    assert len(pipeline.patches()) == 1


def test_crash_between_write_and_record_is_not_applied_twice(
    pipeline, reference_events, monkeypatch
):
    pipeline.post(reference_events["post_call_2.1"])
    original_finish = Inbox.finish
    crashes = []

    def crash_once(self, call_id, owner, **kwargs):
        if not crashes:
            crashes.append(call_id)
            raise SystemExit("the run's process died")
        return original_finish(self, call_id, owner, **kwargs)

    monkeypatch.setattr(Inbox, "finish", crash_once)
    processor = _processor(pipeline, run_id="crashed-run")
    with pytest.raises(SystemExit):
        processor.process("102224021")
    assert len(pipeline.patches()) == 1
    assert pipeline.inbox.get("102224021").status == "pending"
    # The run is retried (or the event queued again) after the lease expired, once the write
    # can no longer land.
    with pipeline.inbox.transaction() as conn:
        conn.execute("UPDATE event SET lease_until = NULL")
        conn.execute("UPDATE write SET sent_at = '2000-01-01T00:00:00.000+00:00'")
    outcome = _processor(pipeline, run_id="retry-run").process("102224021")
    assert outcome.status == "applied"
    assert "confirmed by reading the contact" in outcome.decision
    assert len(pipeline.patches()) == 1


def test_a_run_that_fails_in_its_step_leaves_its_events_claimable_at_once(
    pipeline, reference_events, monkeypatch
):
    pipeline.post(reference_events["post_call_2.1"])

    def inbox_unavailable(self, *args, **kwargs):
        raise sqlite3.OperationalError("database is locked")

    # Recording the event's outcome fails, and so does recording that failure: the step fails
    # with the event claimed.
    monkeypatch.setattr(Inbox, "finish", inbox_unavailable)
    context = dg.build_sensor_context(
        resources={"inbox": _inbox_resource(pipeline.inbox)}, instance=pipeline.instance
    )
    [request] = post_call_sensor(context).run_requests
    run = post_call_job.execute_in_process(
        run_config=request.run_config, resources=pipeline.resources(), raise_on_error=False
    )
    assert not run.success
    monkeypatch.undo()
    # Not held until its lease runs out: the lane's next run takes it at once.
    assert pipeline.inbox.workers() == []
    assert pipeline.inbox.claim("102224021", "the-next-run") is not None
    assert pipeline.inbox.lanes_with_work(2)


@pytest.mark.parametrize(
    "agents",
    [
        [{**agent, "active": False} for agent in demo_agents()],
        # A CRM record that does not say the agent is active: left out, never assumed active.
        [{k: v for k, v in agent.items() if k != "active"} for agent in demo_agents()],
    ],
    ids=["all-inactive", "no-active-flag"],
)
def test_no_candidate_agent_fails_with_that_reason(tmp_path, agents):
    store = SandboxStore(tmp_path / "provider.sqlite")
    store.create()
    store.add_agents(agents)
    store.add_contacts("A", [{"id": "c1", "phone": "0611111111"}])
    inbox = Inbox(tmp_path / "inbox.sqlite")
    inbox.accept("t1", json.dumps({"callId": "t1", "contactId": "c1", "wrapup": "support"}))
    with running_sandbox(store, api_key="k") as sandbox:
        outcome = _processor_for(sandbox, inbox).process("t1")
    assert outcome.status == "failed"
    assert outcome.error == "no active support agent to transfer to"
    assert inbox.transfers() == {}


class _LooseCrm:
    """A CRM whose list for a team also carries `extra` agents, as one that ignores or widens
    the team filter would."""

    def __init__(self, crm, extra: list[CrmAgent]):
        self.crm = crm
        self.extra = extra

    def list_agents(self, *, team=None):
        listed = self.crm.list_agents(team=team)
        return Parsed(items=[*self.extra, *listed.items], rejected=listed.rejected)


@pytest.mark.parametrize(
    "fields",
    [
        {"team": "sales", "active": True},
        {"team": None, "active": True},
        {"active": True},
        {"team": "support"},
        {"team": "support", "active": None},
    ],
)
def test_only_active_agents_of_the_support_team_get_a_transfer(level_sandbox, tmp_path, fields):
    inbox = Inbox(tmp_path / "inbox.sqlite")
    _transfer_events(inbox, 1)
    processor = _processor_for(level_sandbox, inbox)
    # Sorted first with no load: the one chosen if it counted as a candidate at all.
    intruder = CrmAgent.model_validate({"username": "aaa.intruder@example.com", **fields})
    processor.crm = _LooseCrm(processor.crm, [intruder])
    assert processor.process("t0").status == "applied"
    active = {name for name, is_active, _ in SUPPORT_AGENTS if is_active}
    assert inbox.transfers()["c0"] in active


def test_what_a_webhook_sent_is_shown_not_rendered_in_the_outcomes(pipeline):
    call_id = "e1 | applied | <img src=x onerror=alert(1)> |\n| 999 | applied | *forged* | – | |"
    contact_id = "ghost_[link](http://evil.example)`\r"
    assert pipeline.post({"callId": call_id, "contactId": contact_id, "wrapup": "support"}).ok
    [run] = pipeline.tick_and_run()
    [materialization] = run.get_asset_materialization_events()
    table = materialization.materialization.metadata["outcomes"].value
    lines = table.split("\n")
    assert len(lines) == 3  # header, separator, the one event: no forged row
    assert [len(markdown_table_cells(line)) for line in lines] == [5, 5, 5]
    cells = markdown_table_cells(lines[2])
    assert cells[0].strip().startswith("e1 \\| applied \\| \\<img src=x")
    assert cells[1].strip() == "failed"
    assert "ghost\\_\\[link\\](http://evil.example)\\`\\\\r" in cells[4]
    assert not re.search(r"(?<!\\)[<*`\[]", table) and "\r" not in table


def _processor(pipeline, run_id):
    return _processor_for(pipeline.sandbox, pipeline.inbox, run_id)


def _processor_for(sandbox, inbox, run_id="test-run"):
    return post_call_processor(sandbox, inbox, run_id)


@pytest.fixture
def level_sandbox(tmp_path):
    """Support agents with no contacts at all, and 30 unassigned contacts of campaign B (the
    load campaign) to hand over."""
    store = SandboxStore(tmp_path / "provider.sqlite")
    store.create()
    store.add_agents(demo_agents())
    store.add_contacts("B", [{"id": f"c{i}", "phone": f"06111111{i:02d}"} for i in range(30)])
    with running_sandbox(store, api_key="k") as sandbox:
        yield sandbox


def _transfer_events(inbox, count):
    for i in range(count):
        inbox.accept(
            f"t{i}", json.dumps({"callId": f"t{i}", "contactId": f"c{i}", "wrapup": "support"})
        )


def _active_loads(inbox):
    active = [name for name, is_active, _ in SUPPORT_AGENTS if is_active]
    transfers = list(inbox.transfers().values())
    return {name: transfers.count(name) for name in active}, transfers


def test_a_burst_of_30_transfers_spreads_evenly_across_runs(level_sandbox, tmp_path):
    inbox = Inbox(tmp_path / "inbox.sqlite")
    _transfer_events(inbox, 30)
    for _ in range(3):  # three runs of ten events each, in one lane
        config = {
            "ops": {
                "apply_post_call_events": {
                    "config": {"lanes": [0], "lane_count": 1, "idle_seconds": 0, "batch": 10}
                }
            }
        }
        assert post_call_job.execute_in_process(
            run_config=config,
            resources={
                "inbox": _inbox_resource(inbox),
                "provider": ProviderResource(host=level_sandbox.url, api_key="k"),
                "post_call_rules": PostCallRulesResource(),
            },
        ).success
    loads, transfers = _active_loads(inbox)
    assert len(transfers) == 30
    assert max(loads.values()) - min(loads.values()) <= 1
    assert "mathieu.jau@walter-learning.com" not in transfers  # inactive


def test_a_run_of_many_passes_reports_them_in_one_window(level_sandbox, tmp_path):
    inbox = Inbox(tmp_path / "inbox.sqlite")
    _transfer_events(inbox, 30)
    config = {  # passes of 4 events, until the lane has been idle a second
        "ops": {
            "apply_post_call_events": {
                "config": {"lanes": [0], "lane_count": 1, "idle_seconds": 1, "batch": 4}
            }
        }
    }
    run = post_call_job.execute_in_process(
        run_config=config,
        resources={
            "inbox": _inbox_resource(inbox),
            "provider": ProviderResource(host=level_sandbox.url, api_key="k"),
            "post_call_rules": PostCallRulesResource(),
        },
    )
    assert run.success
    # Eight passes, one report: a run reports a minute's events at a time, and what is left
    # when it ends.
    [materialization] = run.get_asset_materialization_events()
    metadata = materialization.materialization.metadata
    assert metadata["events"].value == 30 and metadata["events_applied"].value == 30
    assert metadata["events_failed"].value == 0  # every status charted, 0 included
    assert metadata["writes"].value == 30
    assert 0 <= metadata["latency_p50_s"].value <= metadata["latency_p95_s"].value
    assert metadata["window_s"].value >= 0
    table = metadata["outcomes"].value.split("\n")
    assert len(table) == 2 + 30
    # Short cells: one long cell squeezes the others to a character a line in the UI.
    assert all(len(cell.strip()) <= 100 for row in table for cell in markdown_table_cells(row))
    assert "transfer to support: " in table[2] and "(least loaded; loads: " in table[2]


def test_two_concurrent_runs_do_not_race_on_counts(level_sandbox, tmp_path):
    inbox = Inbox(tmp_path / "inbox.sqlite")
    _transfer_events(inbox, 30)
    errors = []

    def run(run_id, call_ids):
        try:
            processor = _processor_for(level_sandbox, inbox, run_id)
            for call_id in call_ids:
                assert processor.process(call_id).status == "applied"
        except BaseException as error:  # noqa: BLE001 - reported to the main thread below
            errors.append(error)

    threads = [
        threading.Thread(target=run, args=("run-a", [f"t{i}" for i in range(0, 30, 2)])),
        threading.Thread(target=run, args=("run-b", [f"t{i}" for i in range(1, 30, 2)])),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors
    loads, transfers = _active_loads(inbox)
    assert len(transfers) == 30
    assert max(loads.values()) - min(loads.values()) <= 1


def _run_both_lanes(pipeline, instance, tags=None) -> dg.ExecuteInProcessResult:
    """One run of post_call_job over lanes 0 and 1 of 2, one pass each."""
    return post_call_job.execute_in_process(
        run_config={
            "ops": {
                "apply_post_call_events": {
                    "config": {"lanes": [0, 1], "lane_count": 2, "idle_seconds": 0, "batch": 50}
                }
            }
        },
        resources=pipeline.resources(),
        instance=instance,
        tags=tags,
    )


def test_a_run_of_several_lanes_shows_every_event_in_its_log_and_outcomes(pipeline):
    """One run drains both lanes, a thread each: every event is on a line of the run's log and
    in a post_call_outcomes table, whichever lane it fell in."""
    with pipeline.sandbox.app.state.store.connect() as conn:
        contacts = [row[0] for row in conn.execute("SELECT id FROM contact ORDER BY id")]
    by_lane: dict[int, list[str]] = {}
    for contact in contacts:
        by_lane.setdefault(lane_of(lane_key(json.dumps({"contactId": contact})), 2), []).append(
            contact
        )
    end = datetime(2026, 3, 2, 9, 0)
    call_ids = []
    for lane in (0, 1):
        for n, contact in enumerate(by_lane[lane][:3]):
            event, _ = callback_event(f"lane{lane}-{n}", contact, end, days=2)
            assert pipeline.post(event).status_code == 202
            call_ids.append(event["callId"])
    instance = dg.DagsterInstance.ephemeral()
    result = _run_both_lanes(pipeline, instance)
    assert result.success
    logged = "\n".join(entry.user_message for entry in instance.all_logs(result.run_id))
    for call_id in call_ids:
        assert f"post-call {call_id}: applied" in logged
    tables = "\n".join(
        m.materialization.metadata["outcomes"].value
        for m in result.get_asset_materialization_events()
    )
    assert all(f"| {call_id} | applied |" in tables for call_id in call_ids)
    assert all(pipeline.inbox.get(call_id).status == "applied" for call_id in call_ids)


def test_a_retry_of_a_run_that_was_handing_over_leaves_the_lanes_to_its_successor(pipeline):
    event, _ = callback_event("left-to-successor", REFERENCE_CONTACT_ID, datetime(2026, 3, 2), 2)
    assert pipeline.post(event).status_code == 202
    result = _run_both_lanes(
        pipeline, dg.DagsterInstance.ephemeral(), tags={POST_CALL_LANE_TAG: handed_over("0,1")}
    )
    assert result.success
    assert result.output_for_node("apply_post_call_events") == {}
    assert pipeline.inbox.get("left-to-successor").status == "pending"
    assert pipeline.patches() == []
