"""Micro benchmark: microseconds per replay check, for each backend.

    python -m bench.replay_rtt [--n 20000] [--redis-url redis://127.0.0.1:6379/0]

"sequential" awaits each check before the next (the latency one request pays); "concurrent"
runs batches of 256 at once (pipelined on the shared socket; a pool of connections on Redis).
Without ``--redis-url`` a throw-away ``redis-server`` is started on a free loopback port when
one is installed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from typing import Any

from keybroker.replay.base import ReplayCache
from keybroker.replay.cache import MemoryReplayCache, RedisReplayCache
from keybroker.replay.shared import SharedReplayClient, SharedReplayServer

BATCH = 256


async def sequential(cache: ReplayCache, keys: list[bytes]) -> float:
    started = time.perf_counter()
    for k in keys:
        await cache.first_use(k, 60)
    return (time.perf_counter() - started) / len(keys) * 1e6


async def concurrent(cache: ReplayCache, keys: list[bytes]) -> float:
    started = time.perf_counter()
    for i in range(0, len(keys), BATCH):
        await asyncio.gather(*(cache.first_use(k, 60) for k in keys[i : i + BATCH]))
    return (time.perf_counter() - started) / len(keys) * 1e6


async def measure(name: str, cache: ReplayCache, n: int) -> None:
    await cache.first_use(os.urandom(32), 60)  # connect outside the timing
    seq = await sequential(cache, [os.urandom(32) for _ in range(n)])
    conc = await concurrent(cache, [os.urandom(32) for _ in range(n)])
    print(f"{name:8} sequential {seq:8.1f} µs/check   concurrent {conc:8.1f} µs/check")
    await cache.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve(path: str, ready: Any, stop: Any) -> None:
    """The supervisor's part, in a process of its own as in production."""
    server = SharedReplayServer(path)
    server.start_thread()
    ready.set()
    stop.wait()
    server.stop_thread()


@contextlib.contextmanager
def shared_server(path: str) -> Iterator[str]:
    ctx = multiprocessing.get_context("spawn")
    ready, stop = ctx.Event(), ctx.Event()
    proc = ctx.Process(target=serve, args=(path, ready, stop))
    proc.start()
    try:
        if not ready.wait(30):
            raise RuntimeError("the shared replay server did not start")
        yield path
    finally:
        stop.set()
        proc.join(timeout=10)


@contextlib.contextmanager
def redis_server() -> Iterator[str | None]:
    binary = shutil.which("redis-server")
    if binary is None:
        yield None
        return
    port = free_port()
    cmd = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port)):
                break
            time.sleep(0.02)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)


async def main(n: int, redis_url: str | None) -> None:
    await measure("memory", MemoryReplayCache(), n)
    with tempfile.TemporaryDirectory() as tmp, shared_server(os.path.join(tmp, "r.sock")) as path:
        await measure("shared", SharedReplayClient(path), n)
    with contextlib.ExitStack() as stack:
        url = redis_url or stack.enter_context(redis_server())
        if url is None:
            print("redis    skipped (no redis-server installed, no --redis-url)")
            return
        await measure("redis", RedisReplayCache(url), n)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20000, help="checks per measurement")
    parser.add_argument("--redis-url", default=None)
    args = parser.parse_args()
    asyncio.run(main(args.n, args.redis_url))
