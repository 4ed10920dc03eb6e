"""The reports from a terminal say when their figures are demo data, find agents by a short
name, list agents, and compare a month's team sales; stdout keeps the test's exact formats."""

import json
from datetime import datetime

import pytest

from salesops_pipeline.cli import main
from salesops_pipeline.sales.demo import generate_demo_db
from salesops_pipeline.timezone import BUSINESS_TIMEZONE

MARTIN = "martin.mougenot@walter-learning.com"


def test_the_company_db_is_read_without_a_word_on_stderr(reference_db, capsys):
    assert main(["team-sales", "--db", str(reference_db)]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    assert captured.out.startswith("👉 Sales from ")


def test_figures_from_a_stack_less_folder_are_named_demo_data(isolated_home, capsys):
    assert main(["team-sales"]) == 0
    first = capsys.readouterr()
    demo = isolated_home / "demo" / "sales.sqlite"
    assert "👉 Sales from sales" in first.out
    assert "demo" not in first.out  # stdout stays the report alone
    assert f"generated demo data at {demo}" in first.err
    assert "not the company's sales" in first.err and "SALESOPS_SALES_DB" in first.err
    # Already there the next time: still named demo data, no longer "generated".
    assert main(["team-sales"]) == 0
    second = capsys.readouterr().err
    assert "not the company's sales" in second and "generated demo data at" not in second


def test_a_demo_db_anywhere_is_known_by_its_mark(tmp_path, capsys):
    path = generate_demo_db(tmp_path / "renamed.sqlite", sessions=100)
    assert main(["team-sales", "--db", str(path)]) == 0
    assert "not the company's sales" in capsys.readouterr().err


def test_an_agent_is_found_by_the_part_before_the_at(reference_db, capsys):
    args = ["progression", "--agent", "martin.mougenot", "--month", "2025-04"]
    assert main([*args, "--db", str(reference_db)]) == 0
    by_short = capsys.readouterr()
    assert (
        main(["progression", "--agent", MARTIN, "--month", "2025-04", "--db", str(reference_db)])
        == 0
    )
    assert json.loads(by_short.out) == json.loads(capsys.readouterr().out)
    assert MARTIN in by_short.err


def test_an_unknown_agent_gets_the_closest_names(reference_db, capsys):
    args = ["progression", "--agent", "martin.mougeno", "--month", "2025-04"]
    assert main([*args, "--db", str(reference_db)]) == 1
    [line] = capsys.readouterr().err.strip().splitlines()
    assert "Unknown agent 'martin.mougeno'" in line
    assert f"closest: {MARTIN}" in line and "salesops agents" in line


def test_agents_lists_usernames_teams_and_targets(reference_db, capsys):
    assert main(["agents", "--month", "2025-04", "--db", str(reference_db)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["USERNAME", "TEAMS", "TARGETS", "IN", "2025-04"]
    martin = next(line for line in lines if line.startswith(MARTIN))
    assert martin.split()[-1] == "yes"
    assert len(lines) == 1 + 8


def test_agents_as_json_defaults_to_the_current_month(reference_db, capsys):
    assert main(["agents", "--format", "json", "--db", str(reference_db)]) == 0
    records = json.loads(capsys.readouterr().out)
    this_month = datetime.now(BUSINESS_TIMEZONE).strftime("%Y-%m")
    assert {r["month"] for r in records} == {this_month}
    assert {"username", "teams", "targets_in_month", "month"} == set(records[0])
    # The company's DB holds April 2025 alone.
    assert not any(r["targets_in_month"] for r in records)


def test_team_sales_of_a_month(reference_db, capsys):
    assert main(["team-sales", "--month", "2025-04", "--db", str(reference_db)]) == 0
    april = capsys.readouterr().out
    assert april.startswith("Sales booked in 2025-04\n👉 Sales from ")
    assert "\tnew : 21 sessions, 30179.0€\n" in april
    assert main(["team-sales", "--month", "2025-05", "--db", str(reference_db)]) == 0
    assert "\tno sales" in capsys.readouterr().out
    assert (
        main(["team-sales", "--month", "2025-04", "--format", "json", "--db", str(reference_db)])
        == 0
    )
    assert {r["month"] for r in json.loads(capsys.readouterr().out)} == {"2025-04"}


@pytest.mark.parametrize("month", ["2025-13", "april"])
def test_team_sales_refuses_a_malformed_month(reference_db, capsys, month):
    assert main(["team-sales", "--month", month, "--db", str(reference_db)]) == 1
    assert "Invalid month" in capsys.readouterr().err
