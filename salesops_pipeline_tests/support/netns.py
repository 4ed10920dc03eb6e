"""Hosts of their own on one machine: Linux network namespaces joined by veth links.

Every host sits on one LAN: a bridge in a namespace of its own, the switch, with no address.
A host may also get a link of its own to another host (the database's), a point-to-point
veth: taking that link down partitions exactly those two hosts, and packets sent into it are
lost, as in a real partition, rather than refused. Addresses exist only inside the
namespaces made here: the test itself works from one of the hosts (`Network.enter`).

Names carry the test process's id, so that a run killed before it could clean up is swept by
the next one: every namespace, and with it every link, is removed afterwards, even when a test
fails. Needs root and iproute2's `ip`.
"""

import contextlib
import ctypes
import ipaddress
import os
import random
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

NAMESPACE_PREFIX = "salesops-"
_OWNED_NAMESPACE = re.compile(rf"^{NAMESPACE_PREFIX}(\d+)n\d+-")
# Linux's flag for a network namespace, for setns(2).
_CLONE_NEWNET = 0x40000000


def unavailable() -> str | None:
    """Why this machine cannot make test hosts, or None when it can."""
    if os.geteuid() != 0:
        return "making network namespaces needs root (CI runs the tests as root)"
    if shutil.which("ip") is None:
        return "iproute2's `ip` is missing (install it with: sudo apt-get install iproute2)"
    return None


def _ip(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *argv], check=check, capture_output=True, text=True, timeout=30)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _kill_namespace(namespace: str) -> None:
    """SIGKILL every process inside `namespace`, then delete it."""
    found = _ip("netns", "pids", namespace, check=False).stdout.split()
    for pid in found:
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)
    # A process being killed still holds the namespace for a moment.
    deadline = time.monotonic() + 10
    while _ip("netns", "pids", namespace, check=False).stdout.split():
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    _ip("netns", "delete", namespace, check=False)


def sweep_stale() -> list[str]:
    """Remove what runs whose process is gone left behind; the names removed."""
    removed = []
    for line in _ip("netns", "list", check=False).stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        owner = _OWNED_NAMESPACE.match(name)
        if owner and not _alive(int(owner.group(1))):
            _kill_namespace(name)
            removed.append(name)
    return removed


def _used_networks() -> list[ipaddress.IPv4Network]:
    used = []
    for line in _ip("-4", "-o", "route", "show", "table", "all", check=False).stdout.splitlines():
        first = line.split()[0] if line.split() else ""
        if first[:1].isdigit():
            with contextlib.suppress(ValueError):
                used.append(ipaddress.ip_network(first, strict=False))
    return used


@dataclass
class Host:
    """One machine of the test: a namespace, its address on the LAN, and its point-to-point
    links (peer host name -> (this end's interface, this end's address, peer's address))."""

    name: str
    namespace: str
    address: str
    links: dict[str, tuple[str, str, str]] = field(default_factory=dict)

    def argv(self, *command: str) -> list[str]:
        """`command` run on this host."""
        return ["ip", "netns", "exec", self.namespace, *command]

    def address_towards(self, peer: str) -> str:
        """The peer's address on this host's own link to it."""
        return self.links[peer][2]


