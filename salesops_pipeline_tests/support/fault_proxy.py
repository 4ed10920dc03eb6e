"""A fault-injecting TCP proxy for the multi-host tests.

It sits between each host of the multi-host test suite and the PostgreSQL database, and injects
latency, connection resets and stalls on demand, route by route. Partitions are made elsewhere,
by taking a host's network link down; this proxy has no part in them.

Run as a program, one process serves several routes, each listening on an address of its own
and forwarding every connection it accepts to its target:

    python -m salesops_pipeline_tests.support.fault_proxy --control /path/control.sock \\
        --route intake-1=10.0.1.1:6432=127.0.0.1:5432 --route dagster=...

A test changes a route's faults at any time through the control socket, a Unix stream socket
taking one JSON request per line and answering one JSON object per line; `FaultProxy` below is
its client. A path socket, unlike the TCP routes, is reachable from every network namespace,
so the test controls a proxy that runs on the database's host from its own.

Requests:
    {"op": "set", "route": NAME or "*", "latency_ms": 50, "stall": true, "refuse": false}
        any subset of the three settings; answers {"ok": true}
    {"op": "reset", "route": NAME or "*"}
        closes every open connection of the route with a RST on both sides;
        answers {"ok": true, "reset": COUNT}
    {"op": "status"}
        answers {"ok": true, "routes": {NAME: {"latency_ms", "stall", "refuse", "open",
        "accepted", "reset", "bytes_up", "bytes_down"}}}; "reset" counts every RST of the
        proxy's own: reset requests, refused connections, unreachable targets
A bad request answers {"ok": false, "error": "..."}.

A route's faults:
    latency_ms  a one-way delay on every chunk in each direction, end of stream included, so a
                round trip gains twice as much; chunks in flight overlap, so it slows the
                exchange without limiting the throughput.
    stall       no byte moves on the route's connections, old or new, in either direction, while
                it lasts; what arrives meanwhile is held, in order, and delivered once it ends.
    refuse      each new connection is accepted, then closed at once with a RST, without
                reaching the target: the client's first read or write fails with a reset.
A client or target that resets its connection has the other side reset too, once the bytes it
sent before have been delivered; a target that cannot be reached has the client reset.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import os
import signal
import socket
import stat
import struct
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

READY_LINE = "fault proxy ready"
REPO_ROOT = Path(__file__).resolve().parents[2]
READ_SIZE = 64 * 1024
CONNECT_TIMEOUT = 5.0
CONTROL_TIMEOUT = 10.0
# Bytes a direction may hold (delayed or stalled) before it stops reading from its source, so
# that a long stall pushes back on the sender through TCP rather than growing the proxy.
HELD_BYTES_LIMIT = 4 * 1024 * 1024
# SO_LINGER on, with a zero timeout: close() then sends a RST instead of a FIN.
_LINGER_RST = struct.pack("ii", 1, 0)
_SETTINGS = ("latency_ms", "stall", "refuse")

log = logging.getLogger("fault_proxy")


# The proxy server.


class StartupError(Exception):
    """The proxy cannot serve what it was asked to."""


class _PeerReset(Exception):
    """The source of a direction reset its connection: the proxy resets the other side too,
    once the bytes received before the reset have been delivered."""


_EOF = object()
_RESET = object()


def _socket_of(writer: asyncio.StreamWriter):
    return writer.get_extra_info("socket")


def _nodelay(writer: asyncio.StreamWriter) -> None:
    sock = _socket_of(writer)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _abort_with_rst(writer: asyncio.StreamWriter | None) -> None:
    """Closes at once, as a crashed or firewalled peer would: the other end gets a RST."""
    if writer is None:
        return
    sock = _socket_of(writer)
    if sock is not None:
        # An already closed socket needs no RST.
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
    writer.transport.abort()


@dataclass(eq=False)
class Route:
    """One listening address forwarded to one target, with its faults and counters. `resets`
    counts the connections the proxy ended with a RST of its own: by a reset request, while
    refusing, or because the target could not be reached."""

    name: str
    listen: tuple[str, int]
    target: tuple[str, int]
    latency_ms: float = 0.0
    refuse: bool = False
    accepted: int = 0
    resets: int = 0
    bytes_up: int = 0
    bytes_down: int = 0
    connections: set[_Connection] = field(default_factory=set)
    # Set while bytes may move; cleared by a stall.
    flowing: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.flowing.set()

    @property
    def stall(self) -> bool:
        return not self.flowing.is_set()

    def apply(self, settings: Mapping[str, object]) -> None:
        if "latency_ms" in settings:
            self.latency_ms = float(settings["latency_ms"])
        if "refuse" in settings:
            self.refuse = bool(settings["refuse"])
        if "stall" in settings:
            if settings["stall"]:
                self.flowing.clear()
            else:
                self.flowing.set()

    async def due(self, received_at: float) -> None:
        """Returns once a chunk received at `received_at` may be delivered. The stall and the
        latency are read again after every wait, as a test may change them meanwhile."""
        loop = asyncio.get_running_loop()
        while True:
            await self.flowing.wait()
            remaining = received_at + self.latency_ms / 1000 - loop.time()
            if remaining <= 0:
                return
            await asyncio.sleep(remaining)

    async def accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        if self.refuse:
            self.resets += 1
            _abort_with_rst(writer)
            return
        connection = _Connection(self, reader, writer, asyncio.current_task())
        self.connections.add(connection)
        try:
            await connection.serve()
        except asyncio.CancelledError:
            # Ended by a reset or the shutdown. Not raised on: Python 3.11's stream server asks a
            # cancelled handler task for its exception, which logs a spurious error.
            connection.abort(rst=False)
        except Exception:
            # One connection's failure must not reach the others nor the server.
            log.exception("route %s: connection failed", self.name)
            connection.abort(rst=True)
        finally:
            self.connections.discard(connection)

    def reset(self) -> list[asyncio.Task]:
        """Resets every open connection; returns their tasks, ending."""
        tasks = []
        for connection in list(self.connections):
            self.connections.discard(connection)
            self.resets += 1
            connection.abort(rst=True)
            if connection.task is not None:
                connection.task.cancel()
                tasks.append(connection.task)
        return tasks

    def status(self) -> dict:
        return {
            "latency_ms": self.latency_ms,
            "stall": self.stall,
            "refuse": self.refuse,
            "open": len(self.connections),
            "accepted": self.accepted,
            "reset": self.resets,
            "bytes_up": self.bytes_up,
            "bytes_down": self.bytes_down,
        }


class _Direction:
    """One direction of a connection: a reader task stamps each chunk with the time it arrived
    and queues it, a writer task delivers each at its own due time. Many chunks are thus in
    flight at once, in order, however long the delay."""

    def __init__(
        self,
        route: Route,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        counter: str,
    ):
        self.route = route
        self.reader = reader
        self.writer = writer
        self.counter = counter
        self.queue: asyncio.Queue[tuple[float, object]] = asyncio.Queue()
        self.held = 0
        self.room = asyncio.Event()
        self.room.set()

    async def read(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                chunk = await self.reader.read(READ_SIZE)
            except OSError:
                self.queue.put_nowait((loop.time(), _RESET))
                return
            if not chunk:
                self.queue.put_nowait((loop.time(), _EOF))
                return
            self.queue.put_nowait((loop.time(), chunk))
            self.held += len(chunk)
            if self.held >= HELD_BYTES_LIMIT:
                self.room.clear()
                await self.room.wait()

    async def write(self) -> None:
        while True:
            received_at, chunk = await self.queue.get()
            await self.route.due(received_at)
            if chunk is _RESET:
                raise _PeerReset
            if chunk is _EOF:
                if self.writer.can_write_eof():
                    self.writer.write_eof()
                return
            assert isinstance(chunk, bytes)
            self.writer.write(chunk)
            setattr(self.route, self.counter, getattr(self.route, self.counter) + len(chunk))
            self.held -= len(chunk)
            if self.held < HELD_BYTES_LIMIT:
                self.room.set()
            await self.writer.drain()


class _Connection:
    """A client's connection and the upstream one made for it."""

    def __init__(
        self,
        route: Route,
        client_reader: asyncio.StreamReader,
        client_writer: asyncio.StreamWriter,
        task: asyncio.Task | None,
    ):
        self.route = route
        self.client_reader = client_reader
        self.client_writer = client_writer
        self.upstream_writer: asyncio.StreamWriter | None = None
        self.task = task
        self.aborted = False

    async def serve(self) -> None:
        _nodelay(self.client_writer)
        try:
            upstream_reader, self.upstream_writer = await asyncio.wait_for(
                asyncio.open_connection(*self.route.target), CONNECT_TIMEOUT
            )
        except (OSError, TimeoutError):
            # As the client would see a database host that is up but not serving.
            self.route.resets += 1
            self.abort(rst=True)
            return
        _nodelay(self.upstream_writer)
        up = _Direction(self.route, self.client_reader, self.upstream_writer, "bytes_up")
        down = _Direction(self.route, upstream_reader, self.client_writer, "bytes_down")
        tasks = [asyncio.create_task(work()) for work in (up.read, up.write, down.read, down.write)]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        failures = [t.exception() for t in tasks if not t.cancelled() and t.exception()]
        unexpected = [f for f in failures if not isinstance(f, _PeerReset | OSError)]
        for failure in unexpected:
            log.error("route %s: connection failed", self.route.name, exc_info=failure)
        # A reset or a broken side ends the connection as abruptly on the other side; two
        # ends of stream in turn end it gracefully.
        self.abort(rst=bool(failures))

    def abort(self, *, rst: bool) -> None:
        if self.aborted:
            return
        self.aborted = True
        for writer in (self.client_writer, self.upstream_writer):
            if writer is None:
                continue
            if rst:
                _abort_with_rst(writer)
            else:
                writer.close()


