"""The fault proxy of the multi-host tests over loopback, in front of an echo server: bytes pass
unchanged, and latency, stalls, resets and refusals do what the multi-host scenarios rely on."""

import os
import signal
import socket
import socketserver
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from salesops_pipeline_tests.support.fault_proxy import FaultProxy

LOOPBACK = "127.0.0.1"
# Proxy ports are picked free beforehand, so another test process may take one meanwhile.
_START_ATTEMPTS = 3


class _Echo(socketserver.BaseRequestHandler):
    """Sends back what it receives, and ends its side once the client has ended its own."""

    def handle(self) -> None:
        try:
            while chunk := self.request.recv(65536):
                self.request.sendall(chunk)
            self.request.shutdown(socket.SHUT_WR)
        except ConnectionResetError:
            self.server.resets.append(self.client_address)
        except OSError:
            pass  # a test that drops its connection is none of the echo's business


class _EchoServer(socketserver.ThreadingTCPServer):
    """The echo, keeping the clients whose connection was reset under it."""

    daemon_threads = True
    resets: list


@pytest.fixture
def echo_server() -> Iterator[_EchoServer]:
    server = _EchoServer((LOOPBACK, 0), _Echo)
    server.resets = []
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def echo_port(echo_server) -> int:
    return echo_server.server_address[1]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return probe.getsockname()[1]


@pytest.fixture
def short_dir(tmp_path_factory) -> Path:
    """A Unix socket's path is limited to 107 bytes, which a test's own tmp_path may exceed."""
    return tmp_path_factory.mktemp("fp")


@pytest.fixture
def start_proxy(short_dir) -> Iterator:
    """Starts a proxy with routes to the given target ports; stops it after the test."""
    started: list[FaultProxy] = []

    def start(targets: dict[str, int]) -> tuple[FaultProxy, dict[str, int]]:
        for attempt in range(_START_ATTEMPTS):
            ports = {name: _free_port() for name in targets}
            routes = {
                name: ((LOOPBACK, ports[name]), (LOOPBACK, port)) for name, port in targets.items()
            }
            try:
                proxy = FaultProxy.start(routes, short_dir / "control.sock")
            except RuntimeError:
                if attempt == _START_ATTEMPTS - 1:
                    raise
                continue
            started.append(proxy)
            return proxy, ports
        raise AssertionError("unreachable")

    yield start
    for proxy in started:
        proxy.stop()


@pytest.fixture
def echo_proxy(start_proxy, echo_port) -> tuple[FaultProxy, int]:
    """A proxy with one route, "echo", in front of the echo server; and the route's port."""
    proxy, ports = start_proxy({"echo": echo_port})
    return proxy, ports["echo"]


def _connect(port: int) -> socket.socket:
    conn = socket.create_connection((LOOPBACK, port), timeout=5)
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return conn


