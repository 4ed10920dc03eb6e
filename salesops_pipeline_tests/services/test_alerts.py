"""Alerts to the operators' chat, over loopback to a local receiver: one message when a
condition starts, none while it lasts, one once it has been clear for the hold period (a
condition flapping about its limit is one alert and one recovery); one attempt at the chat
lasts a few seconds whatever it answers; a chat that is down gets the message later; no
message carries a phone number, a key or the webhook's secret URL, and neither do the HTTP
library's log lines of its retries, whatever part of the URL holds the secret and however the
library re-encodes it."""

import json
import logging
import re
import time
from datetime import UTC, datetime, timedelta
from urllib.parse import quote, quote_plus

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from requests.utils import requote_uri

from salesops_pipeline.clients.alerts import AlertNotSent, AlertWebhook
from salesops_pipeline.errors import SalesopsError
from salesops_pipeline.post_call.alerts import Alerter, Condition, lag_alert, lag_recovery
from salesops_pipeline.post_call.inbox import Inbox
from salesops_pipeline_tests.conftest import reopened, sqlite_only
from salesops_pipeline_tests.support.receiver import ChatReceiver

PHONE = "+33612345678"
KEY = "intake-key-0123456789"


@pytest.fixture
def inbox(any_inbox):
    store = any_inbox
    payload = {"callId": "c1", "contactId": "k1", "phoneNumber": PHONE, "apiKey": KEY}
    store.accept("c1", json.dumps(payload))
    return store


NO_HOLD = timedelta(0)


class Clock:
    """The evaluations' time, moved on by the test."""

    def __init__(self):
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def _update(alerter: Alerter, active: bool, inbox: Inbox) -> list[str]:
    lag = inbox.lag()
    return alerter.update(
        Condition.LAG,
        active,
        lambda: lag_alert(lag, 120, "http://dagster.example:3000"),
        lambda since, now: lag_recovery(lag, since, now),
    )


def test_one_alert_while_the_condition_lasts_and_one_recovery(chat, inbox):
    alerter = Alerter(inbox, AlertWebhook(chat.url), clear_after=NO_HOLD)
    assert _update(alerter, False, inbox) == []  # nothing to clear
    assert len(_update(alerter, True, inbox)) == 1
    for _ in range(3):
        assert _update(alerter, True, inbox) == []
    assert len(_update(alerter, False, inbox)) == 1
    assert _update(alerter, False, inbox) == []
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
    again = Alerter(reopened(inbox), AlertWebhook(chat.url), clear_after=NO_HOLD)
    assert again.update(Condition.LAG, True, lambda: "behind", lambda s, n: "caught up") == []
    assert again.update(Condition.LAG, False, lambda: "behind", lambda s, n: "caught up")
    assert chat.texts() == ["behind", "caught up"]


def test_a_lag_hovering_about_its_limit_is_one_alert_and_one_recovery(chat, inbox):
    clock = Clock()
    hold = timedelta(minutes=5)
    alerter = Alerter(inbox, AlertWebhook(chat.url), now=clock, clear_after=hold)
    # Four minutes below and above the limit in turn, an evaluation every 30 s, the last above.
    sent = []
    for turn in range(8):
        sent += _update(alerter, turn % 2 == 1, inbox)
        clock.advance(30)
    assert len(sent) == 1 and "post-call is behind" in sent[0]
    # Clear from now on: nothing until it has been clear for the hold period, then once.
    clear_from = clock.now
    while clock.now - clear_from < hold:
        assert _update(alerter, False, inbox) == []
        clock.advance(30)
    [recovery] = _update(alerter, False, inbox)
    assert "caught up" in recovery
    for _ in range(3):
        clock.advance(30)
        assert _update(alerter, False, inbox) == []
    assert chat.texts() == [sent[0], recovery]
    assert inbox.alert_raised_at(Condition.LAG) is None


