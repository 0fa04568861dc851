"""One suite for every replay-cache backend: in-process memory, the shared server over a real
UNIX socket, and a real redis-server."""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from keybroker.replay.base import ReplayCache
from keybroker.replay.cache import MemoryReplayCache, RedisReplayCache
from keybroker.replay.shared import SharedReplayClient, SharedReplayServer
from tests import replay_servers

redis_url = replay_servers.redis_url

REDIS = pytest.param("redis", marks=pytest.mark.emulator)  # a real redis-server
BACKENDS = ["memory", "shared", REDIS]
SHARED_STORES = ["shared", REDIS]


@pytest.fixture(scope="module")
def shared_path(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    path = str(tmp_path_factory.mktemp("replay") / "replay.sock")
    server = SharedReplayServer(path)
    server.start_thread()
    yield path
    server.stop_thread()


def make(backend: str, request: pytest.FixtureRequest) -> ReplayCache:
    if backend == "memory":
        return MemoryReplayCache()
    if backend == "shared":
        return SharedReplayClient(request.getfixturevalue("shared_path"))
    return RedisReplayCache(request.getfixturevalue("redis_url"))


@pytest.fixture(params=BACKENDS)
async def cache(request: pytest.FixtureRequest) -> AsyncIterator[ReplayCache]:
    c = make(request.param, request)
    yield c
    await c.close()


@pytest.fixture(params=SHARED_STORES)
async def pair(request: pytest.FixtureRequest) -> AsyncIterator[tuple[ReplayCache, ReplayCache]]:
    """Two independent clients of one store (two workers, or two keybroker servers)."""
    a, b = make(request.param, request), make(request.param, request)
    yield a, b
    await a.close()
    await b.close()


def fresh() -> bytes:
    return os.urandom(32)  # the Redis and the shared server outlive each test


async def test_first_use_then_replay(cache: ReplayCache) -> None:
    k1, k2 = fresh(), fresh()
    assert await cache.first_use(k1, 60) is True
    assert await cache.first_use(k1, 60) is False
    assert await cache.first_use(k2, 60) is True
    assert await cache.first_use(k1, 60) is False


async def test_concurrent_checks_accept_each_key_once(cache: ReplayCache) -> None:
    keys = [fresh() for _ in range(100)]
    calls = keys * 3
    random.Random(7).shuffle(calls)
    results = await asyncio.gather(*(cache.first_use(k, 60) for k in calls))
    accepted = [k for k, ok in zip(calls, results, strict=True) if ok]
    assert sorted(accepted) == sorted(keys)


async def test_short_real_ttl_expires(cache: ReplayCache) -> None:
    k = fresh()
    assert await cache.first_use(k, 0.2)
    assert not await cache.first_use(k, 0.2)
    await asyncio.sleep(0.3)
    assert await cache.first_use(k, 0.2)


async def test_bad_arguments_record_nothing(cache: ReplayCache) -> None:
    k = fresh()
    with pytest.raises(ValueError, match=r"^replay key must be a 32-byte digest$"):
        await cache.first_use(k[:16], 60)
    with pytest.raises(ValueError, match=r"^replay TTL must be > 0"):
        await cache.first_use(k, 0)
    with pytest.raises(TypeError, match=r"^replay key must be bytes$"):
        await cache.first_use(k.hex(), 60)  # type: ignore[arg-type]
    assert await cache.first_use(k, 60)


async def test_release_makes_a_key_usable_once_more(cache: ReplayCache) -> None:
    k, other = fresh(), fresh()
    assert await cache.first_use(k, 60)
    assert await cache.first_use(other, 60)
    await cache.release(k)
    await cache.release(k)  # twice, and a key never recorded: nothing happens
    await cache.release(fresh())
    assert await cache.first_use(k, 60) is True
    assert await cache.first_use(k, 60) is False
    assert await cache.first_use(other, 60) is False  # the others stay recorded


async def test_release_is_seen_by_the_other_clients(
    pair: tuple[ReplayCache, ReplayCache],
) -> None:
    a, b = pair
    k = fresh()
    assert await a.first_use(k, 60)
    assert not await b.first_use(k, 60)
    await a.release(k)
    assert await b.first_use(k, 60)
    assert not await a.first_use(k, 60)


async def test_release_checks_the_key(cache: ReplayCache) -> None:
    with pytest.raises(ValueError, match=r"^replay key must be a 32-byte digest$"):
        await cache.release(b"short")


async def test_close_twice(cache: ReplayCache) -> None:
    await cache.first_use(fresh(), 60)
    await cache.close()
    await cache.close()


async def test_two_clients_of_one_store_accept_a_key_once(
    pair: tuple[ReplayCache, ReplayCache],
) -> None:
    a, b = pair
    keys = [fresh() for _ in range(200)]
    results = await asyncio.gather(
        asyncio.gather(*(a.first_use(k, 60) for k in keys)),
        asyncio.gather(*(b.first_use(k, 60) for k in reversed(keys))),
    )
    from_a = {k for k, ok in zip(keys, results[0], strict=True) if ok}
    from_b = {k for k, ok in zip(reversed(keys), results[1], strict=True) if ok}
    assert not from_a & from_b
    assert from_a | from_b == set(keys)


def test_socket_is_owner_only(shared_path: str) -> None:
    assert Path(shared_path).stat().st_mode & 0o777 == 0o600
