"""`salesops duplicates` and `salesops sandbox`: Q1.2's exact output from the sandbox and from
any server that speaks the provider's API, and one clear line when the provider fails."""

import json
import re
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from salesops_pipeline.campaigns.duplicates import Duplicate
from salesops_pipeline.cli import main
from salesops_pipeline.cli.campaigns import _name_invalid_numbers
from salesops_pipeline_tests.conftest import arm_fault

SHOWCASE = (
    "+33612345678\n\tA: 2025-03-23 06:30:05\n\tB: 2025-03-28 04:47:45\n"
    "+33650333176\n\tA: 2025-03-10 23:14:12\n\tB: N/A\n"
)


def test_without_a_provider_the_sandbox_answers(capsys, isolated_home):
    assert main(["duplicates"]) == 0
    captured = capsys.readouterr()
    assert "+33612345678\n\tA: 2025-03-23 06:30:05\n\tB: 2025-03-28 04:47:45\n" in captured.out
    assert "+33650333176\n\tA: 2025-03-10 23:14:12\n\tB: N/A" in captured.out
    assert "skipped malformed record" in captured.err
    assert (isolated_home / "sandbox" / "provider.sqlite").is_file()


def test_configured_provider_text_and_json(provider_env, capsys):
    assert main(["duplicates"]) == 0
    text = capsys.readouterr().out
    phones = [line for line in text.splitlines() if not line.startswith("\t")]
    assert phones == sorted(phones) and len(phones) > 10
    assert main(["duplicates", "--format", "json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert [d["phone"] for d in document] == phones
    assert {
        "phone": "+33650333176",
        "last_call": {"A": "2025-03-10 23:14:12", "B": None},
        "phone_valid": True,
    } in document


NOT_VALID = ["+12345678", "+33690123456", "+33702264926"]


def test_numbers_not_valid_are_named_on_stderr_and_marked_in_json(provider_env, capsys):
    assert main(["duplicates"]) == 0
    captured = capsys.readouterr()
    # Listed in Q1.2's format, nothing added to it.
    assert "+12345678\n\tA: " in captured.out
    for line in captured.out.splitlines():
        assert re.fullmatch(r"\+\d+|\t[AB]: (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d|N/A)", line), line
    listed = len([line for line in captured.out.splitlines() if line.startswith("+")])
    [named] = [line for line in captured.err.splitlines() if "not valid" in line]
    assert named == (
        f"salesops: 3 of the {listed} numbers listed are not valid today (mistyped, or in a"
        " range not yet assigned), compared all the same: " + ", ".join(NOT_VALID)
    )
    assert main(["duplicates", "--format", "json"]) == 0
    captured = capsys.readouterr()
    document = json.loads(captured.out)
    assert [d["phone"] for d in document if d["phone_valid"] is False] == NOT_VALID
    assert all(d["phone_valid"] is True for d in document if d["phone"] not in NOT_VALID)
    assert "not valid today" in captured.err


def test_many_numbers_not_valid_are_counted_beyond_the_first_ones(capsys):
    found = [Duplicate(f"+1234567{n:02d}", "A", None, "B", None, False) for n in range(12)]
    found.append(Duplicate("+33611111111", "A", None, "B", None, True))
    _name_invalid_numbers(found)
    err = capsys.readouterr().err
    assert err.startswith("salesops: 12 of the 13 numbers listed are not valid today")
    assert "+123456710" not in err and "+123456711" not in err
    assert err.rstrip().endswith("+123456709 and 2 more (--format json marks each)")
    assert "+33611111111" not in err


def test_no_word_when_every_number_listed_is_valid(capsys):
    _name_invalid_numbers([Duplicate("+33611111111", "A", None, "B", None, True)])
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("wrong_key", "GET /voice/contacts failed: 401"),
        ("refused", "connection refused"),
        ("timeout", "no answer within 0.3s"),
        ("no_key", "REMOTE_API_KEY is not set"),
        ("same_campaign", "two different campaigns"),
    ],
)
def test_provider_failures_are_one_clear_line(provider_env, monkeypatch, capsys, setup, message):
    args = ["duplicates"]
    if setup == "wrong_key":
        monkeypatch.setenv("REMOTE_API_KEY", "wrong")
    elif setup == "refused":
        with socket.socket() as free:
            free.bind(("127.0.0.1", 0))
            monkeypatch.setenv("REMOTE_API_HOST", f"http://127.0.0.1:{free.getsockname()[1]}")
    elif setup == "timeout":
        arm_fault(
            provider_env,
            method="GET",
            path_prefix="/voice",
            status=None,
            delay_seconds=1.5,
            times=10,
        )
        args += ["--timeout", "0.3"]
    elif setup == "no_key":
        monkeypatch.delenv("REMOTE_API_KEY")
    elif setup == "same_campaign":
        args += ["--campaign-b", "A"]
    assert main(args) == 1
    err = capsys.readouterr().err.strip()
    assert message in err
    assert len(err.splitlines()) == 1
    assert "wrong" not in err and provider_env.api_key not in err


