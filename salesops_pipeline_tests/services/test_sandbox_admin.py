"""The sandbox's test knobs over real HTTP: a write the provider applies late, after the client
gave up, logged when it lands; and CRM agents deactivated or moved to another team while the
pipeline runs."""

import json
import time
from datetime import UTC, datetime

import pytest
import requests

from salesops_pipeline.clients import ApiTransport, ApiWriteUnknown, CrmClient, VoiceClient
from salesops_pipeline.clients.transport import default_retry
from salesops_pipeline.services.sandbox.seed import REFERENCE_CONTACT_ID
from salesops_pipeline_tests.conftest import arm_fault

AGENT = "cathy.dufour@walter-learning.com"


def _voice(sandbox, read_timeout: float) -> VoiceClient:
    transport = ApiTransport(
        sandbox.url,
        sandbox.api_key,
        timeout=(2.0, read_timeout),
        retry=default_retry(backoff_factor=0.01),
    )
    return VoiceClient(transport)


def _write(sandbox, read_timeout: float, agent: str = "late@example.com") -> None:
    _voice(sandbox, read_timeout).write_contact(
        contact_id=REFERENCE_CONTACT_ID,
        changes={"assignedAgent": agent},
        idempotency_key="post-call-late",
    )


def _agent_of(sandbox_store) -> str | None:
    return json.loads(sandbox_store.contact(REFERENCE_CONTACT_ID)).get("assignedAgent")


def test_a_write_applied_late_lands_after_the_client_gave_up(sandbox, sandbox_store):
    arm_fault(
        sandbox,
        method="PATCH",
        path_prefix="/voice/contacts/",
        status=None,
        apply_after_seconds=1.5,
    )
    with pytest.raises(ApiWriteUnknown) as unknown:
        _write(sandbox, read_timeout=0.3)
    gave_up = datetime.now(UTC)
    assert unknown.value.may_still_land
    assert sandbox_store.write_log() == []
    assert _agent_of(sandbox_store) != "late@example.com"
    deadline = time.monotonic() + 5
    while not sandbox_store.write_log():
        assert time.monotonic() < deadline, "the held write was never applied"
        time.sleep(0.1)
    [entry] = sandbox_store.write_log()
    assert entry["idempotency_key"] == "post-call-late"
    # Logged when it landed, about a second after the client stopped waiting.
    landed = datetime.fromisoformat(entry["at"])
    assert 0.7 < (landed - gave_up).total_seconds() < 3
    assert _agent_of(sandbox_store) == "late@example.com"
    assert len(sandbox.app.state.applied_patches) == 1


def test_a_client_still_waiting_gets_no_answer_and_the_write_lands_once(sandbox, sandbox_store):
    arm_fault(
        sandbox,
        method="PATCH",
        path_prefix="/voice/contacts/",
        status=None,
        apply_after_seconds=0.5,
    )
    started = time.monotonic()
    with pytest.raises(ApiWriteUnknown):
        _write(sandbox, read_timeout=5.0)
    assert time.monotonic() - started >= 0.5
    time.sleep(0.3)
    assert [e["idempotency_key"] for e in sandbox_store.write_log()] == ["post-call-late"]
    # The fault was for one write: the next one is answered at once.
    _write(sandbox, read_timeout=5.0, agent="next@example.com")
    assert _agent_of(sandbox_store) == "next@example.com"


def test_a_late_write_to_an_unknown_contact_applies_nothing(sandbox, sandbox_store):
    arm_fault(
        sandbox,
        method="PATCH",
        path_prefix="/voice/contacts/",
        status=None,
        apply_after_seconds=0.2,
    )
    with pytest.raises(ApiWriteUnknown):
        _voice(sandbox, 0.1).write_contact(
            contact_id="no-such-contact", changes={"assignedAgent": "x"}, idempotency_key="k"
        )
    time.sleep(0.5)
    assert sandbox_store.write_log() == []


def _change_agent(sandbox, agent: str, key: str | None = None, **changes) -> requests.Response:
    return requests.patch(
        f"{sandbox.url}/_sandbox/agents/{agent}",
        json=changes,
        headers={"X-API-KEY": key or sandbox.api_key},
        timeout=5,
    )


def _support(sandbox) -> dict[str, bool]:
    crm = CrmClient(ApiTransport(sandbox.url, sandbox.api_key))
    return {a.username: a.active for a in crm.list_agents(team="support").items}


def test_an_agent_is_deactivated_and_moved_to_another_team(sandbox):
    assert _support(sandbox)[AGENT] is True
    answer = _change_agent(sandbox, AGENT, active=False)
    assert answer.status_code == 200, answer.text
    assert answer.json()["active"] is False
    assert _support(sandbox)[AGENT] is False
    agent_id = answer.json()["id"]
    assert _change_agent(sandbox, agent_id, active=True, team="sales").status_code == 200
    assert AGENT not in _support(sandbox)
    crm = CrmClient(ApiTransport(sandbox.url, sandbox.api_key))
    assert {a.username: a.active for a in crm.list_agents(team="sales").items}[AGENT] is True


@pytest.mark.parametrize(
    ("agent", "changes", "key", "status"),
    [
        ("nobody@example.com", {"active": False}, None, 404),
        (AGENT, {}, None, 422),
        (AGENT, {"active": False, "username": "someone-else"}, None, 422),
        (AGENT, {"active": False}, "wrong-key", 401),
    ],
    ids=["unknown-agent", "nothing-to-change", "unknown-field", "wrong-key"],
)
def test_agent_changes_that_are_refused(sandbox, agent, changes, key, status):
    assert _change_agent(sandbox, agent, key, **changes).status_code == status
    assert _support(sandbox)[AGENT] is True
