"""Measuring: every repetition runs in a fresh process, so peak memory is its own."""

import multiprocessing
import resource
import statistics
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import requests

from salesops_pipeline import settings


def cache_dir() -> Path:
    """Generated inputs (demo DBs, seeded providers), kept between runs."""
    return settings.salesops_home() / "benchmarks"


@dataclass
class Case:
    """One way of doing the work: `setup` builds its input (not timed), `run` does the work."""

    name: str
    setup: Callable[[dict], object]
    run: Callable[[object], object]
    baseline: bool = False  # the way the others are compared with; one per table


@dataclass
class Figures:
    name: str
    baseline: bool = False
    seconds: list[float] = field(default_factory=list)
    peak_mb: float = 0.0
    setup_mb: float = 0.0
    result: object = None

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)


def _rss_mb(who: int = resource.RUSAGE_SELF) -> float:
    return resource.getrusage(who).ru_maxrss / 1024


def _child(case: Case, params: dict, pipe) -> None:
    try:
        state = case.setup(params)
        setup_mb = _rss_mb()
        started = time.perf_counter()
        result = case.run(state)
        elapsed = time.perf_counter() - started
        # A case whose work is running a command to its end is measured by that command's peak.
        peak_mb = _rss_mb(resource.RUSAGE_CHILDREN) or _rss_mb()
        pipe.send(("ok", elapsed, setup_mb, peak_mb, result))
    except BaseException as error:  # noqa: BLE001 - reported to the parent, which raises
        pipe.send(("error", f"{type(error).__name__}: {error}", 0, 0, None))
    finally:
        pipe.close()


def measure(case: Case, params: dict, repeat: int) -> Figures:
    """Median wall time of `repeat` runs, each in a new process; peak RSS over them."""
    context = multiprocessing.get_context("spawn")
    figures = Figures(case.name, baseline=case.baseline)
    for _ in range(repeat):
        receiver, sender = context.Pipe(duplex=False)
        process = context.Process(target=_child, args=(case, params, sender))
        process.start()
        sender.close()
        status, elapsed, setup_mb, peak_mb, result = receiver.recv()
        process.join()
        if status != "ok":
            raise RuntimeError(f"{case.name}: {elapsed}")
        figures.seconds.append(elapsed)
        figures.setup_mb = max(figures.setup_mb, setup_mb)
        figures.peak_mb = max(figures.peak_mb, peak_mb)
        figures.result = result
    return figures


def prepared(function: Callable, *args) -> None:
    """Run `function(*args)` (building a benchmark's inputs) in a process of its own.

    A process's peak RSS survives into the processes it starts: inputs built in this process
    would show up in the peak of every run measured after them.
    """
    context = multiprocessing.get_context("spawn")
    process = context.Process(target=function, args=args)
    process.start()
    process.join()
    if process.exitcode != 0:
        raise RuntimeError(f"preparing the inputs failed ({function.__name__})")


def table(title: str, rows: list[list[str]], headers: list[str]) -> str:
    widths = [max(len(str(c)) for c in column) for column in zip(headers, *rows, strict=False)]

    def line(cells):
        return (
            "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=False)) + " |"
        )

    out = [f"\n## {title}\n", line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out.extend(line(row) for row in rows)
    return "\n".join(out)


def compare(title: str, figures: list[Figures], unit_count: int, unit: str, note: str = "") -> str:
    """The table of a module: median and spread, throughput, peak memory, and the ratio to the
    baseline case, measured in the same run."""
    [baseline] = [f for f in figures if f.baseline]
    rows = []
    for f in figures:
        rows.append(
            [
                f.name,
                f"{f.median:.3f} s",
                f"{min(f.seconds):.3f}–{max(f.seconds):.3f} s",
                f"{len(f.seconds)}",
                f"{unit_count / f.median:,.0f} {unit}/s" if unit_count else "–",
                f"{f.peak_mb:,.0f} MB",
                f"{baseline.median / f.median:.1f}×",
            ]
        )
    text = table(
        title,
        rows,
        ["method", "median", "spread", "runs", "throughput", "peak RSS", f"vs {baseline.name}"],
    )
    return text + (f"\n\n{note}" if note else "")


@contextmanager
def server_process(argv: list[str], env: dict[str, str], health_url: str) -> Iterator[None]:
    """A project server in its own process (so it does not share the client's GIL), up and
    answering for the duration of the block."""
    server = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                requests.get(health_url, timeout=1)
                break
            except requests.ConnectionError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{argv[2:4]} did not start") from None
                time.sleep(0.2)
        yield
    finally:
        server.terminate()
        server.wait(timeout=30)


def blank_sandbox_contact(contact_id: str, campaign: str) -> dict:
    """A contact never called yet, as `POST /_sandbox/campaigns/{campaign}/contacts` takes it:
    benchmarks add their own so that no other call of it can supersede theirs."""
    return {
        "id": contact_id,
        "campaign_id": campaign,
        "phone": None,
        "retryDate": None,
        "lastCallAt": None,
        "assignedAgent": None,
        "wrapup": None,
        "totalCalls": 0,
        "crm_id": f"crm-{contact_id}",
    }
