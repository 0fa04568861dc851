"""The Redis replay cache against a real redis-server: storage, the pool, and failures
(down, stuck, restarted, wrong password) that must fail closed and fast."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as redis_asyncio

from keybroker.replay.base import ReplayCacheUnavailable
from keybroker.replay.cache import RedisReplayCache
from tests import logscan, replay_servers, servers

redis_url = replay_servers.redis_url


@pytest.fixture
async def raw(redis_url: str) -> AsyncIterator[redis_asyncio.Redis]:
    client = redis_asyncio.Redis.from_url(redis_url)
    yield client
    await client.aclose()


async def test_entry_is_prefixed_and_expires_by_itself(
    redis_url: str, raw: redis_asyncio.Redis
) -> None:
    cache = RedisReplayCache(redis_url, prefix=b"kb-test:")
    k = os.urandom(32)
    try:
        assert await cache.first_use(k, 30.0001)
    finally:
        await cache.close()
    assert await raw.get(b"kb-test:" + k) == b"1"
    assert 29_000 < await raw.pttl(b"kb-test:" + k) <= 30_001  # rounded up, never down


async def test_a_small_pool_serves_many_concurrent_checks(redis_url: str) -> None:
    cache = RedisReplayCache(redis_url, max_connections=2)
    try:
        keys = [os.urandom(32) for _ in range(100)]
        assert all(await asyncio.gather(*(cache.first_use(k, 60) for k in keys)))
    finally:
        await cache.close()


async def test_redis_down_is_unavailable_not_a_hang() -> None:
    cache = RedisReplayCache(f"redis://127.0.0.1:{servers.free_port()}/0", timeout=0.3)
    started = time.monotonic()
    try:
        with pytest.raises(ReplayCacheUnavailable) as info:
            await cache.first_use(os.urandom(32), 60)
    finally:
        await cache.close()
    assert time.monotonic() - started < 2
    assert str(info.value) == "the replay cache is unavailable; retry later"


async def test_stuck_redis_times_out() -> None:
    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        writer.close()

    stuck = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    port = stuck.sockets[0].getsockname()[1]
    cache = RedisReplayCache(f"redis://127.0.0.1:{port}/0", timeout=0.2)
    started = time.monotonic()
    try:
        with pytest.raises(ReplayCacheUnavailable):
            await cache.first_use(os.urandom(32), 60)
    finally:
        await cache.close()
        stuck.close()
        await stuck.wait_closed()
    assert time.monotonic() - started < 1.5


@pytest.mark.emulator  # starts its own redis-server
async def test_recovers_after_a_redis_restart() -> None:
    port = servers.free_port()
    k1, k2 = os.urandom(32), os.urandom(32)
    with replay_servers.redis_server(port) as (url, _):
        cache = RedisReplayCache(url, timeout=0.5)
        assert await cache.first_use(k1, 60)
    try:
        with pytest.raises(ReplayCacheUnavailable):
            await cache.first_use(k2, 60)
        with replay_servers.redis_server(port):
            assert await cache.first_use(k2, 60)  # the pool reconnects by itself
            assert not await cache.first_use(k2, 60)
    finally:
        await cache.close()


@pytest.mark.emulator  # starts its own redis-server
async def test_wrong_password_is_unavailable_and_never_shown(
    caplog: pytest.LogCaptureFixture,
) -> None:
    logscan.register("s3cret-replay-pw", "not-it-pw")
    port = servers.free_port()
    cmd = [replay_servers.redis_binary(), "--port", str(port), "--bind", "127.0.0.1"]
    cmd += ["--save", "", "--requirepass", "s3cret-replay-pw"]
    with servers.running(cmd, servers.port_open(port), what="redis-server"):
        wrong = RedisReplayCache(f"redis://:not-it-pw@127.0.0.1:{port}/0", timeout=0.5)
        right = RedisReplayCache(f"redis://:s3cret-replay-pw@127.0.0.1:{port}/0")
        try:
            with pytest.raises(ReplayCacheUnavailable) as info:
                await wrong.first_use(os.urandom(32), 60)
            assert await right.first_use(os.urandom(32), 60)
        finally:
            await wrong.close()
            await right.close()
    shown = str(info.value) + repr(wrong) + repr(right) + caplog.text
    assert "not-it-pw" not in shown and "s3cret-replay-pw" not in shown


def test_under_uvloop(redis_url: str) -> None:
    import uvloop

    async def use() -> list[bool]:
        cache = RedisReplayCache(redis_url)
        k = os.urandom(32)
        try:
            return [await cache.first_use(k, 60), await cache.first_use(k, 60)]
        finally:
            await cache.close()

    assert uvloop.run(use()) == [True, False]
