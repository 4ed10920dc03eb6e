"""What live progress costs the long commands: `salesops duplicates` (both campaigns from the
sandbox provider) and `salesops demo-db`, as whole processes, with stderr a terminal (progress
drawn) against stderr piped (no progress: the baseline). Goal: no measurable difference."""

import os
import subprocess
import tempfile
from functools import partial

from benchmarks.bench_cli import _salesops
from benchmarks.bench_ingestion import KEY, _sandbox, _seed
from benchmarks.common import Case, cache_dir, compare, measure, prepared, server_process

Command = tuple[list[str], dict[str, str]]


def _command(argv: list[str], env: dict[str, str], params: dict) -> Command:
    return argv, env


def run_piped(command: Command) -> int:
    argv, env = command
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return 0


def run_on_terminal(command: Command) -> int:
    """The command with stderr on a pseudo-terminal, read to the end as a terminal would."""
    argv, env = command
    leader, follower = os.openpty()
    process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=follower)
    os.close(follower)
    drawn = 0
    while True:
        try:
            chunk = os.read(leader, 1 << 16)
        except OSError:  # the command closed its end
            break
        if not chunk:
            break
        drawn += len(chunk)
    os.close(leader)
    if process.wait() != 0:
        raise RuntimeError(f"{argv[1:3]} failed")
    return drawn


def _pair(name: str, argv: list[str], env: dict[str, str], repeat: int):
    # A partial of a module-level function: the case travels to its own process by pickling.
    setup = partial(_command, argv, env)
    return [
        measure(Case(f"{name}, piped (no progress)", setup, run_piped, baseline=True), {}, repeat),
        measure(Case(f"{name}, on a terminal (progress)", setup, run_on_terminal), {}, repeat),
    ]


def main(scale: int, repeat: int) -> str:
    salesops = _salesops()
    contacts = min(scale, 200_000)
    sessions = min(scale, 200_000)
    home = (cache_dir() / f"provider-{contacts}").absolute()
    prepared(_seed, home / "sandbox" / "provider.sqlite", contacts)
    env = {**os.environ, "SALESOPS_HOME": str(home), "REMOTE_API_KEY": KEY}
    sandbox_argv, sandbox_url = _sandbox(home, 1_000)
    with server_process(sandbox_argv, env, f"{sandbox_url}/healthz"):
        client_env = {**env, "REMOTE_API_HOST": sandbox_url}
        duplicates = _pair("duplicates", [salesops, "duplicates"], client_env, repeat)
    with tempfile.TemporaryDirectory() as scratch:
        demo = [
            salesops,
            "demo-db",
            "--sessions",
            str(sessions),
            "--path",
            f"{scratch}/demo.sqlite",
        ]
        demo_db = _pair("demo-db", demo, dict(os.environ), repeat)
    drawn = duplicates[1].result
    if not drawn:
        raise RuntimeError("no progress was drawn on the terminal")
    return "\n".join(
        [
            compare(
                f"Progress: salesops duplicates, 2 × {contacts:,} contacts from the sandbox",
                duplicates,
                2 * contacts,
                "contacts",
                "The terminal run drew the progress (its last run wrote"
                f" {drawn:,} bytes to the terminal); the piped run drew none.",
            ),
            compare(
                f"Progress: salesops demo-db, {sessions:,} sessions",
                demo_db,
                sessions,
                "sessions",
            ),
        ]
    )
