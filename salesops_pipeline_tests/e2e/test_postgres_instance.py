"""The pipeline on a Dagster instance stored in PostgreSQL, as each shipped PostgreSQL instance
configures it: dagster.postgres.yaml (connection settings one by one) and dagster.database.yaml
(the shared SALESOPS_DATABASE_URL). On the throw-away server, the reference events go through
the sensor and post_call_job, and the run and its outcome are read back from the database."""

import json
from importlib import resources

import dagster as dg
import pytest

from salesops_pipeline.assets.post_call import post_call_job, post_call_outcomes, post_call_sensor
from salesops_pipeline.devtools.stack import install_instance
from salesops_pipeline.post_call.inbox import Inbox
from salesops_pipeline.resources import InboxResource, PostCallRulesResource, ProviderResource

# In-process (the throw-away server aside) and untimed: it may share the cores with other tests.
pytestmark = [pytest.mark.postgres, pytest.mark.shares_cores]


@pytest.fixture(scope="module")
def dagster_database(postgres_server):
    """The database dagster.postgres.yaml is pointed at, shared by this module's tests."""
    url = postgres_server.create_database("dagster")
    yield url
    postgres_server.drop_database(url)


def _postgres_yaml_settings(postgres_server, dagster_database, monkeypatch) -> None:
    """dagster.postgres.yaml's connection settings, one variable each."""
    monkeypatch.setenv("SALESOPS_PG_HOST", postgres_server.host)
    monkeypatch.setenv("SALESOPS_PG_PORT", str(postgres_server.port))
    monkeypatch.setenv("SALESOPS_PG_USER", postgres_server.user)
    monkeypatch.setenv("SALESOPS_PG_PASSWORD", "")
    monkeypatch.setenv("SALESOPS_PG_DB", dagster_database.rsplit("/", 1)[1])


@pytest.fixture(params=["dagster.postgres.yaml", "dagster.database.yaml"])
def postgres_instance(request, tmp_path, monkeypatch):
    if request.param == "dagster.postgres.yaml":
        _postgres_yaml_settings(
            request.getfixturevalue("postgres_server"),
            request.getfixturevalue("dagster_database"),
            monkeypatch,
        )
    else:
        # A database of its own, as a fresh deployment's shared database would be.
        monkeypatch.setenv("SALESOPS_DATABASE_URL", request.getfixturevalue("postgres_url"))
    home = tmp_path / "dagster_home"
    home.mkdir()
    shipped = resources.files("salesops_pipeline.deploy").joinpath(request.param)
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


def test_the_stack_keeps_its_runs_in_the_shared_database(postgres_url, tmp_path, monkeypatch):
    """With SALESOPS_DATABASE_URL alone, `salesops dev` installs an instance whose runs and
    events live in that database."""
    import psycopg2

    monkeypatch.setenv("SALESOPS_DATABASE_URL", postgres_url)
    home = tmp_path / "dagster"
    install_instance(home)
    instance = dg.DagsterInstance.from_config(str(home))
    try:
        assert instance.run_storage.postgres_url == postgres_url
        assert instance.event_log_storage.postgres_url == postgres_url
    finally:
        instance.dispose()
    conn = psycopg2.connect(postgres_url)
    try:
        cursor = conn.cursor()
        cursor.execute("SELECT table_name FROM information_schema.tables")
        assert {"runs", "event_logs"} <= {name for (name,) in cursor.fetchall()}
    finally:
        conn.close()
