"""The test hosts themselves: a partition loses packets rather than refusing them, no address
of theirs exists outside their namespaces, and nothing of them outlives a test, even one that
fails or a run that was killed."""

import errno
import os
import socket
import subprocess
import sys
import time

import pytest

from salesops_pipeline_tests.support import netns

_SERVER = """
import socket
server = socket.create_server(("0.0.0.0", 9000))
while True:
    conn, _ = server.accept()
    conn.sendall(b"hello")
    conn.close()
"""


@pytest.fixture(autouse=True)
def _root_only():
    reason = netns.unavailable()
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"the multi-host suite cannot run: {reason}")
        pytest.skip(reason)


def _greeting(host: netns.Host, address: str, timeout: float = 2.0) -> str:
    """What `host` reads from the server at `address`, or the error it gets."""
    script = (
        "import socket, sys\n"
        "try:\n"
        f"    print(socket.create_connection(({address!r}, 9000), timeout={timeout})"
        ".recv(16).decode())\n"
        "except TimeoutError:\n"
        "    print('TimeoutError')\n"
        "except OSError as error:\n"
        "    print(f'{type(error).__name__}: {error}')\n"
    )
    return subprocess.run(
        host.argv(sys.executable, "-c", script), capture_output=True, text=True, timeout=30
    ).stdout.strip()


def test_a_link_down_partitions_two_hosts_and_only_them(tmp_path):
    with netns.Network() as network:
        database, client = network.add_host("db"), network.add_host("client")
        network.connect(client, database)
        network.start(
            database, [sys.executable, "-c", _SERVER], env={}, log=tmp_path / "db.log", cwd=None
        )
        time.sleep(0.5)
        own_link = client.address_towards("db")
        assert _greeting(client, own_link) == "hello"
        network.set_link(client, database, up=False)
        # Lost, not refused: the client waits out its timeout, as across a real partition.
        assert _greeting(client, own_link) == "TimeoutError"
        assert _greeting(client, database.address) == "hello"  # the LAN still works
        network.set_link(client, database, up=True)
        # The link's carrier and the hosts' neighbour entries take a moment to come back.
        deadline = time.monotonic() + 10
        while (greeting := _greeting(client, own_link)) != "hello":
            assert time.monotonic() < deadline, f"the healed link still fails: {greeting}"
            time.sleep(0.2)


def test_no_address_of_the_hosts_exists_outside_their_namespaces():
    with netns.Network() as network:
        host = network.add_host("db")
        outside = subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True).stdout
        assert network.prefix + "." not in outside
        with network.enter(network.add_host("operator")):
            inside = subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True).stdout
            assert network.prefix + "." in inside
            probe = socket.socket()
            probe.settimeout(2)
            # Reached from the operator's host: the host itself refuses, nothing listens there.
            assert probe.connect_ex((host.address, 9)) == errno.ECONNREFUSED
            probe.close()


def test_everything_is_removed_even_when_the_test_fails(tmp_path):
    with pytest.raises(RuntimeError, match="the scenario failed"):
        with netns.Network() as network:
            host = network.add_host("db")
            server = network.start(
                host, [sys.executable, "-c", _SERVER], env={}, log=tmp_path / "db.log", cwd=None
            )
            raise RuntimeError("the scenario failed")
    assert network.leftovers() == []
    assert server.poll() is not None


def test_what_a_killed_run_left_is_swept_by_the_next():
    orphan = subprocess.Popen(["true"])
    orphan.wait()  # its pid is gone, as a killed run's would be
    name = f"{netns.NAMESPACE_PREFIX}{orphan.pid}n0-db"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        removed = netns.sweep_stale()
        assert name in removed
        listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        assert name not in listed
    finally:
        subprocess.run(["ip", "netns", "delete", name], capture_output=True)
