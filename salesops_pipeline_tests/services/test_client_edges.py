"""The provider clients at the edges, over real HTTP on loopback: the key goes to the
provider's origin only, paging is bounded whatever the provider answers, ids cannot escape
their URL, network faults mid-answer are temporary, and errors never show credentials."""

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse

from salesops_pipeline.clients import (
    ApiRequestError,
    ApiTransport,
    ApiUnavailableError,
    VoiceClient,
)
from salesops_pipeline.clients.transport import MAX_EMPTY_PAGES, default_retry
from salesops_pipeline.services.http_server import serving_in_thread
from salesops_pipeline.services.sandbox.seed import REFERENCE_CONTACT_ID
from salesops_pipeline_tests.conftest import arm_fault
from salesops_pipeline_tests.support.stack_process import refused_port


@pytest.fixture
def elsewhere():
    """Another host, which must never see the key: it records what it receives."""
    app = FastAPI()
    app.state.seen = []

    @app.api_route("/{path:path}", methods=["GET", "PATCH"])
    async def anything(path: str, request: Request):
        app.state.seen.append((path, request.headers.get("x-api-key")))
        return JSONResponse([])

    with serving_in_thread(app) as url:
        yield url, app.state.seen


@pytest.fixture
def odd_provider(elsewhere):
    """A provider whose links and redirects misbehave in every way that matters."""
    other_url, _ = elsewhere
    app = FastAPI()
    app.state.empty_pages = 0

    @app.get("/voice/contacts")
    async def contacts(request: Request, campaignId: str, cursor: int = 0):
        full = campaignId in ("loop", "endless")
        page = JSONResponse([{"id": f"c{cursor}"}] if full else [])
        if campaignId == "elsewhere":
            page.headers["Link"] = f'<{other_url}/voice/contacts?cursor=1>; rel="next"'
        elif campaignId == "loop":
            # Back to the very first page.
            page.headers["Link"] = '</voice/contacts?campaignId=loop>; rel="next"'
        elif campaignId == "endless":
            page.headers["Link"] = (
                f'</voice/contacts?campaignId=endless&cursor={cursor + 1}>; rel="next"'
            )
        elif campaignId == "empty-forever":
            app.state.empty_pages += 1
            page.headers["Link"] = (
                f'</voice/contacts?campaignId=empty-forever&cursor={cursor + 1}>; rel="next"'
            )
        return page

    @app.get("/voice/contacts/{contact_id}")
    async def contact(contact_id: str):
        if contact_id == "moved":
            return RedirectResponse(f"{other_url}/voice/contacts/moved", status_code=302)
        return JSONResponse({"id": contact_id})

    with serving_in_thread(app) as url:
        yield url, app


def _voice(url: str, key: str = "the-key") -> VoiceClient:
    return VoiceClient(ApiTransport(url, key, retry=default_retry(backoff_factor=0.01)))


def test_a_next_link_to_another_host_is_refused(odd_provider, elsewhere):
    url, _ = odd_provider
    with pytest.raises(ApiRequestError, match="not the provider") as refused:
        _voice(url).list_contacts(campaign_id="elsewhere")
    assert "the-key" not in str(refused.value)
    assert elsewhere[1] == []  # the other host was never called


def test_a_redirect_to_another_host_is_refused(odd_provider, elsewhere):
    url, _ = odd_provider
    with pytest.raises(ApiRequestError, match="a redirect points to"):
        _voice(url).get_contact(contact_id="moved")
    assert elsewhere[1] == []


def test_https_to_http_is_refused_even_on_the_same_host():
    transport = ApiTransport("https://api.provider.example", "k")
    with pytest.raises(ApiRequestError, match="not the provider"):
        transport.request("GET", "http://api.provider.example/voice/contacts/x")


def test_a_link_back_to_the_first_page_is_a_loop(odd_provider):
    url, _ = odd_provider
    with pytest.raises(ApiRequestError, match="goes in a loop"):
        _voice(url).list_contacts(campaign_id="loop")


def test_endless_empty_pages_end_the_list(odd_provider):
    url, app = odd_provider
    assert _voice(url).list_contacts(campaign_id="empty-forever").items == []
    assert app.state.empty_pages == MAX_EMPTY_PAGES


def test_paging_stops_at_a_page_count_cap(odd_provider, monkeypatch):
    monkeypatch.setattr("salesops_pipeline.clients.transport.MAX_PAGES", 5)
    url, _ = odd_provider
    with pytest.raises(ApiRequestError, match="more than 5 pages"):
        _voice(url).list_contacts(campaign_id="endless")


@pytest.mark.parametrize("contact_id", [".", "..", "a\nb", "x\x00", ""])
def test_ids_that_would_leave_their_url_are_refused(odd_provider, contact_id):
    url, _ = odd_provider
    with pytest.raises(ApiRequestError, match="invalid contact id"):
        _voice(url).get_contact(contact_id=contact_id)


def test_errors_never_show_the_hosts_credentials():
    with refused_port() as port, pytest.raises(ApiUnavailableError) as error:
        _voice(f"http://admin:s3cret@127.0.0.1:{port}").get_contact(contact_id="c1")
    assert f"127.0.0.1:{port}" in str(error.value)
    assert "s3cret" not in str(error.value) and "admin" not in str(error.value)
    with pytest.raises(ApiRequestError) as bad:
        ApiTransport("ftp://admin:s3cret@host", "k")
    assert "s3cret" not in str(bad.value)


def test_an_answer_broken_mid_way_is_a_temporary_failure(sandbox):
    arm_fault(
        sandbox,
        method="GET",
        path_prefix="/voice/contacts/",
        status=None,
        drop_after_apply=True,
        times=10,
    )
    with pytest.raises(ApiUnavailableError, match="broke off"):
        _voice(sandbox.url, sandbox.api_key).get_contact(contact_id=REFERENCE_CONTACT_ID)


@pytest.mark.parametrize("retry_after", ["1.5", "0.2", "soon", "Wed, 21 Oct 2015 07:28:00 GMT"])
def test_any_retry_after_is_honoured_or_ignored_never_fatal(sandbox, retry_after):
    arm_fault(sandbox, method="GET", path_prefix="/voice/", status=429, retry_after=retry_after)
    contact = _voice(sandbox.url, sandbox.api_key).get_contact(contact_id=REFERENCE_CONTACT_ID)
    assert contact.id == REFERENCE_CONTACT_ID
