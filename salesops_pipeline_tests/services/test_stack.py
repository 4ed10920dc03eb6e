"""The local stack's bookkeeping, without starting it whole: keys generated once and kept
across restarts, a refused start on busy ports, where a running stack is recorded, the
supervisor's exit code and its restarts of intake replicas, the Dagster instance chosen, and
`scripts/run.sh` installing only when the packaging changed."""

import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from importlib import resources

import pytest
import requests
import yaml

from salesops_pipeline.cli.main import _load_local_keys, main
from salesops_pipeline.devtools.stack import (
    StackAddresses,
    StackKey,
    StackPorts,
    banner,
    busy_ports,
    child_environment,
    install_instance,
    load_local_keys,
    local_keys_path,
    resolve_stack_keys,
    running_stack,
    stack_file_path,
    start_intake_replicas,
    write_stack_file,
)
from salesops_pipeline.devtools.supervisor import RestartPolicy, Supervisor
from salesops_pipeline_tests.conftest import REPO_ROOT
from salesops_pipeline_tests.support.stack_process import free_consecutive_ports, free_port


def _restart_env(home) -> dict[str, str]:
    """The environment of a later `salesops dev`: the CLI loads the kept keys first."""
    return dict(load_local_keys(home))


def test_generated_keys_are_kept_across_restarts(isolated_home):
    first = resolve_stack_keys(isolated_home, {})
    assert {k.name: k.origin for k in first} == {
        "X_API_KEY": "generated",
        "REMOTE_API_KEY": "generated",
        "SALESOPS_METRICS_TOKEN": "generated",
    }
    # Three different keys: the metrics token reads /metrics and nothing else.
    assert len({k.value for k in first}) == 3
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
    assert [k.name for k in keys] == ["X_API_KEY", "SALESOPS_METRICS_TOKEN"]


def test_busy_ports_are_named():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        taken = listener.getsockname()[1]
        free = StackPorts(dagster=free_port(), intake=taken, sandbox=free_port())
        assert busy_ports("127.0.0.1", free) == [f"{taken} (intake)"]


def test_with_a_real_provider_the_sandbox_port_is_not_checked(monkeypatch):
    # No sandbox is started then: its port being taken stops nothing.
    monkeypatch.setenv("REMOTE_API_HOST", "https://api.example")
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        taken = listener.getsockname()[1]
        ports = StackPorts(dagster=free_port(), intake=free_port(), sandbox=taken)
        assert busy_ports("127.0.0.1", ports) == []
        monkeypatch.delenv("REMOTE_API_HOST")
        assert busy_ports("127.0.0.1", ports) == [f"{taken} (sandbox)"]


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


