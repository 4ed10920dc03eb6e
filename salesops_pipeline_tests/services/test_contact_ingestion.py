"""Both campaigns from the sandbox provider into DuckDB over real HTTP on loopback: paged or
as one unpaged list (as the reference provider answers), the same contacts and the same
malformed records either way; a page that breaks off fails the load and leaves the previous
contacts in place."""

from pathlib import Path

import duckdb
import pytest

from salesops_pipeline.campaigns.ingest import load_campaigns
from salesops_pipeline.clients import ApiTransport, ApiUnavailableError, VoiceClient
from salesops_pipeline.clients.transport import default_retry
from salesops_pipeline.services.sandbox.seed import DEFAULT_CONTACTS_PER_CAMPAIGN
from salesops_pipeline.services.sandbox.server import running_sandbox
from salesops_pipeline_tests.conftest import arm_fault


def _voice(url: str, key: str) -> VoiceClient:
    return VoiceClient(
        ApiTransport(url, key, timeout=(2.0, 5.0), retry=default_retry(backoff_factor=0.01))
    )


@pytest.fixture
def unpaged_sandbox(sandbox_store):
    with running_sandbox(
        sandbox_store, api_key="test-key", page_size=0, malformed_records=True
    ) as running:
        yield running


def _contacts(conn) -> list[tuple]:
    return conn.execute(
        "SELECT position, campaign, contact_id, phone, phone_e164, phone_valid, phone_problem,"
        " last_call_at, retry_date, assigned_agent, wrapup, total_calls, crm_id"
        " FROM campaign_contacts ORDER BY ALL"
    ).fetchall()


def test_an_unpaged_campaign_arrives_as_one_file(unpaged_sandbox, tmp_path):
    pages = list(
        _voice(unpaged_sandbox.url, unpaged_sandbox.api_key).download_contact_pages("A", tmp_path)
    )
    assert [path.name for path in pages] == ["page-000001.json"]
    assert pages[0].read_bytes().count(b'"id"') == DEFAULT_CONTACTS_PER_CAMPAIGN


def test_paged_and_unpaged_answers_load_the_same_contacts(sandbox, unpaged_sandbox):
    loaded = []
    for server in (sandbox, unpaged_sandbox):
        conn = duckdb.connect()
        try:
            loads = load_campaigns(conn, _voice(server.url, server.api_key), "A", "B")
            loaded.append((_contacts(conn), [(load.contacts, load.rejected) for load in loads]))
        finally:
            conn.close()
    paged, unpaged = loaded
    assert paged == unpaged
    contacts, per_campaign = paged
    assert len(contacts) == 2 * DEFAULT_CONTACTS_PER_CAMPAIGN - 1
    [(_, rejected_a), (_, [rejected_b])] = per_campaign
    assert rejected_a == []
    assert rejected_b.reason == "totalCalls: not a whole number"


def test_a_page_that_breaks_off_fails_the_load_and_keeps_the_previous_contacts(
    sandbox, tmp_path, monkeypatch
):
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    conn = duckdb.connect()
    try:
        client = _voice(sandbox.url, sandbox.api_key)
        load_campaigns(conn, client, "A", "B")
        before = _contacts(conn)
        arm_fault(sandbox, method="GET", path_prefix="/voice/contacts", drop_after_apply=True)
        with pytest.raises(ApiUnavailableError, match="broke off"):
            load_campaigns(conn, client, "A", "B")
        assert _contacts(conn) == before
        # Nothing of the failed load is left behind: no half table, no saved page.
        tables = {
            name for (name,) in conn.execute("SELECT table_name FROM duckdb_tables()").fetchall()
        }
        assert tables == {"campaign_contacts"}
        assert not any(Path(tmp_path).rglob("page-*.json"))
    finally:
        conn.close()


def test_a_load_leaves_the_warehouse_settings_as_they_were(sandbox):
    conn = duckdb.connect()
    settings = "SELECT current_setting('force_compression'), current_setting('enable_progress_bar')"
    try:
        before = conn.execute(settings).fetchone()
        load_campaigns(conn, _voice(sandbox.url, sandbox.api_key), "A", "B")
        assert conn.execute(settings).fetchone() == before
    finally:
        conn.close()
