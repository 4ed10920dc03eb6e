"""The sales computations (Q3.1 team sales, Q3.2 daily progression) over their edge cases.

These run the real SQL, DuckDB scanning tiny SQLite databases built for each case; no Dagster
involved.
"""

import logging
import os
import sqlite3
from fractions import Fraction

import pytest

from salesops_pipeline.cli import main
from salesops_pipeline.errors import InvalidInputError, SalesDatabaseError
from salesops_pipeline.sales import reports, scanner
from salesops_pipeline.sales.schema import open_sales_db


def _progression(path, month="2025-04", agent=None):
    with open_sales_db(path) as conn:
        return reports.agent_daily_progression(conn, month, agent)


def _team_sales(path):
    with open_sales_db(path) as conn:
        return reports.team_sales(conn)


def test_agent_in_two_teams_counts_in_both(small_sales_db):
    report = _team_sales(small_sales_db)
    by_key = {(r.team, r.status): (r.sessions, r.amount) for r in report.rows}
    assert by_key == {
        ("sales", "new"): (1, 500.0),
        ("sales", "unsubscribed"): (1, 1500.0),
        ("support", "new"): (2, 1200.0),
        ("support", "unsubscribed"): (1, 1500.0),
    }


def test_team_without_sales_is_listed_without_rows(small_sales_db):
    report = _team_sales(small_sales_db)
    assert report.teams == ("sales", "support", "tech")
    assert report.rows_of("tech") == []
    assert report.unsubscription_rate("tech") is None
    assert "👉 Sales from tech\n\tno sales" in reports.team_sales_text(report)


def test_unsubscription_rate_is_share_of_team_sessions(small_sales_db):
    report = _team_sales(small_sales_db)
    assert report.unsubscription_rate("sales") == 0.5
    assert report.unsubscription_rate("support") == pytest.approx(1 / 3, abs=1e-4)


def test_duplicated_membership_does_not_double_count(sales_db_builder):
    b = sales_db_builder
    sales = b.team("sales")
    lea = b.agent("lea@example.com", sales, sales)
    b.session(lea, 100.0)
    report = _team_sales(b.close())
    assert [(r.sessions, r.amount) for r in report.rows] == [(1, 100.0)]


def test_no_sales_at_all(sales_db_builder):
    b = sales_db_builder
    sales = b.team("sales")
    lea = b.agent("lea@example.com", sales)
    b.target(lea, "2025-04-01", 1000)
    path = b.close()
    report = _team_sales(path)
    assert report.rows == ()
    assert reports.team_sales_records(report) == []
    [row] = _progression(path)
    assert (row.amount_of_the_day, row.progression_of_the_day, row.progression_accumulated) == (
        0.0,
        0.0,
        0.0,
    )


def test_text_report_matches_original_format(small_sales_db):
    text = reports.team_sales_text(_team_sales(small_sales_db))
    assert text.splitlines()[:4] == [
        "👉 Sales from sales",
        "\tnew : 1 sessions, 500.0€",
        "\tunsubscribed : 1 sessions, 1500.0€",
        "\tunsubscription rate : 50.0%",
    ]


def test_progression_rows_over_negative_day_and_zero_target(small_sales_db):
    rows = _progression(small_sales_db, agent="lea@example.com")
    assert [r.to_frontend() for r in rows] == [
        {
            "date": "2025-04-01",
            "target_of_the_day": 1000,
            "amount_of_the_day": 1500,
            "progression_of_the_day": 1.5,
            "target_accumulated": 1000,
            "amount_accumulated": 1500,
            "progression_accumulated": 1.5,
        },
        {  # the refund day: negative amount, progression floored at 0
            "date": "2025-04-02",
            "target_of_the_day": 1000,
            "amount_of_the_day": -1500,
            "progression_of_the_day": 0,
            "target_accumulated": 2000,
            "amount_accumulated": 0,
            "progression_accumulated": 0,
        },
        {  # target 0: nothing to aim at, progression 0 whatever was sold
            "date": "2025-04-03",
            "target_of_the_day": 0,
            "amount_of_the_day": 500,
            "progression_of_the_day": 0,
            "target_accumulated": 2000,
            "amount_accumulated": 500,
            "progression_accumulated": 0.25,
        },
    ]


def test_frontend_keys_in_contract_order(small_sales_db):
    rows = _progression(small_sales_db)
    assert all(tuple(r.to_frontend()) == reports.PROGRESSION_KEYS for r in rows)


def test_every_agent_with_targets_and_only_them(small_sales_db):
    agents = {r.agent for r in _progression(small_sales_db)}
    assert agents == {"lea@example.com", "tom@example.com"}


def test_accumulated_negative_is_floored(sales_db_builder):
    b = sales_db_builder
    lea = b.agent("lea@example.com")
    day = b.target(lea, "2025-04-01", 1000)
    b.operation(day, -400.0)
    [row] = _progression(b.close())
    assert row.amount_accumulated == -400.0
    assert row.progression_of_the_day == 0.0
    assert row.progression_accumulated == 0.0


