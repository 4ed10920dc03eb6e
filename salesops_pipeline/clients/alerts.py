"""Posting a message to the operators' chat: a Slack incoming webhook, or anything that takes
Slack's `{"text": ...}` JSON (Mattermost, Rocket.Chat, Teams' Slack-compatible hooks)."""

import logging
import threading
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter

from salesops_pipeline.clients.transport import RETRY_STATUSES, CappedRetry
from salesops_pipeline.errors import SalesopsError

# An alert must not hold up the sensor that sends it for long: the next tick tries again.
ALERT_TIMEOUT = (3.05, 10.0)


class _HideWebhookPaths(logging.Filter):
    """urllib3 names the URL it retries (a warning) and every request (debug): the path of a
    chat webhook is its secret, so it is shown as `/…` in those records."""

    def __init__(self):
        super().__init__()
        self.paths: set[str] = set()
        self._lock = threading.Lock()

    def add(self, path: str) -> None:
        with self._lock:
            self.paths.add(path)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        hidden = message
        for path in self.paths:
            hidden = hidden.replace(path, "/…")
        if hidden != message:
            record.msg, record.args = hidden, None
        return True


_HIDE_PATHS = _HideWebhookPaths()
for _name in ("urllib3.connectionpool", "urllib3.util.retry"):
    logging.getLogger(_name).addFilter(_HIDE_PATHS)


class AlertNotSent(SalesopsError):
    """The chat did not take the message; it is sent again at the next evaluation."""


class AlertWebhook:
    """One chat webhook. Its URL is a secret (whoever has it can post to the channel): errors
    name its host only."""

    def __init__(self, url: str, *, timeout=ALERT_TIMEOUT, retries: int = 2):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise SalesopsError("the alert webhook URL must be an http(s) URL")
        self.host = parts.hostname
        if len(parts.path) > 1:
            _HIDE_PATHS.add(parts.path)
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
            raise AlertNotSent(f"alert not sent to {self.host}: {type(error).__name__}") from None
        if not 200 <= response.status_code < 300:
            raise AlertNotSent(f"alert not sent to {self.host}: HTTP {response.status_code}")

    def close(self) -> None:
        self._session.close()
