"""A small HTTP/1.1 keep-alive load generator on asyncio streams, for loopback benchmarks.

Why not httpx or locust here: their per-request overhead in Python is several times the
handler's own cost, so on a 2-core machine they would measure themselves. This client
pre-encodes every request and parses only the status line and Content-Length.
Open-loop mode schedules requests at a fixed rate and measures latency from the
scheduled send time, so a stalled server cannot hide its queueing (coordinated omission).
"""

from __future__ import annotations

import asyncio
import itertools
import statistics
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field


@dataclass
class Result:
    """Latencies in ms of completed requests, and counts per status."""

    seconds: float
    latencies_ms: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    errors: int = 0

    @property
    def requests(self) -> int:
        return len(self.latencies_ms)

    def percentile(self, p: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]

    def summary(self, per_request_items: int = 1) -> dict[str, float]:
        rate = self.requests / self.seconds if self.seconds else 0.0
        return {
            "requests": self.requests,
            "req_per_s": round(rate, 1),
            "items_per_s": round(rate * per_request_items, 1),
            "p50_ms": round(self.percentile(50), 2),
            "p95_ms": round(self.percentile(95), 2),
            "p99_ms": round(self.percentile(99), 2),
            "mean_ms": round(statistics.fmean(self.latencies_ms), 2) if self.latencies_ms else 0,
            "non_2xx": sum(n for s, n in self.statuses.items() if not 200 <= s < 300),
            "errors": self.errors,
        }


def request_bytes(method: str, path: str, body: bytes = b"", host: str = "127.0.0.1") -> bytes:
    """One pre-encoded HTTP/1.1 request."""
    head = f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: keep-alive\r\n"
    if body:
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + body


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, payload: bytes
) -> int:
    writer.write(payload)
    status_line = await reader.readline()
    status = int(status_line.split(b" ", 2)[1])
    length = 0
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b""):
            break
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    if length:
        await reader.readexactly(length)
    return status


async def closed_loop(
    port: int, payloads: Sequence[bytes], connections: int, seconds: float
) -> Result:
    """Each connection sends back-to-back for `seconds`: maximum throughput."""
    result = Result(seconds=seconds)
    deadline = time.perf_counter() + seconds
    cycle = itertools.cycle(payloads)

    async def connection() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                try:
                    status = await _exchange(reader, writer, next(cycle))
                except (OSError, ValueError, asyncio.IncompleteReadError):
                    result.errors += 1
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                    continue
                result.latencies_ms.append((time.perf_counter() - started) * 1000)
                result.statuses[status] += 1
        finally:
            writer.close()

    await asyncio.gather(*(connection() for _ in range(connections)))
    return result


async def open_loop(
    port: int,
    payload_for: Callable[[int], bytes],
    rate: float,
    seconds: float,
    max_connections: int = 64,
) -> Result:
    """Requests start at `rate` per second for `seconds`; latency counts from the schedule."""
    result = Result(seconds=seconds)
    pool: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    opened = 0
    total = int(rate * seconds)
    start = time.perf_counter() + 0.05

    async def one(index: int) -> None:
        nonlocal opened
        scheduled = start + index / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        if pool.empty() and opened < max_connections:
            opened += 1
            pool.put_nowait(await asyncio.open_connection("127.0.0.1", port))
        reader, writer = await pool.get()
        try:
            status = await _exchange(reader, writer, payload_for(index))
        except (OSError, ValueError, asyncio.IncompleteReadError):
            result.errors += 1
            writer.close()
            pool.put_nowait(await asyncio.open_connection("127.0.0.1", port))
            return
        result.latencies_ms.append((time.perf_counter() - scheduled) * 1000)
        result.statuses[status] += 1
        pool.put_nowait((reader, writer))

    await asyncio.gather(*(one(i) for i in range(total)))
    for _ in range(pool.qsize()):
        _, writer = pool.get_nowait()
        writer.close()
    return result


async def send_all(port: int, payloads: Sequence[bytes], connections: int) -> Result:
    """Send every payload exactly once over `connections` connections."""
    started = time.perf_counter()
    result = Result(seconds=0.0)
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for payload in payloads:
        queue.put_nowait(payload)

    async def connection() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while not queue.empty():
                payload = queue.get_nowait()
                sent = time.perf_counter()
                status = await _exchange(reader, writer, payload)
                result.latencies_ms.append((time.perf_counter() - sent) * 1000)
                result.statuses[status] += 1
        finally:
            writer.close()

    await asyncio.gather(*(connection() for _ in range(connections)))
    result.seconds = time.perf_counter() - started
    return result