def _receive(conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


def _round_trip(conn: socket.socket, payload: bytes) -> float:
    started = time.monotonic()
    conn.sendall(payload)
    assert _receive(conn, len(payload)) == payload
    return time.monotonic() - started


def _wait_for(condition, timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def test_bytes_pass_through_unchanged_both_ways(echo_proxy):
    proxy, port = echo_proxy
    payload = os.urandom(1024 * 1024)
    with _connect(port) as conn:
        assert _round_trip(conn, b"\x00hello\xff\r\n") < 5
        # Sent from a thread while this one reads, so that neither side waits on a full buffer.
        sender = threading.Thread(target=conn.sendall, args=(payload,))
        sender.start()
        echoed = _receive(conn, len(payload))
        sender.join(timeout=5)
        conn.shutdown(socket.SHUT_WR)
        # The client's end of stream reaches the server, and the server's comes back.
        assert conn.recv(1) == b""
    assert echoed == payload
    status = proxy.status()["echo"]
    assert status["bytes_up"] == status["bytes_down"] == len(payload) + 9
    assert status["accepted"] == 1


def test_latency_delays_each_direction_without_limiting_throughput(echo_proxy):
    proxy, port = echo_proxy
    with _connect(port) as conn:
        assert min(_round_trip(conn, b"ping") for _ in range(3)) < 0.1
        proxy.set("echo", latency_ms=100)
        for _ in range(3):
            assert _round_trip(conn, b"ping") >= 0.2
        chunks = [f"chunk-{n:02d};".encode() for n in range(20)]
        started = time.monotonic()
        for chunk in chunks:
            conn.sendall(chunk)
            # Apart, so that the proxy reads them as separate chunks rather than one.
            time.sleep(0.005)
        echoed = _receive(conn, sum(map(len, chunks)))
        elapsed = time.monotonic() - started
    assert echoed == b"".join(chunks)
    # One chunk per delay would take 20 x 200 ms; overlapping, they take one round trip.
    assert 0.2 <= elapsed < 2.0
    assert proxy.status()["echo"]["latency_ms"] == 100


def test_stall_holds_data_and_lifting_it_delivers_the_held_bytes_in_order(echo_proxy):
    proxy, port = echo_proxy
    with _connect(port) as before:
        _round_trip(before, b"up")
        proxy.set("echo", stall=True)
        assert proxy.status()["echo"]["stall"] is True
        with _connect(port) as during:
            for conn in (before, during):
                for part in (b"one,", b"two,", b"three"):
                    conn.sendall(part)
                conn.settimeout(0.5)
                with pytest.raises(TimeoutError):
                    conn.recv(100)
            proxy.set("echo", stall=False)
            for conn in (before, during):
                conn.settimeout(5)
                assert _receive(conn, len(b"one,two,three")) == b"one,two,three"


def test_reset_resets_open_connections_on_both_sides_counts_them_and_new_ones_work(
    echo_proxy, echo_server
):
    proxy, port = echo_proxy
    with _connect(port) as conn:
        _round_trip(conn, b"hello")
        assert proxy.reset("echo") == 1
        with pytest.raises(ConnectionResetError):
            conn.recv(100)
    assert _wait_for(lambda: len(echo_server.resets) == 1)
    status = proxy.status()["echo"]
    assert (status["reset"], status["open"]) == (1, 0)
    with _connect(port) as again:
        _round_trip(again, b"still serving")


def test_refuse_resets_new_connections_until_lifted(echo_proxy):
    proxy, port = echo_proxy
    proxy.set("echo", refuse=True)
    with pytest.raises(ConnectionResetError):
        with _connect(port) as conn:
            conn.recv(100)
    status = proxy.status()["echo"]
    assert (status["refuse"], status["accepted"], status["reset"], status["open"]) == (
        True,
        1,
        1,
        0,
    )
    proxy.set("echo", refuse=False)
    with _connect(port) as conn:
        _round_trip(conn, b"back")


def test_target_down_resets_the_client_and_other_routes_keep_serving(start_proxy, echo_port):
    with socket.socket() as held:
        # Bound but never listening: connections to it are refused for as long as it is held.
        held.bind((LOOPBACK, 0))
        proxy, ports = start_proxy({"down": held.getsockname()[1], "echo": echo_port})
        with pytest.raises(ConnectionResetError):
            with _connect(ports["down"]) as conn:
                conn.recv(100)
        with _connect(ports["echo"]) as conn:
            _round_trip(conn, b"unaffected")
    status = proxy.status()
    assert status["down"]["reset"] == 1
    assert status["echo"]["reset"] == 0


def test_unknown_route_is_an_error_naming_it_and_the_proxy_survives(echo_proxy):
    proxy, port = echo_proxy
    with pytest.raises(RuntimeError, match="no-such-route"):
        proxy.set("no-such-route", latency_ms=10)
    with pytest.raises(RuntimeError, match="no-such-route"):
        proxy.reset("no-such-route")
    assert proxy.status()["echo"]["latency_ms"] == 0
    with _connect(port) as conn:
        _round_trip(conn, b"alive")


def test_stop_removes_the_control_socket_and_ends_the_process(echo_proxy):
    proxy, _ = echo_proxy
    assert proxy.control.exists()
    proxy.stop()
    assert proxy.process.returncode == 0
    assert not proxy.control.exists()
    proxy.stop()


def test_a_killed_proxy_leaves_nothing_blocking_a_new_one(start_proxy, echo_port):
    killed, ports = start_proxy({"echo": echo_port})
    os.kill(killed.process.pid, signal.SIGKILL)
    killed.process.wait(timeout=5)
    assert killed.control.exists()
    proxy = FaultProxy.start(
        {"echo": ((LOOPBACK, ports["echo"]), (LOOPBACK, echo_port))}, killed.control
    )
    try:
        with _connect(ports["echo"]) as conn:
            _round_trip(conn, b"again")
        assert proxy.status()["echo"]["accepted"] == 1
    finally:
        proxy.stop()