def test_first_day_with_target_zero_has_zero_accumulated_progression(sales_db_builder):
    b = sales_db_builder
    lea = b.agent("lea@example.com")
    b.operation(b.target(lea, "2025-04-06", 0), 300.0)
    [row] = _progression(b.close())
    assert (row.target_accumulated, row.progression_accumulated) == (0.0, 0.0)


def test_day_sums_several_operations_and_rounds_to_two_decimals(sales_db_builder):
    b = sales_db_builder
    lea = b.agent("lea@example.com")
    day = b.target(lea, "2025-04-01", 1450)
    for amount in (500.0, 499.0, -0.0):
        b.operation(day, amount)
    [row] = _progression(b.close())
    assert row.amount_of_the_day == 999.0
    assert row.progression_of_the_day == 0.69  # 999 / 1450 = 0.6889...


def test_month_is_bounded_and_accumulation_restarts(sales_db_builder):
    b = sales_db_builder
    lea = b.agent("lea@example.com")
    for day in ("2025-03-31", "2025-04-01", "2025-04-30", "2025-05-01"):
        b.operation(b.target(lea, day, 100), 100.0)
    path = b.close()
    april = _progression(path, "2025-04")
    assert [r.date for r in april] == ["2025-04-01", "2025-04-30"]
    assert april[0].target_accumulated == 100.0  # March is not carried over
    assert [r.date for r in _progression(path, "2025-05")] == ["2025-05-01"]


def test_december_month_bounds(sales_db_builder):
    b = sales_db_builder
    lea = b.agent("lea@example.com")
    for day in ("2025-12-31", "2026-01-01"):
        b.target(lea, day, 100)
    path = b.close()
    assert [r.date for r in _progression(path, "2025-12")] == ["2025-12-31"]


def test_empty_month(small_sales_db):
    assert _progression(small_sales_db, "2025-06") == []


def test_agent_without_targets_has_no_rows(small_sales_db):
    assert _progression(small_sales_db, agent="zoe@example.com") == []


@pytest.mark.parametrize("month", ["2025-4", "2025-13", "2025-00", "04-2025", "", "2025-04-01"])
def test_malformed_month_is_refused(month):
    with pytest.raises(InvalidInputError, match="expected YYYY-MM"):
        reports.parse_month(month)


@pytest.mark.parametrize(
    "month",
    [
        "\uff12\uff10\uff12\uff15-04",  # full-width digits, which int() would read as 2025
        "\u0662\u0660\u0662\u0665-04",  # Arabic-Indic digits
        "2025-04\n",
        "\n2025-04",
        " 2025-04",
        "2025-4",
        "2025-13",
        "0000-04",  # no year 0 in a date
        "9999-12",  # its next month is past the last date
    ],
)
def test_month_is_ascii_yyyy_mm_and_nothing_else(month):
    with pytest.raises(InvalidInputError, match="expected YYYY-MM"):
        reports.parse_month(month)


def test_parse_month_bounds():
    assert [d.isoformat() for d in reports.parse_month("2025-12")] == ["2025-12-01", "2026-01-01"]


@pytest.mark.parametrize(
    ("amount", "text"), [(30179.0, "30179.0"), (1234.5, "1234.5"), (99.99, "99.99"), (0, "0.0")]
)
def test_format_amount(amount, text):
    assert reports.format_amount(amount) == text


def test_team_total_differences_names_the_team():
    assert reports.team_total_differences({"a": (1, 10.0)}, {"a": (1, 10.0), "b": (0, 0.0)}) == []
    [difference] = reports.team_total_differences({"a": (2, 10.0)}, {"a": (1, 10.0)})
    assert difference.startswith("a: stored 2 sessions")


def test_reports_never_write(small_sales_db):
    with open_sales_db(small_sales_db) as conn, pytest.raises(sqlite3.OperationalError):
        conn.execute("DELETE FROM session")


def test_the_scanner_never_writes_either(small_sales_db):
    folder = small_sales_db.parent
    before = small_sales_db.read_bytes(), sorted(os.listdir(folder))
    small_sales_db.chmod(0o444)  # a file the process may not write at all
    try:
        assert _team_sales(small_sales_db).rows
        assert _progression(small_sales_db)
        with pytest.raises(SalesDatabaseError, match="Cannot read sales database"):
            scanner.query(small_sales_db, f"DELETE FROM {scanner.ALIAS}.session")
    finally:
        small_sales_db.chmod(0o644)
    # Not a byte changed, and no journal, WAL or other file left beside it.
    assert (small_sales_db.read_bytes(), sorted(os.listdir(folder))) == before


def test_money_is_summed_exactly(sales_db_builder):
    b = sales_db_builder
    lea = b.agent("lea@example.com", b.team("sales"))
    for amount in (0.1, 0.2):
        b.session(lea, amount)
    day = b.target(lea, "2025-04-01", 0.3)
    for amount in (0.1, 0.2):
        b.operation(day, amount)
    path = b.close()
    # As floats, 0.1 + 0.2 is 0.30000000000000004 and its ratio to 0.3 rounds to 1.0 only
    # by luck of the order; summed exactly, it is 0.3 and the ratio is 1.0 whatever the order.
    assert [r.amount for r in _team_sales(path).rows] == [0.3]
    [row] = _progression(path)
    assert (row.amount_of_the_day, row.progression_of_the_day) == (0.3, 1.0)