class Network:
    """A LAN of hosts, each in a namespace of its own; `close` removes all of it and kills what
    still runs inside."""

    def __init__(self, index: int = 0):
        reason = unavailable()
        if reason:
            raise RuntimeError(reason)
        sweep_stale()
        self.tag = f"{os.getpid()}n{index}"
        self.hosts: dict[str, Host] = {}
        self._processes: list[subprocess.Popen] = []
        self._closed = False
        self.prefix = self._free_prefix()
        self.switch = f"{NAMESPACE_PREFIX}{self.tag}-lan"
        _ip("netns", "add", self.switch)
        _ip("-n", self.switch, "link", "add", "lan0", "type", "bridge")
        _ip("-n", self.switch, "link", "set", "lan0", "up")

    @staticmethod
    def _free_prefix() -> str:
        """A 10.N/16 that no route of this machine covers."""
        used = _used_networks()
        candidates = list(range(100, 250))
        random.shuffle(candidates)
        for second in candidates:
            block = ipaddress.ip_network(f"10.{second}.0.0/16")
            if not any(block.overlaps(net) for net in used if net.prefixlen > 0):
                return f"10.{second}"
        raise RuntimeError("no free 10.N.0.0/16 for the test hosts")

    def add_host(self, name: str) -> Host:
        """A new host on the LAN."""
        number = len(self.hosts) + 2
        namespace = f"{NAMESPACE_PREFIX}{self.tag}-{name}"
        _ip("netns", "add", namespace)
        host = Host(name, namespace, f"{self.prefix}.0.{number}")
        self.hosts[name] = host
        port = f"port{number}"
        _ip(
            "link", "add", "eth0", "netns", namespace, "type", "veth",
            "peer", "name", port, "netns", self.switch,
        )  # fmt: skip
        _ip("-n", self.switch, "link", "set", port, "master", "lan0", "up")
        _ip("-n", namespace, "addr", "add", f"{host.address}/24", "dev", "eth0")
        _ip("-n", namespace, "link", "set", "eth0", "up")
        _ip("-n", namespace, "link", "set", "lo", "up")
        return host

    @contextlib.contextmanager
    def enter(self, host: Host):
        """Work from `host` for the block: the sockets this thread opens, and those of the
        threads it starts meanwhile, are the host's."""
        libc = ctypes.CDLL(None, use_errno=True)
        own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        target = os.open(f"/var/run/netns/{host.namespace}", os.O_RDONLY)
        try:
            if libc.setns(target, _CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), f"cannot enter {host.namespace}")
            try:
                yield host
            finally:
                if libc.setns(own, _CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "cannot return to the test's namespace")
        finally:
            os.close(target)
            os.close(own)

    def connect(self, one: Host, other: Host) -> None:
        """A link of their own between two hosts (a /30), beside the LAN."""
        number = len([link for host in self.hosts.values() for link in host.links]) // 2 + 1
        subnet = f"{self.prefix}.{number}"
        one_end, other_end = f"to-{other.name}"[:15], f"to-{one.name}"[:15]
        _ip(
            "link", "add", "tmp" + self.tag, "netns", one.namespace, "type", "veth",
            "peer", "name", "tmpp" + self.tag, "netns", other.namespace,
        )  # fmt: skip
        _ip("-n", one.namespace, "link", "set", "tmp" + self.tag, "name", one_end)
        _ip("-n", other.namespace, "link", "set", "tmpp" + self.tag, "name", other_end)
        for host, end, mine in ((one, one_end, f"{subnet}.1"), (other, other_end, f"{subnet}.2")):
            _ip("-n", host.namespace, "addr", "add", f"{mine}/30", "dev", end)
            _ip("-n", host.namespace, "link", "set", end, "up")
        one.links[other.name] = (one_end, f"{subnet}.1", f"{subnet}.2")
        other.links[one.name] = (other_end, f"{subnet}.2", f"{subnet}.1")

    def set_link(self, host: Host, peer: Host, up: bool) -> None:
        """Bring the link between `host` and `peer` down (a partition: what `host` sends is
        lost, it is not refused) or up again. The peer's end is the one switched, so that the
        host still holds its route and its sockets see silence, not an error."""
        end = peer.links[host.name][0]
        _ip("-n", peer.namespace, "link", "set", end, "up" if up else "down")

    def start(
        self, host: Host, argv: list[str], *, env: dict[str, str], log: Path, cwd: Path | None
    ) -> subprocess.Popen:
        """Start `argv` on `host`, its output in `log`; it is killed at `close` at the latest."""
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as out:
            process = subprocess.Popen(
                host.argv(*argv),
                env=env,
                cwd=cwd,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._processes.append(process)
        return process

    def stop_processes(self) -> None:
        """SIGTERM what `start` started, as a service manager would, and wait for it (10 s)."""
        for process in self._processes:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for process in self._processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=max(0.1, deadline - time.monotonic()))

    def close(self) -> None:
        """Stop everything started on the hosts, then remove every namespace, and with them
        every link."""
        if self._closed:
            return
        self._closed = True
        self.stop_processes()
        for host in self.hosts.values():
            _kill_namespace(host.namespace)
        _kill_namespace(self.switch)
        for process in self._processes:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()

    def leftovers(self) -> list[str]:
        """The namespaces of this network that still exist (none once closed)."""
        return [
            line.split()[0]
            for line in _ip("netns", "list", check=False).stdout.splitlines()
            if line.split() and line.split()[0].startswith(f"{NAMESPACE_PREFIX}{self.tag}-")
        ]

    def __enter__(self) -> "Network":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
