"""`python -m benchmarks.loadgen`: a load generator for the intake, in a process of its own.

Keep-alive connections over asyncio, each sending one request at a time and reading the
answer; the requests are written by hand so that the generator costs far less CPU per
request than the server it measures. Prints one JSON line: count, wall time, latencies.
"""

import argparse
import asyncio
import json
import statistics
import sys
import time
from urllib.parse import urlsplit


def _request(host: str, path: str, key: str, body: bytes) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nX-API-KEY: {key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _answer(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    await reader.readexactly(length)
    return status


async def _run(url: str, key: str, total: int, connections: int, seconds: float, run: str):
    parts = urlsplit(url)
    counter = iter(range(total))
    latencies: list[float] = []
    failures = reconnects = 0
    stop_at = time.monotonic() + seconds

    async def connection() -> None:
        nonlocal failures, reconnects
        streams = None
        try:
            while time.monotonic() < stop_at:
                n = next(counter, None)
                if n is None:
                    return
                body = json.dumps(
                    {
                        "callId": f"load-{run}-{n}",
                        "contactId": f"c{n % 500}",
                        "wrapup": "Vente",
                        "callEnd": "07/04/2025 10:26:14",
                    }
                ).encode()
                for last_try in (False, True):
                    try:
                        if streams is None:
                            streams = await asyncio.open_connection(parts.hostname, parts.port)
                        reader, writer = streams
                        started = time.perf_counter()
                        writer.write(_request(parts.netloc, parts.path, key, body))
                        status = await _answer(reader)
                        break
                    except (ConnectionError, asyncio.IncompleteReadError):
                        # The intake closes a keep-alive connection left idle for 5 s, as
                        # when this process waits that long for a CPU. The event goes again
                        # on a new connection: the intake answers a callId it already stored
                        # as a duplicate.
                        if streams is not None:
                            streams[1].close()
                            streams = None
                        if last_try:
                            raise
                        reconnects += 1
                latencies.append(time.perf_counter() - started)
                if status >= 300:
                    failures += 1
        finally:
            if streams is not None:
                streams[1].close()

    started = time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(connections)))
    wall = time.perf_counter() - started
    latencies.sort()
    return {
        "count": len(latencies),
        "wall": wall,
        "p50_ms": statistics.median(latencies) * 1000 if latencies else 0,
        "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000
        if latencies
        else 0,
        "max_ms": latencies[-1] * 1000 if latencies else 0,
        "non_2xx": failures,
        "reconnects": reconnects,
    }


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.loadgen")
    parser.add_argument("--url", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--total", type=int, default=20_000)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--run", default="0")
    args = parser.parse_args()
    result = asyncio.run(
        _run(args.url, args.key, args.total, args.connections, args.seconds, args.run)
    )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
