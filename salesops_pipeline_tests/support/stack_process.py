"""Running the whole local stack as a child process (`salesops dev`), for end-to-end checks
and benchmarks, and stopping it without leaving anything behind."""

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

    @property
    def dagster_url(self) -> str:
        return f"http://127.0.0.1:{self.dagster_port}"

    @property
    def intake_url(self) -> str:
        return f"http://127.0.0.1:{self.intake_port}"

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
        return [self.dagster_port, self.intake_port, self.sandbox_port]


def start_stack(
    home: Path,
    startup_timeout: float = 240.0,
    *,
    generate_keys: bool = False,
    settings: dict[str, str] | None = None,
) -> RunningStack:
    """Start `salesops dev` on free ports with its own SALESOPS_HOME (and `settings`, such as
    SALESOPS_POST_CALL_LANES, in its environment).

    Keys are fresh ones given in the environment, or, with `generate_keys`, the ones the stack
    generates (or kept from an earlier start under the same home), read back once it is up.
    """
    ports = {"dagster": free_port(), "intake": free_port(), "sandbox": free_port()}
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(_STACK_SETTINGS)},
        "SALESOPS_HOME": str(home),
        "PYTHONUNBUFFERED": "1",
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
    )
    up = threading.Event()

    def read_output():
        for line in process.stdout:
            stack.output.append(line)
            if "salesops local stack is up" in line:
                up.set()

    threading.Thread(target=read_output, daemon=True).start()
    deadline = time.monotonic() + startup_timeout
    while not up.wait(0.5):
        if process.poll() is not None or time.monotonic() > deadline:
            stop_stack(stack)
            raise RuntimeError("the stack did not start:\n" + "".join(stack.output[-40:]))
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
