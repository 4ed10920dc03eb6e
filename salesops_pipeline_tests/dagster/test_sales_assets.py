"""The sales assets and their checks, materialized through Dagster on small sales DBs.

Asserts what lands in the DuckDB warehouse, in the frontend's JSON files (one per agent, named
by the percent-encoded username) and in the metadata a manager sees, where names from the sales
DB are shown and never rendered as markdown; each check is run both on good data and on
deliberately broken data.
"""

import dataclasses
import json
import re
from urllib.parse import unquote

import dagster as dg
import duckdb
import pytest

from salesops_pipeline.assets.sales import (
    agent_daily_progression,
    monthly_team_sales,
    progression_accumulates_daily_values,
    progression_exports,
    progression_never_negative,
    team_sales,
    team_sales_reconcile_with_sessions,
)
from salesops_pipeline_tests.conftest import (
    markdown_table_cells,
    query_warehouse,
    sales_report_resources,
)

ASSETS = [team_sales, monthly_team_sales, agent_daily_progression, progression_exports]
NNBSP, NBSP = "\u202f", "\u00a0"
CHECKS = [
    team_sales_reconcile_with_sessions,
    progression_accumulates_daily_values,
    progression_never_negative,
]


def _materialize(db_path, home, month="2025-04", selection=None):
    return dg.materialize(
        [*ASSETS, *CHECKS],
        partition_key=month,
        resources=sales_report_resources(db_path, home),
        selection=selection,
        raise_on_error=False,
    )


def _checks(result) -> dict[str, bool]:
    return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}


_query = query_warehouse


def _corrupt(home, sql):
    conn = duckdb.connect(str(home / "warehouse.duckdb"))
    try:
        conn.execute(sql)
    finally:
        conn.close()


@pytest.fixture
def materialized(small_sales_db, tmp_path):
    home = tmp_path / "home"
    result = _materialize(small_sales_db, home)
    assert result.success
    return small_sales_db, home, result


def test_team_sales_lands_in_warehouse(materialized):
    _, home, _ = materialized
    rows = _query(home, "SELECT * FROM team_sales ORDER BY team, status")
    assert rows == [
        ("sales", "new", 1, 500.0, 0.5),
        ("sales", "unsubscribed", 1, 1500.0, 0.5),
        ("support", "new", 2, 1200.0, 0.3333),
        ("support", "unsubscribed", 1, 1500.0, 0.3333),
    ]


def test_team_sales_metadata_for_managers(materialized):
    _, _, result = materialized
    [event] = [
        e for e in result.get_asset_materialization_events() if e.asset_key.path == ["team_sales"]
    ]
    metadata = event.materialization.metadata
    assert metadata["dagster/row_count"].value == 4
    table = metadata["team_sales"].value
    assert f"| support | new | 2 | 1{NNBSP}200,00{NBSP}€ | 33,3{NBSP}% |" in table
    assert f"| tech | no sales | 0 | 0,00{NBSP}€ | – |" in table


def test_progression_lands_in_warehouse_for_its_month(materialized):
    _, home, _ = materialized
    rows = _query(
        home,
        "SELECT month, agent, CAST(date AS VARCHAR), amount_of_the_day, progression_accumulated"
        " FROM agent_daily_progression ORDER BY agent, date",
    )
    assert rows == [
        ("2025-04", "lea@example.com", "2025-04-01", 1500.0, 1.5),
        ("2025-04", "lea@example.com", "2025-04-02", -1500.0, 0.0),
        ("2025-04", "lea@example.com", "2025-04-03", 500.0, 0.25),
        ("2025-04", "tom@example.com", "2025-04-01", 700.0, 0.7),
    ]


def test_progression_metadata_has_counts_and_chart(materialized):
    _, _, result = materialized
    [event] = [
        e
        for e in result.get_asset_materialization_events()
        if e.asset_key.path == ["agent_daily_progression"]
    ]
    assert event.partition == "2025-04"
    metadata = event.materialization.metadata
    assert metadata["dagster/row_count"].value == 4
    assert metadata["agents"].value == 2
    assert metadata["progression_chart"].value.startswith("![Progression 2025-04](data:image/png;")
    assert (
        f"| lea@example.com | 2025-04-03 | 2{NNBSP}000,00{NBSP}€ | 500,00{NBSP}€ | 25,0{NBSP}% |"
        in metadata["month_end"].value
    )


def test_frontend_files_one_per_agent(materialized):
    _, home, _ = materialized
    month_dir = home / "exports" / "progression" / "2025-04"
    assert sorted(p.name for p in month_dir.iterdir()) == [
        "lea@example.com.json",
        "tom@example.com.json",
    ]
    document = json.loads((month_dir / "tom@example.com.json").read_text())
    assert document == [
        {
            "date": "2025-04-01",
            "target_of_the_day": 1000,
            "amount_of_the_day": 700,
            "progression_of_the_day": 0.7,
            "target_accumulated": 1000,
            "amount_accumulated": 700,
            "progression_accumulated": 0.7,
        }
    ]