def test_a_relapse_within_the_hold_period_starts_it_again(chat, inbox):
    clock = Clock()
    alerter = Alerter(inbox, AlertWebhook(chat.url), now=clock, clear_after=timedelta(minutes=5))
    _update(alerter, True, inbox)
    clock.advance(60)
    _update(alerter, False, inbox)
    clock.advance(270)
    assert _update(alerter, True, inbox) == []  # 4.5 min clear, then behind again
    clock.advance(60)
    _update(alerter, False, inbox)
    # Five minutes after the first clear evaluation, but only one after the last relapse.
    clock.advance(30)
    assert _update(alerter, False, inbox) == []
    clock.advance(270)
    assert len(_update(alerter, False, inbox)) == 1
    assert len(chat.texts()) == 2


def test_the_recovery_says_how_long_the_condition_lasted_not_the_hold(chat, inbox):
    clock = Clock()
    alerter = Alerter(inbox, AlertWebhook(chat.url), now=clock, clear_after=timedelta(minutes=5))
    _update(alerter, True, inbox)
    clock.advance(180)
    _update(alerter, False, inbox)
    clock.advance(300)
    [recovery] = _update(alerter, False, inbox)
    assert "caught up after 3 min" in recovery


def test_conditions_are_independent(chat, inbox):
    alerter = Alerter(inbox, AlertWebhook(chat.url), clear_after=NO_HOLD)
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
    assert len(_update(alerter, True, inbox)) == 1
    assert len(chat.texts()) == 1
    assert "secret-token" not in str(refused.value) and "127.0.0.1" in str(refused.value)


@pytest.mark.parametrize("down", ["503 Retry-After: 60", "connection refused"])
def test_a_run_failure_the_chat_did_not_take_is_sent_at_the_next_evaluation(chat, inbox, down):
    alerter = Alerter(inbox, AlertWebhook(chat.url))
    if down == "connection refused":
        chat.down()
    else:
        chat.refuse_next, chat.refuse_status, chat.retry_after = 100, 503, "60"
    with pytest.raises(AlertNotSent):
        alerter.update(Condition.RUN_FAILED, True, lambda: "run r1 failed")
    assert inbox.alert(Condition.RUN_FAILED).pending == "run r1 failed"
    if down == "connection refused":
        chat.up()
    chat.refuse_next = 0
    # Another process, at its next evaluation, of another condition: the lag's, say.
    later = Alerter(reopened(inbox), AlertWebhook(chat.url))
    assert later.update(Condition.LAG, False) == ["run r1 failed"]
    assert chat.texts() == ["run r1 failed"]
    assert inbox.alert(Condition.RUN_FAILED).pending is None
    # Sent once: the next evaluations have nothing more to say.
    assert later.update(Condition.LAG, False) == []
    assert later.update(Condition.RUN_FAILED, True, lambda: "run r2 failed") == []


def test_a_recovery_the_chat_did_not_take_is_sent_at_the_next_evaluation(chat, inbox):
    alerter = Alerter(inbox, AlertWebhook(chat.url), clear_after=NO_HOLD)
    alerter.update(Condition.RUN_FAILED, True, lambda: "run r1 failed")
    chat.refuse_next = 100
    with pytest.raises(AlertNotSent):
        alerter.update(Condition.RUN_FAILED, False, recovery=lambda since, now: "runs ok")
    chat.refuse_next = 0
    assert alerter.update(Condition.LAG, False) == ["runs ok"]
    assert inbox.alert(Condition.RUN_FAILED) is None


@pytest.mark.parametrize("answer", ["503 Retry-After: 60", "429 Retry-After: 60", "hangs"])
def test_one_attempt_at_the_chat_lasts_a_few_seconds_whatever_it_answers(chat, answer):
    if answer == "hangs":
        chat.answer_after = 60
    else:
        chat.refuse_next, chat.refuse_status = 100, int(answer[:3])
        chat.retry_after = "60"
    webhook = AlertWebhook(chat.url)
    started = time.monotonic()
    with pytest.raises(AlertNotSent):
        webhook.post("hello")
    assert time.monotonic() - started < 10
    # A refusal is tried once more at once, a late answer never: the next evaluation does.
    assert chat.requests == (1 if answer == "hangs" else 2)


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
    alerter = Alerter(inbox, AlertWebhook(chat.url), clear_after=NO_HOLD)
    _update(alerter, True, inbox)
    _update(alerter, False, inbox)
    everything = " ".join(chat.texts()) + caplog.text
    digits = re.sub(r"\D", "", everything)
    assert "612345678" not in digits and KEY not in everything
    assert "secret-token" not in caplog.text


