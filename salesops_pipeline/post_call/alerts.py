"""Telling the operators when post-call falls behind or a post-call run fails: one message when
the condition starts, none while it lasts, one once it has been clear for a while.

A condition flapping about its limit (a lag hovering around it, runs failing every other time)
would otherwise post a message at every turn: its end is told only once it has been seen clear
at every evaluation for `clear_after` (SALESOPS_ALERT_CLEAR_AFTER_S), and a relapse within that
time is the same condition going on, told nothing.

Whether a condition was announced is kept in the inbox, beside the events, so every process
that evaluates it agrees, and a restart neither repeats an alert nor forgets to clear it. So are
the messages the chat has not taken yet: a message refused (a chat down, a 5xx) is sent again at
the next evaluation of any condition, never lost. A message says what is wrong, the lag and the
backlog, and where to look; it is built from counts and identifiers only, never from an event's
content, so it carries no phone number and no key.
"""

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
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
    # Sent once no run has failed for a while after this one: the figures are this run's end's.
    return (
        f":white_check_mark: salesops post-call runs succeed again (run {run_id}), after"
        f" {_duration(now - since)} of failures, and none has failed since."
        f" When it ended: {_figures(lag)}."
    )


# How long a condition must have been clear before its end is told.
DEFAULT_CLEAR_AFTER = timedelta(minutes=5)


def _duration(elapsed) -> str:
    seconds = max(int(elapsed.total_seconds()), 0)
    if seconds < 120:
        return f"{seconds} s"
    return f"{seconds // 60} min"


class Alerter:
    """Sends a condition's start once, and its end once it has been clear for `clear_after`,
    to the operators' chat."""

    def __init__(
        self,
        inbox: Inbox,
        webhook: AlertWebhook,
        now=lambda: datetime.now(UTC),
        clear_after: timedelta = DEFAULT_CLEAR_AFTER,
    ):
        self.inbox = inbox
        self.webhook = webhook
        self._now = now
        self.clear_after = clear_after

    def update(
        self,
        condition: Condition,
        active: bool,
        alert: Callable[[], str] | None = None,
        recovery: Callable[[datetime, datetime], str] | None = None,
    ) -> list[str]:
        """Record what an evaluation saw of `condition`, then send whatever is due: the
        messages sent, of any condition (none when nothing changed).

        Active: its start is told if it just started; a clear spell it was in is over. Clear:
        `recovery(started, cleared)` is its end's message, told once it has been clear for
        `clear_after`. Each message is built only when needed: an evaluator that only ever
        starts (or ends) the condition gives only that one.

        Raises AlertNotSent when the chat refuses or cannot be reached; the message stays in
        the inbox and the next evaluation sends it. The record follows the sending: a crash
        between the two repeats a message rather than losing one.
        """
        record = self.inbox.alert(condition)
        now = self._now()
        if active:
            if record is None:
                self.inbox.raise_alert(condition, now, alert())
            elif record.clear_since is not None:
                self.inbox.still_active(condition)
        elif record is not None:
            cleared = record.clear_since or now
            self.inbox.seen_clear(condition, cleared, recovery(record.raised_at, cleared))
        return self.deliver()

    def deliver(self) -> list[str]:
        """Send the messages due, oldest condition first: starts not told yet, and ends of
        conditions clear for `clear_after`. Stops at the first the chat refuses
        (AlertNotSent): the others would fare no better within this evaluation."""
        sent = []
        now = self._now()
        for record in self.inbox.alerts():
            if record.pending is not None:
                self.webhook.post(record.pending)
                self.inbox.raise_sent(record.condition, record.pending)
                sent.append(record.pending)
            if (
                record.clear_since is not None
                and record.recovery is not None
                and now - record.clear_since >= self.clear_after
            ):
                self.webhook.post(record.recovery)
                self.inbox.recovery_sent(record.condition, record.clear_since)
                sent.append(record.recovery)
        return sent
