"""Contacts ingestion: both campaigns of N contacts from the sandbox provider over loopback
into DuckDB, paged and as one unpaged list per campaign; against plain HTTP, the previous way
(JSON parsed into pydantic objects) and pandas, in the same run."""

import io
import os
import sys
import tempfile
from pathlib import Path

import duckdb
import pandas as pd

from benchmarks.common import Case, cache_dir, compare, measure, prepared, server_process
from salesops_pipeline.campaigns.ingest import load_campaigns
from salesops_pipeline.clients import ApiTransport, VoiceClient
from salesops_pipeline.services.sandbox.server import ensure_seeded_store
from salesops_pipeline_tests.support.stack_process import free_port

PAGE_SIZE = 10_000
KEY = "benchmark-key"


def _transport(params: dict) -> ApiTransport:
    return ApiTransport(params["url"], KEY, timeout=(3.05, 120))


def run_http_only(transport: ApiTransport) -> int:
    size = 0
    for campaign in ("A", "B"):
        for response in transport.iter_pages("voice/contacts", params={"campaignId": campaign}):
            size += len(response.content)
    return size


def run_http_and_validation(transport: ApiTransport) -> int:
    """The previous way: each page parsed and validated into pydantic objects."""
    client = VoiceClient(transport)
    return sum(
        len(page.items) + len(page.rejected)
        for campaign in ("A", "B")
        for page in client.iter_contact_pages(campaign_id=campaign)
    )


def run_pandas(transport: ApiTransport) -> int:
    """Each page read by pandas.read_json, its columns checked the pandas way (values that do
    not convert are malformed), the good rows appended to a DuckDB table."""
    conn = duckdb.connect()
    conn.execute(
        "CREATE TABLE contacts (contact_id VARCHAR, phone VARCHAR, last_call_at TIMESTAMP,"
        " retry_date TIMESTAMP, total_calls BIGINT)"
    )
    try:
        records = 0
        for campaign in ("A", "B"):
            for response in transport.iter_pages("voice/contacts", params={"campaignId": campaign}):
                frame = pd.read_json(io.BytesIO(response.content), orient="records", dtype=False)
                calls = pd.to_numeric(frame["totalCalls"], errors="coerce")
                last = pd.to_datetime(frame["lastCallAt"], errors="coerce", format="ISO8601")
                retry = pd.to_datetime(frame["retryDate"], errors="coerce", format="ISO8601")
                bad = (
                    (calls.isna() & frame["totalCalls"].notna())
                    | (last.isna() & frame["lastCallAt"].notna())
                    | (retry.isna() & frame["retryDate"].notna())
                )
                page = pd.DataFrame(
                    {
                        "contact_id": frame["id"].astype("string"),
                        "phone": frame["phone"].astype("string"),
                        "last_call_at": last,
                        "retry_date": retry,
                        "total_calls": calls.astype("Int64"),
                    }
                )[~bad]
                conn.register("page", page)
                conn.execute("INSERT INTO contacts SELECT * FROM page")
                conn.unregister("page")
                records += len(frame)
        return records
    finally:
        conn.close()


def run_end_to_end(transport: ApiTransport) -> int:
    # Into a database file, as the campaign_contacts asset loads the warehouse.
    with tempfile.TemporaryDirectory() as tmp:
        conn = duckdb.connect(str(Path(tmp) / "warehouse.duckdb"))
        try:
            loads = load_campaigns(conn, VoiceClient(transport), "A", "B")
        finally:
            conn.close()
    return sum(load.contacts + len(load.rejected) for load in loads)


def _seed(path: Path, scale: int) -> None:
    ensure_seeded_store(path, contacts_per_campaign=scale)


def _sandbox(home: Path, page_size: int) -> tuple[list[str], str]:
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "salesops_pipeline.cli",
        "sandbox",
        "--port",
        str(port),
        "--page-size",
        str(page_size),
        # The demo's malformed record too: each way of reading has to set it aside.
        "--malformed-records",
    ]
    return argv, f"http://127.0.0.1:{port}"


def main(scale: int, repeat: int) -> str:
    home = (cache_dir() / f"provider-{scale}").absolute()
    prepared(_seed, home / "sandbox" / "provider.sqlite", scale)
    env = {**os.environ, "SALESOPS_HOME": str(home), "REMOTE_API_KEY": KEY}
    paged_argv, paged_url = _sandbox(home, PAGE_SIZE)
    whole_argv, whole_url = _sandbox(home, 0)
    with (
        server_process(paged_argv, env, f"{paged_url}/healthz"),
        server_process(whole_argv, env, f"{whole_url}/healthz"),
    ):
        cases = [
            (Case("end to end into DuckDB, paged (ours)", _transport, run_end_to_end), paged_url),
            (
                Case("end to end, one unpaged list (ours)", _transport, run_end_to_end),
                whole_url,
            ),
            (
                Case("pydantic objects (previous way)", _transport, run_http_and_validation),
                paged_url,
            ),
            (Case("pandas.read_json into DuckDB", _transport, run_pandas), paged_url),
            (Case("HTTP only", _transport, run_http_only, baseline=True), paged_url),
        ]
        figures = [measure(case, {"url": url}, repeat) for case, url in cases]
    total = 2 * scale
    paged, whole, _, _, http = figures
    counted = {f.name: f.result for f in figures[:4]}
    assert len(set(counted.values())) == 1, f"the methods disagree: {counted}"
    note = (
        f"Pages of {PAGE_SIZE:,} contacts, or each campaign as one list. Ours, paged:"
        f" {total / paged.median:,.0f} contacts/s, peak RSS {paged.peak_mb:,.0f} MB; unpaged:"
        f" {total / whole.median:,.0f} contacts/s, peak RSS {whole.peak_mb:,.0f} MB."
        f" Plain HTTP alone takes {http.median:.2f} s."
    )
    return compare(
        f"Contacts ingestion: 2 × {scale:,} contacts from the sandbox",
        figures,
        total,
        "contacts",
        note,
    )
