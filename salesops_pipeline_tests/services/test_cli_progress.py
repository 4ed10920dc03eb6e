"""Live progress of `salesops duplicates`, `demo-db` and `simulate`: drawn on stderr when it is
a terminal, never when it is piped, off with --quiet, and stdout the same whoever watches.

Each command runs as a child process with stderr on a pseudo-terminal and stdout on a pipe,
as on a developer's terminal whose answer is redirected to a file."""

import fcntl
import io
import json
import os
import re
import sqlite3
import struct
import subprocess
import sys
import termios
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest

from salesops_pipeline.cli.progress import LiveProgress
from salesops_pipeline.post_call.inbox import Inbox
from salesops_pipeline.sales.demo import generate_demo_db
from salesops_pipeline.services.http_server import serving_in_thread
from salesops_pipeline.services.intake.app import create_intake_app

TIMEOUT = 60
# Terminal control sequences (colours, cursor moves, line clearing) between the drawn texts.
CONTROL = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
PROGRESS_WORDS = ("contacts read", "written", "sent", "accepted", "/s", "━")


@dataclass
class Run:
    returncode: int
    stdout: bytes
    stderr: str  # as text, control sequences taken out, lines ending in "\n"


def run_cli(*args: str, terminal: bool, python: tuple[str, ...] = ()) -> Run:
    """The CLI in a child process (`python`: options of the interpreter); with `terminal`,
    its stderr on a pseudo-terminal 120 columns wide. Its stdout is a pipe either way."""
    command = [sys.executable, *python, "-m", "salesops_pipeline.cli", *args]
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "120", "LINES": "40"}
    if not terminal:
        result = subprocess.run(command, capture_output=True, env=env, timeout=TIMEOUT)
        return Run(result.returncode, result.stdout, result.stderr.decode())
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    try:
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave, env=env
        )
    finally:
        os.close(slave)
    # Read all along, or the child would block once the terminal's buffer is full.
    received: list[bytes] = []
    reader = threading.Thread(target=_read_terminal, args=(master, received), daemon=True)
    reader.start()
    try:
        stdout, _ = process.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise
    finally:
        reader.join(timeout=10)
        os.close(master)
    text = b"".join(received).decode().replace("\r\n", "\n")
    return Run(process.returncode, stdout, CONTROL.sub("", text))


def _read_terminal(master: int, received: list[bytes]) -> None:
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child has exited and its end of the terminal is closed
            return
        if not data:
            return
        received.append(data)


def no_progress_in(stderr: str) -> bool:
    return not any(word in stderr for word in PROGRESS_WORDS)


# demo-db


def test_demo_db_shows_sessions_written_on_a_terminal_only(tmp_path):
    args = ("demo-db", "--path", str(tmp_path / "demo.sqlite"), "--sessions", "25000")
    shown = run_cli(*args, terminal=True)
    piped = run_cli(*args, terminal=False)
    quiet = run_cli(*args, "--quiet", terminal=True)
    assert shown.returncode == piped.returncode == quiet.returncode == 0
    assert re.search(r"Sessions .*25,000/25,000 written · [\d,.]+ sessions/s", shown.stderr)
    assert piped.stderr == quiet.stderr == ""
    assert shown.stdout == piped.stdout == quiet.stdout
    assert piped.stdout == (
        f"Demo sales DB written to {tmp_path / 'demo.sqlite'} (25000 sessions,"
        " seed 20250401)\n".encode()
    )


def test_demo_db_reports_each_chunk_and_writes_the_same_database(tmp_path):
    reported: list[int] = []
    with_progress = generate_demo_db(
        tmp_path / "shown.sqlite", sessions=25_000, on_progress=reported.append
    )
    without = generate_demo_db(tmp_path / "plain.sqlite", sessions=25_000)
    assert reported == [10_000, 20_000, 25_000]
    for table in ("session", "target_operation", "activity", "contact", "target"):
        assert _rows(with_progress, table) == _rows(without, table)


def _rows(path: Path, table: str) -> list[tuple]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(f"SELECT * FROM {table} ORDER BY id").fetchall()
    finally:
        conn.close()


# duplicates


def test_duplicates_shows_contacts_read_per_campaign_on_a_terminal_only(sandbox, monkeypatch):
    monkeypatch.setenv("REMOTE_API_HOST", sandbox.url)
    monkeypatch.setenv("REMOTE_API_KEY", sandbox.api_key)
    shown = run_cli("duplicates", terminal=True)
    piped = run_cli("duplicates", terminal=False)
    quiet = run_cli("duplicates", "--quiet", terminal=True)
    as_json = run_cli("duplicates", "--format", "json", terminal=False)
    assert shown.returncode == piped.returncode == quiet.returncode == as_json.returncode == 0
    for campaign in ("A", "B"):
        line = rf"Campaign {campaign}  [\d,]+ contacts read · [\d,.]+ contacts/s · \d+ pages"
        assert re.search(line, shown.stderr), shown.stderr
    assert shown.stdout == piped.stdout == quiet.stdout
    # The warnings on stderr are the same with and without the display, which adds only itself.
    warnings = piped.stderr
    assert "skipped malformed record" in warnings and no_progress_in(warnings)
    assert quiet.stderr == as_json.stderr == warnings
    assert all(line in shown.stderr for line in warnings.splitlines())
    phones = [line for line in piped.stdout.decode().splitlines() if not line.startswith("\t")]
    assert [entry["phone"] for entry in json.loads(as_json.stdout)] == phones