class Proxy:
    """The routes, and the answers to control requests about them."""

    def __init__(self, routes: Sequence[Route]):
        self.routes = {route.name: route for route in routes}

    def _selected(self, request: Mapping) -> list[Route]:
        if "route" not in request:
            raise ValueError('a "route" is required: a route\'s name, or "*" for all')
        name = request["route"]
        if not isinstance(name, str):
            raise ValueError(f'a "route" is a route\'s name, or "*" for all; not {name!r}')
        if name == "*":
            return list(self.routes.values())
        if name not in self.routes:
            raise ValueError(f"unknown route {name!r} (routes: {', '.join(sorted(self.routes))})")
        return [self.routes[name]]

    async def answer(self, request: object) -> dict:
        if not isinstance(request, dict):
            raise ValueError("a request is a JSON object")
        op = request.get("op")
        if op == "status":
            return {"ok": True, "routes": {n: r.status() for n, r in self.routes.items()}}
        if op == "set":
            settings = {k: v for k, v in request.items() if k not in ("op", "route")}
            _check_settings(settings)
            for route in self._selected(request):
                route.apply(settings)
            return {"ok": True}
        if op == "reset":
            tasks = [task for route in self._selected(request) for task in route.reset()]
            # Answer once the connections are gone, so that a status right after counts none.
            if tasks:
                await asyncio.wait(tasks, timeout=2.0)
            return {"ok": True, "reset": len(tasks)}
        raise ValueError(f"unknown op {op!r} (ops: set, reset, status)")

    async def control(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    line = await reader.readline()
                except ValueError:
                    writer.write(b'{"ok": false, "error": "request line too long"}\n')
                    break
                if not line:
                    break
                writer.write((json.dumps(await self._reply(line)) + "\n").encode())
                await writer.drain()
        except OSError:
            pass  # the test went away mid-request: nothing to answer
        except asyncio.CancelledError:
            pass  # the shutdown; not raised on, for the reason `Route.accept` gives
        finally:
            writer.close()

    async def _reply(self, line: bytes) -> dict:
        try:
            return await self.answer(json.loads(line))
        except (ValueError, TypeError) as error:
            return {"ok": False, "error": str(error)}
        except Exception as error:
            log.exception("control request %r failed", line)
            return {"ok": False, "error": f"{type(error).__name__}: {error}"}

    def close_all(self) -> list[asyncio.Task]:
        tasks = []
        for route in self.routes.values():
            for connection in list(route.connections):
                connection.abort(rst=False)
                if connection.task is not None:
                    connection.task.cancel()
                    tasks.append(connection.task)
        return tasks


def _check_settings(settings: Mapping[str, object]) -> None:
    unknown = sorted(set(settings) - set(_SETTINGS))
    if unknown:
        raise ValueError(
            f"unknown setting(s) {', '.join(unknown)} (settings: latency_ms, stall, refuse)"
        )
    latency = settings.get("latency_ms", 0)
    if (
        isinstance(latency, bool)
        or not isinstance(latency, int | float)
        or not (math.isfinite(latency) and latency >= 0)
    ):
        raise ValueError(f"latency_ms must be a number of milliseconds >= 0, not {latency!r}")
    for name in ("stall", "refuse"):
        if not isinstance(settings.get(name, False), bool):
            raise ValueError(f"{name} must be true or false, not {settings[name]!r}")


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"not a HOST:PORT address: {text!r}")
    return host.strip("[]"), int(port)


