"""Contacts ingestion: both campaigns of N contacts from the sandbox provider over loopback,
paged, into DuckDB; and where the time goes (HTTP, JSON and validation, the rest)."""

import os
import sys
import tempfile
from pathlib import Path

import duckdb

from benchmarks.common import Case, cache_dir, compare, measure, server_process
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
    client = VoiceClient(transport)
    return sum(
        len(page.items)
        for campaign in ("A", "B")
        for page in client.iter_contact_pages(campaign_id=campaign)
    )


def run_end_to_end(transport: ApiTransport) -> int:
    # Into a database file, as the campaign_contacts asset loads the warehouse.
    with tempfile.TemporaryDirectory() as tmp:
        conn = duckdb.connect(str(Path(tmp) / "warehouse.duckdb"))
        try:
            loads = load_campaigns(conn, VoiceClient(transport), "A", "B")
        finally:
            conn.close()
    return sum(load.contacts for load in loads)


def main(scale: int, repeat: int) -> str:
    home = (cache_dir() / f"provider-{scale}").absolute()
    ensure_seeded_store(home / "sandbox" / "provider.sqlite", contacts_per_campaign=scale)
    port = free_port()
    env = {**os.environ, "SALESOPS_HOME": str(home), "REMOTE_API_KEY": KEY}
    argv = [
        sys.executable,
        "-m",
        "salesops_pipeline.cli",
        "sandbox",
        "--port",
        str(port),
        "--page-size",
        str(PAGE_SIZE),
    ]
    url = f"http://127.0.0.1:{port}"
    with server_process(argv, env, f"{url}/healthz"):
        cases = [
            Case("end to end into DuckDB (ours)", _transport, run_end_to_end),
            Case("HTTP + JSON + validation", _transport, run_http_and_validation),
            Case("HTTP only", _transport, run_http_only, baseline=True),
        ]
        figures = [measure(case, {"url": url}, repeat) for case in cases]
    total = 2 * scale
    e2e, validated, http = (f.median for f in figures)
    note = (
        f"Where the time goes, end to end: HTTP (server and transfer) {http:.2f} s, JSON and"
        f" validation {validated - http:.2f} s, column building, phone reading and DuckDB"
        f" insert {e2e - validated:.2f} s. Pages of {PAGE_SIZE:,} contacts."
        f" Ours: {total / e2e:,.0f} contacts/s, peak RSS {figures[0].peak_mb:,.0f} MB."
    )
    return compare(
        f"Contacts ingestion: 2 × {scale:,} contacts from the sandbox",
        figures,
        total,
        "contacts",
        note,
    )
