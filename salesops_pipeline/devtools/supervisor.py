"""Starting, watching and stopping the local stack's processes together."""

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import requests


@dataclass
class Child:
    name: str
    argv: Sequence[str]
    env: dict[str, str]
    process: subprocess.Popen | None = field(default=None, repr=False)


class Supervisor:
    """Runs children with labelled output; when one stops, or on Ctrl-C/SIGTERM, stops all."""

    def __init__(self):
        self.children: list[Child] = []
        self._stopping = threading.Event()

    def start(self, name: str, argv: Sequence[str], env: dict[str, str]) -> Child:
        # A shell starts background jobs with Ctrl-C ignored, and children inherit that; with a
        # handler installed here instead, each child starts with the default and can be
        # interrupted cleanly.
        if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
            signal.signal(signal.SIGINT, signal.default_int_handler)
        child = Child(name, argv, env)
        # Own process group: stopping a child stops what it started too (dagster dev's
        # webserver and daemon), and nothing is left behind.
        child.process = subprocess.Popen(  # noqa: S603 - argv built by the caller, no shell
            list(argv),
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            text=True,
            bufsize=1,
        )
        threading.Thread(target=self._relay, args=(child,), daemon=True).start()
        self.children.append(child)
        return child

    @staticmethod
    def _relay(child: Child) -> None:
        assert child.process is not None and child.process.stdout is not None
        for line in child.process.stdout:
            sys.stdout.write(f"[{child.name}] {line}")
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
        raise RuntimeError(f"{child.name} did not answer at {url} within {timeout:.0f}s")

    def run_until_stopped(self) -> int:
        """Wait until a child exits or a stop is requested; then stop every child.

        Returns 0 when asked to stop (Ctrl-C, SIGTERM) and 1 when a child died on its own,
        so that a service manager or a script sees the failure.
        """
        previous = signal.signal(signal.SIGTERM, lambda *_: self._stopping.set())
        died: Child | None = None
        try:
            while not self._stopping.is_set() and died is None:
                died = next(
                    (c for c in self.children if c.process and c.process.poll() is not None),
                    None,
                )
                self._stopping.wait(0.5)
        except KeyboardInterrupt:
            pass
        finally:
            signal.signal(signal.SIGTERM, previous)
            if died is not None:
                print(
                    f"[{died.name}] exited on its own with code {died.process.returncode};"
                    " stopping the stack",
                    flush=True,
                )
            self.stop_all()
        return 0 if died is None else 1

    def stop_all(self, grace: float = 15.0) -> None:
        """Interrupt every child as Ctrl-C would, then terminate, then kill what remains."""
        for signum, wait in ((signal.SIGINT, grace), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            running = [c for c in reversed(self.children) if c.process and c.process.poll() is None]
            if not running:
                return
            for child in running:
                _signal_group(child.process, signum)
            deadline = time.monotonic() + wait
            for child in running:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    child.process.wait(timeout=max(0.1, deadline - time.monotonic()))


def _signal_group(process: subprocess.Popen, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signum)
