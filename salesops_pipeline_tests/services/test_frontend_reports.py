"""The frontend API's month of team sales and its progression chart, over loopback: what the
assets stored, the chart as a PNG with the key or with the signed link the Dagster UI shows,
and clear answers for a month not computed or a link not signed."""

import dagster as dg
import pytest
import requests

from salesops_pipeline.assets.sales import (
    agent_daily_progression,
    monthly_team_sales,
    progression_exports,
    team_sales,
)
from salesops_pipeline.post_call.inbox import Inbox
from salesops_pipeline.sales import chart_links
from salesops_pipeline.services.http_server import serving_in_thread
from salesops_pipeline.services.intake.app import create_intake_app
from salesops_pipeline_tests.conftest import sales_report_resources

KEY = "front-key"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def api(small_sales_db, tmp_path):
    home = tmp_path / "home"
    assert dg.materialize(
        [team_sales, monthly_team_sales, agent_daily_progression, progression_exports],
        partition_key="2025-04",
        resources=sales_report_resources(small_sales_db, home),
    ).success
    app = create_intake_app(
        Inbox(tmp_path / "inbox.sqlite"),
        api_key=KEY,
        warehouse_path=home / "warehouse.duckdb",
        sales_db_path=lambda: small_sales_db,
        docs=True,
    )
    with serving_in_thread(app) as url:
        yield url


def _get(url, path, key=KEY, **params):
    headers = {"X-API-KEY": key} if key else {}
    return requests.get(f"{url}{path}", params=params, headers=headers, timeout=30)


def test_team_sales_of_a_month(api):
    rows = _get(api, "/api/team-sales", month="2025-04").json()
    assert {
        "team": "support",
        "status": "new",
        "sessions": 2,
        "amount": 1200.0,
        "team_unsubscription_rate": 0.3333,
    } in rows
    # Without a month, every sale ever made, as before.
    assert _get(api, "/api/team-sales").json() == rows


@pytest.mark.parametrize(
    ("month", "status", "message"),
    [("2025-05", 404, "team sales of 2025-05 not computed yet"), ("2025-13", 400, "Invalid month")],
)
def test_team_sales_of_a_month_not_computed_or_malformed(api, month, status, message):
    response = _get(api, "/api/team-sales", month=month)
    assert response.status_code == status
    assert message in response.json()["detail"]


def test_the_chart_is_a_png_with_the_key(api):
    response = _get(api, "/api/progression/chart", month="2025-04")
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert response.content.startswith(PNG_SIGNATURE)


def test_the_signed_link_opens_its_month_without_the_key(api):
    link = chart_links.chart_link(api, chart_links.link_key_from(KEY), "2025-04")
    response = requests.get(link, timeout=30)
    assert response.status_code == 200
    assert response.content.startswith(PNG_SIGNATURE)


def test_a_link_opens_no_other_month_and_no_other_route(api):
    link_key = chart_links.link_key_from(KEY)
    april = chart_links.signature(link_key, "2025-04")
    assert (
        _get(api, "/api/progression/chart", key=None, month="2025-03", signature=april).status_code
        == 401
    )
    assert _get(api, "/api/progression/chart", key=None, month="2025-04").status_code == 401
    # The link key is no API key: it opens neither the figures nor the webhooks.
    assert _get(api, "/api/team-sales", key=link_key).status_code == 401
    assert _get(api, "/api/team-sales", key=None, signature=april).status_code == 401


@pytest.mark.parametrize(("month", "status"), [("2025-05", 404), ("2025-13", 400)])
def test_the_chart_of_a_month_not_computed_or_malformed(api, month, status):
    assert _get(api, "/api/progression/chart", month=month).status_code == status


def test_openapi_documents_the_new_routes(api):
    spec = requests.get(f"{api}/openapi.json", timeout=5).json()
    assert "/api/progression/chart" in spec["paths"]
    parameters = {p["name"] for p in spec["paths"]["/api/team-sales"]["get"]["parameters"]}
    assert parameters == {"month"}
