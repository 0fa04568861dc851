"""CachedKMS: bounds (age, uses, size) under an injected clock, single-flight, invalidation,
and offline mode against a moto server that is really stopped."""

from __future__ import annotations

import asyncio
import logging
import urllib.parse
from collections.abc import AsyncIterator

import boto3
import pytest

from keybroker.kms.backends.aws import AWSKMSWrapper
from keybroker.kms.cache import CachedKMS
from keybroker.kms.cluster import ClusterKMS, hkdf_sha256
from keybroker.kms.errors import BackendError
from keybroker.kms.external import ExternalKMS
from keybroker.kms.storage.memory import MemoryStorage
from keybroker.kms.uri import parse_uri
from tests import servers

SECRET, SALT = bytes(range(32)), bytes(range(32, 64))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class CountingKMS:
    """A real ClusterKMS, counting the calls that reach it; ``gate`` (when set) holds every
    call until it is opened, so callers can pile up on one in-flight call."""

    def __init__(self) -> None:
        self.real = ClusterKMS(SECRET, SALT)
        self.calls: list[tuple[str, int]] = []
        self.gate: asyncio.Event | None = None
        self.closed = False

    async def get_dek(self, dek_id: str, dek_size: int) -> bytes:
        self.calls.append((dek_id, dek_size))
        if self.gate is not None:
            await self.gate.wait()
        return await self.real.get_dek(dek_id, dek_size)

    async def close(self) -> None:
        self.closed = True


@pytest.fixture
def inner() -> CountingKMS:
    return CountingKMS()


@pytest.fixture
def clock() -> Clock:
    return Clock()


def expected(dek_id: str, size: int = 32) -> bytes:
    return hkdf_sha256(SECRET, SALT, dek_id.encode(), size)


async def test_hit_returns_the_inner_dek_without_calling_it(
    inner: CountingKMS, clock: Clock
) -> None:
    cache = CachedKMS(inner, clock=clock)
    first = await cache.get_dek("key-a", 32)
    assert first == await ClusterKMS(SECRET, SALT).get_dek("key-a", 32)
    for _ in range(5):
        assert await cache.get_dek("key-a", 32) == first
    assert inner.calls == [("key-a", 32)]
    assert await cache.get_dek("key-a", 16) == first[:16]  # HKDF: a prefix, but another entry
    assert inner.calls == [("key-a", 32), ("key-a", 16)]
    stats = cache.stats
    assert (stats.hits, stats.misses) == (5, 2)


async def test_age_bound(inner: CountingKMS, clock: Clock) -> None:
    cache = CachedKMS(inner, max_age=60.0, clock=clock)
    await cache.get_dek("k", 32)
    clock.now += 59.9
    await cache.get_dek("k", 32)
    assert len(inner.calls) == 1
    clock.now += 0.1  # exactly max_age: expired
    await cache.get_dek("k", 32)
    assert len(inner.calls) == 2
    clock.now += 30  # the refetch restarted the age
    await cache.get_dek("k", 32)
    assert len(inner.calls) == 2


async def test_use_bound(inner: CountingKMS, clock: Clock) -> None:
    cache = CachedKMS(inner, max_uses=3, clock=clock)
    for _ in range(4):  # one fetch, then three answers from the cache
        await cache.get_dek("k", 32)
    assert len(inner.calls) == 1
    assert len(cache) == 0  # the third answer used the entry up
    await cache.get_dek("k", 32)
    assert len(inner.calls) == 2


async def test_size_bound_evicts_least_recently_used(inner: CountingKMS, clock: Clock) -> None:
    cache = CachedKMS(inner, max_entries=2, clock=clock)
    await cache.get_dek("a", 32)
    await cache.get_dek("b", 32)
    await cache.get_dek("a", 32)  # a is now the most recent
    await cache.get_dek("c", 32)  # evicts b
    assert len(cache) == 2
    await cache.get_dek("a", 32)
    assert [c[0] for c in inner.calls] == ["a", "b", "c"]
    await cache.get_dek("b", 32)
    assert [c[0] for c in inner.calls] == ["a", "b", "c", "b"]
    assert cache.stats.evictions == 2  # b, then c (the least recent when b came back)


