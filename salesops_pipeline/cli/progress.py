"""Live progress of the long commands (`duplicates`, `demo-db`, `simulate`) on a terminal.

Drawn on stderr, and only when stderr is a terminal and `--quiet` was not given: piped
output, files and `--format json` get exactly what they got before, and the command's answer
on stdout is never touched. The work reports its counts as often as it likes; the terminal is
redrawn a few times a second at most, so reporting costs a few attribute writes.
"""

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

# Redrawing more often than this only costs the work CPU: nobody reads faster.
DRAWS_PER_SECOND = 4
BAR_WIDTH = 20


@contextmanager
def live_progress(quiet: bool) -> Iterator["LiveProgress | None"]:
    """The live display for a command, or None when nobody is watching (stderr is not a
    terminal) or it was turned off: the command then passes no progress callback at all."""
    if quiet or sys.stderr is None or not sys.stderr.isatty():
        yield None
        return
    with LiveProgress() as display:
        yield display


class ProgressLine:
    """One line of the display: how much of something is done, of how much when known."""

    def __init__(
        self,
        display: "LiveProgress",
        label: str,
        unit: str,
        total: int | None,
        rate_unit: str | None,
    ):
        self._display = display
        self.label = label
        self.unit = unit
        self.total = total
        self.rate_unit = rate_unit
        self.done = 0
        self.note: str | Callable[[], str] = ""
        self.started = self.changed = display.clock()

    def set(self, done: int, note: str | Callable[[], str] | None = None) -> None:
        """Record the count so far; `note` is text shown after it, or a function giving that
        text, called only when the line is drawn (for figures too costly to work out at
        every report)."""
        if done != self.done:
            self.done = done
            self.changed = self._display.clock()
        if note is not None:
            self.note = note
        self._display.changed()

    def rate(self) -> float | None:
        # Over the time the count was moving: a finished line keeps the rate it had.
        elapsed = self.changed - self.started
        return self.done / elapsed if elapsed > 0 and self.done else None


class LiveProgress:
    """Counters drawn live on stderr, redrawn at most `per_second` times a second.

    Reports come from one thread, the one doing the work. Rich is imported at the first
    drawing, so a command that shows nothing never loads it.
    """

    def __init__(
        self,
        *,
        per_second: float = DRAWS_PER_SECOND,
        console=None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.clock = clock
        self._interval = 1 / per_second
        self._console = console
        self._counters: list[ProgressLine] = []
        self._next_draw = float("-inf")
        self._live = None

    def line(
        self, label: str, unit: str, *, total: int | None = None, rate_unit: str | None = None
    ) -> ProgressLine:
        """A new line: `label`, the count with its `unit` (out of `total` with a bar when
        known) and, with `rate_unit`, the rate at which the count moved."""
        counter = ProgressLine(self, label, unit, total, rate_unit)
        self._counters.append(counter)
        return counter

    def changed(self) -> None:
        now = self.clock()
        if now < self._next_draw:
            return
        self._next_draw = now + self._interval
        if self._live is None:
            self._start()
        self._live.update(self._table(), refresh=True)

    def __enter__(self) -> "LiveProgress":
        return self

    def __exit__(self, *exc_info) -> None:
        # Stopping draws the last counts once more and leaves them on the terminal.
        if self._live is not None:
            self._live.update(self._table())
            self._live.stop()

    def _start(self) -> None:
        from rich.console import Console
        from rich.live import Live

        console = self._console or Console(file=sys.stderr)
        # stdout stays the command's own; what Python writes to stderr meanwhile (a warning)
        # is printed above the display instead of through it.
        self._live = Live(
            console=console,
            auto_refresh=False,
            redirect_stdout=False,
            redirect_stderr=True,
        )
        self._live.start()

    def _table(self):
        from rich.progress_bar import ProgressBar
        from rich.table import Table

        table = Table.grid(padding=(0, 2))
        bars = any(counter.total for counter in self._counters)
        # On a narrow terminal the details are cut short, rather than wrapped or squeezing the
        # labels: the display stays one line per counter.
        labels = max((len(counter.label) for counter in self._counters), default=0)
        table.add_column(no_wrap=True, min_width=labels)
        if bars:
            table.add_column(no_wrap=True, min_width=BAR_WIDTH)
        table.add_column(no_wrap=True, overflow="ellipsis")
        for counter in self._counters:
            count = f"{counter.done:,}" + (f"/{counter.total:,}" if counter.total else "")
            details = [f"{count} {counter.unit}"]
            rate = counter.rate()
            if counter.rate_unit and rate is not None:
                details.append(f"{_rate(rate)} {counter.rate_unit}")
            note = counter.note() if callable(counter.note) else counter.note
            if note:
                details.append(note)
            cells = [counter.label, " · ".join(details)]
            if bars:
                bar = ProgressBar(total=counter.total, completed=counter.done, width=BAR_WIDTH)
                cells.insert(1, bar if counter.total else "")
            table.add_row(*cells)
        return table


def _rate(rate: float) -> str:
    return f"{rate:,.1f}" if rate < 10 else f"{rate:,.0f}"
