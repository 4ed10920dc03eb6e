"""A post-call run's reports: a window of a minute at most, whatever the rate of events, with
the window's counts and latency; the run's end reports the rest."""

import itertools

from salesops_pipeline.post_call.processor import Outcome
from salesops_pipeline.post_call.report_window import ReportWindow


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _outcomes(first: int, count: int, status: str = "applied") -> list[Outcome]:
    return [
        Outcome(f"e{n}", status, "reschedule", [{"contact": "c", "changes": {"a": 1}}])
        for n in range(first, first + count)
    ]


def test_passes_within_a_minute_make_one_report_a_minute_after_the_first_event():
    clock = Clock()
    window = ReportWindow(every_seconds=60, clock=clock)
    assert not window.due() and window.take() is None  # nothing to report while quiet
    for second in range(0, 60, 2):  # an event every two seconds
        clock.now = 1000.0 + second
        window.add(_outcomes(second, 1), {0: second + 1}, [0.5 + second / 100])
        assert not window.due()
    clock.now = 1060.0
    assert window.due()
    report = window.take()
    assert report.events == 30 and report.statuses == {"applied": 30} and report.writes == 30
    assert report.latency_p50_s == 0.5 + 28 / 100 and report.latency_p95_s == 0.5 + 56 / 100
    assert report.positions == {0: 59} and report.seconds == 60.0
    assert not window.due() and window.take() is None


def test_reports_are_at_least_a_minute_apart_whatever_the_rate():
    clock = Clock()
    window = ReportWindow(every_seconds=60, clock=clock)
    reports = []
    for tick in range(0, 3000):  # 150 events a second for five minutes, a pass each 0.1 s
        clock.now = 1000.0 + tick / 10
        window.add(_outcomes(tick * 15, 15), {tick % 4: tick}, [0.1] * 15)
        if window.due():
            reports.append((clock.now, window.take()))
    reports.append((clock.now, window.take()))  # the run's end
    times = [at for at, _ in reports]
    assert all(b - a >= 60 for a, b in itertools.pairwise(times[:-1]))
    assert sum(report.events for _, report in reports) == 45_000
    assert len(reports) == 5  # four full minutes, and the rest at the end


def test_the_table_keeps_the_latest_outcomes_and_the_counts_keep_all():
    window = ReportWindow(table_rows=5, clock=Clock())
    window.add(_outcomes(0, 8), {0: 8}, [])
    window.add(_outcomes(8, 4, "failed"), {1: 4}, [])
    report = window.take()
    assert [o.call_id for o in report.latest] == ["e7", "e8", "e9", "e10", "e11"]
    assert report.statuses == {"applied": 8, "failed": 4} and report.events == 12
    assert report.latency_p50_s is None  # no event finished: no latency to chart
    assert report.positions == {0: 8, 1: 4}


def test_passes_without_events_open_no_window():
    clock = Clock()
    window = ReportWindow(every_seconds=60, clock=clock)
    window.add([], {0: 3}, [])
    clock.now += 120
    assert not window.due() and window.take() is None
