"""The sandbox answers as the real provider does unless asked otherwise: a client written for
the provider's API (plain GETs with the key, `campaignId` optional, no paging, typed records)
gets every contact of `salesops sandbox`, clean. Paging and the demo's malformed record are
options, which the demo stack turns on."""

import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

import pytest
import requests

from salesops_pipeline.cli import main
from salesops_pipeline.devtools.stack import start_sandbox
from salesops_pipeline.services.sandbox.app import DEMO_PAGE_SIZE
from salesops_pipeline.services.sandbox.seed import (
    DEFAULT_CONTACTS_PER_CAMPAIGN,
    DEFAULT_SEED,
    demo_agents,
    demo_contacts,
    flawed_contact_ids,
)
from salesops_pipeline.services.sandbox.server import ensure_seeded_store, running_sandbox
from salesops_pipeline_tests.support.stack_process import free_port

KEY = "sandbox-key"
# More than the demo's page size: a client that does not page would miss contacts if the
# sandbox paged by default.
CONTACTS = DEMO_PAGE_SIZE + 200
[FLAWED_ID] = flawed_contact_ids()


@dataclass(frozen=True)
class ReferenceContact:
    """A contact as a client written from the provider's documentation types it: every field
    present, text or null, dates in ISO 8601, `totalCalls` a whole number."""

    id: str
    campaign_id: str | None
    phone: str | None
    retryDate: datetime | None
    lastCallAt: datetime | None
    assignedAgent: str | None
    wrapup: str | None
    totalCalls: int
    crm_id: str | None

    @classmethod
    def parse(cls, record: dict) -> "ReferenceContact":
        def text(name: str) -> str | None:
            value = record[name]
            if value is not None and not isinstance(value, str):
                raise TypeError(f"{name}: {value!r} is not text")
            return value

        def moment(name: str) -> datetime | None:
            value = text(name)
            return None if value is None else datetime.fromisoformat(value)

        total_calls = record["totalCalls"]
        if type(total_calls) is not int:
            raise TypeError(f"totalCalls: {total_calls!r} is not a whole number")
        contact_id = text("id")
        if contact_id is None:
            raise TypeError("id: missing")
        return cls(
            id=contact_id,
            campaign_id=text("campaign_id"),
            phone=text("phone"),
            retryDate=moment("retryDate"),
            lastCallAt=moment("lastCallAt"),
            assignedAgent=text("assignedAgent"),
            wrapup=text("wrapup"),
            totalCalls=total_calls,
            crm_id=text("crm_id"),
        )


def reference_contacts(url: str, campaign: str | None = None) -> list[ReferenceContact]:
    """The reference client: one plain GET, the campaign optional, every record typed."""
    params = {"campaignId": campaign} if campaign is not None else {}
    response = requests.get(
        f"{url}/voice/contacts", params=params, headers={"X-API-KEY": KEY}, timeout=30
    )
    response.raise_for_status()
    return [ReferenceContact.parse(record) for record in response.json()]


