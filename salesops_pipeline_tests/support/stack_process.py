"""Running the whole local stack as a child process (`salesops dev`), for end-to-end checks
and benchmarks, and stopping it without leaving anything behind."""

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

from salesops_pipeline.devtools.stack import load_local_keys

# Settings of the developer's own environment that must not leak into a test stack.
_STACK_SETTINGS = ("SALESOPS_", "REMOTE_API_", "X_API_KEY", "DAGSTER_HOME")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def refused_port():
    """A loopback port where connections are refused for as long as the block lasts. A port
    that was merely free a moment ago may be taken meanwhile by a server another test starts;
    this one stays bound, never listening."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        yield held.getsockname()[1]


def free_consecutive_ports(count: int, attempts: int = 50) -> int:
    """The first of `count` consecutive ports that are all free now (intake replicas)."""
    for _ in range(attempts):
        first = free_port()
        if first + count - 1 > 65535:
            continue
        try:
            with contextlib.ExitStack() as held:
                for port in range(first + 1, first + count):
                    probe = held.enter_context(socket.socket())
                    probe.bind(("127.0.0.1", port))
        except OSError:
            continue  # one of them is taken: look elsewhere
        return first
    raise RuntimeError(f"no {count} consecutive free ports found in {attempts} attempts")


def port_open(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class RunningStack:
    process: subprocess.Popen
    home: Path
    dagster_port: int
    intake_port: int
    sandbox_port: int
    intake_key: str
    provider_key: str
    output: list[str] = field(default_factory=list)
    intake_replicas: int = 1

    @property
    def dagster_url(self) -> str:
        return f"http://127.0.0.1:{self.dagster_port}"

    @property
    def intake_url(self) -> str:
        return f"http://127.0.0.1:{self.intake_port}"

    @property
    def intake_ports(self) -> list[int]:
        return [self.intake_port + n for n in range(self.intake_replicas)]

    @property
    def intake_urls(self) -> list[str]:
        """Every intake replica; the first is `intake_url`."""
        return [f"http://127.0.0.1:{port}" for port in self.intake_ports]

    @property
    def sandbox_url(self) -> str:
        return f"http://127.0.0.1:{self.sandbox_port}"

    def graphql(self, query: str, variables: dict | None = None) -> dict:
        response = requests.post(
            f"{self.dagster_url}/graphql",
            json={"query": query, "variables": variables or {}},
            timeout=30,
        )
        response.raise_for_status()
        body = response.json()
        assert "errors" not in body, body["errors"]
        return body["data"]

    def ports(self) -> list[int]:
        return [self.dagster_port, *self.intake_ports, self.sandbox_port]


# Free ports found before the stack binds them may be taken meanwhile by another test process.
_PORT_ATTEMPTS = 3


def start_stack(
    home: Path,
    startup_timeout: float = 240.0,
    *,
    generate_keys: bool = False,
    settings: dict[str, str] | None = None,
    intake_replicas: int = 1,
) -> RunningStack:
    """Start `salesops dev` on free ports with its own SALESOPS_HOME (and `settings`, such as
    SALESOPS_POST_CALL_LANES, in its environment), with `intake_replicas` intake processes.

    Keys are fresh ones given in the environment, or, with `generate_keys`, the ones the stack
    generates (or kept from an earlier start under the same home), read back once it is up.
    A start refused because a port was taken in the meantime is tried again on other ports.
    """
    arguments = (home, startup_timeout, generate_keys, settings, intake_replicas)
    for _ in range(_PORT_ATTEMPTS - 1):
        with contextlib.suppress(PortTaken):
            return _start_stack_once(*arguments)
    return _start_stack_once(*arguments)


def _stack_ports(intake_replicas: int) -> dict[str, int]:
    """Free ports for each part, none of them inside the intake replicas' range."""
    while True:
        ports = {
            "dagster": free_port(),
            "intake": free_consecutive_ports(intake_replicas),
            "sandbox": free_port(),
        }
        taken = [ports["dagster"], ports["sandbox"]]
        taken += range(ports["intake"], ports["intake"] + intake_replicas)
        if len(set(taken)) == len(taken):
            return ports


class PortTaken(RuntimeError):
    """The stack refused to start: one of the free ports found for it was taken meanwhile."""


def _start_stack_once(
    home: Path,
    startup_timeout: float,
    generate_keys: bool,
    settings: dict[str, str] | None,
    intake_replicas: int,
) -> RunningStack:
    ports = _stack_ports(intake_replicas)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(_STACK_SETTINGS)},
        "SALESOPS_HOME": str(home),
        "PYTHONUNBUFFERED": "1",
        # Warm post-call runs whatever the hour the tests run at; a test may ask otherwise.
        "SALESOPS_POST_CALL_WARM_HOURS": "always",
        **(settings or {}),
    }
    if not generate_keys:
        env["X_API_KEY"] = secrets.token_urlsafe(24)
        env["REMOTE_API_KEY"] = secrets.token_urlsafe(24)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "salesops_pipeline.cli",
            "dev",
            "--dagster-port",
            str(ports["dagster"]),
            "--intake-port",
            str(ports["intake"]),
            "--sandbox-port",
            str(ports["sandbox"]),
            "--intake-replicas",
            str(intake_replicas),
            # All of Dagster's output, for the log a failed test leaves behind.
            "--verbose",
        ],
        env=env,
        cwd=home.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    stack = RunningStack(
        process,
        home,
        ports["dagster"],
        ports["intake"],
        ports["sandbox"],
        env.get("X_API_KEY", ""),
        env.get("REMOTE_API_KEY", ""),
        intake_replicas=intake_replicas,
    )
    up = threading.Event()

    def read_output():
        for line in process.stdout:
            stack.output.append(line)
            if "salesops local stack is up" in line:
                up.set()

    reader = threading.Thread(target=read_output, daemon=True)
    reader.start()
    deadline = time.monotonic() + startup_timeout
    while not up.wait(0.5):
        if process.poll() is not None or time.monotonic() > deadline:
            stop_stack(stack)
            reader.join(timeout=5)  # the last lines say why
            tail = "".join(stack.output[-40:])
            if "already in use" in tail:
                raise PortTaken(tail)
            raise RuntimeError("the stack did not start:\n" + tail)
    if generate_keys:
        kept = load_local_keys(home)
        stack.intake_key, stack.provider_key = kept["X_API_KEY"], kept["REMOTE_API_KEY"]
    return stack


def stop_stack(stack: RunningStack, timeout: float = 60.0) -> None:
    """SIGTERM, as a service manager would; then make sure nothing is left behind."""
    if stack.process.poll() is None:
        stack.process.send_signal(signal.SIGTERM)
        try:
            stack.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(stack.process.pid, signal.SIGKILL)
            stack.process.wait()
