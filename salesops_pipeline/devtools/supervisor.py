"""Starting, watching and stopping the local stack's processes together."""

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import requests

from salesops_pipeline.redaction import redact_url


@dataclass(frozen=True)
class RestartPolicy:
    """How a child that may die alone is brought back: after `backoff_seconds`, at most
    `max_restarts` times in any `window_seconds`; one that keeps dying stops the stack."""

    backoff_seconds: float = 1.0
    max_restarts: int = 5
    window_seconds: float = 60.0


@dataclass
class Child:
    name: str
    argv: Sequence[str]
    env: dict[str, str]
    process: subprocess.Popen | None = field(default=None, repr=False)
    # None: its death stops the stack. Otherwise it is restarted, within the policy's limits.
    restart: RestartPolicy | None = None
    restarted_at: deque = field(default_factory=deque, repr=False)
    # When a restart is due (time.monotonic()), while the child waits out its back-off.
    restart_due: float | None = field(default=None, repr=False)
    # Which of its output lines reach the console (None: every line).
    shows: Callable[[str], bool] | None = field(default=None, repr=False)

    def exited(self) -> bool:
        return self.process is not None and self.process.poll() is not None


class Supervisor:
    """Runs children with labelled output; when one stops, or on Ctrl-C/SIGTERM, stops all.

    A child started with a restart policy (an intake replica beside others that keep serving)
    is restarted instead, unless it dies too often, which stops all as any other death does.
    """

    def __init__(self):
        self.children: list[Child] = []
        self._stopping = threading.Event()

    def start(
        self,
        name: str,
        argv: Sequence[str],
        env: dict[str, str],
        *,
        restart: RestartPolicy | None = None,
        shows: Callable[[str], bool] | None = None,
    ) -> Child:
        child = Child(name, argv, env, restart=restart, shows=shows)
        self._spawn(child)
        self.children.append(child)
        return child

    def _spawn(self, child: Child) -> None:
        # A shell starts background jobs with Ctrl-C ignored, and children inherit that; with a
        # handler installed here instead, each child starts with the default and can be
        # interrupted cleanly.
        if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
            signal.signal(signal.SIGINT, signal.default_int_handler)
        # Own process group: stopping a child stops what it started too (dagster dev's
        # webserver and daemon), and nothing is left behind.
        process = subprocess.Popen(  # noqa: S603 - argv built by the caller, no shell
            list(child.argv),
            env=child.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            text=True,
            bufsize=1,
        )
        child.process = process
        threading.Thread(
            target=self._relay, args=(child.name, process, child.shows), daemon=True
        ).start()

    def _relay(
        self, name: str, process: subprocess.Popen, shows: Callable[[str], bool] | None
    ) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            # A child whose output is sorted goes quiet once the stack stops: the tracebacks
            # of runs and threads interrupted are how Dagster goes down, not news.
            if shows is None or (not self._stopping.is_set() and shows(line)):
                sys.stdout.write(f"[{name}] {line}")
                sys.stdout.flush()

    def wait_http(self, child: Child, url: str, timeout: float = 60.0) -> None:
        """Block until `url` answers, or fail if the child died or time ran out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if child.process is not None and child.process.poll() is not None:
                raise RuntimeError(f"{child.name} exited with code {child.process.returncode}")
            try:
                answered = requests.get(url, timeout=1).status_code < 500
            except requests.RequestException:
                answered = False
            # The answer counts only if the child is still alive: a child that failed to bind
            # must not pass on the strength of another process listening on its port.
            if answered and child.process is not None and child.process.poll() is None:
                return
            time.sleep(0.2)
        raise RuntimeError(
            f"{child.name} did not answer at {redact_url(url)} within {timeout:.0f}s"
        )

    def request_stop(self) -> None:
        """Stop the stack as SIGTERM would, from any thread."""
        self._stopping.set()

    def run_until_stopped(self) -> int:
        """Wait until a child exits or a stop is requested; then stop every child.

        A child with a restart policy is restarted instead, while it stays within the policy.
        Returns 0 when asked to stop (Ctrl-C, SIGTERM) and 1 when a child died on its own,
        so that a service manager or a script sees the failure.
        """
        previous = signal.signal(signal.SIGTERM, lambda *_: self.request_stop())
        died: Child | None = None
        too_often = ""
        try:
            while not self._stopping.is_set() and died is None:
                for child in self.children:
                    if not child.exited():
                        continue
                    if child.restart is None:
                        died = child
                        break
                    if child.restart_due is None:
                        if not self._may_restart(child):
                            died = child
                            too_often = (
                                f" after {child.restart.max_restarts} restarts within"
                                f" {child.restart.window_seconds:.0f}s"
                            )
                            break
                        print(
                            f"[{child.name}] exited with {child.process.returncode}; restarting",
                            flush=True,
                        )
                        child.restart_due = time.monotonic() + child.restart.backoff_seconds
                    elif time.monotonic() >= child.restart_due:
                        # What the dead replica started goes with it.
                        _signal_group(child.process, signal.SIGKILL)
                        child.restart_due = None
                        child.restarted_at.append(time.monotonic())
                        self._spawn(child)
                if died is None:
                    self._stopping.wait(self._poll_interval())
        except KeyboardInterrupt:
            pass
        finally:
            signal.signal(signal.SIGTERM, previous)
            if died is not None:
                print(
                    f"[{died.name}] exited on its own with code {died.process.returncode}"
                    f"{too_often}; stopping the stack",
                    flush=True,
                )
            self.stop_all()
        return 0 if died is None else 1

    @staticmethod
    def _may_restart(child: Child) -> bool:
        """Whether `child` is still within its restart budget over the policy's window."""
        assert child.restart is not None
        window_start = time.monotonic() - child.restart.window_seconds
        while child.restarted_at and child.restarted_at[0] < window_start:
            child.restarted_at.popleft()
        return len(child.restarted_at) < child.restart.max_restarts

    def _poll_interval(self) -> float:
        # A replica waiting out its back-off is brought back on time, not up to half a
        # second late.
        due = [c.restart_due for c in self.children if c.restart_due is not None]
        if not due:
            return 0.5
        return min(0.5, max(0.01, min(due) - time.monotonic()))

    def stop_all(self, grace: float = 15.0) -> None:
        """Interrupt every child as Ctrl-C would, then terminate, then kill what remains,
        down to what a child started and left behind."""
        self._stopping.set()
        for signum, wait in ((signal.SIGINT, grace), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            running = [c for c in reversed(self.children) if c.process and c.process.poll() is None]
            if not running:
                break
            for child in running:
                _signal_group(child.process, signum)
            deadline = time.monotonic() + wait
            for child in running:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
        # A child may exit and leave a process of its own running in its group (a code
        # server's gRPC server, say): nothing the stack started outlives it.
        for child in self.children:
            if child.process is not None:
                _signal_group(child.process, signal.SIGKILL)


def _signal_group(process: subprocess.Popen, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signum)
