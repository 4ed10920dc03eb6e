"""The provider clients against the sandbox provider, over real HTTP on loopback.

Paging through Link headers, retries on 429 (honouring Retry-After) and 503, timeouts, typed
errors for 401 and 404 and a refused connection, malformed records reported without failing
the list, and updates that persist.
"""

import socket
import time
from datetime import datetime
from email.utils import formatdate

import pytest

from salesops_pipeline.clients import (
    ApiAuthError,
    ApiNotFoundError,
    ApiTransport,
    ApiUnavailableError,
    ApiWriteNotApplied,
    ApiWriteUnknown,
    CrmClient,
    VoiceClient,
)
from salesops_pipeline.clients.transport import default_retry
from salesops_pipeline.services.sandbox.seed import (
    DEFAULT_CONTACTS_PER_CAMPAIGN,
    REFERENCE_CONTACT_ID,
)
from salesops_pipeline.services.sandbox.server import running_sandbox
from salesops_pipeline_tests.conftest import arm_fault


def _voice(sandbox, key=None, timeout=(2.0, 5.0)):
    transport = ApiTransport(
        sandbox.url,
        key or sandbox.api_key,
        timeout=timeout,
        retry=default_retry(backoff_factor=0.01),
    )
    return VoiceClient(transport)


def test_campaign_is_followed_across_pages(sandbox):
    client = _voice(sandbox)
    pages = list(client.iter_contact_pages(campaign_id="A"))
    assert len(pages) == -(-DEFAULT_CONTACTS_PER_CAMPAIGN // 97)  # page size 97
    ids = [c.id for page in pages for c in page.items]
    assert len(ids) == len(set(ids)) == DEFAULT_CONTACTS_PER_CAMPAIGN


def test_contacts_take_the_campaign_asked_for(sandbox):
    contacts = _voice(sandbox).list_contacts(campaign_id="B").items
    assert {c.campaign_id for c in contacts} == {"B"}


def test_malformed_record_is_reported_not_fatal(sandbox):
    result = _voice(sandbox).list_contacts(campaign_id="B")
    assert len(result.items) == DEFAULT_CONTACTS_PER_CAMPAIGN - 1
    [rejected] = result.rejected
    assert rejected.reason.startswith("totalCalls:")
    assert rejected.record_id is not None


def test_unknown_fields_are_ignored_and_dates_parsed(sandbox):
    import requests

    requests.post(
        f"{sandbox.url}/_sandbox/campaigns/Z/contacts",
        json=[
            {
                "id": "z1",
                "phone": "0611111111",
                "lastCallAt": "2025-03-31T18:25:46.651296",
                "colour": "blue",
                "nested": {"x": 1},
            }
        ],
        headers={"X-API-KEY": sandbox.api_key},
        timeout=5,
    ).raise_for_status()
    [contact] = _voice(sandbox).list_contacts(campaign_id="Z").items
    assert contact.last_call_at == datetime(2025, 3, 31, 18, 25, 46, 651296)
    assert not hasattr(contact, "colour")


def test_429_is_retried_after_the_servers_delay(sandbox):
    arm_fault(sandbox, method="GET", path_prefix="/voice/contacts/", status=429, retry_after=1)
    started = time.monotonic()
    contact = _voice(sandbox).get_contact(contact_id=REFERENCE_CONTACT_ID)
    assert contact.id == REFERENCE_CONTACT_ID
    assert time.monotonic() - started >= 1.0
    assert sandbox.app.state.faults.log == [("GET", f"/voice/contacts/{REFERENCE_CONTACT_ID}", 429)]


def test_503_mid_paging_is_retried(sandbox):
    arm_fault(sandbox, method="GET", path_prefix="/voice/contacts", status=503, times=2)
    assert (
        len(_voice(sandbox).list_contacts(campaign_id="A").items) == DEFAULT_CONTACTS_PER_CAMPAIGN
    )
    assert len(sandbox.app.state.faults.log) == 2


def test_persistent_503_gives_up_with_a_typed_error(sandbox):
    arm_fault(sandbox, method="GET", path_prefix="/voice/contacts", status=503, times=50)
    with pytest.raises(ApiUnavailableError, match=r"GET /voice/contacts/x failed: .*503"):
        _voice(sandbox).get_contact(contact_id="x")


def test_timeout_is_a_typed_error(sandbox):
    arm_fault(
        sandbox,
        method="GET",
        path_prefix="/voice/contacts",
        status=None,
        delay_seconds=1.5,
        times=5,
    )
    with pytest.raises(ApiUnavailableError, match=r"no answer within 0.3s"):
        _voice(sandbox, timeout=(1.0, 0.3)).get_contact(contact_id=REFERENCE_CONTACT_ID)


def test_wrong_key_is_an_auth_error_and_not_retried(sandbox):
    with pytest.raises(ApiAuthError, match="401") as error:
        _voice(sandbox, key="wrong").list_contacts(campaign_id="A")
    assert error.value.call == "GET /voice/contacts"


def test_unknown_contact_is_not_found(sandbox):
    with pytest.raises(ApiNotFoundError, match=r"GET /voice/contacts/nobody failed: 404"):
        _voice(sandbox).get_contact(contact_id="nobody")


def test_refused_connection_is_unavailable():
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    client = VoiceClient(
        ApiTransport(f"http://127.0.0.1:{port}", "k", retry=default_retry(backoff_factor=0.01))
    )
    with pytest.raises(ApiUnavailableError, match="connection refused"):
        client.list_contacts(campaign_id="A")


def test_write_sends_only_the_given_fields(sandbox, sandbox_store):
    client = _voice(sandbox)
    before = client.get_contact(contact_id=REFERENCE_CONTACT_ID)
    after = client.write_contact(
        contact_id=REFERENCE_CONTACT_ID,
        changes={"retryDate": "2025-04-14T10:30:00"},
        idempotency_key="post-call-1",
    )
    assert after["retryDate"] == "2025-04-14T10:30:00"
    assert after["assignedAgent"] == before.assigned_agent
    assert '"retryDate": "2025-04-14T10:30:00"' in sandbox_store.contact(REFERENCE_CONTACT_ID)
    assert sandbox_store.write_log()[-1]["idempotency_key"] == "post-call-1"


def test_writes_survive_a_sandbox_restart(sandbox_store):
    agent = "cathy.dufour@walter-learning.com"
    with running_sandbox(sandbox_store, api_key="k") as first:
        _voice(first).write_contact(
            contact_id=REFERENCE_CONTACT_ID, changes={"assignedAgent": agent}, idempotency_key="k1"
        )
    with running_sandbox(sandbox_store, api_key="k") as second:
        assert _voice(second).get_contact(contact_id=REFERENCE_CONTACT_ID).assigned_agent == agent


def _write(sandbox, timeout=(2.0, 5.0)):
    return _voice(sandbox, timeout=timeout).write_contact(
        contact_id=REFERENCE_CONTACT_ID,
        changes={"assignedAgent": "x@example.com"},
        idempotency_key="post-call-w",
    )


@pytest.mark.parametrize(
    ("fault", "retry_after"),
    [
        ({"status": 503}, None),
        ({"status": 429, "retry_after": 2}, 2.0),
        ({"status": 429, "retry_after": "1.5"}, 1.5),
        ({"status": 503, "retry_after": "soon"}, None),
    ],
)
def test_a_refused_write_is_not_sent_again_by_the_http_layer(sandbox, fault, retry_after):
    arm_fault(sandbox, method="PATCH", path_prefix="/voice/contacts/", **fault)
    with pytest.raises(ApiWriteNotApplied) as refused:
        _write(sandbox)
    assert refused.value.retry_after == retry_after
    assert [entry[0] for entry in sandbox.app.state.faults.log] == ["PATCH"]
    assert sandbox.app.state.applied_patches == []


def test_retry_after_as_an_http_date_is_read(sandbox):
    later = formatdate(time.time() + 30, usegmt=True)
    arm_fault(sandbox, method="PATCH", path_prefix="/voice/", status=503, retry_after=later)
    with pytest.raises(ApiWriteNotApplied) as refused:
        _write(sandbox)
    assert 25 <= refused.value.retry_after <= 31


@pytest.mark.parametrize("status", [302, 303, 307])
def test_a_redirected_write_is_not_followed_and_not_applied(sandbox, status):
    arm_fault(sandbox, method="PATCH", path_prefix="/voice/", status=status, location="/healthz")
    with pytest.raises(ApiWriteNotApplied, match=f"{status} redirect"):
        _write(sandbox)
    assert sandbox.app.state.applied_patches == []


def test_a_write_whose_answer_is_lost_is_unknown_and_not_sent_again(sandbox):
    arm_fault(sandbox, method="PATCH", path_prefix="/voice/", status=None, drop_after_apply=True)
    with pytest.raises(ApiWriteUnknown, match=r"broke off|connection lost"):
        _write(sandbox)
    assert len(sandbox.app.state.applied_patches) == 1  # applied once, never re-sent


def test_a_timed_out_write_is_unknown_and_may_still_land(sandbox):
    arm_fault(sandbox, method="PATCH", path_prefix="/voice/", status=None, delay_seconds=1.5)
    with pytest.raises(ApiWriteUnknown) as unknown:
        _write(sandbox, timeout=(2.0, 0.3))
    assert unknown.value.may_still_land
    time.sleep(2)
    # A re-send would have met no fault and been applied at once: there was none.
    assert [entry[0] for entry in sandbox.app.state.faults.log] == ["PATCH"]
    assert sandbox.app.state.applied_patches == []


def test_crm_agents_by_team(sandbox):
    crm = CrmClient(ApiTransport(sandbox.url, sandbox.api_key))
    support = crm.list_agents(team="support").items
    assert {a.team for a in support} == {"support"}
    assert [a.username for a in support if not a.active] == ["mathieu.jau@walter-learning.com"]
    assert len(crm.list_contacts().items) == 200  # paged at 97 per page


def test_host_must_be_a_url():
    with pytest.raises(Exception, match="must be a URL"):
        ApiTransport("localhost:8010", "k")
