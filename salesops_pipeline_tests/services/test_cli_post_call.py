"""`salesops post-call`, `inbox` and `replay`: one event through the same rules, client and
outcomes ledger as the pipeline, synchronously; clear messages for bad input; what a webhook
sent is printed as visible text, never as terminal control sequences or extra lines."""

import json

import pytest

from salesops_pipeline import settings
from salesops_pipeline.cli import main
from salesops_pipeline.post_call.inbox import Inbox
from salesops_pipeline.services.sandbox.seed import REFERENCE_CONTACT_ID


@pytest.fixture
def event_files(reference_events, tmp_path):
    paths = {}
    for name, raw in reference_events.items():
        paths[name] = tmp_path / f"{name}.json"
        paths[name].write_bytes(raw)
    return paths


def _contact(sandbox):
    return json.loads(sandbox.app.state.store.contact(REFERENCE_CONTACT_ID))


def test_dry_run_writes_nothing(provider_env, event_files, capsys, isolated_home):
    assert main(["post-call", str(event_files["post_call_2.1"]), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "would PATCH contact" in out and "retryDate=2025-04-14T10:30:00" in out
    assert provider_env.app.state.applied_patches == []
    assert not (isolated_home / "intake" / "inbox.sqlite").exists()


def test_dry_run_of_an_applied_event_says_so(provider_env, event_files, capsys):
    assert main(["post-call", str(event_files["post_call_2.1"])]) == 0
    capsys.readouterr()
    assert main(["post-call", str(event_files["post_call_2.1"]), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "102224021: already applied" in out and "would write nothing" in out
    assert "would PATCH" not in out
    assert len(provider_env.app.state.applied_patches) == 1


@pytest.mark.parametrize("command", [["inbox"], ["replay", "102224021"]])
def test_read_only_commands_create_no_inbox(command, capsys, isolated_home):
    assert main(command) == 1
    err = capsys.readouterr().err
    inbox = isolated_home / "intake" / "inbox.sqlite"
    assert f"No inbox at {inbox}" in err and "SALESOPS_HOME" in err
    assert not inbox.exists() and not inbox.parent.exists()


def test_applies_then_recognises_the_event(provider_env, event_files, capsys):
    assert main(["post-call", str(event_files["post_call_2.1"])]) == 0
    assert "102224021: applied" in capsys.readouterr().out
    assert _contact(provider_env)["retryDate"] == "2025-04-14T10:30:00"
    assert main(["post-call", str(event_files["post_call_2.1"])]) == 0
    assert "skipped" in capsys.readouterr().out
    assert len(provider_env.app.state.applied_patches) == 1


def test_transfer_from_stdin(provider_env, reference_events, capsys, monkeypatch):
    import io
    import sys

    monkeypatch.setattr(
        sys, "stdin", io.TextIOWrapper(io.BytesIO(reference_events["post_call_2.2"]))
    )
    assert main(["post-call", "-"]) == 0
    out = capsys.readouterr().out
    assert "transfer to support" in out
    assert _contact(provider_env)["assignedAgent"].endswith("@walter-learning.com")


def test_a_transfer_names_its_agent_and_the_loads_it_was_chosen_from(
    provider_env, event_files, capsys
):
    assert main(["post-call", str(event_files["post_call_2.2"])]) == 0
    out = capsys.readouterr().out
    agent = _contact(provider_env)["assignedAgent"]
    assert f"transfer to support: {agent} (least loaded; loads: {agent} " in out
    stored = Inbox.configured().outcomes("102344028")[-1]["decision"]
    assert f"transfer to support: {agent} (least loaded; loads: {agent} " in stored
    assert main(["inbox"]) == 0
    assert f"transfer to support: {agent}" in capsys.readouterr().out


def test_inbox_shows_the_contact_and_paris_time_marked(provider_env, event_files, capsys):
    from datetime import datetime

    from salesops_pipeline.timezone import BUSINESS_TIMEZONE

    main(["post-call", str(event_files["post_call_2.1"])])
    capsys.readouterr()
    assert main(["inbox"]) == 0
    header, row = capsys.readouterr().out.splitlines()[:2]
    assert header.startswith("received (Paris)") and "contactId" in header and "UTC" not in header
    assert REFERENCE_CONTACT_ID in row
    received = datetime.strptime(row[:19], "%Y-%m-%d %H:%M:%S").replace(tzinfo=BUSINESS_TIMEZONE)
    assert abs((datetime.now(BUSINESS_TIMEZONE) - received).total_seconds()) < 600


def test_inbox_options_say_what_they_do(capsys):
    with pytest.raises(SystemExit):
        main(["inbox", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--limit LIMIT how many events to list, newest received first (default 20)" in help_text
    assert "--status STATUS only the events in this status: pending, retrying, applied" in help_text


def test_inbox_lists_and_replay_queues(provider_env, event_files, capsys):
    main(["post-call", str(event_files["post_call_2.1"])])
    capsys.readouterr()
    assert main(["inbox"]) == 0
    listing = capsys.readouterr().out
    assert "102224021" in listing and "applied" in listing
    assert main(["replay", "102224021"]) == 0
    assert "queued again" in capsys.readouterr().out
    assert main(["replay", "404404"]) == 1
    assert "Unknown callId" in capsys.readouterr().err


def test_inbox_shows_control_characters_instead_of_obeying_them(provider_env, tmp_path, capsys):
    call_id = "x\x1b[2J\x1b]0;owned\x07\rfake\n2025-01-01 forged applied\u202e"
    path = tmp_path / "event.json"
    path.write_text(
        json.dumps({"callId": call_id, "contactId": "c\x1b[31m\nred", "wrapup": "support"})
    )
    main(["post-call", str(path)])
    Inbox(settings.inbox_path()).accept(
        "plain-1", json.dumps({"callId": "plain-1", "contactId": "c"})
    )
    capsys.readouterr()
    assert main(["inbox"]) == 0
    out = capsys.readouterr().out
    assert not [c for c in out if c in "\x1b\x07\r\u202e"]
    lines = out.splitlines()
    # The header, one line per event, a blank line and the counts: nothing forged.
    assert len(lines) == 5
    [evil] = [line for line in lines if "fake" in line]
    assert "x\\x1b[2J\\x1b]0;owned\\x07\\rfake\\n2025-01-01 forged applied\\u202e" in evil
    assert "c\\x1b[31m\\nred" in evil  # the error quoting the contact id, on the same line


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ("{oops", "malformed JSON"),
        (
            '{"callId": "1", "contactId": "c", "callBackDate": "31/02/2025 10:00:00"}',
            "callBackDate",
        ),
        ("[]", "expected a JSON object"),
    ],
)
def test_invalid_input_is_one_clear_line(provider_env, tmp_path, capsys, payload, message):
    path = tmp_path / "event.json"
    path.write_text(payload)
    assert main(["post-call", str(path)]) == 1
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_unknown_contact_exits_non_zero(provider_env, tmp_path, capsys):
    path = tmp_path / "event.json"
    path.write_text('{"callId": "9", "contactId": "ghost", "wrapup": "support"}')
    assert main(["post-call", str(path)]) == 1
    assert "unknown contact ghost" in capsys.readouterr().out


def test_missing_file(capsys):
    assert main(["post-call", "/no/such/event.json"]) == 1
    assert "No such event file" in capsys.readouterr().err


def test_inbox_json_goes_with_stats(isolated_home, capsys):
    Inbox(settings.inbox_path())
    assert main(["inbox", "--format", "json"]) == 1
    assert "--format json goes with --stats" in capsys.readouterr().err


@pytest.mark.postgres
def test_the_commands_use_the_shared_database_when_it_is_set(
    provider_env, event_files, capsys, postgres_url, monkeypatch, isolated_home
):
    monkeypatch.setenv("SALESOPS_DATABASE_URL", postgres_url)
    assert main(["inbox"]) == 1
    err = capsys.readouterr().err
    assert "No inbox at postgresql://" in err and "SALESOPS_DATABASE_URL" in err
    assert main(["post-call", str(event_files["post_call_2.1"])]) == 0
    assert main(["inbox", "--stats", "--format", "json"]) == 0
    stats = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert (stats["pending"], stats["finished_last_5m"]) == (0, 1)
    assert main(["inbox"]) == 0
    assert "102224021" in capsys.readouterr().out
    assert Inbox(url=postgres_url).get("102224021").status == "applied"
    assert not (isolated_home / "intake").exists()


def test_a_database_url_that_is_not_postgresql_is_one_clear_line(monkeypatch, capsys):
    monkeypatch.setenv("SALESOPS_DATABASE_URL", "mysql://salesops:s3cret@db.example/sales")
    assert main(["inbox"]) == 1
    [line] = capsys.readouterr().err.strip().splitlines()
    assert "SALESOPS_DATABASE_URL must be a postgresql:// URL" in line and "s3cret" not in line


def test_an_unreachable_database_is_one_clear_line(monkeypatch, capsys):
    monkeypatch.setenv("SALESOPS_DATABASE_URL", "postgresql://salesops:s3cret@127.0.0.1:1/sales")
    assert main(["inbox"]) == 1
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("salesops: OperationalError: ") and "s3cret" not in line