# Usernames the old file naming folded together, or could not name a file after.
LOOKALIKE_USERNAMES = (
    "o'neil@example.com",
    "o_neil@example.com",
    "hélène@example.com",
    "hèlène@example.com",
    "a/b@example.com",
    "a_b@example.com",
    "%41@example.com",
    "A@example.com",
    ".",
    "..",
    ".hidden",
)


def test_every_agent_gets_a_file_of_their_own(sales_db_builder, tmp_path):
    b = sales_db_builder
    team = b.team("sales")
    for n, username in enumerate(LOOKALIKE_USERNAMES, start=1):
        b.operation(b.target(b.agent(username, team), "2025-04-01", 1000), 100.0 * n)
    home = tmp_path / "home"
    assert _materialize(b.close(), home).success
    month_dir = home / "exports" / "progression" / "2025-04"
    files = {path.name: path for path in month_dir.iterdir()}
    assert len(files) == len(LOOKALIKE_USERNAMES)
    assert not [name for name in files if name.startswith(".")]
    assert "o%27neil@example.com.json" in files and "o_neil@example.com.json" in files
    assert "h%C3%A9l%C3%A8ne@example.com.json" in files
    # The name gives the username back, and the file holds that agent's figures.
    amounts = {
        unquote(name.removesuffix(".json")): json.loads(path.read_text())[0]["amount_of_the_day"]
        for name, path in files.items()
    }
    assert amounts == {u: 100 * n for n, u in enumerate(LOOKALIKE_USERNAMES, start=1)}


def _metadata(result, asset: str) -> dict:
    [event] = [e for e in result.get_asset_materialization_events() if e.asset_key.path == [asset]]
    return {key: value.value for key, value in event.materialization.metadata.items()}


HOSTILE_TEAM = "ops | <img src=x onerror=alert(1)>\n| forged | row | 9 | 9 | 9% |"
HOSTILE_AGENT = "*lea*_[x](http://evil.example)`\r\n| forged | 2025-04-01 | 1 | 1 | 1% |"


@pytest.fixture
def hostile_names(sales_db_builder, tmp_path):
    """A sales DB whose team and agent names are written like markdown, HTML and table rows."""
    b = sales_db_builder
    team = b.team(HOSTILE_TEAM)
    agent = b.agent(HOSTILE_AGENT, team)
    b.session(agent, 700.0, "new|<b>bold</b>")
    b.operation(b.target(agent, "2025-04-01", 1000), 700.0)
    home = tmp_path / "home"
    result = _materialize(b.close(), home)
    assert result.success
    return b.path, home, result


def _assert_inert_table(table: str, rows: int, columns: int) -> None:
    lines = table.split("\n")
    assert len(lines) == 2 + rows  # header, separator, and not one forged row more
    assert all(len(markdown_table_cells(line)) == columns for line in lines)
    assert not re.search(r"(?<!\\)[<*_`\[]", table)  # every markdown/HTML special escaped
    assert "\r" not in table


def test_names_from_the_sales_db_are_shown_not_rendered(hostile_names):
    _, _, result = hostile_names
    team_table = _metadata(result, "team_sales")["team_sales"]
    _assert_inert_table(team_table, rows=1, columns=5)
    assert "| ops \\| \\<img src=x onerror=alert(1)\\>\\\\n\\| forged" in team_table
    assert "| new\\|\\<b\\>bold\\</b\\> |" in team_table
    month_over_month = _metadata(result, "monthly_team_sales")["month_over_month"]
    _assert_inert_table(month_over_month, rows=1, columns=7)
    assert month_over_month.split("\n")[2].startswith("| ops \\| \\<img src=x")
    month_end = _metadata(result, "agent_daily_progression")["month_end"]
    _assert_inert_table(month_end, rows=1, columns=5)
    assert month_end.split("\n")[2].startswith("| \\*lea\\*\\_\\[x\\](http://evil.example)")


def test_check_details_show_names_not_markdown(hostile_names):
    db_path, home, _ = hostile_names
    _corrupt(home, "UPDATE team_sales SET sessions = sessions + 1")
    _corrupt(home, "UPDATE agent_daily_progression SET progression_of_the_day = -0.5")
    evaluations = {
        e.check_name: {k: v.value for k, v in e.metadata.items()}
        for e in _run_checks_only(db_path, home).get_asset_check_evaluations()
    }
    for check, key in (
        ("team_sales_reconcile_with_sessions", "differences"),
        ("progression_never_negative", "first_negatives"),
    ):
        [line] = evaluations[check][key].split("\n")  # one item, no forged line
        assert line.startswith("- ")
        assert not re.search(r"(?<!\\)[<*_`|\[]", line)


