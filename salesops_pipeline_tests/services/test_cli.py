"""`salesops` on the command line: the same answers as the assets, and bad input ends with one
clear line and a non-zero exit, never a traceback."""

import json
import re
import subprocess
import sys

import pytest

from salesops_pipeline.cli import main


def test_team_sales_text(small_sales_db, capsys):
    assert main(["team-sales", "--db", str(small_sales_db)]) == 0
    out = capsys.readouterr().out
    assert "👉 Sales from support\n\tnew : 2 sessions, 1200.0€\n" in out


def test_team_sales_json(small_sales_db, capsys):
    assert main(["team-sales", "--format", "json", "--db", str(small_sales_db)]) == 0
    records = json.loads(capsys.readouterr().out)
    assert {"team": "sales", "status": "new", "sessions": 1, "amount": 500.0}.items() <= records[
        0
    ].items()
    assert len(records) == 4


def test_progression_prints_frontend_array(small_sales_db, capsys):
    args = ["progression", "--agent", "tom@example.com", "--month", "2025-04"]
    assert main([*args, "--db", str(small_sales_db)]) == 0
    assert json.loads(capsys.readouterr().out) == [
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


def test_known_agent_without_targets_prints_empty_array(small_sales_db, capsys):
    args = ["progression", "--agent", "zoe@example.com", "--month", "2025-04"]
    assert main([*args, "--db", str(small_sales_db)]) == 0
    assert json.loads(capsys.readouterr().out) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["progression", "--agent", "ghost@example.com", "--month", "2025-04"], "Unknown agent"),
        (["progression", "--agent", "tom@example.com", "--month", "2025-13"], "Invalid month"),
        (["progression", "--agent", "tom@example.com", "--month", "april"], "Invalid month"),
    ],
)
def test_bad_input_is_one_clear_line(small_sales_db, capsys, args, message):
    assert main([*args, "--db", str(small_sales_db)]) == 1
    err = capsys.readouterr().err
    assert message in err
    assert len(err.strip().splitlines()) == 1


def test_missing_db_is_one_clear_line(tmp_path, capsys):
    assert main(["team-sales", "--db", str(tmp_path / "missing.sqlite")]) == 1
    assert "Sales database not found" in capsys.readouterr().err


def test_env_variable_is_used_without_db_option(small_sales_db, monkeypatch, capsys):
    monkeypatch.setenv("SALESOPS_SALES_DB", str(small_sales_db))
    assert main(["team-sales"]) == 0
    assert "Sales from tech\n\tno sales" in capsys.readouterr().out


def test_dotenv_file_in_working_directory_is_read(small_sales_db, capsys):
    with open(".env", "w") as env_file:
        env_file.write(f"SALESOPS_SALES_DB={small_sales_db}\n")
    assert main(["team-sales"]) == 0
    assert "Sales from tech\n\tno sales" in capsys.readouterr().out


def test_demo_db_command(tmp_path, capsys):
    path = tmp_path / "demo.sqlite"
    assert main(["demo-db", "--path", str(path), "--sessions", "50"]) == 0
    assert path.is_file()
    assert main(["team-sales", "--db", str(path)]) == 0


def test_without_configuration_the_demo_db_answers(isolated_home, capsys):
    assert main(["team-sales"]) == 0
    assert "👉 Sales from sales" in capsys.readouterr().out
    assert (isolated_home / "demo" / "sales.sqlite").is_file()


@pytest.mark.parametrize(
    "args",
    [
        ["progression", "--agent", "x", "--month", "2025-99", "--db", "/nonexistent/db.sqlite"],
        ["team-sales", "--db", "/nonexistent/db.sqlite"],
        ["team-sales", "--db", "/"],
        ["team-sales", "--format", "xml"],
        ["progression", "--month", "2025-04"],
        ["demo-db", "--sessions", "-3"],
        [],
    ],
)
def test_installed_command_never_prints_a_traceback(args):
    result = subprocess.run(
        [sys.executable, "-m", "salesops_pipeline.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert result.stderr.strip()


def _help_of(capsys, *argv: str) -> str:
    with pytest.raises(SystemExit) as stopped:
        main([*argv, "--help"])
    assert stopped.value.code == 0
    return capsys.readouterr().out


def test_no_help_text_shows_the_specifications_question_labels(capsys):
    """Help says what a sales-ops engineer looks for, not which question of a spec it
    answered."""
    from salesops_pipeline.cli.main import COMMANDS

    texts = {"salesops": _help_of(capsys)}
    texts.update({name: _help_of(capsys, name) for name in COMMANDS})
    assert all(f"usage: salesops {name}" in texts[name] for name in COMMANDS)
    labelled = {name: re.findall(r"\bQ\d(?:\.\d)*\b", text) for name, text in texts.items()}
    assert {name: found for name, found in labelled.items() if found} == {}
    # Each command's own help opens with what it does.
    assert "phone numbers two campaigns both call" in texts["duplicates"]