def parse_route(text: str) -> Route:
    """NAME=LISTEN_HOST:LISTEN_PORT=TARGET_HOST:TARGET_PORT"""
    parts = text.split("=")
    if len(parts) != 3 or not parts[0] or parts[0] == "*":
        raise argparse.ArgumentTypeError(
            f"not a NAME=LISTEN_HOST:LISTEN_PORT=TARGET_HOST:TARGET_PORT route: {text!r}"
        )
    try:
        return Route(parts[0], _address(parts[1]), _address(parts[2]))
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _clear_control_path(path: Path) -> None:
    """Removes a socket file left by a proxy that was killed; a live proxy's is kept."""
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise StartupError(f"{path} exists and is not a socket")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(str(path))
        except OSError:
            path.unlink(missing_ok=True)
            return
    raise StartupError(f"another proxy already serves {path}")


async def serve(routes: Sequence[Route], control_path: Path) -> None:
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    proxy = Proxy(routes)
    servers = []
    try:
        for route in routes:
            try:
                servers.append(await asyncio.start_server(route.accept, *route.listen))
            except OSError as error:
                raise StartupError(
                    f"route {route.name} cannot listen on "
                    f"{route.listen[0]}:{route.listen[1]}: {error}"
                ) from None
        _clear_control_path(control_path)
        servers.append(await asyncio.start_unix_server(proxy.control, path=str(control_path)))
        own_socket = control_path.stat().st_ino
        print(READY_LINE, flush=True)
        await stopping.wait()
    finally:
        for server in servers:
            server.close()
        tasks = proxy.close_all()
        if tasks:
            await asyncio.wait(tasks, timeout=2.0)
    # Only this proxy's own file: another may have taken the path over since.
    with contextlib.suppress(OSError):
        if control_path.stat().st_ino == own_socket:
            control_path.unlink()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m salesops_pipeline_tests.support.fault_proxy",
        description="A TCP proxy injecting latency, resets and stalls, controlled over a socket.",
    )
    parser.add_argument("--control", type=Path, required=True, help="the control socket's path")
    parser.add_argument(
        "--route",
        type=parse_route,
        action="append",
        required=True,
        metavar="NAME=LISTEN_HOST:LISTEN_PORT=TARGET_HOST:TARGET_PORT",
    )
    args = parser.parse_args(argv)
    names = [route.name for route in args.route]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        parser.error(f"route names must differ: {', '.join(duplicates)}")
    logging.basicConfig(level=logging.WARNING, format="fault proxy: %(message)s")
    try:
        asyncio.run(serve(args.route, args.control))
    except StartupError as error:
        print(f"fault proxy: {error}", file=sys.stderr, flush=True)
        return 1
    return 0