def test_rematerializing_a_month_replaces_it(materialized):
    db_path, home, _ = materialized
    assert _materialize(db_path, home).success
    assert _query(home, "SELECT COUNT(*) FROM agent_daily_progression") == [(4,)]
    assert _materialize(db_path, home, month="2025-05").success
    assert _query(home, "SELECT month, COUNT(*) FROM agent_daily_progression GROUP BY month") == [
        ("2025-04", 4)
    ]
    assert list((home / "exports" / "progression" / "2025-05").iterdir()) == []


def test_missing_sales_db_fails_with_its_path(tmp_path):
    result = _materialize(tmp_path / "gone.sqlite", tmp_path / "home")
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "Sales database not found" in failure.step_failure_data.user_failure_data.description


def test_checks_pass_on_consistent_data(materialized):
    _, _, result = materialized
    assert _checks(result) == {
        "team_sales_reconcile_with_sessions": True,
        "progression_accumulates_daily_values": True,
        "progression_never_negative": True,
    }


def _run_checks_only(db_path, home):
    """The sales checks alone, on every stored month."""
    return dg.materialize(
        [*ASSETS, *CHECKS],
        resources=sales_report_resources(db_path, home),
        selection=dg.AssetSelection.checks(*CHECKS),
        # A failed blocking check fails its step; its evaluation is still recorded.
        raise_on_error=False,
    )


def test_reconciliation_fails_when_totals_drift(materialized):
    db_path, home, _ = materialized
    _corrupt(home, "UPDATE team_sales SET sessions = sessions + 1 WHERE team = 'support'")
    result = _run_checks_only(db_path, home)
    assert _checks(result)["team_sales_reconcile_with_sessions"] is False
    [evaluation] = [
        e
        for e in result.get_asset_check_evaluations()
        if e.check_name == "team_sales_reconcile_with_sessions"
    ]
    assert "support: stored 5 sessions" in evaluation.metadata["differences"].value


def test_accumulation_check_fails_on_wrong_running_sum(materialized):
    db_path, home, _ = materialized
    _corrupt(
        home,
        "UPDATE agent_daily_progression SET amount_accumulated = amount_accumulated + 10"
        " WHERE date = DATE '2025-04-02'",
    )
    checks = _checks(_run_checks_only(db_path, home))
    assert checks["progression_accumulates_daily_values"] is False
    assert checks["progression_never_negative"] is True


def test_negative_progression_check_fails(materialized):
    db_path, home, _ = materialized
    _corrupt(home, "UPDATE agent_daily_progression SET progression_of_the_day = -0.5")
    checks = _checks(_run_checks_only(db_path, home))
    assert checks["progression_never_negative"] is False
    assert checks["progression_accumulates_daily_values"] is True
    # In a month's run the checks judge that month: April's bad rows do not hold May back.
    may = _materialize(db_path, home, month="2025-05")
    assert may.success and _checks(may)["progression_never_negative"] is True


def test_a_username_with_math_markup_still_charts():
    from salesops_pipeline.sales.charts import progression_chart_markdown
    from salesops_pipeline.sales.reports import ProgressionRow

    rows = [
        ProgressionRow(name, "2025-04-01", 100, 50, 0.5, 100, 50, 0.5)
        for name in ("a$\\frac$b@example.com", "_lea@example.com")
    ]
    chart = progression_chart_markdown("2025-04", rows)
    assert chart.startswith("![") and "data:image/png;base64," in chart


def test_a_failing_blocking_check_keeps_bad_figures_from_the_frontend(materialized, monkeypatch):
    db_path, home, _ = materialized
    month_dir = home / "exports" / "progression" / "2025-04"
    before = {path.name: path.read_text() for path in month_dir.iterdir()}
    assert before

    from salesops_pipeline.sales import reports

    good = reports.agent_daily_progression

    def negative(conn, month, **kwargs):
        return [
            dataclasses.replace(row, progression_of_the_day=-1.0)
            for row in good(conn, month, **kwargs)
        ]

    monkeypatch.setattr(reports, "agent_daily_progression", negative)
    result = _materialize(db_path, home)
    assert _checks(result)["progression_never_negative"] is False
    assert _query(home, "SELECT MIN(progression_of_the_day) FROM agent_daily_progression") == [
        (-1.0,)
    ]
    skipped = {
        event.asset_key.to_user_string() for event in result.get_asset_materialization_events()
    }
    assert "progression_exports" not in skipped
    assert {path.name: path.read_text() for path in month_dir.iterdir()} == before