async def test_evicted_and_cleared_buffers_are_zeroed(inner: CountingKMS, clock: Clock) -> None:
    cache = CachedKMS(inner, max_entries=1, clock=clock)
    await cache.get_dek("a", 32)
    buffer_a = cache._entries[("a", 32)].dek
    await cache.get_dek("b", 32)  # evicts a
    assert buffer_a == bytearray(32)
    buffer_b = cache._entries[("b", 32)].dek
    assert buffer_b == bytearray(expected("b"))
    cache.clear()
    assert buffer_b == bytearray(32) and len(cache) == 0
    assert await cache.get_dek("b", 32) == expected("b")  # callers' copies were never shared


async def test_invalidate_forgets_every_size_of_the_id(inner: CountingKMS, clock: Clock) -> None:
    cache = CachedKMS(inner, clock=clock)
    for size in (16, 32):
        await cache.get_dek("gone", size)
    await cache.get_dek("kept", 32)
    cache.invalidate("gone")
    assert len(cache) == 1
    await cache.get_dek("gone", 32)
    await cache.get_dek("kept", 32)
    assert inner.calls.count(("gone", 32)) == 2 and inner.calls.count(("kept", 32)) == 1


async def test_invalidate_during_a_fetch_keeps_its_result_out(
    inner: CountingKMS, clock: Clock
) -> None:
    cache = CachedKMS(inner, clock=clock)
    inner.gate = asyncio.Event()
    early = asyncio.create_task(cache.get_dek("k", 32))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    cache.invalidate("k")  # e.g. the DEK is being deleted right now
    inner.gate.set()
    assert await early == expected("k")  # the caller who asked before still gets an answer
    assert len(cache) == 0  # ... but nothing fetched before the invalidation is served later
    await cache.get_dek("k", 32)
    assert len(inner.calls) == 2


async def test_concurrent_misses_share_one_inner_call(inner: CountingKMS, clock: Clock) -> None:
    cache = CachedKMS(inner, clock=clock)
    inner.gate = asyncio.Event()
    waiters = [asyncio.create_task(cache.get_dek("hot", 32)) for _ in range(50)]
    others = [asyncio.create_task(cache.get_dek(f"cold-{i}", 32)) for i in range(3)]
    await asyncio.sleep(0.01)
    assert sorted(inner.calls) == sorted([("hot", 32), *[(f"cold-{i}", 32) for i in range(3)]])
    inner.gate.set()
    results = await asyncio.gather(*waiters)
    assert set(results) == {expected("hot")}
    await asyncio.gather(*others)
    assert cache.stats.coalesced == 49 and len(inner.calls) == 4


async def test_a_cancelled_caller_does_not_cancel_the_shared_fetch(
    inner: CountingKMS, clock: Clock
) -> None:
    cache = CachedKMS(inner, clock=clock)
    inner.gate = asyncio.Event()
    first = asyncio.create_task(cache.get_dek("k", 32))
    second = asyncio.create_task(cache.get_dek("k", 32))
    await asyncio.sleep(0.01)
    first.cancel()
    inner.gate.set()
    assert await second == expected("k")
    with pytest.raises(asyncio.CancelledError):
        await first
    assert len(inner.calls) == 1 and len(cache) == 1


async def test_errors_are_not_cached(inner: CountingKMS, clock: Clock) -> None:
    cache = CachedKMS(inner, clock=clock)
    for _ in range(2):
        with pytest.raises(ValueError, match="DEK size must be at least 1 byte"):
            await cache.get_dek("k", 0)
    assert len(inner.calls) == 2 and len(cache) == 0
    with pytest.raises(TypeError, match="DEK size must be an int"):
        await cache.get_dek("k", True)  # type: ignore[arg-type]


async def test_a_bool_size_never_hits_the_size_1_entry(inner: CountingKMS, clock: Clock) -> None:
    cache = CachedKMS(inner, clock=clock)
    await cache.get_dek("k", 1)
    with pytest.raises(TypeError):
        await cache.get_dek("k", True)  # type: ignore[arg-type]


