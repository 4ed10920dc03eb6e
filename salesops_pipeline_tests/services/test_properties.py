"""Whatever arrives, nothing crashes: arbitrary bodies and headers at the intake get a 2xx or
a 4xx (never a 5xx), and arbitrary records at the parsers are either read or refused with a
reason. Property-based, with a bounded number of examples per property."""

import json

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from salesops_pipeline.clients.models import CrmAgent, VoiceContact, parse_record, parse_records
from salesops_pipeline.post_call.events import EventError, parse_event
from salesops_pipeline.post_call.inbox import Inbox
from salesops_pipeline.services.http_server import serving_in_thread
from salesops_pipeline.services.intake.app import create_intake_app

KEY = "property-key"
EXAMPLES = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)
event_like = st.fixed_dictionaries(
    {},
    optional={
        name: st.one_of(st.none(), st.text(), st.integers(), json_values)
        for name in ("callId", "contactId", "wrapup", "callEnd", "callStart", "callBackDate")
    },
)
bodies = st.one_of(
    st.binary(max_size=2048),
    json_values.map(lambda v: json.dumps(v).encode()),
    event_like.map(lambda v: json.dumps(v).encode()),
    st.integers(1, 3000).map(lambda depth: b"[" * depth + b"]" * depth),
)
# Header values as HTTP carries them: bytes 0x20-0xFF, no line breaks, and no whitespace at
# either end (the client refuses to send such a value).
header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=80).map(
    lambda text: text.strip(" \t")
)
headers = st.fixed_dictionaries(
    {},
    optional={
        "X-API-KEY": st.one_of(st.just(KEY), header_text),
        "X-Signature": header_text,
        "X-Signature-Timestamp": st.one_of(header_text, st.integers().map(str)),
        "Content-Type": header_text,
    },
)


@pytest.fixture(scope="module")
def intakes(tmp_path_factory):
    """Two intakes over loopback, one requiring signatures, sharing nothing."""
    inbox = Inbox(tmp_path_factory.mktemp("inbox") / "inbox.sqlite")
    signed = Inbox(tmp_path_factory.mktemp("signed") / "inbox.sqlite")
    with (
        serving_in_thread(create_intake_app(inbox, api_key=KEY)) as plain_url,
        serving_in_thread(create_intake_app(signed, api_key=KEY, webhook_secret="s")) as signed_url,
    ):
        yield {False: plain_url, True: signed_url}


@EXAMPLES
@given(body=bodies, sent_headers=headers, signed=st.booleans())
def test_the_intake_never_answers_5xx(intakes, body, sent_headers, signed):
    response = requests.post(
        f"{intakes[signed]}/webhooks/post-call",
        data=body,
        headers={k: v.encode("latin-1") for k, v in sent_headers.items()},
        timeout=10,
    )
    assert 200 <= response.status_code < 500, response.text


@EXAMPLES
@given(body=bodies)
def test_any_event_body_is_read_or_refused_with_a_reason(body):
    try:
        event = parse_event(body)
    except EventError as error:
        assert str(error) and error.http_status in (400, 422)
    else:
        assert event.callId and event.contactId


@EXAMPLES
@given(records=st.lists(st.one_of(json_values, event_like), max_size=8))
def test_any_list_of_records_is_read_or_reported(records):
    raw = json.dumps(records).encode()
    for model in (VoiceContact, CrmAgent):
        parsed = parse_records(model, raw)
        assert len(parsed.items) + len(parsed.rejected) == len(records)
        assert all(r.reason for r in parsed.rejected)


@EXAMPLES
@given(raw=st.one_of(st.binary(max_size=512), json_values.map(lambda v: json.dumps(v).encode())))
def test_any_single_record_is_read_or_refused_with_a_reason(raw):
    for model in (VoiceContact, CrmAgent):
        try:
            parse_record(model, raw)
        except ValueError as error:
            assert str(error)
