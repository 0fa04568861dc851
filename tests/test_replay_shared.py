"""The shared replay cache: real worker processes, the wire format over a real UNIX socket,
failures (server gone, server stuck, garbage) and the socket path checks."""

from __future__ import annotations

import asyncio
import hashlib
import multiprocessing
import os
import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keybroker.replay.base import ReplayCacheUnavailable
from keybroker.replay.cache import MemoryReplayCache
from keybroker.replay.shared import SharedReplayClient, SharedReplayServer
from tests.replay_servers import shared_worker


def key(n: int | str) -> bytes:
    return hashlib.sha256(str(n).encode()).digest()


def frame(k: bytes, ttl_ms: int) -> bytes:
    return k + struct.pack(">I", ttl_ms)


@pytest.fixture
def sock_path(tmp_path: Path) -> str:
    return str(tmp_path / "replay.sock")


@pytest.fixture
def server(sock_path: str) -> Iterator[SharedReplayServer]:
    srv = SharedReplayServer(sock_path)
    srv.start_thread()
    yield srv
    srv.stop_thread()


def raw(path: str) -> socket.socket:
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(5)
    s.connect(path)
    return s


def recv_exactly(s: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


# ------------------------------------------------------------------ worker processes


def test_two_worker_processes_accept_each_key_once(server: SharedReplayServer) -> None:
    ctx = multiprocessing.get_context("spawn")
    keys = [key(i) for i in range(3000)]
    barrier, out = ctx.Barrier(2), ctx.Queue()
    orders = [keys, list(reversed(keys))]  # the two workers meet in the middle
    procs = [
        ctx.Process(target=shared_worker, args=(server.path, order, barrier, out))
        for order in orders
    ]
    for p in procs:
        p.start()
    try:
        accepted = [out.get(timeout=60), out.get(timeout=60)]
    finally:
        for p in procs:
            p.join(timeout=30)
    assert [p.exitcode for p in procs] == [0, 0]
    assert not set(accepted[0]) & set(accepted[1])
    assert sorted(accepted[0] + accepted[1]) == sorted(keys)


# ------------------------------------------------------------------ wire format


def test_pipelined_frames_answered_in_order(server: SharedReplayServer) -> None:
    keys = [key(i) for i in range(50)]
    calls = keys + keys[::2]
    with raw(server.path) as s:
        s.sendall(b"".join(frame(k, 60_000) for k in calls))
        answer = recv_exactly(s, len(calls))
    assert answer == b"\x01" * 50 + b"\x00" * 25


def test_frames_split_across_writes(server: SharedReplayServer) -> None:
    data = frame(key("a"), 60_000) + frame(key("a"), 60_000)
    with raw(server.path) as s:
        for i in range(len(data)):
            s.sendall(data[i : i + 1])
            time.sleep(0.0005 if i % 9 == 0 else 0)
        assert recv_exactly(s, 2) == b"\x01\x00"


def test_a_slow_reader_gets_every_answer(server: SharedReplayServer) -> None:
    """Requests keep coming while the answers are not read: the server stops reading (no
    unbounded buffer) and catches up once they are."""
    n = 40_000
    data = b"".join(frame(os.urandom(32), 60_000) for _ in range(n))
    with raw(server.path) as s:
        sender = threading.Thread(target=s.sendall, args=(data,))
        sender.start()
        time.sleep(0.3)
        answer = recv_exactly(s, n)
        sender.join()
    assert answer == b"\x01" * n


def test_a_zero_ttl_frame_releases_the_key(server: SharedReplayServer) -> None:
    with raw(server.path) as s:
        s.sendall(frame(key("r"), 60_000) + frame(key("r"), 0) + frame(key("r"), 0))
        assert recv_exactly(s, 3) == b"\x01\x01\x00"  # recorded, released, nothing to release
        s.sendall(frame(key("r"), 60_000) + frame(key("r"), 60_000))
        assert recv_exactly(s, 2) == b"\x01\x00"  # usable once more, then a replay again


@pytest.mark.parametrize("ttl_ms", [30 * 24 * 3600 * 1000 + 1, 0xFFFFFFFF])
def test_bad_ttl_closes_that_connection_only(server: SharedReplayServer, ttl_ms: int) -> None:
    with raw(server.path) as bad, raw(server.path) as good:
        bad.sendall(frame(key("ok"), 1000) + frame(key("bad"), ttl_ms) + frame(key("x"), 1000))
        assert recv_exactly(bad, 3) == b"\x01"  # the answer before the bad frame, then EOF
        good.sendall(frame(key("bad"), 1000) + frame(key("x"), 1000))
        assert recv_exactly(good, 2) == b"\x01\x01"  # nothing after the bad frame was recorded


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(garbage=st.binary(max_size=400))
def test_fuzzed_input_never_breaks_the_server(server: SharedReplayServer, garbage: bytes) -> None:
    """Random bytes: at most one answer per whole frame, each 0 or 1; the server lives on."""
    with raw(server.path) as s:
        s.sendall(garbage)
        s.shutdown(socket.SHUT_WR)
        answer = recv_exactly(s, len(garbage) // 36 + 1)
    assert len(answer) <= len(garbage) // 36
    assert set(answer) <= {0, 1}
    probe = os.urandom(32)
    with raw(server.path) as s:
        s.sendall(frame(probe, 1000))
        assert recv_exactly(s, 1) == b"\x01"


# ------------------------------------------------------------------ failures


async def test_no_server_is_unavailable_fast(sock_path: str) -> None:
    client = SharedReplayClient(sock_path, timeout=0.5)
    started = time.monotonic()
    with pytest.raises(ReplayCacheUnavailable):
        await client.first_use(key(1), 60)
    assert time.monotonic() - started < 0.5
    await client.close()


async def test_stuck_server_times_out(sock_path: str) -> None:
    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # swallow requests until the client hangs up
        writer.close()

    stuck = await asyncio.start_unix_server(never_answer, sock_path)
    client = SharedReplayClient(sock_path, timeout=0.2)
    try:
        started = time.monotonic()
        results = await asyncio.gather(
            *(client.first_use(key(i), 60) for i in range(5)), return_exceptions=True
        )
        assert all(isinstance(r, ReplayCacheUnavailable) for r in results)
        assert time.monotonic() - started < 1.0
    finally:
        await client.close()
        stuck.close()
        await stuck.wait_closed()


async def test_client_reconnects_after_a_server_restart(sock_path: str) -> None:
    client = SharedReplayClient(sock_path, timeout=1.0)
    first = SharedReplayServer(sock_path)
    await first.start()
    assert await client.first_use(key(1), 60)
    await first.close()
    with pytest.raises(ReplayCacheUnavailable):  # the next call finds the server gone
        await client.first_use(key(1), 60)
    second = SharedReplayServer(sock_path)
    await second.start()
    try:
        assert await client.first_use(key(2), 60)  # reconnected
        assert not await client.first_use(key(2), 60)
    finally:
        await client.close()
        await second.close()


async def test_calls_in_flight_fail_when_the_server_goes(sock_path: str) -> None:
    gate = asyncio.Event()

    async def hang_up_later(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readexactly(36 * 3)
        await gate.wait()
        writer.close()

    srv = await asyncio.start_unix_server(hang_up_later, sock_path)
    client = SharedReplayClient(sock_path, timeout=5.0)
    try:
        calls = [asyncio.create_task(client.first_use(key(i), 60)) for i in range(3)]
        await asyncio.sleep(0.05)
        gate.set()
        results = await asyncio.gather(*calls, return_exceptions=True)
        assert all(isinstance(r, ReplayCacheUnavailable) for r in results)
    finally:
        await client.close()
        srv.close()
        await srv.wait_closed()


async def test_extra_answers_drop_the_connection(sock_path: str) -> None:
    async def chatty(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readexactly(36)
        writer.write(b"\x01\x01")  # two answers to one question
        await writer.drain()
        await reader.read()
        writer.close()

    srv = await asyncio.start_unix_server(chatty, sock_path)
    client = SharedReplayClient(sock_path, timeout=1.0)
    try:
        with pytest.raises(ReplayCacheUnavailable):
            await client.first_use(key(1), 60)
    finally:
        await client.close()
        srv.close()
        await srv.wait_closed()


async def test_a_client_follows_its_event_loop(server: SharedReplayServer) -> None:
    client = SharedReplayClient(server.path)

    def in_other_loop() -> bool:
        async def use() -> bool:
            try:
                return await client.first_use(key("other"), 60)
            finally:
                await client.close()

        return asyncio.run(use())

    assert await client.first_use(key("here"), 60)
    assert await asyncio.get_running_loop().run_in_executor(None, in_other_loop) is True
    assert not await client.first_use(key("other"), 60)  # back on this loop: new connection
    assert not await client.first_use(key("here"), 60)
    await client.close()


def test_server_and_client_under_uvloop(sock_path: str) -> None:
    """The proxy runs on uvloop when installed, whose transports are only look-alikes."""
    import uvloop

    async def use() -> list[bool]:
        async with SharedReplayServer(sock_path) as srv:
            client = SharedReplayClient(srv.path)
            try:
                return list(
                    await asyncio.gather(*(client.first_use(key(i % 2), 60) for i in range(4)))
                )
            finally:
                await client.close()

    assert sorted(uvloop.run(use())) == [False, False, True, True]


# ------------------------------------------------------------------ the socket path


async def test_refuses_a_live_servers_socket(server: SharedReplayServer) -> None:
    with pytest.raises(ValueError, match="another replay server is listening on"):
        await SharedReplayServer(server.path).start()
    with raw(server.path) as s:  # the first one still serves
        s.sendall(frame(key("alive"), 1000))
        assert recv_exactly(s, 1) == b"\x01"


async def test_refuses_a_path_that_is_not_a_socket(tmp_path: Path) -> None:
    path = tmp_path / "file"
    path.write_bytes(b"keep me")
    with pytest.raises(ValueError, match="exists and is not a socket"):
        await SharedReplayServer(str(path)).start()
    assert path.read_bytes() == b"keep me"


async def test_replaces_a_stale_socket(sock_path: str) -> None:
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(sock_path)
    stale.close()  # the file stays, nobody listens
    async with SharedReplayServer(sock_path) as srv:
        client = SharedReplayClient(srv.path)
        assert await client.first_use(key(1), 60)
        await client.close()
    assert not Path(sock_path).exists()


async def test_server_uses_the_given_cache(sock_path: str) -> None:
    cache = MemoryReplayCache(max_entries=2)
    async with SharedReplayServer(sock_path, cache) as srv:
        client = SharedReplayClient(srv.path)
        for i in range(5):
            assert await client.first_use(key(i), 60)
        await client.close()
    assert len(cache) == 2 and cache.evictions == 3
