"""Alerts to the operators' chat, over loopback to a local receiver: one message when a
condition starts, none while it lasts, one when it clears; a chat that is down gets it later;
no message carries a phone number, a key or the webhook's secret URL, and neither do the HTTP
library's log lines of its retries, whatever part of the URL holds the secret and however the
library re-encodes it."""

import json
import logging
import re
from datetime import UTC, datetime, timedelta
from urllib.parse import quote, quote_plus

import pytest
from requests.utils import requote_uri

from salesops_pipeline.clients.alerts import AlertNotSent, AlertWebhook
from salesops_pipeline.errors import SalesopsError
from salesops_pipeline.post_call.alerts import Alerter, Condition, lag_alert, lag_recovery
from salesops_pipeline.post_call.inbox import Inbox
from salesops_pipeline_tests.conftest import reopened
from salesops_pipeline_tests.support.receiver import ChatReceiver

PHONE = "+33612345678"
KEY = "intake-key-0123456789"


@pytest.fixture
def inbox(any_inbox):
    store = any_inbox
    payload = {"callId": "c1", "contactId": "k1", "phoneNumber": PHONE, "apiKey": KEY}
    store.accept("c1", json.dumps(payload))
    return store


def _update(alerter: Alerter, active: bool, inbox: Inbox) -> str | None:
    lag = inbox.lag()
    return alerter.update(
        Condition.LAG,
        active,
        lambda: lag_alert(lag, 120, "http://dagster.example:3000"),
        lambda since, now: lag_recovery(lag, since, now),
    )


def test_one_alert_while_the_condition_lasts_and_one_recovery(chat, inbox):
    alerter = Alerter(inbox, AlertWebhook(chat.url))
    assert _update(alerter, False, inbox) is None  # nothing to clear
    assert _update(alerter, True, inbox) is not None
    for _ in range(3):
        assert _update(alerter, True, inbox) is None
    assert _update(alerter, False, inbox) is not None
    assert _update(alerter, False, inbox) is None
    alert, recovery = chat.texts()
    assert "post-call is behind" in alert and "over the 120 s allowed" in alert
    assert "backlog 1 (1 pending, 0 retrying)" in alert
    assert "salesops inbox --stats" in alert
    assert "http://dagster.example:3000/assets/post_call_outcomes?view=checks" in alert
    assert "caught up" in recovery and "backlog 1" in recovery


def test_the_state_is_shared_by_every_process_through_the_inbox(chat, inbox):
    Alerter(inbox, AlertWebhook(chat.url)).update(
        Condition.LAG, True, lambda: "behind", lambda since, now: "caught up"
    )
    # Another evaluator, a restarted daemon say, does not repeat it and does clear it.
    again = Alerter(reopened(inbox), AlertWebhook(chat.url))
    assert again.update(Condition.LAG, True, lambda: "behind", lambda s, n: "caught up") is None
    assert again.update(Condition.LAG, False, lambda: "behind", lambda s, n: "caught up")
    assert chat.texts() == ["behind", "caught up"]


def test_conditions_are_independent(chat, inbox):
    alerter = Alerter(inbox, AlertWebhook(chat.url))
    alerter.update(Condition.LAG, True, lambda: "lag", lambda s, n: "lag over")
    alerter.update(Condition.RUN_FAILED, True, lambda: "run failed", lambda s, n: "runs ok")
    alerter.update(Condition.RUN_FAILED, False, lambda: "run failed", lambda s, n: "runs ok")
    assert chat.texts() == ["lag", "run failed", "runs ok"]


def test_the_recovery_says_how_long_it_lasted(inbox):
    lag = inbox.lag()
    now = datetime.now(UTC)
    assert "after 45 s" in lag_recovery(lag, now - timedelta(seconds=45), now)
    assert "after 12 min" in lag_recovery(lag, now - timedelta(minutes=12), now)


def test_a_chat_that_is_down_gets_the_alert_at_the_next_evaluation(chat, inbox, caplog):
    alerter = Alerter(inbox, AlertWebhook(chat.url, retries=0))
    chat.refuse_next = 1
    with pytest.raises(AlertNotSent) as refused:
        _update(alerter, True, inbox)
    assert chat.texts() == []
    assert _update(alerter, True, inbox) is not None
    assert len(chat.texts()) == 1
    assert "secret-token" not in str(refused.value) and "127.0.0.1" in str(refused.value)