async def test_close_clears_and_closes_inner(inner: CountingKMS, clock: Clock) -> None:
    cache = CachedKMS(inner, clock=clock)
    await cache.get_dek("k", 32)
    await cache.close()
    assert inner.closed and len(cache) == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_entries": 0}, "max_entries must be an int of at least 1"),
        ({"max_age": 0}, "max_age must be a positive number of seconds"),
        ({"max_uses": 0}, "max_uses must be None or an int of at least 1"),
        ({"max_age": 10, "offline_max_age": 5}, "offline_max_age must be at least max_age"),
    ],
)
def test_bad_bounds(inner: CountingKMS, kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=f"^{message}$"):
        CachedKMS(inner, **kwargs)  # type: ignore[arg-type]


def test_inner_must_be_a_kms() -> None:
    with pytest.raises(TypeError, match=r"^inner must be a KMS$"):
        CachedKMS(object())  # type: ignore[arg-type]


# -- offline mode: a real AWS KMS (moto) that goes away --------------------------------------


@pytest.fixture
async def doomed_aws() -> AsyncIterator[tuple[ExternalKMS, servers.subprocess.Popen[bytes]]]:
    """An ExternalKMS whose AWS KMS is a moto server of its own, which the test can kill."""
    port = servers.free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [str(servers.BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)]
    with servers.running(cmd, servers.http_ok(f"{url}/moto-api/"), what="moto") as proc:
        kms_client = boto3.client(
            "kms",
            endpoint_url=url,
            region_name="eu-west-1",
            aws_access_key_id="t",
            aws_secret_access_key="t",
        )
        key = kms_client.create_key()["KeyMetadata"]["KeyId"]
        q = urllib.parse.quote
        uri = (
            f"kms://aws?region=eu-west-1&accessKeyID=t&accessKey=t&keyName={key}"
            f"&endpoint={q(url, safe='')}"
        )
        kms = ExternalKMS(AWSKMSWrapper.from_uri(parse_uri(uri)), MemoryStorage())
        yield kms, proc
        await kms.close()


@pytest.mark.emulator  # doomed_aws starts its own moto_server
async def test_offline_serves_expired_entries_while_the_backend_is_down(
    doomed_aws: tuple[ExternalKMS, servers.subprocess.Popen[bytes]],
    clock: Clock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    kms, proc = doomed_aws
    cache = CachedKMS(kms, max_age=60, offline=True, offline_max_age=600, clock=clock)
    dek = await cache.get_dek("key-cached", 32)
    await kms.get_dek("key-stored-not-cached", 32)  # in storage, never asked of the cache
    servers.stop(proc)  # AWS KMS is now really unreachable

    clock.now += 120  # expired: the cache must ask the backend, which fails
    with caplog.at_level(logging.WARNING, logger="keybroker.kms.cache"):
        assert await cache.get_dek("key-cached", 32) == dek
    assert cache.stats.offline_hits == 1
    assert "offline mode" in caplog.text and dek.hex() not in caplog.text
    with pytest.raises(BackendError, match="AWS KMS"):
        await cache.get_dek("key-stored-not-cached", 32)  # never cached: nothing to serve

    clock.now += 600  # beyond offline_max_age: refused as well
    with pytest.raises(BackendError):
        await cache.get_dek("key-cached", 32)
    assert cache.stats.offline_hits == 1


@pytest.mark.emulator  # doomed_aws starts its own moto_server
async def test_offline_never_serves_an_invalidated_dek(
    doomed_aws: tuple[ExternalKMS, servers.subprocess.Popen[bytes]], clock: Clock
) -> None:
    kms, proc = doomed_aws
    cache = CachedKMS(kms, max_age=60, offline=True, clock=clock)
    await cache.get_dek("key-x", 32)
    servers.stop(proc)
    cache.invalidate("key-x")
    clock.now += 120
    with pytest.raises(BackendError):
        await cache.get_dek("key-x", 32)
    assert cache.stats.offline_hits == 0


@pytest.mark.emulator  # doomed_aws starts its own moto_server
async def test_without_offline_mode_an_expired_entry_is_not_served(
    doomed_aws: tuple[ExternalKMS, servers.subprocess.Popen[bytes]], clock: Clock
) -> None:
    kms, proc = doomed_aws
    cache = CachedKMS(kms, max_age=60, clock=clock)
    await cache.get_dek("key-y", 32)
    servers.stop(proc)
    assert len(await cache.get_dek("key-y", 32)) == 32  # fresh: no backend needed
    clock.now += 61
    with pytest.raises(BackendError):
        await cache.get_dek("key-y", 32)
