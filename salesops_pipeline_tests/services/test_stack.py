"""The local stack's bookkeeping, without starting it: keys generated once and kept across
restarts, a refused start on busy ports, where a running stack is recorded, the supervisor's
exit code, and `scripts/run.sh` installing only when the packaging changed."""

import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading

import pytest

from salesops_pipeline.cli.main import _load_local_keys, main
from salesops_pipeline.devtools.stack import (
    StackAddresses,
    StackPorts,
    busy_ports,
    child_environment,
    load_local_keys,
    local_keys_path,
    resolve_stack_keys,
    running_stack,
    write_stack_file,
)
from salesops_pipeline.devtools.supervisor import Supervisor
from salesops_pipeline_tests.conftest import REPO_ROOT
from salesops_pipeline_tests.support.stack_process import free_port


def _restart_env(home) -> dict[str, str]:
    """The environment of a later `salesops dev`: the CLI loads the kept keys first."""
    return dict(load_local_keys(home))


def test_generated_keys_are_kept_across_restarts(isolated_home):
    first = resolve_stack_keys(isolated_home, {})
    assert {k.name: k.origin for k in first} == {
        "X_API_KEY": "generated",
        "REMOTE_API_KEY": "generated",
    }
    for _ in range(2):
        again = resolve_stack_keys(isolated_home, _restart_env(isolated_home))
        assert [(k.name, k.value) for k in again] == [(k.name, k.value) for k in first]
        assert {k.origin for k in again} == {"kept"}
    assert load_local_keys(isolated_home) == {k.name: k.value for k in first}
    assert stat.S_IMODE(local_keys_path(isolated_home).stat().st_mode) == 0o600


def test_keys_from_the_environment_win_and_are_not_written(isolated_home):
    kept = resolve_stack_keys(isolated_home, {})
    mine = resolve_stack_keys(isolated_home, {"X_API_KEY": "my-own-key"})
    assert {k.name: (k.value, k.origin) for k in mine}["X_API_KEY"] == ("my-own-key", "environment")
    # The kept key is still there for a later start without the variable.
    assert load_local_keys(isolated_home)["X_API_KEY"] == kept[0].value


def test_a_real_providers_key_is_never_made_up(isolated_home):
    keys = resolve_stack_keys(isolated_home, {"REMOTE_API_HOST": "https://api.example"})
    assert [k.name for k in keys] == ["X_API_KEY"]


def test_busy_ports_are_named():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        taken = listener.getsockname()[1]
        free = StackPorts(dagster=free_port(), intake=taken, sandbox=free_port())
        assert busy_ports("127.0.0.1", free) == [f"{taken} (intake)"]


def test_a_start_on_a_busy_port_is_refused_before_writing_anything(isolated_home, capsys):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        taken = listener.getsockname()[1]
        argv = ["dev", "--dagster-port", str(taken), "--intake-port", str(free_port())]
        assert main([*argv, "--sandbox-port", str(free_port())]) == 1
    err = capsys.readouterr().err.strip()
    assert f"port {taken} (Dagster UI) already in use" in err and len(err.splitlines()) == 1
    assert not isolated_home.exists()


def test_running_stack_is_found_only_while_its_process_lives(isolated_home):
    isolated_home.mkdir(parents=True)
    addresses = StackAddresses(os.getpid(), "http://h:1", "http://h:2", "http://h:3")
    write_stack_file(isolated_home, addresses)
    assert running_stack(isolated_home) == addresses
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    write_stack_file(isolated_home, StackAddresses(gone.pid, "a", "b", "c"))
    assert running_stack(isolated_home) is None


def test_supervisor_exits_non_zero_when_a_child_dies():
    supervisor = Supervisor()
    supervisor.start("short", [sys.executable, "-c", "raise SystemExit(3)"], dict(os.environ))
    assert supervisor.run_until_stopped() == 1


def test_supervisor_exits_zero_on_sigterm():
    supervisor = Supervisor()
    supervisor.start(
        "long", [sys.executable, "-c", "import time; time.sleep(60)"], dict(os.environ)
    )
    threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGTERM)).start()
    assert supervisor.run_until_stopped() == 0
    assert all(child.process.poll() is not None for child in supervisor.children)


@pytest.fixture
def project_copy(tmp_path):
    """The packaging files and scripts, with a stand-in virtualenv whose pip only logs."""
    copy = tmp_path / "project"
    (copy / "scripts").mkdir(parents=True)
    for name in ("setup.py", "pyproject.toml"):
        shutil.copy(REPO_ROOT / name, copy / name)
    for script in ("_venv.sh", "run.sh"):
        shutil.copy(REPO_ROOT / "scripts" / script, copy / "scripts" / script)
    bin_dir = copy / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    log = tmp_path / "calls.log"
    (bin_dir / "python").write_text(
        f'#!/bin/sh\nif [ "$1" = "-m" ] && [ "$2" = pip ]; then echo pip >> {log}; exit 0; fi\n'
        f'exec {sys.executable} "$@"\n'
    )
    (bin_dir / "salesops").write_text(f'#!/bin/sh\necho "salesops $*" >> {log}\n')
    for program in bin_dir.iterdir():
        program.chmod(0o755)
    return copy, log


def test_run_sh_installs_only_when_the_packaging_changed(project_copy):
    copy, log = project_copy

    def run() -> list[str]:
        subprocess.run(["bash", "scripts/run.sh", "--dagster-port", "3001"], cwd=copy, check=True)
        return log.read_text().splitlines()

    assert run() == ["pip", "salesops dev --dagster-port 3001"]
    assert run() == ["pip", "salesops dev --dagster-port 3001", "salesops dev --dagster-port 3001"]
    with (copy / "setup.py").open("a") as setup:
        setup.write("\n# a new dependency\n")
    assert run()[-2:] == ["pip", "salesops dev --dagster-port 3001"]


def test_each_part_of_the_stack_gets_only_the_secrets_it_needs():
    env = {
        "X_API_KEY": "intake-key",
        "REMOTE_API_KEY": "provider-key",
        "SALESOPS_WEBHOOK_SECRET": "signing-secret",
        "PATH": "/bin",
    }
    assert set(child_environment("intake", env)) == {
        "X_API_KEY",
        "SALESOPS_WEBHOOK_SECRET",
        "PATH",
    }
    assert set(child_environment("dagster", env)) == {"REMOTE_API_KEY", "PATH"}
    assert set(child_environment("sandbox", env)) == {"REMOTE_API_KEY", "PATH"}


@pytest.mark.parametrize(
    ("command", "loaded"),
    [
        ("serve", {"X_API_KEY"}),
        ("sandbox", {"REMOTE_API_KEY"}),
        ("duplicates", {"REMOTE_API_KEY"}),
        ("simulate", {"X_API_KEY", "REMOTE_API_KEY"}),
    ],
)
def test_commands_take_only_the_kept_keys_they_need(isolated_home, command, loaded):
    resolve_stack_keys(isolated_home, {})  # a stack generated and kept both keys
    _load_local_keys(command)
    assert {name for name in ("X_API_KEY", "REMOTE_API_KEY") if os.environ.get(name)} == loaded


def test_a_wrong_log_level_in_the_environment_is_one_clear_line(monkeypatch, capsys):
    monkeypatch.setenv("SALESOPS_LOG_LEVEL", "verbose")
    monkeypatch.setenv("X_API_KEY", "k")
    assert main(["serve", "--port", str(free_port())]) == 1
    err = capsys.readouterr().err.strip()
    assert "SALESOPS_LOG_LEVEL='verbose': expected one of debug, info" in err
    assert len(err.splitlines()) == 1
