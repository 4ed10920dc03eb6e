"""`salesops contact`: one customer's post-call story in one command: each event of the contact
in call order, what was decided and why, the write and the provider's answer, the agent a
transfer went to with the loads it was chosen from, and the contact at the provider now."""

import json

import pytest

from salesops_pipeline.cli import main
from salesops_pipeline.services.sandbox.seed import REFERENCE_CONTACT_ID


@pytest.fixture
def handled_newest_first(any_inbox, provider_env, reference_events, tmp_path, capsys):
    """The reference contact's two calls, the later one (a transfer) handled first: the
    earlier one (a callback) then ends superseded; in the inbox of each back end."""
    for name in ("post_call_2.2", "post_call_2.1"):
        path = tmp_path / f"{name}.json"
        path.write_bytes(reference_events[name])
        main(["post-call", str(path)])
    capsys.readouterr()
    return json.loads(provider_env.app.state.store.contact(REFERENCE_CONTACT_ID))


def test_the_story_tells_each_call_in_order_with_its_decision_write_and_agent(
    handled_newest_first, capsys
):
    agent = handled_newest_first["assignedAgent"]
    assert main(["contact", REFERENCE_CONTACT_ID]) == 0
    out = capsys.readouterr().out
    assert f"Contact {REFERENCE_CONTACT_ID}: 2 post-call events, oldest call first" in out
    first, second = out.index("1. call 102224021"), out.index("2. call 102344028")
    assert first < second  # call order, not the order they were handled in
    earlier, later = out[first:second], out[second:]
    assert "now superseded: a newer call of this contact was applied first" in earlier
    assert 'wrap-up "Rappel"' in earlier and "callback asked for 14/04/2025 10:30:00" in earlier
    assert "now applied: the provider shows the write" in later
    assert f"transfer to support: {agent} (least loaded; loads: {agent} " in later
    assert f"write: assignedAgent={agent}; applied: the provider shows it, sent 1 time" in later
    assert f"handed to {agent} (confirmed" in later
    assert "Newest call applied to this contact: 102344028" in out
    assert "At the provider now: " in out and f"assignedAgent={agent}" in out


def test_json_gives_the_same_story(handled_newest_first, capsys):
    assert main(["contact", REFERENCE_CONTACT_ID, "--format", "json"]) == 0
    story = json.loads(capsys.readouterr().out)
    assert [e["call_id"] for e in story["events"]] == ["102224021", "102344028"]
    assert [e["status"] for e in story["events"]] == ["superseded", "applied"]
    transfer = story["events"][1]
    assert transfer["write"]["changes"] == {"assignedAgent": handled_newest_first["assignedAgent"]}
    assert transfer["write"]["state"] == "applied"
    assert "least loaded; loads:" in transfer["handlings"][-1]["decision"]
    assert story["newest_applied_call"] == "102344028"
    assert story["provider"]["assignedAgent"] == handled_newest_first["assignedAgent"]


def test_phone_numbers_at_the_provider_are_masked(handled_newest_first, capsys):
    assert main(["contact", REFERENCE_CONTACT_ID, "--format", "json"]) == 0
    provider = json.loads(capsys.readouterr().out)["provider"]
    phones = [v for k, v in provider.items() if "phone" in k.lower() and isinstance(v, str)]
    assert phones and all("*" in phone for phone in phones)


def test_without_the_provider_the_inbox_still_answers(handled_newest_first, capsys):
    assert main(["contact", REFERENCE_CONTACT_ID, "--no-provider"]) == 0
    out = capsys.readouterr().out
    assert "2. call 102344028" in out
    assert "At the provider now: not read (--no-provider)" in out


def test_an_unreachable_provider_is_told_not_raised(handled_newest_first, monkeypatch, capsys):
    monkeypatch.setenv("REMOTE_API_HOST", "http://127.0.0.1:9")  # nothing listens there
    assert main(["contact", REFERENCE_CONTACT_ID]) == 0
    out = capsys.readouterr().out
    assert "2. call 102344028" in out and "At the provider now: could not be read" in out


def test_a_contact_nobody_called_is_a_clear_error(handled_newest_first, capsys):
    assert main(["contact", "no-such-contact", "--no-provider"]) == 1
    err = capsys.readouterr().err
    assert "No post-call event of contact 'no-such-contact' in the inbox" in err


def test_no_inbox_is_a_clear_error(capsys, isolated_home):
    assert main(["contact", REFERENCE_CONTACT_ID]) == 1
    assert "No inbox at" in capsys.readouterr().err
