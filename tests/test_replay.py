"""The in-process replay cache (injected clock), argument checks and the config factory."""

from __future__ import annotations

import hashlib
import logging
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keybroker.errors import ConfigError, ProxyError
from keybroker.kms.errors import MissingExtra
from keybroker.proxy.limits import RedisSlots
from keybroker.replay.base import MAX_TTL_SECONDS, ReplayCache, ReplayCacheUnavailable
from keybroker.replay.cache import MemoryReplayCache, RedisReplayCache
from keybroker.replay.factory import replay_cache_from_config
from keybroker.replay.shared import SharedReplayClient
from keybroker.settings import SecurityConfig


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def key(n: int | str) -> bytes:
    return hashlib.sha256(str(n).encode()).digest()


async def test_first_use_then_replay() -> None:
    cache = MemoryReplayCache()
    assert await cache.first_use(key(1), 60) is True
    assert await cache.first_use(key(1), 60) is False
    assert await cache.first_use(key(2), 60) is True
    assert len(cache) == 2


async def test_entry_expires_after_its_ttl() -> None:
    clock = Clock()
    cache = MemoryReplayCache(clock=clock)
    assert await cache.first_use(key(1), 30)
    clock.now += 29.999
    assert not await cache.first_use(key(1), 30)  # a replay does not extend the entry
    clock.now += 0.001
    assert await cache.first_use(key(1), 30)
    assert len(cache) == 1


async def test_ttl_rounds_up_to_a_millisecond() -> None:
    clock = Clock()
    cache = MemoryReplayCache(clock=clock)
    assert await cache.first_use(key(1), 0.0001)
    clock.now += 0.0009
    assert not await cache.first_use(key(1), 1)
    clock.now += 0.0001
    assert await cache.first_use(key(1), 1)


async def test_expired_entries_are_dropped() -> None:
    clock = Clock()
    cache = MemoryReplayCache(clock=clock)
    for i in range(100):
        await cache.first_use(key(i), 10 + i)
    clock.now += 60
    await cache.first_use(key("new"), 10)
    assert len(cache) == 1 + 49  # ttl 60..109 still live