@pytest.mark.parametrize(
    ("amount", "target", "progression"),
    [
        (57, 200, 0.29),  # 0.285 exactly: half up, as SQLite's ROUND gave (a float says 0.2849…)
        (1, 8, 0.13),  # 0.125
        (999, 1450, 0.69),
        (-1, 1000, 0.0),  # rounds to -0.00: never below 0, and not -0.0 either
        (500, 0, 0.0),
    ],
)
def test_progression_rounds_half_up_to_two_decimals(sales_db_builder, amount, target, progression):
    assert reports.progression_ratio(Fraction(amount), Fraction(target)) == progression
    b = sales_db_builder
    b.operation(b.target(b.agent("lea@example.com"), "2025-04-01", target), amount)
    [row] = _progression(b.close())
    assert (row.progression_of_the_day, row.progression_accumulated) == (progression,) * 2
    assert str(row.progression_of_the_day) == str(progression)  # 0.0, never -0.0


def test_text_in_a_money_column_is_read_like_sqlite_read_it(sales_db_builder, caplog):
    # SQLite lets a float column hold text; the scanner then refuses the declared type, and
    # the reports read that DB column by column as text instead, with a warning.
    b = sales_db_builder
    lea = b.agent("lea@example.com", b.team("sales"))
    b.session(lea, 100.5)
    b.session(lea, "not a number")
    day = b.target(lea, "2025-04-01", 1000)
    b.operation(day, 250.25)
    b.operation(day, "n/a")
    path = b.close()
    with caplog.at_level(logging.WARNING, logger=scanner.__name__):
        report = _team_sales(path)
        [row] = _progression(path)
    assert [(r.sessions, r.amount) for r in report.rows] == [(2, 100.5)]
    assert (row.amount_of_the_day, row.progression_of_the_day) == (250.25, 0.25)
    assert "do not match their declared column type" in caplog.text
    assert 'column "amount"' in caplog.text


def test_a_date_that_is_not_one_is_in_no_month(sales_db_builder):
    b = sales_db_builder
    lea = b.agent("lea@example.com")
    b.target(lea, "2025-04-01", 100)
    b.target(lea, "someday", 100)
    b.operation(b.target(lea, "2025-04-02 18:30:00", 100), 50.0)  # a time of day is fine
    rows = _progression(b.close())
    assert [(r.date, r.amount_of_the_day) for r in rows] == [
        ("2025-04-01", 0.0),
        ("2025-04-02", 50.0),
    ]


def test_an_amount_too_large_to_sum_is_a_clear_error(sales_db_builder, capsys):
    b = sales_db_builder
    b.session(b.agent("lea@example.com", b.team("sales")), 1e300)
    path = b.close()
    too_large = r"Cannot read sales database .*: .*session\.amount holds an amount of 10\^20"
    with pytest.raises(SalesDatabaseError, match=too_large):
        _team_sales(path)
    assert main(["team-sales", "--db", str(path)]) == 1
    error = capsys.readouterr().err
    assert error.startswith("salesops: Cannot read sales database")
    assert len(error.splitlines()) == 1 and "Traceback" not in error


def test_a_missing_scanner_extension_is_a_clear_error(
    small_sales_db, tmp_path, monkeypatch, capsys
):
    monkeypatch.setattr(scanner, "_connection", None)  # as in a fresh process
    monkeypatch.setattr(scanner, "extension_path", lambda: tmp_path / "gone.duckdb_extension")
    with pytest.raises(SalesDatabaseError, match=r"SQLite scanner for DuckDB .* is missing"):
        _team_sales(small_sales_db)
    assert main(["team-sales", "--db", str(small_sales_db)]) == 1
    error = capsys.readouterr().err
    assert "is missing" in error and "gone.duckdb_extension" in error
    assert len(error.splitlines()) == 1


def test_the_scanner_extension_ships_with_duckdb_s_exact_version():
    import duckdb

    path = scanner.extension_path()
    assert path.is_file()
    assert f"v{duckdb.__version__}" in path.parts


def test_reference_db_reports_equal_the_previous_sqlite_reports(reference_db):
    from dataclasses import astuple

    from salesops_pipeline_tests.support import sqlite_reports

    with open_sales_db(reference_db) as conn:
        months = [m for (m,) in conn.execute("SELECT DISTINCT substr(date, 1, 7) FROM target")]
        agents = [None] + [name for (name,) in conn.execute("SELECT username FROM agent")]
        assert _team_sales(reference_db) == sqlite_reports.team_sales(conn)
        for month in months:
            for agent in agents:
                ours = reports.agent_daily_progression(conn, month, agent)
                before = sqlite_reports.agent_daily_progression(conn, month, agent)
                assert [astuple(r) for r in ours] == [astuple(r) for r in before], (month, agent)
    assert months == ["2025-04"]
