"""How far behind post-call is, measured one way for every view (terminal, Dagster, metrics).

An event's **latency** runs from when the intake stored it to when the provider confirmed its
write; an event that needed no write counts from storage to its outcome. The **backlog** is
the events not yet finished (pending or retrying), and the **lag** is the age of the oldest of
them: what grows when post-call stalls, even while no event finishes.
"""

import math
from dataclasses import asdict, dataclass
from datetime import timedelta

# Events finished within this window make the latency figures.
RECENT = timedelta(minutes=5)


@dataclass(frozen=True)
class PostCallLag:
    pending: int
    retrying: int
    failed: int
    # Seconds; None when nothing waits, or nothing finished recently.
    oldest_pending_age_s: float | None
    finished_last_5m: int
    latency_p50_s: float | None
    latency_p95_s: float | None
    latency_max_s: float | None

    @property
    def backlog(self) -> int:
        return self.pending + self.retrying

    @property
    def lag_s(self) -> float:
        """The age of the oldest waiting event; 0 when nothing waits."""
        return self.oldest_pending_age_s or 0.0

    def within(self, max_lag_s: float) -> bool:
        """Whether post-call keeps up: no event has waited longer than `max_lag_s`."""
        return self.lag_s <= max_lag_s

    def to_json(self) -> dict:
        return asdict(self)

    def text(self) -> str:
        """The figures as an operator reads them on a terminal."""
        lag = _seconds(self.oldest_pending_age_s) or "none, nothing waits"
        lines = [
            f"Backlog: {self.pending} pending, {self.retrying} retrying"
            f" ({self.failed} failed, kept for a person)",
            f"Lag, the oldest waiting event: {lag}",
        ]
        if self.finished_last_5m:
            lines.append(
                f"Finished in the last 5 minutes: {self.finished_last_5m}; latency"
                f" p50 {_seconds(self.latency_p50_s)}, p95 {_seconds(self.latency_p95_s)},"
                f" max {_seconds(self.latency_max_s)}"
            )
        else:
            lines.append("Finished in the last 5 minutes: none")
        return "\n".join(lines)


def percentile(ordered: list[float], share: float) -> float | None:
    """The nearest-rank percentile of sorted values: the smallest value that at least `share`
    of them do not exceed; None for no values."""
    if not ordered:
        return None
    return ordered[max(math.ceil(share * len(ordered)) - 1, 0)]


def _seconds(value: float | None) -> str | None:
    return None if value is None else f"{value:.1f} s"