async def test_full_cache_evicts_the_entry_closest_to_expiry(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cache = MemoryReplayCache(max_entries=3, clock=Clock())
    assert await cache.first_use(key("long"), 300)
    assert await cache.first_use(key("short"), 10)
    assert await cache.first_use(key("mid"), 100)
    with caplog.at_level(logging.WARNING, logger="keybroker.replay.cache"):
        assert await cache.first_use(key("new"), 50)  # never refused: that would be a DoS
    assert len(cache) == 3 and cache.evictions == 1
    for kept in ("long", "mid", "new"):
        assert not await cache.first_use(key(kept), 300)
    assert await cache.first_use(key("short"), 10)  # evicted, so accepted again
    assert cache.evictions == 2
    assert "replay cache full" in caplog.text
    assert key("short").hex() not in caplog.text and "short" not in caplog.text


async def test_eviction_warning_is_rate_limited(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    cache = MemoryReplayCache(max_entries=1, clock=clock)
    with caplog.at_level(logging.WARNING, logger="keybroker.replay.cache"):
        for i in range(10):
            await cache.first_use(key(i), 1000)
        clock.now += 60
        await cache.first_use(key("later"), 1000)
    assert cache.evictions == 10
    assert caplog.text.count("replay cache full") == 2


@pytest.mark.parametrize(
    ("bad_key", "exc", "message"),
    [
        ("0" * 32, TypeError, "replay key must be bytes"),
        (bytearray(32), TypeError, "replay key must be bytes"),
        (b"x" * 31, ValueError, "replay key must be a 32-byte digest"),
        (b"x" * 64, ValueError, "replay key must be a 32-byte digest"),
    ],
)
async def test_bad_key_is_refused(bad_key: object, exc: type[Exception], message: str) -> None:
    cache = MemoryReplayCache()
    with pytest.raises(exc) as info:
        await cache.first_use(bad_key, 60)  # type: ignore[arg-type]
    assert str(info.value) == message
    assert len(cache) == 0


@pytest.mark.parametrize(
    ("ttl", "exc"),
    [
        (0, ValueError),
        (-1, ValueError),
        (float("nan"), ValueError),
        (float("inf"), ValueError),
        (MAX_TTL_SECONDS + 1, ValueError),
        (True, TypeError),
        ("60", TypeError),
    ],
)
async def test_bad_ttl_is_refused(ttl: object, exc: type[Exception]) -> None:
    cache = MemoryReplayCache()
    with pytest.raises(exc, match="replay TTL must be"):
        await cache.first_use(key(1), ttl)  # type: ignore[arg-type]
    assert len(cache) == 0


@pytest.mark.parametrize("bad", [0, -5, True, 2.5])
def test_max_entries_must_be_positive(bad: object) -> None:
    with pytest.raises(ValueError, match=r"^max_entries must be a positive integer$"):
        MemoryReplayCache(max_entries=bad)  # type: ignore[arg-type]


def test_unavailable_is_a_generic_503() -> None:
    exc = ReplayCacheUnavailable()
    assert isinstance(exc, ProxyError)
    assert (exc.status, exc.code, exc.retry_after) == (503, "Proxy.ServiceUnavailable", 1)
    assert str(exc) == "the replay cache is unavailable; retry later"


# ------------------------------------------------------------------ against a model


@st.composite
def operations(draw: st.DrawFn) -> list[tuple[int, int, float]]:
    """(key index, ttl in ms — 0: release the key —, seconds to advance the clock first)."""
    return draw(
        st.lists(
            st.tuples(
                st.integers(0, 12),
                st.one_of(st.just(0), st.integers(1, 5000)),
                st.sampled_from([0.0, 0.0, 0.001, 0.5, 1.0, 2.5, 6.0]),
            ),
            max_size=120,
        )
    )


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(ops=operations(), max_entries=st.integers(1, 15))
def test_matches_a_model(ops: list[tuple[int, int, float]], max_entries: int) -> None:
    """A dict model: entries live until now >= expiry or their release; when full, the
    (expiry, key) minimum goes; the cache must answer exactly as the model and never exceed
    its bound, and its heap never holds more than a bounded number of released entries."""
    clock = Clock()
    cache = MemoryReplayCache(max_entries=max_entries, clock=clock)
    model: dict[bytes, float] = {}
    for index, ttl_ms, advance in ops:
        clock.now += advance
        k = key(index)
        model = {mk: exp for mk, exp in model.items() if exp > clock.now}
        if ttl_ms == 0:
            assert cache.forget(k) is (model.pop(k, None) is not None)
            continue
        expected = k not in model
        if expected:
            if len(model) >= max_entries:
                del model[min(model.items(), key=lambda kv: (kv[1], kv[0]))[0]]
            model[k] = clock.now + ttl_ms / 1000
        assert cache.record(k, ttl_ms / 1000) is expected
        assert len(cache) == len(model) <= max_entries
    assert len(cache._heap) <= 2 * len(cache) + 1024 + len(ops)


# ------------------------------------------------------------------ configuration


def test_factory_off() -> None:
    assert replay_cache_from_config(SecurityConfig(replay_cache="off"), shared_path=None) is None


def test_factory_memory_in_process_or_shared(tmp_path: object) -> None:
    alone = replay_cache_from_config(SecurityConfig(), shared_path=None)
    assert isinstance(alone, MemoryReplayCache) and isinstance(alone, ReplayCache)
    shared = replay_cache_from_config(SecurityConfig(), shared_path=f"{tmp_path}/r.sock")
    assert isinstance(shared, SharedReplayClient) and isinstance(shared, ReplayCache)
    assert shared.path == f"{tmp_path}/r.sock"


@pytest.mark.parametrize(
    "url", ["redis://127.0.0.1:1/0", "rediss://u:pw@h:6380/1", "unix:///run/redis.sock"]
)
async def test_factory_redis(url: str) -> None:
    cache = replay_cache_from_config(SecurityConfig(replay_cache=url), shared_path="/x")
    assert isinstance(cache, RedisReplayCache) and isinstance(cache, ReplayCache)
    assert "pw" not in repr(cache)
    await cache.close()


@pytest.mark.parametrize("value", ["", "Memory", "redis:/x", "http://127.0.0.1:6379"])
def test_factory_refuses_other_values(value: str) -> None:
    with pytest.raises(ConfigError) as info:
        replay_cache_from_config(SecurityConfig(replay_cache=value), shared_path=None)
    assert str(info.value) == "Security.ReplayCache: expected memory, off or a redis:// URL"


def test_redis_url_scheme_is_checked() -> None:
    with pytest.raises(ValueError, match=r"^Redis URL must start with redis://"):
        RedisReplayCache("http://127.0.0.1:6379")


def test_redis_without_redis_py_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "redis.asyncio", None)  # what an absent package does
    with pytest.raises(
        MissingExtra, match=r"^the redis replay cache needs redis-py: install keybroker\[redis\]$"
    ):
        RedisReplayCache("redis://127.0.0.1:6379/0")


def test_redis_limits_without_redis_py_name_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "redis.asyncio", None)
    with pytest.raises(
        MissingExtra,
        match=r"^the redis concurrency limit needs redis-py: install keybroker\[redis\]$",
    ):
        RedisSlots("redis://127.0.0.1:6379/0", stale_after=30.0)
