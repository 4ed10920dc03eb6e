"""The sales DB source: opened read-only, its path resolved from settings, and clear errors
for a missing file or a schema that lacks what the reports need."""

import sqlite3

import dagster as dg
import pytest

from salesops_pipeline.errors import SalesDatabaseError
from salesops_pipeline.resources import SalesDatabaseResource
from salesops_pipeline.sales import reports
from salesops_pipeline.sales.schema import open_sales_db


def test_missing_file_is_named(tmp_path):
    with pytest.raises(SalesDatabaseError, match=r"not found: .*nowhere\.sqlite"):
        with open_sales_db(tmp_path / "nowhere.sqlite"):
            pass


def test_resource_turns_a_missing_db_into_a_plain_step_failure(tmp_path):
    resource = SalesDatabaseResource(path=str(tmp_path / "nowhere.sqlite"))
    with pytest.raises(dg.Failure, match="Sales database not found") as failure:
        with resource.connect():
            pass
    assert failure.value.allow_retries is False


def test_resource_turns_a_report_s_db_error_into_a_plain_step_failure(sales_db_builder):
    b = sales_db_builder
    b.session(b.agent("lea@example.com", b.team("sales")), float("inf"))
    resource = SalesDatabaseResource(path=str(b.close()))
    with pytest.raises(dg.Failure, match=r"session\.amount holds an amount") as failure:
        with resource.connect() as conn:
            reports.team_sales(conn)
    assert failure.value.allow_retries is False


def test_not_a_database(tmp_path):
    junk = tmp_path / "junk.sqlite"
    junk.write_text("this is not sqlite " * 100)
    with pytest.raises(SalesDatabaseError, match="Cannot read sales database"):
        with open_sales_db(junk):
            pass


def test_missing_table_and_columns_are_all_named(tmp_path):
    path = tmp_path / "partial.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript(
        """
        CREATE TABLE agent (id integer, username varchar);
        CREATE TABLE team (id integer, name varchar);
        CREATE TABLE agent_team (agent_id integer, team_id integer);
        CREATE TABLE session (id integer, amount float, owner_id integer);
        CREATE TABLE target (id integer, date date, amount float, owner_id integer);
        """
    )
    conn.close()
    with pytest.raises(SalesDatabaseError) as error:
        with open_sales_db(path):
            pass
    message = str(error.value)
    assert "column session.status" in message
    assert "table target_operation" in message


def test_connection_is_read_only(small_sales_db):
    with SalesDatabaseResource(path=str(small_sales_db)).connect() as conn:
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            conn.execute("INSERT INTO team (name) VALUES ('intruders')")


def test_env_variable_selects_the_db(small_sales_db, monkeypatch):
    monkeypatch.setenv("SALESOPS_SALES_DB", str(small_sales_db))
    assert SalesDatabaseResource().resolved_path() == small_sales_db.resolve()


def test_demo_db_is_generated_when_nothing_is_configured(isolated_home):
    path = SalesDatabaseResource().resolved_path()
    assert path == isolated_home / "demo" / "sales.sqlite"
    with SalesDatabaseResource().connect() as conn:
        assert conn.execute("SELECT COUNT(*) FROM session").fetchone()[0] > 0


def test_reference_db_schema_is_accepted(reference_db):
    with open_sales_db(reference_db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM agent").fetchone()[0] == 8
