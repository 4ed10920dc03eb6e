"""The campaign assets through Dagster, against the sandbox provider on loopback: contacts in
the warehouse with E.164 phones, the duplicates table and its check, and provider failures."""

import dagster as dg
import duckdb
import pytest

from salesops_pipeline.assets.campaigns import (
    campaign_contacts,
    cross_campaign_duplicates,
    duplicates_are_in_both_campaigns,
)
from salesops_pipeline.resources import ProviderResource, WarehouseResource
from salesops_pipeline.services.sandbox.seed import DEFAULT_CONTACTS_PER_CAMPAIGN
from salesops_pipeline_tests.conftest import query_warehouse

ASSETS = [campaign_contacts, cross_campaign_duplicates, duplicates_are_in_both_campaigns]


def _run(sandbox, home, api_key=None, selection=None, run_config=None):
    return dg.materialize(
        ASSETS,
        resources={
            "provider": ProviderResource(host=sandbox.url, api_key=api_key or sandbox.api_key),
            "warehouse": WarehouseResource(home=str(home)),
        },
        selection=selection,
        run_config=run_config,
        raise_on_error=False,
    )


_query = query_warehouse


def _metadata(result, name):
    [event] = [e for e in result.get_asset_materialization_events() if e.asset_key.path == [name]]
    return {key: value.value for key, value in event.materialization.metadata.items()}


@pytest.fixture
def materialized(sandbox, tmp_path):
    home = tmp_path / "home"
    result = _run(sandbox, home)
    assert result.success
    return home, result


def test_contacts_are_stored_with_e164_phones(materialized):
    home, _ = materialized
    counts = _query(home, "SELECT campaign, COUNT(*) FROM campaign_contacts GROUP BY 1 ORDER BY 1")
    assert counts == [
        ("A", DEFAULT_CONTACTS_PER_CAMPAIGN),
        ("B", DEFAULT_CONTACTS_PER_CAMPAIGN - 1),
    ]
    forms = _query(
        home,
        "SELECT DISTINCT phone FROM campaign_contacts WHERE phone_e164 = '+33612345678' ORDER BY 1",
    )
    assert [p for (p,) in forms] == [
        "+33 6 12 34 56 78",
        "+33612345678",
        "0033612345678",
        "06 12 34 56 78",
        "0612345678",
    ]


def test_invalid_and_unreadable_phones_are_kept_and_counted(materialized):
    home, result = materialized
    [(invalid, unreadable)] = _query(
        home,
        "SELECT COUNT(*) FILTER (WHERE NOT phone_valid),"
        " COUNT(*) FILTER (WHERE phone_e164 IS NULL) FROM campaign_contacts",
    )
    metadata = _metadata(result, "campaign_contacts")
    # Per campaign: 0012345678, 0690123456 and the 07 02 number are possible but invalid;
    # 12345, "not a number", "" and null cannot be numbers.
    assert invalid == metadata["invalid_phones"] == 6
    assert unreadable == metadata["unreadable_phones"] == 8
    assert "too short" in metadata["unreadable_details"]
    assert "not a phone number" in metadata["unreadable_details"]
    assert metadata["malformed_records"] == 1
    assert "totalCalls" in metadata["malformed_details"]


def test_duplicates_table_and_metadata(materialized):
    home, result = materialized
    rows = dict(
        (phone, (a, b))
        for phone, a, b in _query(
            home,
            "SELECT phone, CAST(last_call_a AS VARCHAR), CAST(last_call_b AS VARCHAR)"
            " FROM cross_campaign_duplicates",
        )
    )
    assert rows["+33612345678"] == ("2025-03-23 06:30:05.12", "2025-03-28 04:47:45.9")
    assert rows["+33650333176"] == ("2025-03-10 23:14:12", None)
    assert "+33699887766" not in rows  # repeated inside A only
    # Invalid in phonenumbers' metadata, dialled by both campaigns all the same.
    assert rows["+33702264926"] == ("2025-03-14 11:02:00", "2025-03-20 16:45:30")
    metadata = _metadata(result, "cross_campaign_duplicates")
    assert metadata["dagster/row_count"] == len(rows)
    # 0012345678 (read as +12345678), 0690123456 and the 07 02 number, in both campaigns.
    not_valid = _query(
        home, "SELECT phone FROM cross_campaign_duplicates WHERE NOT phone_valid ORDER BY 1"
    )
    assert [p for (p,) in not_valid] == ["+12345678", "+33690123456", "+33702264926"]
    assert metadata["invalid_numbers"] == 3
    assert "+33*******78" in metadata["preview"]  # phones are masked in the UI
    assert "+33612345678" not in metadata["preview"]


def test_check_passes_then_fails_on_a_stray_row(materialized, sandbox):
    home, result = materialized
    [evaluation] = result.get_asset_check_evaluations()
    assert evaluation.passed
    conn = duckdb.connect(str(home / "warehouse.duckdb"))
    conn.execute("INSERT INTO cross_campaign_duplicates (phone) VALUES ('+33611000000')")
    conn.close()
    again = _run(
        sandbox, home, selection=dg.AssetSelection.checks(duplicates_are_in_both_campaigns)
    )
    [evaluation] = again.get_asset_check_evaluations()
    assert not evaluation.passed
    assert evaluation.metadata["not_in_both"].value == 1


def test_campaign_ids_are_configurable(sandbox, tmp_path):
    home = tmp_path / "home"
    config = {"ops": {"campaign_contacts": {"config": {"campaign_a": "B", "campaign_b": "A"}}}}
    assert _run(sandbox, home, run_config=config).success
    [(campaign,)] = _query(home, "SELECT DISTINCT campaign_a FROM cross_campaign_duplicates")
    assert campaign == "B"


def test_same_campaign_twice_is_refused_plainly(sandbox, tmp_path):
    config = {"ops": {"campaign_contacts": {"config": {"campaign_a": "A", "campaign_b": "A"}}}}
    result = _run(sandbox, tmp_path / "home", run_config=config)
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "two different campaigns" in failure.step_failure_data.user_failure_data.description


def test_wrong_key_fails_the_step_with_one_line(sandbox, tmp_path):
    result = _run(sandbox, tmp_path / "home", api_key="wrong")
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    description = failure.step_failure_data.user_failure_data.description
    assert description.startswith("GET /voice/contacts failed: 401")
    assert "test-key" not in description