def test_an_unreachable_chat_is_named_by_its_host_only(inbox):
    # A port nobody listens on: connection refused.
    webhook = AlertWebhook("http://127.0.0.1:9/hooks/secret-token", retries=0)
    with pytest.raises(AlertNotSent) as refused:
        webhook.post("hello")
    assert "secret-token" not in str(refused.value)
    assert Alerter(inbox, webhook).inbox.alert_raised_at(Condition.LAG) is None


def test_retries_absorb_a_passing_failure_and_never_log_the_secret(chat, inbox, caplog):
    caplog.set_level(logging.DEBUG)
    chat.refuse_next = 1
    AlertWebhook(chat.url).post("hello")
    assert chat.texts() == ["hello"]
    assert "Retry" in caplog.text  # urllib3 logged the retry, with the path hidden
    assert "secret-token" not in caplog.text


@pytest.mark.parametrize("url", ["", "slack", "ftp://chat.example/hook", "http://"])
def test_a_webhook_url_that_is_not_http_is_refused(url):
    with pytest.raises(SalesopsError, match="http"):
        AlertWebhook(url)


def test_no_message_carries_a_phone_number_or_a_key(chat, inbox, caplog):
    caplog.set_level(logging.DEBUG)
    alerter = Alerter(inbox, AlertWebhook(chat.url))
    _update(alerter, True, inbox)
    _update(alerter, False, inbox)
    everything = " ".join(chat.texts()) + caplog.text
    digits = re.sub(r"\D", "", everything)
    assert "612345678" not in digits and KEY not in everything
    assert "secret-token" not in caplog.text


# Google Chat's webhooks carry their secrets in the query. The token holds characters that
# requests re-encodes on the way (an accent, a space, a pipe): neither spelling may show.
QUERY_SECRETS = {"key": "AIzaSy-query-key-0123", "token": "tök en|7Qz"}


def _spellings(secret: str) -> set[str]:
    """`secret` as it was given, and as any layer may encode it."""
    encoded = {quote(secret), quote(secret, safe=""), quote_plus(secret), requote_uri(secret)}
    return {secret} | encoded | {spelling.lower() for spelling in encoded}


@pytest.mark.parametrize("failure", ["503", "connection dropped"])
def test_retry_log_lines_never_show_the_secrets_of_the_url(caplog, failure):
    caplog.set_level(logging.DEBUG)
    query = "&".join(f"{name}={value}" for name, value in QUERY_SECRETS.items())
    with ChatReceiver(query=query) as chat:
        if failure == "503":
            chat.refuse_next, chat.refuse_status = 1, 503
        else:
            chat.drop_next = 1
        AlertWebhook(chat.url).post("hello")
        assert chat.texts() == ["hello"]  # delivered on the retry
    lines = [record.getMessage() for record in caplog.records if record.name.startswith("urllib3")]
    # urllib3 did name the request it retried, redacted.
    assert any("Retry" in line for line in lines), lines
    assert any("/services/***/***/***?key=***&token=***" in line for line in lines), lines
    if failure == "connection dropped":
        [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert "Retrying" in warning.getMessage() and "?key=***&token=***" in warning.getMessage()
    for secret in ["secret-token", *QUERY_SECRETS.values()]:
        for spelling in _spellings(secret):
            assert spelling not in caplog.text, spelling


def test_a_failed_alert_names_the_webhook_redacted():
    query = "&".join(f"{name}={value}" for name, value in QUERY_SECRETS.items())
    with ChatReceiver(query=query) as chat:
        chat.refuse_next, chat.refuse_status = 5, 503
        with pytest.raises(AlertNotSent) as refused:
            AlertWebhook(chat.url, retries=0).post("hello")
    shown = str(refused.value)
    assert "/services/***/***/***?key=***&token=***: HTTP 503" in shown
    for secret in ["secret-token", *QUERY_SECRETS.values()]:
        assert all(spelling not in shown for spelling in _spellings(secret))
