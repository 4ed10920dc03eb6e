"""The pipeline on a Dagster instance stored in PostgreSQL (the shipped dagster.postgres.yaml):
a throw-away PostgreSQL server, the reference events through the sensor and post_call_job, and
the run and its outcome read back from the database."""

import json
import os
import shutil
import subprocess
import tempfile
from importlib import resources
from pathlib import Path

import dagster as dg
import pytest

from salesops_pipeline.assets.post_call import post_call_job, post_call_outcomes, post_call_sensor
from salesops_pipeline.post_call.inbox import Inbox
from salesops_pipeline.resources import InboxResource, PostCallRulesResource, ProviderResource
from salesops_pipeline_tests.support.stack_process import free_port
from salesops_pipeline_tests.support.system_packages import missing_for, postgres_binary

pytestmark = pytest.mark.postgres


def _pg_bin(name: str) -> str:
    found = postgres_binary(name)
    assert found, missing_for("postgres")
    return found


@pytest.fixture(scope="module")
def postgres():
    # Not under pytest's tmp dir: the server runs as the `postgres` user, who must reach it.
    base = Path(tempfile.mkdtemp(prefix="salesops-pg-", dir="/tmp"))
    base.chmod(0o755)
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_postgres:
        shutil.chown(base, "postgres", "postgres")
    data, port = base / "data", free_port()

    def run(*argv):
        subprocess.run(
            [*as_postgres, *argv], check=True, capture_output=True, text=True, timeout=120
        )

    run(_pg_bin("initdb"), "-D", str(data), "-A", "trust", "-U", "salesops", "--no-sync")
    run(
        _pg_bin("pg_ctl"),
        "-D",
        str(data),
        "-w",
        "-l",
        str(base / "server.log"),
        "start",
        "-o",
        f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off",
    )
    try:
        run(_pg_bin("createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "salesops", "dagster")
        yield {"host": "127.0.0.1", "port": str(port), "user": "salesops", "db": "dagster"}
    finally:
        run(_pg_bin("pg_ctl"), "-D", str(data), "-m", "immediate", "stop")
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def postgres_instance(postgres, tmp_path, monkeypatch):
    for name, value in postgres.items():
        monkeypatch.setenv(f"SALESOPS_PG_{'DB' if name == 'db' else name.upper()}", value)
    monkeypatch.setenv("SALESOPS_PG_PASSWORD", "")
    home = tmp_path / "dagster_home"
    home.mkdir()
    shipped = resources.files("salesops_pipeline.deploy").joinpath("dagster.postgres.yaml")
    (home / "dagster.yaml").write_text(shipped.read_text())
    instance = dg.DagsterInstance.from_config(str(home))
    yield instance
    instance.dispose()


def test_instance_is_stored_in_postgres(postgres_instance):
    assert type(postgres_instance.run_storage).__name__ == "PostgresRunStorage"
    assert type(postgres_instance.event_log_storage).__name__ == "PostgresEventLogStorage"


def test_post_call_pipeline_on_postgres(postgres_instance, sandbox, tmp_path, reference_events):
    inbox = Inbox(tmp_path / "inbox.sqlite")
    for raw in reference_events.values():
        inbox.accept(json.loads(raw)["callId"], raw.decode())
    # One lane, one pass: the run ends as soon as both events are handled.
    lane = InboxResource(path=str(inbox.path), lanes=1, idle_seconds=0)
    tick = post_call_sensor(
        dg.build_sensor_context(instance=postgres_instance, resources={"inbox": lane})
    )
    [request] = tick.run_requests
    result = post_call_job.execute_in_process(
        run_config=request.run_config,
        instance=postgres_instance,
        tags={"dagster/run_key": request.run_key},
        resources={
            "inbox": lane,
            "provider": ProviderResource(host=sandbox.url, api_key=sandbox.api_key),
            "post_call_rules": PostCallRulesResource(),
        },
    )
    assert result.success
    [stored_run] = postgres_instance.get_runs()
    assert stored_run.job_name == "post_call_job" and stored_run.is_success
    event = postgres_instance.get_latest_materialization_event(post_call_outcomes.key)
    assert event.asset_materialization.metadata["events_applied"].value == 2
    assert len(sandbox.app.state.applied_patches) == 2
