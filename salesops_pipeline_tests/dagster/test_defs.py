"""The composition root loads, and everything in it is named, grouped, owned and documented."""

import subprocess
import sys

import dagster as dg

from salesops_pipeline.assets.constants import (
    POST_CALL_GROUP,
    SALES_REPORTING_GROUP,
    VOICE_CAMPAIGNS_GROUP,
)
from salesops_pipeline.assets.post_call import post_call_sensor
from salesops_pipeline.definitions import defs
from salesops_pipeline_tests.conftest import REPO_ROOT


def test_definitions_load_and_resolve():
    dg.Definitions.validate_loadable(defs)
    assert defs.resolve_job_def("sales_reports_job") is not None
    assert defs.resolve_job_def("campaign_duplicates_job") is not None
    assert defs.resolve_job_def("post_call_job") is not None
    sensor = defs.resolve_sensor_def("post_call_sensor")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert sensor.job_name == "post_call_job"
    assert defs.resolve_schedule_def("nightly_sales_reports_schedule") is not None
    lag = defs.resolve_sensor_def("post_call_lag_sensor")
    assert lag.default_status == dg.DefaultSensorStatus.RUNNING
    assert lag.minimum_interval_seconds <= 60  # the lag check at least every minute
    automation = defs.resolve_sensor_def("sales_reports_automation")
    assert automation.default_status == dg.DefaultSensorStatus.RUNNING
    morning = defs.resolve_schedule_def("morning_freshness_schedule")
    assert morning.default_status == dg.DefaultScheduleStatus.RUNNING
    assert (morning.cron_schedule, morning.execution_timezone) == ("5 4 * * *", "Europe/Paris")


def test_assets_are_grouped_owned_kinded_and_documented():
    graph = defs.resolve_asset_graph()
    specs = {key.to_user_string(): graph.get(key) for key in graph.get_all_asset_keys()}
    groups = {name: node.group_name for name, node in specs.items()}
    assert groups == {
        "sales_database": SALES_REPORTING_GROUP,
        "team_sales": SALES_REPORTING_GROUP,
        "monthly_team_sales": SALES_REPORTING_GROUP,
        "agent_daily_progression": SALES_REPORTING_GROUP,
        "progression_exports": SALES_REPORTING_GROUP,
        "voice_provider": VOICE_CAMPAIGNS_GROUP,
        "campaign_contacts": VOICE_CAMPAIGNS_GROUP,
        "cross_campaign_duplicates": VOICE_CAMPAIGNS_GROUP,
        "post_call_outcomes": POST_CALL_GROUP,
    }
    for node in specs.values():
        assert node.owners == ["team:sales_ops"]
        assert node.kinds
        assert node.description and len(node.description) > 40


def test_every_asset_has_checks():
    graph = defs.resolve_asset_graph()
    checked = {key.asset_key.to_user_string() for key in graph.asset_check_keys}
    # The two sources are outside the project: nothing here can check them but their readers.
    assert checked == {
        "team_sales",
        "monthly_team_sales",
        "agent_daily_progression",
        "progression_exports",
        "cross_campaign_duplicates",
        "post_call_outcomes",
    }


def test_the_frontend_files_wait_for_the_progression_checks():
    graph = defs.resolve_asset_graph()
    exports = graph.get(dg.AssetKey("progression_exports"))
    assert exports.parent_keys == {dg.AssetKey("agent_daily_progression")}
    gating = {
        key.name: graph.get_check_spec(key).blocking
        for key in graph.asset_check_keys
        if key.asset_key == dg.AssetKey("agent_daily_progression")
    }
    assert gating == {
        "progression_accumulates_daily_values": True,
        "progression_never_negative": True,
        "fresh_for_the_morning": False,
    }


def test_each_monthly_report_has_a_freshness_check_and_team_sales_a_policy():
    graph = defs.resolve_asset_graph()
    fresh = {
        key.asset_key.to_user_string()
        for key in graph.asset_check_keys
        if key.name == "fresh_for_the_morning"
    }
    assert fresh == {"monthly_team_sales", "agent_daily_progression", "progression_exports"}
    assert graph.get(dg.AssetKey("team_sales")).freshness_policy is not None


def test_provider_secrets_come_from_the_environment():
    provider = defs.resources["provider"]
    assert provider.host == dg.EnvVar("REMOTE_API_HOST")
    assert provider.api_key == dg.EnvVar("REMOTE_API_KEY")


def test_progression_is_partitioned_by_paris_month():
    node = defs.resolve_asset_graph().get(dg.AssetKey("agent_daily_progression"))
    assert node.partitions_def.timezone == "Europe/Paris"
    assert "2025-04" in node.partitions_def.get_partition_keys()


def test_loading_the_code_location_prints_no_warning():
    # Every process that loads it (webserver, daemon, each run) would print it again.
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "from salesops_pipeline.definitions import defs;"
            " defs.get_repository_def().get_all_jobs()",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO_ROOT,
    )
    assert loaded.returncode == 0, loaded.stderr
    assert "Warning" not in loaded.stderr, loaded.stderr


def test_the_post_call_sensor_declares_the_interval_it_ticks_at():
    # The daemon evaluates sensors every 5 s at the quickest: the UI shows what really happens.
    assert post_call_sensor.minimum_interval_seconds == 5
