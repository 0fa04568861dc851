"""Python load generators over raw keep-alive connections (asyncio, uvloop when installed).

* :func:`open_loop` — requests *scheduled* at a fixed rate, whatever the answers do; latency is
  counted from the scheduled time, so a stalled server is not hidden by a client that waits
  for it (no coordinated omission).  Used for the added-latency runs at ~25% of max load.
* :func:`closed_loop` — ``c`` connections each sending the next request as soon as the
  previous answer arrived; the fallback for throughput runs when wrk is not installed (it
  needs a core of its own, so proxied/direct ratios measured with it are pessimistic).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

__all__ = ["LoadResult", "closed_loop", "open_loop", "percentile", "run_async"]

T = TypeVar("T")


@dataclass
class LoadResult:
    """One load run.  Latencies in milliseconds."""

    tool: str
    connections: int
    seconds: float
    requests: int
    non_2xx: int = 0
    errors: int = 0
    latency_ms: dict[str, float] = field(default_factory=dict)
    rate: float | None = None  # the open-loop target rate

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if v is not None}
        out["rps"] = round(self.rps, 1)
        return out


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, max(0, round(q / 100 * (len(sorted_values) - 1))))
    return sorted_values[index]


def _latency_summary(latencies: list[float]) -> dict[str, float]:
    values = sorted(latencies)
    summary = {f"p{q:g}": round(percentile(values, q) * 1000, 3) for q in (50, 90, 99, 99.9)}
    summary["mean"] = round(sum(values) / len(values) * 1000, 3) if values else 0.0
    return summary


async def read_response(reader: asyncio.StreamReader) -> int:
    """Read one HTTP/1.1 answer (Content-Length or chunked body, discarded); its status."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    lower = head.lower()
    start = lower.find(b"\r\ncontent-length:")
    if start >= 0:
        end = lower.index(b"\r\n", start + 2)
        await reader.readexactly(int(lower[start + 17 : end]))
    elif b"\r\ntransfer-encoding: chunked" in lower:
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if not size:
                break
    return status


class _Conn:
    def __init__(self, port: int) -> None:
        self.port = port
        self.streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def exchange(self, raw: bytes) -> int:
        if self.streams is None:
            self.streams = await asyncio.open_connection("127.0.0.1", self.port)
        reader, writer = self.streams
        try:
            writer.write(raw)
            return await read_response(reader)
        except (OSError, asyncio.IncompleteReadError, ValueError):
            self.close()
            raise

    def close(self) -> None:
        if self.streams is not None:
            self.streams[1].close()
            self.streams = None


class _Tally:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.non_2xx = 0
        self.errors = 0

    async def one(self, conn: _Conn, raw: bytes, since: float) -> None:
        try:
            status = await conn.exchange(raw)
        except (OSError, asyncio.IncompleteReadError, ValueError):
            self.errors += 1
            return
        self.latencies.append(time.perf_counter() - since)
        if not 200 <= status < 300:
            self.non_2xx += 1


async def closed_loop(
    port: int, requests: list[bytes], connections: int, duration: float
) -> LoadResult:
    """Each connection sends its next request once the previous one is answered."""
    tally, conns = _Tally(), [_Conn(port) for _ in range(connections)]
    deadline = time.perf_counter() + duration
    counter = iter(range(1 << 62))

    async def client(conn: _Conn) -> None:
        while time.perf_counter() < deadline:
            raw = requests[next(counter) % len(requests)]
            await tally.one(conn, raw, time.perf_counter())

    started = time.perf_counter()
    await asyncio.gather(*(client(c) for c in conns))
    elapsed = time.perf_counter() - started
    for c in conns:
        c.close()
    return LoadResult(
        "python-closed-loop",
        connections,
        round(elapsed, 3),
        len(tally.latencies),
        tally.non_2xx,
        tally.errors,
        _latency_summary(tally.latencies),
    )


async def open_loop(
    port: int, requests: list[bytes], rate: float, duration: float, connections: int = 64
) -> LoadResult:
    """Send ``rate`` requests/s for ``duration`` s on up to ``connections`` connections;
    a request that finds every connection busy waits (and that wait is in its latency)."""
    tally = _Tally()
    idle: asyncio.Queue[_Conn] = asyncio.Queue()
    for _ in range(connections):
        idle.put_nowait(_Conn(port))
    total = max(1, int(rate * duration))
    started = time.perf_counter()
    tasks: set[asyncio.Task[None]] = set()

    async def send(i: int, due: float) -> None:
        conn = await idle.get()
        try:
            await tally.one(conn, requests[i % len(requests)], due)
        finally:
            idle.put_nowait(conn)

    for i in range(total):
        due = started + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(send(i, due))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - started
    while not idle.empty():
        idle.get_nowait().close()
    result = LoadResult(
        "python-open-loop",
        connections,
        round(elapsed, 3),
        len(tally.latencies),
        tally.non_2xx,
        tally.errors,
        _latency_summary(tally.latencies),
        rate=rate,
    )
    return result


def run_async(factory: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine on uvloop when installed (a cheaper client leaves more CPU to the
    server under test), else on asyncio's default loop."""

    async def main() -> T:
        return await factory()

    with contextlib.suppress(ImportError):
        import uvloop

        return uvloop.run(main())
    return asyncio.run(main())