# simulate

KEY = "intake-key"


@pytest.fixture
def intake(tmp_path, sandbox, monkeypatch):
    """An intake on loopback, with its key set, and the sandbox as the provider."""
    monkeypatch.setenv("REMOTE_API_HOST", sandbox.url)
    monkeypatch.setenv("REMOTE_API_KEY", sandbox.api_key)
    monkeypatch.setenv("X_API_KEY", KEY)
    with serving_in_thread(create_intake_app(Inbox(tmp_path / "inbox.sqlite"), api_key=KEY)) as url:
        yield url


def test_simulate_shows_events_sent_and_accepted_on_a_terminal_only(intake):
    def simulate(seed: int, *extra: str, terminal: bool) -> Run:
        args = ("--rate", "40", "--duration", "0.5", "--seed", str(seed), "--intake", intake)
        return run_cli("simulate", *args, *extra, terminal=terminal)

    # Seeds of their own: each run's events are new to the intake, so all are accepted.
    shown = simulate(1, terminal=True)
    piped = simulate(2, terminal=False)
    quiet = simulate(3, "--quiet", terminal=True)
    assert shown.returncode == piped.returncode == quiet.returncode == 0
    assert re.search(
        r"Events .*20/20 sent · 20 accepted · latency p50 [\d.]+ ms, max [\d.]+ ms", shown.stderr
    ), shown.stderr
    assert piped.stderr == quiet.stderr == ""
    for run in (shown, piped, quiet):
        assert re.fullmatch(
            rf"Posting 20 events to {re.escape(intake)} over 0s\n"
            r"Events sent  20: [^\n]*\n"
            r"Answers      2\d\d [A-Za-z ]+: 20\n"
            r"Errors       none\n"
            r"Latency      p50 [\d.]+ ms, max [\d.]+ ms\n",
            run.stdout.decode(),
        ), run.stdout


# Rich stays unloaded


def test_without_a_terminal_rich_is_never_imported(tmp_path):
    args = ("demo-db", "--path", str(tmp_path / "demo.sqlite"), "--sessions", "100")
    piped = run_cli(*args, terminal=False, python=("-X", "importtime"))
    assert piped.returncode == 0
    assert "salesops_pipeline.sales.demo" in _imported(piped.stderr)
    assert not {"rich", "rich.live"} & _imported(piped.stderr)
    # The same measure sees rich when a terminal is watching.
    shown = run_cli(*args, terminal=True, python=("-X", "importtime"))
    assert "rich.live" in _imported(shown.stderr)


def _imported(importtime: str) -> set[str]:
    return {
        line.rsplit("|", 1)[1].strip()
        for line in importtime.splitlines()
        if line.startswith("import time:") and "|" in line
    }


# The renderer


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _display(clock: FakeClock) -> tuple[LiveProgress, io.StringIO]:
    from rich.console import Console

    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=100, color_system=None)
    return LiveProgress(console=console, clock=clock), screen


def test_many_reports_draw_a_few_times_a_second():
    clock = FakeClock()
    display, screen = _display(clock)
    notes = []

    def note() -> str:
        notes.append(clock.now)
        return "a costly figure"

    with display:
        rows = display.line("Rows", "written", total=5_000, rate_unit="rows/s")
        for n in range(1, 5_001):
            clock.now = n / 1000  # 5,000 reports over 5 seconds
            rows.set(n, note)
    draws = screen.getvalue().count("Rows")
    # Four a second, the first at once, and the last counts when the display stops.
    assert 5 * 4 <= draws <= 5 * 4 + 2
    assert len(notes) == draws
    assert "5,000/5,000 written · 1,000 rows/s · a costly figure" in screen.getvalue()


def test_reports_at_one_instant_draw_once_then_the_end():
    clock = FakeClock()
    display, screen = _display(clock)
    with display:
        lines = display.line("Lines", "read")
        for n in range(10_000):
            lines.set(n)
        assert screen.getvalue().count("Lines") == 1
    assert screen.getvalue().count("Lines") == 2
    assert "9,999 read" in screen.getvalue()


def test_a_display_with_no_report_draws_nothing():
    display, screen = _display(FakeClock())
    with display:
        display.line("Idle", "read")
    assert screen.getvalue() == ""
