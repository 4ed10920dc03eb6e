"""`salesops inbox --prune` and `salesops dismiss`, on both back ends: pruning by hand prints
what it deleted; dismissing gives up on failed events for good, after which they are pruned
like finished ones; bad input is one clear line and exit code 1, and changes nothing."""

import json
from datetime import UTC, datetime, timedelta

import pytest

from salesops_pipeline.cli import main
from salesops_pipeline.post_call.status import EventStatus

OLD = datetime.now(UTC) - timedelta(days=40)


def _event(inbox, call_id: str, status: str, at: datetime = OLD) -> None:
    inbox.accept(call_id, json.dumps({"callId": call_id, "contactId": "c-1"}))
    with inbox.transaction() as conn:
        conn.execute(
            "UPDATE event SET status = ?, updated_at = ? WHERE call_id = ?",
            (status, at.isoformat(timespec="milliseconds"), call_id),
        )


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_inbox_prune_prints_what_it_pruned(any_inbox, capsys):
    _event(any_inbox, "old", "applied")
    _event(any_inbox, "failed", "failed")
    _event(any_inbox, "recent", "applied", datetime.now(UTC))

    code, out, _ = _run(capsys, "inbox", "--prune")

    assert code == 0
    assert out.startswith("Older than 30 days: Pruned outcome 0, write 0, queue 1, event 1,")
    assert "the longest held the write lock" in out
    assert any_inbox.get("old") is None
    assert any_inbox.get("failed") is not None and any_inbox.get("recent") is not None


def test_dismiss_then_prune(any_inbox, capsys):
    _event(any_inbox, "failed-1", "failed")
    _event(any_inbox, "failed-2", "failed")

    code, out, _ = _run(capsys, "dismiss", "failed-1", "failed-2")
    assert code == 0
    assert out.startswith("Dismissed 2 failed events (failed-1, failed-2)")
    assert any_inbox.get("failed-1").status == EventStatus.DISMISSED

    code, out, _ = _run(capsys, "inbox", "--status", "dismissed")
    assert code == 0 and "failed-1" in out and "dismissed by an operator" in out

    assert _run(capsys, "inbox", "--prune")[0] == 0
    assert any_inbox.get("failed-1") is None and any_inbox.get("failed-2") is None


@pytest.mark.parametrize(
    ("call_ids", "message"),
    [
        (["nope"], "Nothing dismissed: 'nope' is not in the inbox"),
        (["failed", "done"], "Nothing dismissed: 'done' is applied, not failed"),
        (
            ["nope", "done"],
            "Nothing dismissed: 'nope' is not in the inbox; 'done' is applied, not failed",
        ),
    ],
)
def test_dismissing_what_did_not_fail_is_one_clear_line_and_dismisses_nothing(
    any_inbox, capsys, call_ids, message
):
    _event(any_inbox, "failed", "failed")
    _event(any_inbox, "done", "applied")

    code, out, err = _run(capsys, "dismiss", *call_ids)

    assert (code, out) == (1, "")
    assert err == f"salesops: {message}\n"
    assert any_inbox.get("failed").status == EventStatus.FAILED


def test_a_retention_that_makes_no_sense_stops_before_anything_is_pruned(
    any_inbox, capsys, monkeypatch
):
    _event(any_inbox, "old", "applied")
    _event(any_inbox, "failed", "failed")
    monkeypatch.setenv("SALESOPS_INBOX_RETENTION_DAYS", "0")
    for argv in (["inbox", "--prune"], ["dismiss", "failed"]):
        code, out, err = _run(capsys, *argv)
        assert (code, out) == (1, "")
        assert err == (
            "salesops: SALESOPS_INBOX_RETENTION_DAYS='0': expected a whole number of at least 1\n"
        )
    assert any_inbox.get("old") is not None
    assert any_inbox.get("failed").status == EventStatus.FAILED


def test_prune_goes_alone(any_inbox, capsys):
    code, _, err = _run(capsys, "inbox", "--prune", "--stats")
    assert code == 1 and err == "salesops: --prune goes alone, without --stats\n"


@pytest.mark.parametrize("command", [["inbox", "--prune"], ["dismiss", "102224021"]])
def test_prune_and_dismiss_create_no_inbox(command, capsys, isolated_home):
    code, _, err = _run(capsys, *command)
    inbox = isolated_home / "intake" / "inbox.sqlite"
    assert code == 1 and f"No inbox at {inbox}" in err
    assert not inbox.parent.exists()