@contextmanager
def sandbox_command(home, *options: str) -> Iterator[str]:
    """`salesops sandbox` as its own process on loopback, with `options`; its URL."""
    port = free_port()
    env = {**os.environ, "SALESOPS_HOME": str(home), "REMOTE_API_KEY": KEY}
    argv = [sys.executable, "-m", "salesops_pipeline.cli", "sandbox", "--port", str(port)]
    process = subprocess.Popen(
        [*argv, "--contacts-per-campaign", str(CONTACTS), *options],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                requests.get(f"{url}/healthz", timeout=2).raise_for_status()
                break
            except requests.ConnectionError:
                assert process.poll() is None, "salesops sandbox exited before answering"
                assert time.monotonic() < deadline, "salesops sandbox never answered"
                time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_a_reference_client_gets_every_contact_of_salesops_sandbox(isolated_home):
    with sandbox_command(isolated_home) as url:
        a = reference_contacts(url, "A")
        b = reference_contacts(url, "B")
        everyone = reference_contacts(url)
        unpaged = requests.get(
            f"{url}/voice/contacts",
            params={"campaignId": "A"},
            headers={"X-API-KEY": KEY},
            timeout=30,
        )
    assert "Link" not in unpaged.headers
    assert len(a) == len({c.id for c in a}) == CONTACTS
    # Campaign B is seeded with the demo's malformed record, which is not served by default.
    assert len(b) == len({c.id for c in b}) == CONTACTS - 1
    assert FLAWED_ID not in {c.id for c in b}
    assert sorted(c.id for c in everyone) == sorted(c.id for c in a + b)


def test_paging_and_the_malformed_record_are_options_of_salesops_sandbox(isolated_home):
    with sandbox_command(isolated_home, "--page-size", "500", "--malformed-records") as url:
        first = requests.get(
            f"{url}/voice/contacts",
            params={"campaignId": "B"},
            headers={"X-API-KEY": KEY},
            timeout=30,
        )
        pages = [first]
        while "next" in pages[-1].links:
            link = pages[-1].links["next"]["url"]
            pages.append(requests.get(f"{url}{link}", headers={"X-API-KEY": KEY}, timeout=30))
    records = [record for page in pages for record in page.json()]
    assert [len(page.json()) for page in pages] == [500, 500, CONTACTS - 1000]
    [malformed] = [record for record in records if record["id"] == FLAWED_ID]
    assert malformed["totalCalls"] == "many"
    with pytest.raises(TypeError, match="totalCalls"):
        ReferenceContact.parse(malformed)


def _get(sandbox, path: str, **params) -> requests.Response:
    return requests.get(
        f"{sandbox.url}{path}", params=params, headers={"X-API-KEY": sandbox.api_key}, timeout=10
    )


def test_by_default_the_flawed_record_does_not_exist(sandbox_store):
    with running_sandbox(sandbox_store, api_key="k") as clean:
        assert _get(clean, f"/voice/contacts/{FLAWED_ID}").status_code == 404
        patch = requests.patch(
            f"{clean.url}/voice/contacts/{FLAWED_ID}",
            json={"assignedAgent": "x@example.com"},
            headers={"X-API-KEY": "k"},
            timeout=10,
        )
        assert patch.status_code == 404
    with running_sandbox(sandbox_store, api_key="k", malformed_records=True) as demo:
        assert _get(demo, f"/voice/contacts/{FLAWED_ID}").json()["totalCalls"] == "many"
        assert FLAWED_ID in {r["id"] for r in _get(demo, "/voice/contacts", campaignId="B").json()}
    assert sandbox_store.write_log() == []


def test_records_added_through_the_sandbox_are_served_as_given(sandbox_store):
    with running_sandbox(sandbox_store, api_key="k") as clean:
        requests.post(
            f"{clean.url}/_sandbox/campaigns/Z/contacts",
            json=[{"id": "odd", "totalCalls": "many"}],
            headers={"X-API-KEY": "k"},
            timeout=10,
        ).raise_for_status()
        assert _get(clean, "/voice/contacts", campaignId="Z").json() == [
            {"id": "odd", "totalCalls": "many"}
        ]


def test_without_a_campaign_every_campaign_is_listed_paged_or_not(sandbox_store):
    with running_sandbox(sandbox_store, api_key="k", page_size=300) as paged:
        ids, answer = [], _get(paged, "/voice/contacts")
        ids += [r["id"] for r in answer.json()]
        while "next" in answer.links:
            answer = requests.get(
                f"{paged.url}{answer.links['next']['url']}", headers={"X-API-KEY": "k"}, timeout=10
            )
            ids += [r["id"] for r in answer.json()]
    with running_sandbox(sandbox_store, api_key="k") as unpaged:
        whole = [r["id"] for r in _get(unpaged, "/voice/contacts").json()]
    assert ids == whole
    assert len(whole) == len(set(whole)) == 2 * DEFAULT_CONTACTS_PER_CAMPAIGN - 1


def test_crm_contacts_are_one_list_by_default_and_paged_on_request(sandbox_store):
    with running_sandbox(sandbox_store, api_key="k") as clean:
        whole = _get(clean, "/crm/contacts")
    with running_sandbox(sandbox_store, api_key="k", page_size=50) as paged:
        first = _get(paged, "/crm/contacts")
    assert "Link" not in whole.headers and len(whole.json()) == 200
    assert first.links["next"] and first.json() == whole.json()[:50]


def test_a_sandbox_seeded_before_flaws_were_marked_serves_clean_records(tmp_path):
    path = tmp_path / "provider.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript(
        "CREATE TABLE contact (seq INTEGER PRIMARY KEY, id TEXT UNIQUE, campaign TEXT NOT NULL,"
        " body TEXT NOT NULL);"
        "CREATE TABLE crm_agent (seq INTEGER PRIMARY KEY, team TEXT, body TEXT NOT NULL);"
        "CREATE TABLE crm_contact (seq INTEGER PRIMARY KEY, body TEXT NOT NULL);"
        "CREATE TABLE write_log (seq INTEGER PRIMARY KEY, contact_id TEXT NOT NULL,"
        " changes TEXT NOT NULL, idempotency_key TEXT, at TEXT NOT NULL);"
    )
    conn.executemany(
        "INSERT INTO contact (id, campaign, body) VALUES (?, ?, ?)",
        (row[:3] for row in demo_contacts(40, DEFAULT_SEED)),
    )
    conn.executemany(
        "INSERT INTO crm_agent (team, body) VALUES (?, ?)",
        ((agent["team"], json.dumps(agent)) for agent in demo_agents()),
    )
    conn.commit()
    conn.close()
    store = ensure_seeded_store(path, contacts_per_campaign=40)
    with running_sandbox(store, api_key="k") as clean:
        served = _get(clean, "/voice/contacts", campaignId="B").json()
    with running_sandbox(store, api_key="k", malformed_records=True) as demo:
        assert len(_get(demo, "/voice/contacts", campaignId="B").json()) == 40
    assert len(served) == 39 and FLAWED_ID not in {r["id"] for r in served}
    # Opened again, nothing changes.
    assert ensure_seeded_store(path).contact(FLAWED_ID, flawed=False) is None


class _RecordingSupervisor:
    def __init__(self):
        self.started: list[list[str]] = []

    def start(self, name, argv, env, *, restart=None):
        self.started.append(list(argv))

    def wait_http(self, child, url, timeout=60.0):
        pass


@pytest.mark.parametrize("clean", [False, True])
def test_the_demo_stack_turns_paging_and_the_malformed_record_on_unless_asked(clean):
    supervisor = _RecordingSupervisor()
    env = {}
    start_sandbox(supervisor, ["salesops"], env, 9010, clean=clean)
    [argv] = supervisor.started
    assert env["REMOTE_API_HOST"] == "http://127.0.0.1:9010"
    if clean:
        assert "--page-size" not in argv and "--malformed-records" not in argv
    else:
        assert argv[argv.index("--page-size") + 1] == str(DEMO_PAGE_SIZE)
        assert "--malformed-records" in argv


@pytest.mark.parametrize(("options", "clean"), [([], False), (["--clean-sandbox"], True)])
def test_salesops_dev_passes_its_sandbox_choice_on(monkeypatch, options, clean):
    started = {}

    def run_local_stack(**kwargs):
        started.update(kwargs)
        return 0

    monkeypatch.setattr("salesops_pipeline.cli.devtools.run_local_stack", run_local_stack)
    assert main(["dev", *options]) == 0
    assert started["clean_sandbox"] is clean