def _running(pid: int) -> bool:
    """Alive and not a zombie waiting for a parent to reap it."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def test_stopping_leaves_nothing_a_child_started_behind(tmp_path):
    pid_file = tmp_path / "grandchild.pid"
    stubborn = (
        "import signal, time; signal.signal(signal.SIGINT, signal.SIG_IGN);"
        " signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(120)"
    )
    # A child that exits at Ctrl-C, leaving behind a process of its own that ignores it.
    child = (
        f"import pathlib, subprocess, sys, time; p = subprocess.Popen([sys.executable, '-c',"
        f" {stubborn!r}]); pathlib.Path({str(pid_file)!r}).write_text(str(p.pid)); time.sleep(120)"
    )
    supervisor = Supervisor()
    supervisor.start("parent", [sys.executable, "-c", child], dict(os.environ))
    deadline = time.monotonic() + 30
    while not (pid_file.exists() and pid_file.read_text()):
        assert time.monotonic() < deadline, "the child never started its own process"
        time.sleep(0.1)
    grandchild = int(pid_file.read_text())
    supervisor.request_stop()
    assert supervisor.run_until_stopped() == 0
    deadline = time.monotonic() + 5
    while _running(grandchild) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _running(grandchild)


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
        "SALESOPS_METRICS_TOKEN": "metrics-token",
        "SALESOPS_DATABASE_URL": "postgresql://salesops:password@db/salesops",
        "PATH": "/bin",
    }
    assert set(child_environment("intake", env)) == {
        "X_API_KEY",
        "SALESOPS_WEBHOOK_SECRET",
        "SALESOPS_METRICS_TOKEN",
        "SALESOPS_DATABASE_URL",
        "PATH",
    }
    assert set(child_environment("dagster", env)) == {
        "REMOTE_API_KEY",
        "SALESOPS_DATABASE_URL",
        "PATH",
    }
    assert set(child_environment("sandbox", env)) == {"REMOTE_API_KEY", "PATH"}


@pytest.mark.parametrize(
    ("command", "loaded"),
    [
        ("serve", {"X_API_KEY", "SALESOPS_METRICS_TOKEN"}),
        ("sandbox", {"REMOTE_API_KEY"}),
        ("duplicates", {"REMOTE_API_KEY"}),
        ("simulate", {"X_API_KEY", "REMOTE_API_KEY"}),
    ],
)
def test_commands_take_only_the_kept_keys_they_need(isolated_home, command, loaded):
    resolve_stack_keys(isolated_home, {})  # a stack generated and kept its keys
    _load_local_keys(command)
    names = ("X_API_KEY", "REMOTE_API_KEY", "SALESOPS_METRICS_TOKEN")
    assert {name for name in names if os.environ.get(name)} == loaded


def test_a_wrong_log_level_in_the_environment_is_one_clear_line(monkeypatch, capsys):
    monkeypatch.setenv("SALESOPS_LOG_LEVEL", "verbose")
    monkeypatch.setenv("X_API_KEY", "k")
    assert main(["serve", "--port", str(free_port())]) == 1
    err = capsys.readouterr().err.strip()
    assert "SALESOPS_LOG_LEVEL='verbose': expected one of debug, info" in err
    assert len(err.splitlines()) == 1


def _listening() -> socket.socket:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    return listener


def test_intake_replicas_are_named_and_checked_on_consecutive_ports():
    first = free_consecutive_ports(3)
    with _listening() as dagster:
        taken = dagster.getsockname()[1]
        ports = StackPorts(dagster=taken, intake=first, sandbox=free_port(), intake_replicas=3)
        assert ports.intake_ports == [first, first + 1, first + 2]
        assert busy_ports("127.0.0.1", ports) == [f"{taken} (Dagster UI)"]


def test_a_busy_replica_port_is_refused_naming_intake_replicas(isolated_home, capsys):
    first = free_consecutive_ports(2)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", first + 1))
        listener.listen()
        argv = ["dev", "--intake-port", str(first), "--intake-replicas", "2"]
        argv += ["--dagster-port", str(free_port()), "--sandbox-port", str(free_port())]
        assert main(argv) == 1
    [line] = capsys.readouterr().err.strip().splitlines()
    assert f"port {first + 1} (intake-2) already in use" in line
    assert "--intake-replicas" in line and "--intake-port" in line
    assert not isolated_home.exists()


def test_replicas_running_into_another_part_are_refused(isolated_home, capsys):
    sandbox = free_port()
    argv = ["dev", "--intake-port", str(sandbox - 1), "--intake-replicas", "2"]
    assert main([*argv, "--sandbox-port", str(sandbox), "--dagster-port", str(free_port())]) == 1
    [line] = capsys.readouterr().err.strip().splitlines()
    assert f"port {sandbox} is given to both intake-2 and sandbox" in line
    assert "--intake-replicas" in line
    assert not isolated_home.exists()


def test_intake_replicas_must_be_positive(capsys):
    with pytest.raises(SystemExit):
        main(["dev", "--intake-replicas", "0"])
    assert "--intake-replicas: must be 1 or more" in capsys.readouterr().err


def test_a_database_url_that_is_not_postgresql_is_one_clear_line(
    isolated_home, monkeypatch, capsys
):
    monkeypatch.setenv("SALESOPS_DATABASE_URL", "mysql://db/salesops")
    argv = ["dev", "--intake-port", str(free_port()), "--dagster-port", str(free_port())]
    assert main([*argv, "--sandbox-port", str(free_port())]) == 1
    [line] = capsys.readouterr().err.strip().splitlines()
    assert "SALESOPS_DATABASE_URL must be a postgresql:// URL" in line
    assert not isolated_home.exists()


@pytest.mark.parametrize(
    "name, value, expected",
    [
        ("SALESOPS_POST_CALL_LANES", "0", "SALESOPS_POST_CALL_LANES='0': expected a whole number"),
        ("SALESOPS_POST_CALL_RUNS", "9", "runs must be a whole number from 1 to the number"),
        ("SALESOPS_POST_CALL_IDLE_SECONDS", "-5", "SALESOPS_POST_CALL_IDLE_SECONDS='-5'"),
        ("SALESOPS_POST_CALL_WARM_HOURS", "20:00-20:00", "the window 20:00-20:00 is empty"),
        ("SALESOPS_POST_CALL_WARM_HOURS", "nine to five", "expected 'always', 'never' or"),
    ],
)
def test_post_call_settings_that_make_no_sense_stop_the_start_in_one_line(
    isolated_home, monkeypatch, capsys, name, value, expected
):
    monkeypatch.setenv(name, value)
    argv = ["dev", "--intake-port", str(free_port()), "--dagster-port", str(free_port())]
    assert main([*argv, "--sandbox-port", str(free_port())]) == 1
    [line] = capsys.readouterr().err.strip().splitlines()
    assert expected in line
    assert not isolated_home.exists()


def test_the_definitions_refuse_to_load_with_such_settings(monkeypatch):
    monkeypatch.setenv("SALESOPS_POST_CALL_WARM_HOURS", "always")
    monkeypatch.setenv("SALESOPS_POST_CALL_IDLE_SECONDS", "0")
    result = subprocess.run(
        [sys.executable, "-c", "import salesops_pipeline.definitions"],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        timeout=120,
    )
    assert result.returncode != 0
    assert "idle_seconds 0 (one pass per run) cannot keep runs warm" in result.stderr


def test_stack_file_lists_every_intake_and_an_older_one_still_loads(isolated_home):
    isolated_home.mkdir(parents=True)
    urls = ["http://h:8020", "http://h:8021"]
    write_stack_file(isolated_home, StackAddresses(os.getpid(), "http://h:1", urls[0], "p", urls))
    assert json.loads(stack_file_path(isolated_home).read_text())["intake_urls"] == urls
    assert running_stack(isolated_home).all_intake_urls() == urls

    # As written by a stack started before replicas existed.
    older = {"pid": os.getpid(), "dagster_url": "d", "intake_url": "http://h:8020"}
    stack_file_path(isolated_home).write_text(json.dumps({**older, "provider_url": "p"}))
    found = running_stack(isolated_home)
    assert found.intake_urls == [] and found.all_intake_urls() == ["http://h:8020"]


def _banner(addresses: StackAddresses, database_url: str | None) -> str:
    key = StackKey("X_API_KEY", "k", "environment")
    return "\n".join(banner(addresses, REPO_ROOT, REPO_ROOT / "sales.sqlite", database_url, [key]))


def test_banner_lists_every_replica_and_says_when_several_hosts_need_a_database():
    urls = ["http://h:8020", "http://h:8021", "http://h:8022"]
    several = StackAddresses(1, "http://h:3000", urls[0], "http://h:8010", urls)
    shown = _banner(several, None)
    assert "Intake replicas   http://h:8020 http://h:8021 http://h:8022" in shown
    [note] = [line for line in shown.splitlines() if "SALESOPS_DATABASE_URL" in line]
    assert "several hosts" in note

    on_postgres = _banner(several, "postgresql://salesops:hunter2@db:5432/salesops")
    assert "SALESOPS_DATABASE_URL" not in on_postgres and "hunter2" not in on_postgres
    assert "postgresql://***@db:5432/salesops" in on_postgres

    alone = _banner(StackAddresses(1, "http://h:3000", urls[0], "http://h:8010", urls[:1]), None)
    assert "replicas" not in alone and "SALESOPS_DATABASE_URL" not in alone


class _RecordingSupervisor(Supervisor):
    """Records what would be started, and answers every health check at once."""

    def __init__(self):
        super().__init__()
        self.started: list[tuple[str, list[str], RestartPolicy | None]] = []
        self.waited: list[str] = []

    def start(self, name, argv, env, *, restart=None):
        self.started.append((name, list(argv), restart))

    def wait_http(self, child, url, timeout=60.0):
        self.waited.append(url)


@pytest.mark.parametrize("replicas", [1, 3])
def test_intake_replicas_are_started_on_their_ports_and_restarted_only_beside_others(replicas):
    supervisor = _RecordingSupervisor()
    ports = StackPorts(intake=9100, intake_replicas=replicas)
    start_intake_replicas(supervisor, ["salesops"], {}, "127.0.0.1", ports)
    names = [name for name, _, _ in supervisor.started]
    assert names == ["intake", "intake-2", "intake-3"][:replicas]
    assert [argv[argv.index("--port") + 1] for _, argv, _ in supervisor.started] == [
        str(9100 + n) for n in range(replicas)
    ]
    assert supervisor.waited == [f"http://127.0.0.1:{9100 + n}/healthz" for n in range(replicas)]
    policies = {policy for _, _, policy in supervisor.started}
    # A lone intake dying stops the stack, as it always has: nothing else takes webhooks.
    assert policies == ({None} if replicas == 1 else {RestartPolicy()})


def test_a_replica_that_keeps_dying_stops_the_stack_after_its_restarts(capsys):
    supervisor = Supervisor()
    policy = RestartPolicy(backoff_seconds=0.05, max_restarts=3, window_seconds=60)
    supervisor.start(
        "intake", [sys.executable, "-c", "import time; time.sleep(60)"], dict(os.environ)
    )
    supervisor.start(
        "intake-2", [sys.executable, "-c", "raise SystemExit(3)"], dict(os.environ), restart=policy
    )
    started = time.monotonic()
    assert supervisor.run_until_stopped() == 1
    assert time.monotonic() - started < 10
    out = capsys.readouterr().out
    assert out.count("[intake-2] exited with 3; restarting") == 3
    assert "[intake-2] exited on its own with code 3 after 3 restarts within 60s" in out
    assert all(child.process.poll() is not None for child in supervisor.children)


def test_restarts_older_than_the_window_do_not_count(capsys):
    supervisor = Supervisor()
    # One restart a fifth of a second at most; the child lives longer than that each time.
    policy = RestartPolicy(backoff_seconds=0.05, max_restarts=1, window_seconds=0.2)
    supervisor.start(
        "intake-2",
        [sys.executable, "-c", "import time; time.sleep(0.3); raise SystemExit(3)"],
        dict(os.environ),
        restart=policy,
    )
    threading.Timer(2.0, supervisor.request_stop).start()
    assert supervisor.run_until_stopped() == 0
    assert capsys.readouterr().out.count("[intake-2] exited with 3; restarting") >= 2


def _healthy(port: int) -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
    except requests.RequestException:
        return False


def test_a_killed_replica_is_restarted_while_the_other_keeps_serving(isolated_home, capsys):
    """Two real intake processes: `kill -9` of the second brings it back on its port, and the
    first never stops answering."""
    first = free_consecutive_ports(2)
    ports = StackPorts(intake=first, intake_replicas=2)
    env = {**os.environ, "X_API_KEY": "replica-key", "PYTHONUNBUFFERED": "1"}
    supervisor = Supervisor()
    cli = [sys.executable, "-m", "salesops_pipeline.cli"]
    seen: dict[str, object] = {}

    def kill_second_and_watch():
        try:
            one, two = supervisor.children
            killed, kept = two.process.pid, one.process.pid
            os.kill(killed, signal.SIGKILL)
            deadline = time.monotonic() + 15
            first_always_answered = True
            while time.monotonic() < deadline:
                first_always_answered &= _healthy(first)
                if two.process.pid != killed and _healthy(first + 1):
                    break
                time.sleep(0.1)
            seen.update(
                restarted=two.process.pid != killed and _healthy(first + 1),
                first_always_answered=first_always_answered,
                first_kept=one.process.pid == kept and one.process.poll() is None,
            )
        finally:
            supervisor.request_stop()

    try:
        start_intake_replicas(supervisor, cli, env, "127.0.0.1", ports)
    except RuntimeError:
        supervisor.stop_all()
        raise
    assert _healthy(first) and _healthy(first + 1)
    watcher = threading.Thread(target=kill_second_and_watch)
    watcher.start()
    assert supervisor.run_until_stopped() == 0
    watcher.join()
    assert seen == {"restarted": True, "first_always_answered": True, "first_kept": True}
    assert "[intake-2] exited with -9; restarting" in capsys.readouterr().out
    assert all(child.process.poll() is not None for child in supervisor.children)


def test_the_shared_database_selects_the_shipped_postgres_instance(
    isolated_home, tmp_path, monkeypatch
):
    shipped = resources.files("salesops_pipeline.deploy")
    home = tmp_path / "dagster"
    install_instance(home)
    assert (home / "dagster.yaml").read_text() == shipped.joinpath("dagster.yaml").read_text()

    monkeypatch.setenv("SALESOPS_DATABASE_URL", "postgresql://salesops@db/salesops")
    install_instance(home)
    installed = yaml.safe_load((home / "dagster.yaml").read_text())
    assert installed["storage"] == {"postgres": {"postgres_url": {"env": "SALESOPS_DATABASE_URL"}}}

    # An instance named explicitly still wins.
    mine = tmp_path / "mine.yaml"
    mine.write_text("telemetry:\n  enabled: false\n")
    monkeypatch.setenv("SALESOPS_DAGSTER_YAML", str(mine))
    install_instance(home)
    assert (home / "dagster.yaml").read_text() == mine.read_text()


def test_the_database_instance_runs_as_the_postgres_one_does():
    """Same run queue, run monitoring and retries: only where the instance is stored differs."""
    shipped = resources.files("salesops_pipeline.deploy")
    by_url, by_parts = (
        yaml.safe_load(shipped.joinpath(name).read_text())
        for name in ("dagster.database.yaml", "dagster.postgres.yaml")
    )
    assert by_url.pop("storage") != by_parts.pop("storage")
    assert by_url == by_parts


def test_a_sorted_childs_way_down_stays_off_the_console(capsys):
    # Each child prints a line at start and a traceback when interrupted: the sorted one (as
    # Dagster is) goes quiet once the stack stops, the others are shown whole.
    child = (
        "import time\nprint('up', flush=True)\ntry:\n    time.sleep(60)\n"
        "except KeyboardInterrupt:\n    print('Traceback: interrupted', flush=True)\n"
    )
    supervisor = Supervisor()
    sorted_child = supervisor.start(
        "sorted", [sys.executable, "-c", child], dict(os.environ), shows=lambda line: True
    )
    plain = supervisor.start("plain", [sys.executable, "-c", child], dict(os.environ))
    deadline, seen = time.monotonic() + 30, ""
    while seen.count("] up") < 2 and time.monotonic() < deadline:
        seen += capsys.readouterr().out
        time.sleep(0.1)
    assert "[sorted] up" in seen and "[plain] up" in seen  # shown while the stack runs
    supervisor.stop_all()
    for child in (sorted_child, plain):
        child.process.wait(timeout=10)
    time.sleep(0.5)  # the relays' last lines
    out = capsys.readouterr().out
    assert "[plain] Traceback: interrupted" in out
    assert "[sorted] Traceback" not in out
