"""Posting a message to the operators' chat: a Slack incoming webhook, or anything that takes
Slack's `{"text": ...}` JSON (Mattermost, Rocket.Chat, Teams' Slack-compatible hooks)."""

from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter

from salesops_pipeline.clients.transport import RETRY_STATUSES, CappedRetry
from salesops_pipeline.errors import SalesopsError
from salesops_pipeline.redaction import redact_url

# An alert must not hold up the sensor that sends it for long: the next tick tries again.
ALERT_TIMEOUT = (3.05, 10.0)


class AlertNotSent(SalesopsError):
    """The chat did not take the message; it is sent again at the next evaluation."""


class AlertWebhook:
    """One chat webhook. Its URL is a secret (whoever has it can post to the channel): messages
    show it redacted (`shown`), and the HTTP library's log lines show it so too (the filter
    `clients.transport` installs on them)."""

    def __init__(self, url: str, *, timeout=ALERT_TIMEOUT, retries: int = 2):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise SalesopsError("the alert webhook URL must be an http(s) URL")
        self.shown = redact_url(url)
        self._url = url
        self._timeout = timeout
        self._session = requests.Session()
        # POST is retried too: a chat message shown twice is better than an alert lost.
        retry = CappedRetry(
            total=retries,
            backoff_factor=0.5,
            status_forcelist=RETRY_STATUSES,
            allowed_methods=frozenset({"POST"}),
            respect_retry_after_header=True,
            raise_on_status=False,
        )
        adapter = HTTPAdapter(max_retries=retry)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)

    def post(self, text: str) -> None:
        try:
            response = self._session.post(self._url, json={"text": text}, timeout=self._timeout)
        except requests.RequestException as error:
            # The type only: requests' messages quote the URL, and with it the secret.
            raise AlertNotSent(f"alert not sent to {self.shown}: {type(error).__name__}") from None
        if not 200 <= response.status_code < 300:
            raise AlertNotSent(f"alert not sent to {self.shown}: HTTP {response.status_code}")

    def close(self) -> None:
        self._session.close()
