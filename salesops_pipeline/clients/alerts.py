"""Posting a message to the operators' chat: a Slack incoming webhook, or anything that takes
Slack's `{"text": ...}` JSON (Mattermost, Rocket.Chat, Teams' Slack-compatible hooks)."""

from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from salesops_pipeline.clients.transport import RETRY_STATUSES
from salesops_pipeline.errors import SalesopsError
from salesops_pipeline.redaction import redact_url

# An alert must not hold up the sensor that sends it: (connect, read) seconds, and one quick
# retry of a refusal or of a connection that failed. A chat that answers late is not asked
# again, nor waited for when it says `Retry-After`: the message stays pending in the inbox and
# the next evaluation sends it. One attempt thus lasts about 8 s at the very worst (two
# connections timing out, then an answer that never comes), a fraction of a second usually.
ALERT_TIMEOUT = (2.0, 3.0)


class AlertNotSent(SalesopsError):
    """The chat did not take the message; it stays pending and is sent at the next evaluation."""


class AlertWebhook:
    """One chat webhook. Its URL is a secret (whoever has it can post to the channel): messages
    show it redacted (`shown`), and the HTTP library's log lines show it so too (the filter
    `clients.transport` installs on them)."""

    def __init__(self, url: str, *, timeout=ALERT_TIMEOUT, retries: int = 1):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise SalesopsError("the alert webhook URL must be an http(s) URL")
        self.shown = redact_url(url)
        self._url = url
        self._timeout = timeout
        self._session = requests.Session()
        # POST is retried too: a chat message shown twice is better than an alert lost. Not
        # after a read timeout though: the chat may have taken it, and the wait is spent.
        retry = Retry(
            total=retries,
            connect=retries,
            read=0,
            status=retries,
            other=0,
            backoff_factor=0.25,
            status_forcelist=RETRY_STATUSES,
            allowed_methods=frozenset({"POST"}),
            respect_retry_after_header=False,
            raise_on_status=False,
        )
        adapter = HTTPAdapter(max_retries=retry)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)

    def post(self, text: str) -> None:
        try:
            # The status is all that matters: a body trickling in is never waited for.
            with self._session.post(
                self._url, json={"text": text}, timeout=self._timeout, stream=True
            ) as response:
                status = response.status_code
        except requests.RequestException as error:
            # The type only: requests' messages quote the URL, and with it the secret.
            raise AlertNotSent(f"alert not sent to {self.shown}: {type(error).__name__}") from None
        if not 200 <= status < 300:
            raise AlertNotSent(f"alert not sent to {self.shown}: HTTP {status}")

    def close(self) -> None:
        self._session.close()
