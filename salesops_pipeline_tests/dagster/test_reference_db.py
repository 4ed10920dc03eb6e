"""Compatibility with the company's real sales DB (the technical test's database.sqlite).

Pins the Q3.1 and Q3.2 figures that DB implies, through the CLI and through the assets.
"""

import json

import dagster as dg
import duckdb

from salesops_pipeline.assets.sales import agent_daily_progression, progression_exports, team_sales
from salesops_pipeline.cli import main
from salesops_pipeline_tests.conftest import sales_report_resources

MARTIN = "martin.mougenot@walter-learning.com"

Q31 = {
    ("sales", "new"): (22, 32878.0),
    ("sales", "unsubscribed"): (4, 5296.0),
    ("supervisor", "new"): (6, 9294.0),
    ("supervisor", "unsubscribed"): (2, 2698.0),
    ("support", "new"): (21, 30179.0),
    ("support", "unsubscribed"): (3, 4097.0),
}

# Martin's April 2025, (date, target, amount, progression, target acc., amount acc., prog. acc.)
MARTIN_APRIL_SAMPLE = {
    "2025-04-01": [1450, 999, 0.69, 1450, 999, 0.69],
    "2025-04-02": [1450, 0, 0, 2900, 999, 0.34],
    "2025-04-08": [1450, 2399, 1.65, 11600, 4197, 0.36],
    "2025-04-12": [1450, -300, 0, 17400, 6096, 0.35],  # a refund outweighs the day's sale
    "2025-04-21": [1450, 4397, 3.03, 30450, 24084, 0.79],
    "2025-04-30": [1450, -1399, 0, 43500, 38473, 0.88],
}


def test_q31_text_output(reference_db, capsys):
    assert main(["team-sales", "--db", str(reference_db)]) == 0
    out = capsys.readouterr().out
    assert (
        "👉 Sales from support\n"
        "\tnew : 21 sessions, 30179.0€\n"
        "\tunsubscribed : 3 sessions, 4097.0€\n" in out
    )
    assert "👉 Sales from sales\n\tnew : 22 sessions, 32878.0€\n" in out
    assert "👉 Sales from tech\n\tno sales" in out


def test_q31_json_output(reference_db, capsys):
    assert main(["team-sales", "--format", "json", "--db", str(reference_db)]) == 0
    records = json.loads(capsys.readouterr().out)
    assert {(r["team"], r["status"]): (r["sessions"], r["amount"]) for r in records} == Q31


def test_q32_martin_april(reference_db, capsys):
    args = ["progression", "--agent", MARTIN, "--month", "2025-04", "--db", str(reference_db)]
    assert main(args) == 0
    document = json.loads(capsys.readouterr().out)
    assert len(document) == 30
    by_date = {row["date"]: list(row.values())[1:] for row in document}
    for day, values in MARTIN_APRIL_SAMPLE.items():
        assert by_date[day] == values, day


def test_assets_on_reference_db(reference_db, tmp_path, capsys):
    home = tmp_path / "home"
    result = dg.materialize(
        [team_sales, agent_daily_progression, progression_exports],
        partition_key="2025-04",
        resources=sales_report_resources(reference_db, home),
    )
    assert result.success
    conn = duckdb.connect(str(home / "warehouse.duckdb"), read_only=True)
    try:
        stored = conn.execute("SELECT team, status, sessions, amount FROM team_sales").fetchall()
        agents = conn.execute(
            "SELECT DISTINCT agent FROM agent_daily_progression ORDER BY agent"
        ).fetchall()
    finally:
        conn.close()
    assert {(t, s): (n, a) for t, s, n, a in stored} == Q31
    assert agents == [("anais.garnier@walter-learning.com",), (MARTIN,)]

    exported = json.loads(
        (home / "exports" / "progression" / "2025-04" / f"{MARTIN}.json").read_text()
    )
    main(["progression", "--agent", MARTIN, "--month", "2025-04", "--db", str(reference_db)])
    assert exported == json.loads(capsys.readouterr().out)
