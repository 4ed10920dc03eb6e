"""Telling the operators when post-call falls behind or a post-call run fails: one message when
the condition starts, none while it lasts, one when it clears.

Whether a condition was announced is kept in the inbox, beside the events, so every process
that evaluates it agrees, and a restart neither repeats an alert nor forgets to clear it. A
message says what is wrong, the lag and the backlog, and where to look; it is built from counts
and identifiers only, never from an event's content, so it carries no phone number and no key.
"""

from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum

from salesops_pipeline.clients.alerts import AlertWebhook
from salesops_pipeline.post_call.inbox import Inbox
from salesops_pipeline.post_call.lag import PostCallLag


class Condition(StrEnum):
    LAG = "post_call_lag"
    RUN_FAILED = "post_call_run_failed"


def _figures(lag: PostCallLag) -> str:
    return (
        f"lag {lag.lag_s:.0f} s (the oldest waiting event), backlog {lag.backlog}"
        f" ({lag.pending} pending, {lag.retrying} retrying), {lag.failed} failed"
    )


def _stats_hint(dagster_url: str | None, page: str) -> str:
    ui = f"{dagster_url}/{page}" if dagster_url else f"the Dagster UI ({page})"
    return f"Look: `salesops inbox --stats` on the pipeline's host, and {ui}."


def lag_alert(lag: PostCallLag, max_lag_s: float, dagster_url: str | None) -> str:
    return (
        f":rotating_light: salesops post-call is behind: an event has waited"
        f" {lag.lag_s:.0f} s, over the {max_lag_s:.0f} s allowed. Callbacks and support"
        f" hand-offs are late. Now: {_figures(lag)}. "
        + _stats_hint(dagster_url, "assets/post_call_outcomes?view=checks")
    )


def lag_recovery(lag: PostCallLag, since: datetime, now: datetime) -> str:
    return (
        f":white_check_mark: salesops post-call has caught up after {_duration(now - since)}."
        f" Now: {_figures(lag)}."
    )


def run_failure_alert(run_id: str, lane: str | None, lag: PostCallLag, dagster_url: str | None):
    where = f" (lane {lane})" if lane is not None else ""
    return (
        f":rotating_light: salesops post-call run {run_id}{where} failed; its events wait for"
        f" a retry. Now: {_figures(lag)}. " + _stats_hint(dagster_url, f"runs/{run_id}")
    )


def run_recovery(run_id: str, lag: PostCallLag, since: datetime, now: datetime) -> str:
    return (
        f":white_check_mark: salesops post-call runs succeed again (run {run_id}), after"
        f" {_duration(now - since)} of failures. Now: {_figures(lag)}."
    )


def _duration(elapsed) -> str:
    seconds = max(int(elapsed.total_seconds()), 0)
    if seconds < 120:
        return f"{seconds} s"
    return f"{seconds // 60} min"


class Alerter:
    """Sends a condition's start and end, each once, to the operators' chat."""

    def __init__(self, inbox: Inbox, webhook: AlertWebhook, now=lambda: datetime.now(UTC)):
        self.inbox = inbox
        self.webhook = webhook
        self._now = now

    def update(
        self,
        condition: Condition,
        active: bool,
        alert: Callable[[], str] | None = None,
        recovery: Callable[[datetime, datetime], str] | None = None,
    ) -> str | None:
        """Announce `condition` if it just started, or its end if it just cleared; the message
        sent, or None when nothing changed. Each message is built only when it is sent: an
        evaluator that only ever starts (or ends) the condition gives only that one.

        Raises AlertNotSent when the chat refuses or cannot be reached. Nothing is recorded
        then, so the next evaluation sends it again. The record follows the sending: a crash
        between the two repeats a message rather than losing one.
        """
        raised_at = self.inbox.alert_raised_at(condition)
        if active == (raised_at is not None):
            return None
        now = self._now()
        text = alert() if active else recovery(raised_at, now)
        self.webhook.post(text)
        self.inbox.set_alert(condition, now if active else None)
        return text
