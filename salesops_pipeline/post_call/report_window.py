"""What a post-call run reports to the operators, a window at a time: one report per minute at
most, whatever the rate of events, each with its window's counts, latency, backlog and lag.

One report per pass made the asset's history a wall of one-event rows and its plots noise (a
count that is always 1, p50 equal to p95). Events still go to the run's log as they are
handled; the reports summarise."""

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from salesops_pipeline.post_call.lag import percentile

# At most one report per run in this many seconds.
REPORT_EVERY_SECONDS = 60.0
# Rows of a report's outcomes table: the window's counts cover every event, the table its
# latest ones (the inbox and `salesops inbox` hold them all).
TABLE_ROWS = 100


@dataclass
class WindowReport:
    """One window of a run: what its events ended as, and how fast."""

    events: int
    statuses: dict[str, int]
    writes: int
    latency_p50_s: float | None
    latency_p95_s: float | None
    seconds: float
    positions: dict[int, int]  # lane → queue position reached
    latest: list = field(default_factory=list)  # the window's last outcomes, oldest first


class ReportWindow:
    """Collects the passes of a run's lanes and says when a report is due: a minute after the
    window's first event, so that reports are at least a minute apart; the run's end reports
    what is left."""

    def __init__(
        self,
        every_seconds: float = REPORT_EVERY_SECONDS,
        table_rows: int = TABLE_ROWS,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._every, self._rows, self._clock = every_seconds, table_rows, clock
        self._reset()

    def _reset(self) -> None:
        self._opened = self._clock()
        self._statuses: Counter = Counter()
        self._writes = 0
        self._latencies: list[float] = []
        self._positions: dict[int, int] = {}
        self._latest: list = []

    def add(self, outcomes: list, positions: dict[int, int], latencies: list[float]) -> None:
        """Passes that ended: their outcomes, the queue position each lane reached, and the
        latencies of the events that finished."""
        if not outcomes:
            return
        if self.empty:
            self._opened = self._clock()
        self._statuses.update(outcome.status for outcome in outcomes)
        self._writes += sum(len(outcome.writes) for outcome in outcomes)
        self._latencies.extend(latencies)
        self._positions.update(positions)
        self._latest = (self._latest + list(outcomes))[-self._rows :]

    @property
    def empty(self) -> bool:
        return not self._statuses

    def due(self) -> bool:
        """Whether the events collected should be reported now."""
        return not self.empty and self._clock() - self._opened >= self._every

    def take(self) -> WindowReport | None:
        """The window's report, starting a new window; None when it holds no event."""
        if self.empty:
            return None
        latencies = sorted(self._latencies)
        now = self._clock()
        report = WindowReport(
            events=sum(self._statuses.values()),
            statuses=dict(sorted(self._statuses.items())),
            writes=self._writes,
            latency_p50_s=percentile(latencies, 0.50),
            latency_p95_s=percentile(latencies, 0.95),
            seconds=now - self._opened,
            positions=dict(sorted(self._positions.items())),
            latest=self._latest,
        )
        self._reset()
        return report
