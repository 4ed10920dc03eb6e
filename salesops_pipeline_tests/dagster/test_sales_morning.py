"""What a manager opens in the morning: the current month computed without anyone asking,
freshness judged on the months that matter, figures that say where they come from, a chart
that shows in place, and the sources at the start of the lineage."""

from datetime import datetime, timedelta

import dagster as dg
import pytest

from salesops_pipeline.assets import sales as sales_assets
from salesops_pipeline.assets.sales import (
    agent_daily_progression,
    freshness_checks,
    monthly_team_sales,
    progression_accumulates_daily_values,
    progression_exports,
    progression_never_negative,
    team_sales,
    team_sales_reconcile_with_sessions,
)
from salesops_pipeline.definitions import defs
from salesops_pipeline.sales import chart_links
from salesops_pipeline.sales.demo import generate_demo_db
from salesops_pipeline.timezone import BUSINESS_TIMEZONE
from salesops_pipeline_tests.conftest import query_warehouse, sales_report_resources

ASSETS = [team_sales, monthly_team_sales, agent_daily_progression, progression_exports]
CHECKS = [
    team_sales_reconcile_with_sessions,
    progression_accumulates_daily_values,
    progression_never_negative,
]
PARIS = BUSINESS_TIMEZONE


def _materialize(instance, resources, month, selection=None):
    result = dg.materialize(
        [*ASSETS, *CHECKS, *freshness_checks],
        partition_key=month,
        resources=resources,
        instance=instance,
        selection=selection,
        raise_on_error=False,
    )
    assert result.success
    return result


def _judge(instance, resources) -> dict[str, dg.AssetCheckEvaluation]:
    result = dg.materialize(
        [*ASSETS, *freshness_checks],
        instance=instance,
        resources=resources,
        selection=dg.AssetSelection.checks(*freshness_checks),
        raise_on_error=False,
    )
    return {e.asset_key.to_user_string(): e for e in result.get_asset_check_evaluations()}


def _this_month() -> str:
    return datetime.now(PARIS).strftime("%Y-%m")


@pytest.fixture
def current_month_db(sales_db_builder):
    """Lea sells 700 against a target of 1,000 on the 1st of the current month (Paris)."""
    b = sales_db_builder
    lea = b.agent("lea@example.com", b.team("sales"))
    first = f"{_this_month()}-01"
    b.operation(b.target(lea, first, 1000), 700.0, b.session(lea, 700.0, "new", first))
    return b.close()


@pytest.fixture
def frozen_now(monkeypatch):
    """Sets the time the freshness checks judge at; mid-month, so that only the current month
    is judged."""

    def freeze(at: datetime) -> None:
        monkeypatch.setattr(sales_assets, "_now", lambda: at)

    return freeze


def test_another_month_computed_tonight_does_not_make_the_reports_fresh(
    small_sales_db, tmp_path, frozen_now
):
    frozen_now(datetime.now(PARIS).replace(day=15, hour=9))
    resources = sales_report_resources(small_sales_db, tmp_path / "home")
    with dg.instance_for_test() as instance:
        _materialize(instance, resources, "2025-04")  # an old month, computed just now
        judged = _judge(instance, resources)
    assert set(judged) == {"monthly_team_sales", "agent_daily_progression", "progression_exports"}
    for evaluation in judged.values():
        assert evaluation.passed is False
        assert evaluation.severity == dg.AssetCheckSeverity.ERROR
        assert evaluation.metadata["stale_months"].value == _this_month()
        assert "never" in evaluation.metadata["months_judged"].value


def test_the_current_month_computed_since_the_night_is_fresh(small_sales_db, tmp_path, frozen_now):
    resources = sales_report_resources(small_sales_db, tmp_path / "home")
    with dg.instance_for_test() as instance:
        _materialize(instance, resources, _this_month())
        # A deadline later today: what was computed just now counts for it.
        frozen_now(datetime.now(PARIS) + timedelta(hours=1))
        if datetime.now(PARIS).day <= 3:
            _materialize(instance, resources, sales_assets.freshness.previous_month(_this_month()))
        judged = _judge(instance, resources)
        assert all(e.passed for e in judged.values()), judged
        # Two nights later, nothing was computed since: overdue.
        frozen_now(datetime.now(PARIS) + timedelta(days=2, hours=1))
        judged = _judge(instance, resources)
    assert not any(e.passed for e in judged.values())


def test_team_sales_carries_a_freshness_policy_for_the_morning():
    node = defs.resolve_asset_graph().get(dg.AssetKey("team_sales"))
    policy = node.freshness_policy
    assert policy.deadline_cron == "0 4 * * *"
    assert policy.timezone == "Europe/Paris"
    assert policy.lower_bound_delta == timedelta(hours=2, minutes=15)