@sqlite_only
def test_an_alert_of_an_earlier_inbox_stays_raised_and_told(chat, inbox):
    with inbox.transaction() as conn:
        conn.execute("DROP TABLE alert")
        conn.execute("CREATE TABLE alert (condition TEXT PRIMARY KEY, raised_at TEXT NOT NULL)")
        conn.execute(
            "INSERT INTO alert VALUES ('post_call_lag', ?)", (datetime.now(UTC).isoformat(),)
        )
    # Another process's change of schema: the next connection brings the inbox up to date.
    again = reopened(inbox)
    record = again.alert(Condition.LAG)
    assert record is not None and record.pending is None and record.clear_since is None
    alerter = Alerter(again, AlertWebhook(chat.url), clear_after=NO_HOLD)
    assert _update(alerter, True, again) == []
    [recovery] = _update(alerter, False, again)
    assert "caught up" in recovery


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    evaluations=st.lists(
        st.tuples(st.booleans(), st.sampled_from([5, 30, 60, 200])), min_size=1, max_size=30
    )
)
def test_whatever_the_lag_does_its_end_is_told_only_after_the_hold(
    chat, tmp_path_factory, evaluations
):
    inbox = Inbox(tmp_path_factory.mktemp("alerts") / "inbox.sqlite")
    clock, hold = Clock(), timedelta(minutes=5)
    alerter = Alerter(inbox, AlertWebhook(chat.url), now=clock, clear_after=hold)
    seen: list[tuple[datetime, bool]] = []
    told: list[tuple[datetime, str]] = []
    for active, step in evaluations:
        clock.advance(step)
        seen.append((clock.now, active))
        told += [(clock.now, text) for text in alerter.update(Condition.LAG, active, *_texts())]
    kinds = [text for _, text in told]
    # Start, end, start, end...: never two of a kind in a row.
    assert kinds == ["behind", "caught up"] * (len(kinds) // 2) + ["behind"] * (len(kinds) % 2)
    for at, text in told:
        if text == "caught up":
            # Clear at every evaluation of the hold before it, and seen clear that long ago.
            assert all(not active for when, active in seen if at - hold <= when <= at)
            assert any(not active for when, active in seen if when <= at - hold)
    ever_active = any(active for _, active in seen)
    last_active = max((when for when, active in seen if active), default=None)
    if ever_active and clock.now - last_active > hold + timedelta(seconds=200):
        assert kinds and kinds[-1] == "caught up"


def _texts():
    return lambda: "behind", lambda since, cleared: "caught up"


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
            AlertWebhook(chat.url).post("hello")
            assert chat.texts() == ["hello"]  # delivered on the retry
        else:
            # The chat may have read the message before the connection broke: not sent again
            # now (it stays pending for the next evaluation), and the error shows no secret.
            chat.drop_next = 1
            with pytest.raises(AlertNotSent) as refused:
                AlertWebhook(chat.url).post("hello")
            assert "?key=***&token=***: ConnectionError" in str(refused.value)
            caplog.records.append(
                logging.makeLogRecord({"msg": str(refused.value), "name": "salesops"})
            )
    lines = [record.getMessage() for record in caplog.records if record.name.startswith("urllib3")]
    if failure == "503":
        # urllib3 did name the request it retried, redacted.
        assert any("Retry" in line for line in lines), lines
        assert any("/services/***/***/***?key=***&token=***" in line for line in lines), lines
    for secret in ["secret-token", *QUERY_SECRETS.values()]:
        for spelling in _spellings(secret):
            assert spelling not in caplog.text, spelling
            assert all(spelling not in record.getMessage() for record in caplog.records)


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
