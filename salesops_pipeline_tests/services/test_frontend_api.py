"""The frontend API served by the intake service: the Q3.2 array and Q3.1 rows as stored in the
warehouse, the same key as the webhooks, clear 4xx for bad requests, and a prompt 503 when the
warehouse is being written or the sales DB is needed but away (what is stored is still served).
"""

import subprocess
import sys
import time
from contextlib import contextmanager

import dagster as dg
import pytest
import requests

from salesops_pipeline.assets.sales import agent_daily_progression, progression_exports, team_sales
from salesops_pipeline.cli import main
from salesops_pipeline.post_call.inbox import Inbox
from salesops_pipeline.services.http_server import serving_in_thread
from salesops_pipeline.services.intake.app import create_intake_app
from salesops_pipeline_tests.conftest import sales_report_resources

KEY = "front-key"


@pytest.fixture
def sales_db_location(small_sales_db):
    """Where the intake finds the sales DB; a test may point it somewhere else while it runs."""
    return {"path": small_sales_db}


@pytest.fixture
def api(small_sales_db, sales_db_location, tmp_path):
    home = tmp_path / "home"
    assert dg.materialize(
        [team_sales, agent_daily_progression, progression_exports],
        partition_key="2025-04",
        resources=sales_report_resources(small_sales_db, home),
    ).success
    app = create_intake_app(
        Inbox(tmp_path / "inbox.sqlite"),
        api_key=KEY,
        warehouse_path=home / "warehouse.duckdb",
        sales_db_path=lambda: sales_db_location["path"],
        docs=True,
    )
    with serving_in_thread(app) as url:
        yield url


def _get(url, path, key=KEY, **params):
    return requests.get(f"{url}{path}", params=params, headers={"X-API-KEY": key}, timeout=5)


def test_progression_is_the_frontend_array(api, small_sales_db, capsys):
    response = _get(api, "/api/progression", agent="lea@example.com", month="2025-04")
    assert response.status_code == 200
    assert (
        main(
            [
                "progression",
                "--agent",
                "lea@example.com",
                "--month",
                "2025-04",
                "--db",
                str(small_sales_db),
            ]
        )
        == 0
    )
    import json

    assert response.json() == json.loads(capsys.readouterr().out)
    assert list(response.json()[0]) == [
        "date",
        "target_of_the_day",
        "amount_of_the_day",
        "progression_of_the_day",
        "target_accumulated",
        "amount_accumulated",
        "progression_accumulated",
    ]
    assert '"target_of_the_day":1000,' in response.text  # whole euros stay integers


def test_known_agent_without_targets_gets_an_empty_array(api):
    assert _get(api, "/api/progression", agent="zoe@example.com", month="2025-04").json() == []


@pytest.mark.parametrize(
    ("params", "status", "message"),
    [
        ({"agent": "ghost@example.com", "month": "2025-04"}, 404, "unknown agent"),
        ({"agent": "lea@example.com", "month": "2025-13"}, 400, "Invalid month"),
        ({"agent": "lea@example.com", "month": "2025-05"}, 404, "no progression computed"),
        ({"month": "2025-04"}, 422, "agent"),
    ],
)
def test_bad_requests_are_clear(api, params, status, message):
    response = _get(api, "/api/progression", **params)
    assert response.status_code == status
    assert message in str(response.json()["detail"])


def test_team_sales_rows(api):
    rows = _get(api, "/api/team-sales").json()
    assert {
        "team": "support",
        "status": "new",
        "sessions": 2,
        "amount": 1200.0,
        "team_unsubscription_rate": 0.3333,
    } in rows


def test_same_key_as_the_webhooks(api):
    assert _get(api, "/api/team-sales", key="wrong").status_code == 401
    assert requests.get(f"{api}/api/team-sales", timeout=5).status_code == 401


def test_openapi_documents_the_api(api):
    spec = requests.get(f"{api}/openapi.json", timeout=5).json()
    assert {"/api/progression", "/api/team-sales", "/webhooks/post-call"} <= set(spec["paths"])
    assert requests.get(f"{api}/docs", timeout=5).status_code == 200


def _away(tmp_path, how):
    if how == "missing":
        return tmp_path / "gone.sqlite"
    unreadable = tmp_path / "garbage.sqlite"
    unreadable.write_bytes(b"this is not an SQLite database" * 100)
    return unreadable


@pytest.mark.parametrize("how", ["missing", "unreadable"])
def test_stored_progression_is_served_while_the_sales_db_is_away(
    api, sales_db_location, tmp_path, how
):
    sales_db_location["path"] = _away(tmp_path, how)
    response = _get(api, "/api/progression", agent="lea@example.com", month="2025-04")
    assert response.status_code == 200
    assert [day["date"] for day in response.json()] == ["2025-04-01", "2025-04-02", "2025-04-03"]


@pytest.mark.parametrize("how", ["missing", "unreadable"])
@pytest.mark.parametrize(
    "params",
    [
        {"agent": "ghost@example.com", "month": "2025-04"},  # unknown, or...
        {"agent": "zoe@example.com", "month": "2025-04"},  # ...known without targets?
        {"agent": "lea@example.com", "month": "2025-05"},  # month never materialized
    ],
)
def test_sales_db_away_when_it_is_needed_is_a_clear_503(
    api, sales_db_location, tmp_path, how, params
):
    sales_db_location["path"] = _away(tmp_path, how)
    response = _get(api, "/api/progression", **params)
    assert response.status_code == 503
    assert "sales database is unavailable" in response.json()["detail"]
    assert str(tmp_path) not in response.text  # where the files are is for the logs


@contextmanager
def _warehouse_being_written(path):
    """Another process holding the warehouse's write lock, as a materialization does."""
    writer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys; conn = duckdb.connect(sys.argv[1]);"
            " print('locked', flush=True); sys.stdin.read()",
            str(path),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert writer.stdout.readline().strip() == "locked"
        yield
    finally:
        writer.stdin.close()
        writer.wait(timeout=30)


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/api/progression", {"agent": "lea@example.com", "month": "2025-04"}),
        ("/api/team-sales", {}),
    ],
)
def test_warehouse_being_written_is_a_prompt_503_with_retry_after(api, tmp_path, path, params):
    with _warehouse_being_written(tmp_path / "home" / "warehouse.duckdb"):
        started = time.monotonic()
        response = _get(api, path, **params)
        elapsed = time.monotonic() - started
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    assert "being written" in response.json()["detail"]
    assert elapsed < 2  # answered at once, no worker thread left sleeping on the lock
    # Once the run is done, the same request is answered.
    assert _get(api, path, **params).status_code == 200