def _evaluate(instance, at, cursor=None):
    return dg.evaluate_automation_conditions(
        defs=defs,
        instance=instance,
        asset_selection=dg.AssetSelection.groups("sales_reporting").materializable(),
        evaluation_time=at,
        cursor=cursor,
    )


def test_a_new_stack_computes_the_current_month_without_being_asked():
    at = datetime(2026, 12, 5, 9, 0, tzinfo=PARIS)
    with dg.instance_for_test() as instance:
        first = _evaluate(instance, at)
        assert first.get_requested_partitions(dg.AssetKey("team_sales")) == {None}
        for key in ("monthly_team_sales", "agent_daily_progression"):
            assert first.get_requested_partitions(dg.AssetKey(key)) == {"2026-12"}, key
        # The files wait for the progression's checks to pass (next test).
        assert first.get_num_requested(dg.AssetKey("progression_exports")) == 0
        # Requested once: the next tick waits for those runs rather than asking again.
        assert _evaluate(instance, at + timedelta(seconds=30), first.cursor).total_requested == 0


def test_a_month_is_computed_as_soon_as_it_starts(small_sales_db, tmp_path):
    resources = sales_report_resources(small_sales_db, tmp_path / "home")
    with dg.instance_for_test() as instance:
        cursor = _evaluate(instance, datetime(2026, 12, 5, 9, 0, tzinfo=PARIS)).cursor
        _materialize(instance, resources, "2026-12")
        quiet = _evaluate(instance, datetime(2026, 12, 31, 23, 0, tzinfo=PARIS), cursor)
        assert quiet.total_requested == 0
        january = _evaluate(instance, datetime(2027, 1, 1, 0, 5, tzinfo=PARIS), quiet.cursor)
    for key in ("monthly_team_sales", "agent_daily_progression"):
        assert january.get_requested_partitions(dg.AssetKey(key)) == {"2027-01"}, key
    assert january.get_num_requested(dg.AssetKey("team_sales")) == 0


def test_the_frontend_files_follow_a_progression_computed_alone(current_month_db, tmp_path):
    month = _this_month()
    resources = sales_report_resources(current_month_db, tmp_path / "home")
    with dg.instance_for_test() as instance:
        _materialize(instance, resources, month)
        at = datetime.now(PARIS)
        cursor = _evaluate(instance, at).cursor
        _materialize(
            instance,
            resources,
            month,
            selection=dg.AssetSelection.assets(agent_daily_progression),
        )
        following = _evaluate(instance, at + timedelta(seconds=30), cursor)
    assert following.get_requested_partitions(dg.AssetKey("progression_exports")) == {month}
    assert following.get_num_requested(dg.AssetKey("agent_daily_progression")) == 0


def _metadata(result, asset: str) -> dict:
    [event] = [
        e
        for e in result.get_asset_materialization_events()
        if e.asset_key.to_user_string() == asset
    ]
    return event.materialization.metadata


def test_the_ui_names_the_data_the_figures_come_from(small_sales_db, tmp_path):
    demo = generate_demo_db(tmp_path / "elsewhere" / "demo.sqlite", sessions=200)
    with dg.instance_for_test() as instance:
        company = _materialize(
            instance, sales_report_resources(small_sales_db, tmp_path / "a"), "2025-04"
        )
        generated = _materialize(instance, sales_report_resources(demo, tmp_path / "b"), "2025-04")
    for asset in ("team_sales", "monthly_team_sales", "agent_daily_progression"):
        assert _metadata(company, asset)["sales_db"].value.startswith("the company's sales DB")
        assert str(small_sales_db) in _metadata(company, asset)["sales_db"].value
        assert _metadata(generated, asset)["sales_db"].value.startswith("generated demo data")


def test_monthly_team_sales_compares_the_month_with_the_last(sales_db_builder, tmp_path):
    b = sales_db_builder
    sales = b.team("sales")
    lea = b.agent("lea@example.com", sales)
    for day, amount in (("2025-03-10", 1000.0), ("2025-04-10", 1500.0), ("2025-04-11", 500.0)):
        b.operation(b.target(lea, day, 100), amount, b.session(lea, amount, "new", day))
    path = b.close()
    home = tmp_path / "home"
    with dg.instance_for_test() as instance:
        result = _materialize(instance, sales_report_resources(path, home), "2025-04")
    stored = query_warehouse(
        home, "SELECT month, team, status, sessions, amount FROM monthly_team_sales"
    )
    assert stored == [("2025-04", "sales", "new", 2, 2000.0)]
    table = _metadata(result, "monthly_team_sales")["month_over_month"].value
    nnbsp, nbsp = "\u202f", "\u00a0"
    assert table.splitlines()[0].startswith("| team | sessions | 2025-03 | change |")
    assert (
        f"| sales | 2 | 1 | +100,0{nbsp}% | 2{nnbsp}000,00{nbsp}€ | 1{nnbsp}000,00{nbsp}€"
        f" | +100,0{nbsp}% |" in table
    )


