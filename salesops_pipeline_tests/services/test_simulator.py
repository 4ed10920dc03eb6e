"""`salesops simulate`: realistic events posted to the intake it finds (option, variable, or
the local stack recorded under SALESOPS_HOME), and an early stop with a clear message when the
intake cannot be reached or refuses the key, instead of posting into the void."""

import os
from collections import Counter

import pytest

from salesops_pipeline.cli import main
from salesops_pipeline.devtools.simulator import SimulationReport
from salesops_pipeline.devtools.stack import StackAddresses, write_stack_file
from salesops_pipeline.post_call.inbox import Inbox
from salesops_pipeline.services.http_server import serving_in_thread
from salesops_pipeline.services.intake.app import create_intake_app
from salesops_pipeline_tests.support.stack_process import free_port, refused_port

KEY = "intake-key"


@pytest.fixture
def intake(tmp_path, sandbox, monkeypatch):
    """An intake on loopback, and the sandbox as the provider whose contacts are called."""
    monkeypatch.setenv("REMOTE_API_HOST", sandbox.url)
    monkeypatch.setenv("REMOTE_API_KEY", sandbox.api_key)
    inbox = Inbox(tmp_path / "inbox.sqlite")
    with serving_in_thread(create_intake_app(inbox, api_key=KEY)) as url:
        yield url, inbox


def test_posts_to_the_intake_of_the_running_stack(intake, isolated_home, monkeypatch, capsys):
    url, inbox = intake
    isolated_home.mkdir(parents=True)
    write_stack_file(isolated_home, StackAddresses(os.getpid(), "http://x:1", url, "http://x:2"))
    monkeypatch.setenv("X_API_KEY", KEY)
    assert main(["simulate", "--rate", "20", "--duration", "0.5", "--seed", "1"]) == 0
    assert f"Posting 10 events to {url}" in capsys.readouterr().out
    assert sum(inbox.counts().values()) == 10


def test_intake_variable_wins_over_the_default(intake, monkeypatch, capsys):
    url, inbox = intake
    monkeypatch.setenv("X_API_KEY", KEY)
    monkeypatch.setenv("SALESOPS_INTAKE_URL", url)
    assert main(["simulate", "--rate", "20", "--duration", "0.25"]) == 0
    assert sum(inbox.counts().values()) == 5


def test_stops_when_the_intake_cannot_be_reached(intake, monkeypatch, capsys):
    monkeypatch.setenv("X_API_KEY", KEY)
    with refused_port() as port:
        closed = f"http://127.0.0.1:{port}"
        assert main(["simulate", "--rate", "50", "--duration", "60", "--intake", closed]) == 1
    err = capsys.readouterr().err
    assert "stopped after 5 events: 5 posts in a row failed: cannot reach the intake" in err
    assert closed in err and "salesops dev" in err


def test_stops_when_the_key_is_refused(intake, monkeypatch, capsys):
    url, inbox = intake
    monkeypatch.setenv("X_API_KEY", "not-the-key")
    assert main(["simulate", "--rate", "50", "--duration", "60", "--intake", url]) == 1
    err = capsys.readouterr().err
    assert "5 posts in a row failed: the intake refused the key (401)" in err
    assert "X_API_KEY" in err
    assert inbox.counts() == {}


def test_posts_are_spread_over_the_stacks_intake_replicas(
    intake, tmp_path, isolated_home, monkeypatch, capsys
):
    url, inbox = intake
    second_inbox = Inbox(tmp_path / "second-inbox.sqlite")
    with serving_in_thread(create_intake_app(second_inbox, api_key=KEY)) as second_url:
        isolated_home.mkdir(parents=True)
        addresses = StackAddresses(os.getpid(), "http://x:1", url, "http://x:2", [url, second_url])
        write_stack_file(isolated_home, addresses)
        monkeypatch.setenv("X_API_KEY", KEY)
        assert main(["simulate", "--rate", "20", "--duration", "0.5", "--seed", "1"]) == 0
    assert f"Posting 10 events to {url}, {second_url} in turn" in capsys.readouterr().out
    assert sum(inbox.counts().values()) == sum(second_inbox.counts().values()) == 5


def test_the_intake_option_wins_over_the_stacks_replicas(intake, isolated_home, monkeypatch):
    url, inbox = intake
    isolated_home.mkdir(parents=True)
    elsewhere = [f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"]
    write_stack_file(
        isolated_home, StackAddresses(os.getpid(), "http://x:1", elsewhere[0], "x", elsewhere)
    )
    monkeypatch.setenv("X_API_KEY", KEY)
    assert main(["simulate", "--rate", "20", "--duration", "0.25", "--intake", url]) == 0
    assert sum(inbox.counts().values()) == 5


def test_the_summary_is_a_small_aligned_table():
    report = SimulationReport(
        sent=7,
        statuses=Counter({202: 5, 401: 1}),
        errors=Counter({"ConnectionError": 1}),
        kinds=Counter({"callback": 4, "support": 1, "other": 2}),
        latencies_ms=[3.0, 1.25, 8.5, 2.0, 4.0, 2.5],
    )
    assert report.summary() == (
        "Events sent  7: 4 callbacks, 1 support transfer, 2 other outcomes\n"
        "Answers      202 Accepted: 5, 401 Unauthorized: 1\n"
        "Errors       ConnectionError: 1\n"
        "Latency      p50 3.0 ms, max 8.5 ms"
    )


def test_a_summary_with_nothing_answered_says_none():
    assert SimulationReport().summary() == (
        "Events sent  0\nAnswers      none\nErrors       none\nLatency      p50 0.0 ms, max 0.0 ms"
    )


def test_simulate_prints_its_summary_without_python_structures(intake, monkeypatch, capsys):
    url, _ = intake
    monkeypatch.setenv("X_API_KEY", KEY)
    assert main(["simulate", "--rate", "20", "--duration", "0.5", "--intake", url]) == 0
    posting, *summary = capsys.readouterr().out.splitlines()
    assert posting == f"Posting 10 events to {url} over 0s"
    assert [line.split("  ")[0] for line in summary] == [
        "Events sent",
        "Answers",
        "Errors",
        "Latency",
    ]
    assert summary[0].startswith("Events sent  10: ")
    assert summary[1] == "Answers      202 Accepted: 10"
    assert summary[2] == "Errors       none"
    assert not any(mark in line for line in summary for mark in "{}[]")
