"""`GET /metrics`: post-call's backlog, lag and latency, and the intake's answers, in the
Prometheus text format, for the operators' own monitoring.

Counters (`_total`) only ever go up, whatever happens to the events: they count transitions as
the inbox's triggers see them, so that a replay or a pruning never looks like a counter reset
to Prometheus. How many events are in each status now is a gauge of its own.

The inbox figures are the ones `salesops inbox --stats` and the post_call_lag check show
(`post_call.lag`). They are read at scrape time but at most once per `max_age` seconds, in a
thread of their own, so that scraping, however often, costs the webhooks next to nothing.
"""

import threading
import time

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from salesops_pipeline.post_call.inbox import Inbox
from salesops_pipeline.post_call.lag import PostCallLag
from salesops_pipeline.post_call.status import EventStatus

# A `_created` series beside every counter doubles what is sent and tells nobody anything here.
disable_created_metrics()

# A scrape within this many seconds of the last inbox read is answered from it.
INBOX_READ_MAX_AGE_SECONDS = 1.0


class _InboxCollector:
    """Reads the inbox when Prometheus asks, at most once per `max_age` seconds."""

    def __init__(self, inbox: Inbox, max_age: float):
        self.inbox = inbox
        self.max_age = max_age
        self._lock = threading.Lock()
        self._read_at = float("-inf")
        self._figures: tuple[PostCallLag, dict[str, int], dict[str, int]] | None = None

    def figures(self) -> tuple[PostCallLag, dict[str, int], dict[str, int]]:
        """The lag, the events in each status now, and the times events entered each status."""
        with self._lock:
            if self._figures is None or time.monotonic() - self._read_at >= self.max_age:
                self._figures = (
                    self.inbox.lag(),
                    self.inbox.counts(),
                    self.inbox.entered_totals(),
                )
                self._read_at = time.monotonic()
            return self._figures

    def collect(self):
        lag, counts, totals = self.figures()
        backlog = GaugeMetricFamily(
            "salesops_post_call_backlog",
            "Post-call events not finished yet, by status.",
            labels=["status"],
        )
        backlog.add_metric([EventStatus.PENDING.value], lag.pending)
        backlog.add_metric([EventStatus.RETRYING.value], lag.retrying)
        yield backlog
        yield GaugeMetricFamily(
            "salesops_post_call_oldest_pending_seconds",
            "Age of the oldest post-call event not finished yet (the lag); 0 when none waits.",
            value=lag.lag_s,
        )
        events = CounterMetricFamily(
            "salesops_post_call_events",
            "Times a post-call event entered each status: stored (pending), handed back for a"
            " retry (retrying), or finished each way; replayed and pruned events still count.",
            labels=["status"],
        )
        for status in EventStatus:
            events.add_metric([status.value], totals.get(status, 0))
        yield events
        now = GaugeMetricFamily(
            "salesops_post_call_inbox_events",
            "Post-call events in the inbox now, by status (pruned ones are gone).",
            labels=["status"],
        )
        for status in EventStatus:
            now.add_metric([status.value], counts.get(status, 0))
        yield now
        latency = GaugeMetricFamily(
            "salesops_post_call_latency_seconds",
            "From the intake storing an event to the provider confirming its write, over the"
            " events finished in the last 5 minutes (absent when none finished).",
            labels=["quantile"],
        )
        for quantile, value in (("0.5", lag.latency_p50_s), ("0.95", lag.latency_p95_s)):
            if value is not None:
                latency.add_metric([quantile], value)
        yield latency
        yield GaugeMetricFamily(
            "salesops_post_call_finished_last_5m",
            "Post-call events finished in the last 5 minutes.",
            value=lag.finished_last_5m,
        )


class IntakeMetrics:
    """The intake's metrics: its own registry, so that several apps in one process (tests,
    benchmarks) never mix their figures."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, inbox: Inbox, max_age: float = INBOX_READ_MAX_AGE_SECONDS):
        self.registry = CollectorRegistry(auto_describe=False)
        self.requests = Counter(
            "salesops_intake_requests",
            "Post-call webhooks answered by the intake, by HTTP status.",
            ["code"],
            registry=self.registry,
        )
        self.registry.register(_InboxCollector(inbox, max_age))

    def answered(self, status: int) -> None:
        self.requests.labels(code=str(status)).inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