def test_the_chart_shows_in_place_as_a_signed_link(small_sales_db, tmp_path, monkeypatch):
    monkeypatch.setenv("SALESOPS_FRONTEND_API_URL", "http://127.0.0.1:8020/")
    monkeypatch.setenv("SALESOPS_CHART_LINK_KEY", "link-key")
    with dg.instance_for_test() as instance:
        result = _materialize(
            instance, sales_report_resources(small_sales_db, tmp_path / "home"), "2025-04"
        )
    metadata = _metadata(result, "agent_daily_progression")
    chart = metadata["progression_chart"].value
    link = chart_links.chart_link("http://127.0.0.1:8020", "link-key", "2025-04")
    assert chart == f"![Progression 2025-04]({link})"
    # The UI shows markdown values under 1,000 characters in place, without a click.
    assert len(chart) < 1000
    assert next(iter(metadata)) == "progression_chart"


def test_without_a_reachable_frontend_the_chart_is_embedded(small_sales_db, tmp_path, monkeypatch):
    monkeypatch.delenv("SALESOPS_FRONTEND_API_URL", raising=False)
    with dg.instance_for_test() as instance:
        result = _materialize(
            instance, sales_report_resources(small_sales_db, tmp_path / "home"), "2025-04"
        )
    chart = _metadata(result, "agent_daily_progression")["progression_chart"].value
    assert chart.startswith("![Progression 2025-04](data:image/png;base64,")


def test_the_month_end_standing_is_sorted_and_french(small_sales_db, tmp_path):
    with dg.instance_for_test() as instance:
        result = _materialize(
            instance, sales_report_resources(small_sales_db, tmp_path / "home"), "2025-04"
        )
    table = _metadata(result, "agent_daily_progression")["month_end"].value.splitlines()
    # tom sold 70 % of his target, lea 25 %: tom first.
    assert table[2].startswith("| tom@example.com |") and "70,0\u00a0%" in table[2]
    assert table[3].startswith("| lea@example.com |") and "25,0\u00a0%" in table[3]


def test_the_lineage_starts_at_the_sales_db_and_the_voice_provider():
    graph = defs.resolve_asset_graph()
    sources = {"sales_database", "voice_provider"}
    for name in sources:
        node = graph.get(dg.AssetKey(name))
        assert not node.is_materializable
        assert node.owners and node.description and len(node.description) > 60
    children = {
        name: {key.to_user_string() for key in graph.get(dg.AssetKey(name)).child_keys}
        for name in sources
    }
    assert children == {
        "sales_database": {"team_sales", "monthly_team_sales", "agent_daily_progression"},
        "voice_provider": {"campaign_contacts"},
    }


def test_report_runs_take_one_process():
    for job in ("sales_reports_job", "campaign_duplicates_job", "sales_freshness_job"):
        assert defs.resolve_job_def(job).executor_def.name == "in_process"


def test_figures_that_fail_their_checks_are_not_followed_into_the_files(
    current_month_db, tmp_path, monkeypatch
):
    import dataclasses

    from salesops_pipeline.sales import reports

    month = _this_month()
    resources = sales_report_resources(current_month_db, tmp_path / "home")
    with dg.instance_for_test() as instance:
        _materialize(instance, resources, month)
        cursor = _evaluate(instance, datetime.now(PARIS)).cursor
        good = reports.agent_daily_progression

        def negative(conn, month, **kwargs):
            return [
                dataclasses.replace(row, progression_of_the_day=-1.0)
                for row in good(conn, month, **kwargs)
            ]

        monkeypatch.setattr(reports, "agent_daily_progression", negative)
        failed = dg.materialize(
            [*ASSETS, *CHECKS],
            partition_key=month,
            resources=resources,
            instance=instance,
            selection=dg.AssetSelection.assets(agent_daily_progression)
            | dg.AssetSelection.checks(progression_never_negative),
            raise_on_error=False,
        )
        verdicts = {e.check_name: e.passed for e in failed.get_asset_check_evaluations()}
        assert verdicts["progression_never_negative"] is False, verdicts
        following = _evaluate(instance, datetime.now(PARIS) + timedelta(seconds=30), cursor)
    assert following.get_num_requested(dg.AssetKey("progression_exports")) == 0