class _OtherProvider(BaseHTTPRequestHandler):
    """Another implementation of the provider's API: absolute next links, pages of 2, its own
    record order and extra fields. Answers only with the right key."""

    CONTACTS: ClassVar[dict[str, list[dict]]] = {
        "A": [
            {
                "id": "a1",
                "phone": "06 20 92 28 65",
                "lastCallAt": "2025-03-23T06:30:05.5",
                "extra": 1,
            },
            {"id": "a2", "phone": "+33620922865", "lastCallAt": "2025-03-01T10:00:00"},
            {"id": "a3", "phone": "0033650333176", "lastCallAt": None},
            {"id": "a4", "phone": "bad"},
        ],
        "B": [
            {
                "id": "b1",
                "campaign_id": "B",
                "phone": "0650333176",
                "lastCallAt": "2025-03-10T23:14:12",
            },
            {"id": "b2", "phone": "+33 6 20 92 28 65"},
            {"id": "b3", "phone": "0611111111", "lastCallAt": "2025-03-11T00:00:00"},
        ],
    }

    def do_GET(self):
        if self.headers.get("X-API-KEY") != "other-key":
            self.send_response(401)
            self.end_headers()
            return
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        records = self.CONTACTS.get(query["campaignId"][0], [])
        start = int(query.get("page", ["0"])[0])
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        if start + 2 < len(records):
            host, port = self.server.server_address[:2]
            campaign = query["campaignId"][0]
            next_url = f"http://{host}:{port}{url.path}?campaignId={campaign}&page={start + 2}"
            self.send_header("Link", f'<{next_url}>; rel="next"')
        self.end_headers()
        self.wfile.write(json.dumps(records[start : start + 2]).encode())

    def log_message(self, *args):
        pass


def test_any_server_speaking_the_api(monkeypatch, capsys):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _OtherProvider)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.setenv("REMOTE_API_HOST", f"http://127.0.0.1:{server.server_address[1]}/")
        monkeypatch.setenv("REMOTE_API_KEY", "other-key")
        assert main(["duplicates"]) == 0
    finally:
        server.shutdown()
        server.server_close()
    assert capsys.readouterr().out == (
        "+33620922865\n\tA: 2025-03-23 06:30:05\n\tB: N/A\n"
        "+33650333176\n\tA: N/A\n\tB: 2025-03-10 23:14:12\n"
    )


def test_sandbox_command_serves_the_api(tmp_path, isolated_home):
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    env = {
        **__import__("os").environ,
        "SALESOPS_HOME": str(isolated_home),
        "REMOTE_API_KEY": "sandbox-key",
    }
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "salesops_pipeline.cli",
            "sandbox",
            "--port",
            str(port),
            "--contacts-per-campaign",
            "40",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                response = requests.get(
                    f"http://127.0.0.1:{port}/voice/contacts",
                    params={"campaignId": "A"},
                    headers={"X-API-KEY": "sandbox-key"},
                    timeout=2,
                )
                break
            except requests.ConnectionError:
                assert process.poll() is None and time.monotonic() < deadline
                time.sleep(0.2)
        assert response.status_code == 200
        assert len(response.json()) == 40
        denied = requests.get(f"http://127.0.0.1:{port}/crm/agents", timeout=2)
        assert denied.status_code == 401
    finally:
        process.terminate()
        output = process.communicate(timeout=20)[0]
    assert "sandbox-key" not in output  # a configured key is never printed


def test_an_empty_campaign_is_reported(provider_env, capsys):
    assert main(["duplicates", "--campaign-b", "nobody-calls-this"]) == 0
    captured = capsys.readouterr()
    assert "campaign nobody-calls-this is empty" in captured.err
    assert "campaign A is empty" not in captured.err
    assert captured.out.strip() == ""


def test_the_running_local_stack_is_used(sandbox, monkeypatch, capsys, isolated_home):
    import os

    from salesops_pipeline.devtools.stack import StackAddresses, write_stack_file

    isolated_home.mkdir(parents=True, exist_ok=True)
    write_stack_file(
        isolated_home,
        StackAddresses(
            pid=os.getpid(),
            dagster_url="http://127.0.0.1:1",
            intake_url="http://127.0.0.1:2",
            provider_url=sandbox.url,
        ),
    )
    monkeypatch.setenv("REMOTE_API_KEY", sandbox.api_key)
    assert main(["duplicates"]) == 0
    assert "+33612345678\n\tA: 2025-03-23 06:30:05\n\tB: 2025-03-28 04:47:45\n" in (
        capsys.readouterr().out
    )
    # Answered by the stack's provider: no sandbox of its own was seeded for the command.
    assert not (isolated_home / "sandbox").exists()
