"""The frontend API on a host that shares a PostgreSQL database: the assets publish the reports
there, and the API serves them with neither the warehouse file nor the sales DB at hand,
answering byte for byte as it does from the warehouse, and 503 when the database is away.
"""

import logging
import subprocess
import sys

import dagster as dg
import psycopg2
import pytest
import requests

from salesops_pipeline import settings
from salesops_pipeline.assets.sales import agent_daily_progression, monthly_team_sales, team_sales
from salesops_pipeline.post_call.inbox import Inbox
from salesops_pipeline.resources import (
    PublishedReportsResource,
    SalesDatabaseResource,
    WarehouseResource,
)
from salesops_pipeline.sales import published
from salesops_pipeline.sales.reports import ProgressionRow
from salesops_pipeline.services.http_server import serving_in_thread
from salesops_pipeline.services.intake.app import create_intake_app
from salesops_pipeline_tests.support.stack_process import refused_port

KEY = "front-key"

REQUESTS = [
    ("/api/team-sales", {}),
    ("/api/progression", {"agent": "lea@example.com", "month": "2025-04"}),
    ("/api/progression", {"agent": "tom@example.com", "month": "2025-04"}),
    ("/api/progression", {"agent": "zoe@example.com", "month": "2025-04"}),  # known, no target
    ("/api/progression", {"agent": "ghost@example.com", "month": "2025-04"}),  # unknown
    ("/api/progression", {"agent": "lea@example.com", "month": "2025-05"}),  # never computed
    ("/api/progression", {"agent": "lea@example.com", "month": "2025-13"}),
    ("/api/team-sales", {"month": "2025-04"}),
    ("/api/team-sales", {"month": "2025-05"}),  # never computed
    ("/api/progression/chart", {"month": "2025-04"}),
    ("/api/progression/chart", {"month": "2025-05"}),
]


def _materialize(sales_db, home, url):
    assert dg.materialize(
        [team_sales, monthly_team_sales, agent_daily_progression],
        partition_key="2025-04",
        resources={
            "sales_db": SalesDatabaseResource(path=str(sales_db)),
            "warehouse": WarehouseResource(home=str(home)),
            "published_reports": PublishedReportsResource(url=url),
        },
    ).success


def _app(tmp_path, monkeypatch, url=None, warehouse=None, sales_db=None):
    # The mode is chosen from the environment when the app is built, as `salesops serve` does.
    if url:
        monkeypatch.setenv(settings.DATABASE_URL_ENV, url)
    else:
        monkeypatch.delenv(settings.DATABASE_URL_ENV, raising=False)
    return create_intake_app(
        Inbox(tmp_path / f"inbox-{bool(url)}.sqlite"),
        api_key=KEY,
        warehouse_path=warehouse or tmp_path / "no-warehouse.duckdb",
        sales_db_path=lambda: sales_db or tmp_path / "no-sales.sqlite",
    )


def _get(url, path, **params):
    return requests.get(f"{url}{path}", params=params, headers={"X-API-KEY": KEY}, timeout=10)


@pytest.fixture
def published_api(small_sales_db, postgres_url, tmp_path, monkeypatch):
    """The API in PostgreSQL mode, without a warehouse file or a sales DB, after one run."""
    home = tmp_path / "home"
    _materialize(small_sales_db, home, postgres_url)
    app = _app(tmp_path, monkeypatch, url=postgres_url)
    with serving_in_thread(app) as url:
        yield url, home


@pytest.mark.postgres
def test_answers_are_the_warehouse_answers_byte_for_byte(
    published_api, small_sales_db, tmp_path, monkeypatch
):
    published_url, home = published_api
    assert not (tmp_path / "no-warehouse.duckdb").exists()
    file_app = _app(
        tmp_path, monkeypatch, warehouse=home / "warehouse.duckdb", sales_db=small_sales_db
    )
    with serving_in_thread(file_app) as file_url:
        for path, params in REQUESTS:
            from_file = _get(file_url, path, **params)
            from_postgres = _get(published_url, path, **params)
            assert (from_postgres.status_code, from_postgres.content) == (
                from_file.status_code,
                from_file.content,
            ), (path, params)
    ghost = _get(published_url, "/api/progression", agent="ghost@example.com", month="2025-04")
    assert ghost.status_code == 404
    assert "unknown agent" in ghost.json()["detail"]


def _count(url, month):
    conn = psycopg2.connect(url)
    try:
        cursor = conn.cursor()
        cursor.execute(
            "SELECT COUNT(*) FROM salesops.agent_daily_progression WHERE month = %s", (month,)
        )
        return cursor.fetchone()[0]
    finally:
        conn.close()


@pytest.mark.postgres
def test_republishing_a_month_replaces_it(published_api, small_sales_db, postgres_url, tmp_path):
    url, _ = published_api
    before = _count(postgres_url, "2025-04")
    _materialize(small_sales_db, tmp_path / "home", postgres_url)
    assert _count(postgres_url, "2025-04") == before == 4  # lea's three days and tom's one

    # A smaller month and agent list replace the previous ones whole.
    only_day = ProgressionRow(
        "lea@example.com", "2025-04-01", 1000.0, 1500.0, 1.5, 1000.0, 1500.0, 1.5
    )
    published.replace_progression_month(postgres_url, "2025-04", [only_day], ["lea@example.com"])
    lea = _get(url, "/api/progression", agent="lea@example.com", month="2025-04").json()
    assert [day["date"] for day in lea] == ["2025-04-01"]
    assert (
        _get(url, "/api/progression", agent="tom@example.com", month="2025-04").status_code == 404
    )


def test_database_away_is_a_503_without_the_password(tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.ERROR, logger="salesops.intake.frontend")
    with refused_port() as port:
        away = f"postgresql://salesops:s3cret@127.0.0.1:{port}/reports"
        with serving_in_thread(_app(tmp_path, monkeypatch, url=away)) as url:
            for path, params in REQUESTS[:2]:
                response = _get(url, path, **params)
                assert response.status_code == 503
                detail = response.json()["detail"]
                assert detail == "the reports database is unavailable: retry later"
    assert "published reports unreadable" in caplog.text
    assert "s3cret" not in caplog.text


def test_publishing_without_a_database_does_nothing_and_needs_no_driver():
    # A fresh interpreter: this one may have loaded psycopg2 for another test.
    code = """
import sys
from salesops_pipeline.resources import PublishedReportsResource
from salesops_pipeline.sales.reports import TeamSalesReport
resource = PublishedReportsResource()
assert resource.publish_team_sales(TeamSalesReport(teams=(), rows=())) is False
assert resource.publish_progression("2025-04", [], ["lea@example.com"]) is False
assert "psycopg2" not in sys.modules, "psycopg2 imported"
"""
    env = {"PATH": "/usr/bin:/bin", "HOME": "/nonexistent"}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