# The client the tests use.


class FaultProxy:
    """Controls a running proxy."""

    def __init__(self, process: subprocess.Popen, control: Path):
        self.process = process
        self.control = control
        self._output: deque[str] = deque(maxlen=500)
        self._ready = threading.Event()
        # The proxy's output is read to the end, or a chatty proxy would block on a full pipe.
        self._reader = threading.Thread(target=self._read_output, daemon=True)
        self._reader.start()

    @classmethod
    def start(
        cls,
        routes: Mapping[str, tuple[tuple[str, int], tuple[str, int]]],
        control: Path,
        *,
        prefix: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        timeout: float = 20.0,
    ) -> FaultProxy:
        """Starts a proxy serving `routes` (name: (listen address, target address)) and
        returns once it is ready. `prefix` runs it inside something, such as a network
        namespace: ["ip", "netns", "exec", "ns1"]."""
        command = [
            *prefix,
            sys.executable,
            "-m",
            "salesops_pipeline_tests.support.fault_proxy",
            "--control",
            str(control),
        ]
        for name, ((listen_host, listen_port), (target_host, target_port)) in routes.items():
            command += [
                "--route",
                f"{name}={listen_host}:{listen_port}={target_host}:{target_port}",
            ]
        process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            cwd=REPO_ROOT,
            env=dict(os.environ if env is None else env),
            start_new_session=True,
        )
        proxy = cls(process, Path(control))
        deadline = time.monotonic() + timeout
        while not proxy._ready.wait(0.05):
            if process.poll() is not None:
                proxy._reader.join(timeout=2.0)
                raise RuntimeError(
                    f"fault proxy exited ({process.returncode}) before it was ready:\n"
                    f"{proxy.output}"
                )
            if time.monotonic() > deadline:
                proxy.stop()
                raise RuntimeError(f"fault proxy not ready after {timeout:g} s:\n{proxy.output}")
        return proxy

    @property
    def output(self) -> str:
        """What the proxy printed, lately."""
        return "".join(self._output)

    def _read_output(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._output.append(line)
            if line.strip() == READY_LINE:
                self._ready.set()

    def _request(self, request: dict) -> dict:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(CONTROL_TIMEOUT)
            conn.connect(str(self.control))
            conn.sendall((json.dumps(request) + "\n").encode())
            answer = b""
            while not answer.endswith(b"\n"):
                chunk = conn.recv(65536)
                if not chunk:
                    raise RuntimeError(f"fault proxy closed the control connection: {answer!r}")
                answer += chunk
        reply = json.loads(answer)
        if not reply.get("ok"):
            raise RuntimeError(f"fault proxy: {reply.get('error', reply)}")
        return reply

    def set(
        self,
        route: str = "*",
        *,
        latency_ms: float | None = None,
        stall: bool | None = None,
        refuse: bool | None = None,
    ) -> None:
        """Changes the given settings of `route` ("*": every route); None leaves one as is."""
        settings = {"latency_ms": latency_ms, "stall": stall, "refuse": refuse}
        self._request(
            {"op": "set", "route": route, **{k: v for k, v in settings.items() if v is not None}}
        )

    def reset(self, route: str = "*") -> int:
        """Resets every open connection of `route` ("*": every route); returns how many."""
        return self._request({"op": "reset", "route": route})["reset"]

    def status(self) -> dict:
        """Each route's settings and counters, by name."""
        return self._request({"op": "status"})["routes"]

    def stop(self) -> None:
        """Stops the proxy: SIGTERM, then SIGKILL after 10 s. Stopping it again does nothing."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                # Still running, so its group cannot be another's yet; a prefix may have forked.
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._reader.join(timeout=2.0)
        # A prefix's children may hold the pipe open still; the file is never closed under a
        # thread reading it.
        if not self._reader.is_alive() and self.process.stdout is not None:
            self.process.stdout.close()

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()


if __name__ == "__main__":
    sys.exit(main())
