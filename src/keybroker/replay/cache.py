"""The replay cache's backends: in process (:class:`MemoryReplayCache`) and in Redis
(:class:`RedisReplayCache`); both satisfy :class:`~keybroker.replay.base.ReplayCache`.

The supervisor shares one :class:`MemoryReplayCache` with its worker processes through
:mod:`keybroker.replay.shared`; :func:`keybroker.replay.factory.replay_cache_from_config` picks
the backend ``Security.ReplayCache`` names.  Keys are never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import time
from collections.abc import Callable
from typing import Any

from keybroker.replay.base import ReplayCacheUnavailable, check_key, ttl_ms

__all__ = ["MemoryReplayCache", "RedisReplayCache", "import_redis"]

log = logging.getLogger("keybroker.replay")


# ------------------------------------------------------------------ in process


class MemoryReplayCache:
    """An in-process cache: a dict of expiry times and a min-heap of (expiry, key).

    Expired entries are dropped from the top of the heap on every call (O(log n) per call);
    the dict is the truth: a heap entry whose key was released (or recorded again since) is
    skipped, and the heap is rebuilt when such entries outnumber the live ones.  Memory is
    bounded by ``max_entries`` (about 200 bytes each).  When full, the entry closest to
    expiry is evicted: the proxy records only verified signatures, so filling the cache takes
    a flood of valid requests; refusing new ones would let that flood deny service to every
    account, while evicting loses protection only for the signature with the least time left.
    Evictions are counted in ``evictions`` and logged (without keys) at most once a minute.

    ``clock`` returns seconds (monotonic); inject it to test expiry without sleeping.  Not
    thread-safe: use it from one event loop.
    """

    def __init__(
        self, max_entries: int = 1_000_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if isinstance(max_entries, bool) or not isinstance(max_entries, int) or max_entries < 1:
            raise ValueError("max_entries must be a positive integer")
        self.max_entries = max_entries
        self.evictions = 0
        self._clock = clock
        self._expiry: dict[bytes, float] = {}
        self._heap: list[tuple[float, bytes]] = []
        self._warned_at: float | None = None

    def __len__(self) -> int:
        return len(self._expiry)

    async def first_use(self, key: bytes, ttl: float) -> bool:
        """See :meth:`ReplayCache.first_use` (never raises ``ReplayCacheUnavailable``)."""
        return self.record(key, ttl_ms(ttl) / 1000)

    def record(self, key: bytes, ttl: float) -> bool:
        """The synchronous core of :meth:`first_use`; ``ttl`` is trusted to be valid."""
        now = self._clock()
        self._expire(now)
        if check_key(key) in self._expiry:
            return False
        if len(self._expiry) >= self.max_entries:
            self._evict(now)
        expiry = now + ttl
        self._expiry[key] = expiry
        heapq.heappush(self._heap, (expiry, key))
        return True

    async def release(self, key: bytes) -> None:
        """See :meth:`ReplayCache.release`."""
        self.forget(key)

    def forget(self, key: bytes) -> bool:
        """The synchronous core of :meth:`release`: True when ``key`` was recorded."""
        self._expire(self._clock())
        if self._expiry.pop(check_key(key), None) is None:
            return False
        if len(self._heap) > 2 * len(self._expiry) + 1024:  # mostly released entries
            self._heap = [(e, k) for e, k in self._heap if self._expiry.get(k) == e]
            heapq.heapify(self._heap)
        return True

    async def close(self) -> None:
        self._expiry.clear()
        self._heap.clear()

    def _pop_live(self) -> bytes | None:
        """Pop the heap's top; its key if that entry is still the recorded one."""
        when, key = heapq.heappop(self._heap)
        if self._expiry.get(key) != when:
            return None  # released, or recorded again with another expiry
        del self._expiry[key]
        return key

    def _expire(self, now: float) -> None:
        heap = self._heap
        while heap and heap[0][0] <= now:
            self._pop_live()

    def _evict(self, now: float) -> None:
        while self._heap and self._pop_live() is None:
            pass
        self.evictions += 1
        if self._warned_at is None or now - self._warned_at >= 60:
            self._warned_at = now
            log.warning(
                "replay cache full: evicting the entries closest to expiry",
                extra={"fields": {"max_entries": self.max_entries, "evictions": self.evictions}},
            )


# ------------------------------------------------------------------ Redis


def import_redis(user: str) -> Any:
    """``redis.asyncio``; raises ``MissingExtra`` naming ``user`` (what needs it) and the
    extra to install."""
    try:
        import redis.asyncio as redis_asyncio
    except ImportError as exc:
        from keybroker.kms.errors import MissingExtra

        raise MissingExtra(f"{user} needs redis-py: install keybroker[redis]") from exc
    return redis_asyncio


class RedisReplayCache:
    """A cache shared by several servers: ``SET <prefix><key> 1 NX PX <ttl>`` is atomic.

    A small blocking pool (``max_connections``) bounds the connections; every call is bounded
    by ``timeout`` seconds (connect, pool wait and reply).  One retry on a dropped connection
    keeps a restarted Redis from failing the first request; if that retried SET had already
    landed, the request is reported as a replay — a false refusal, never a false acceptance.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 1.0,
        max_connections: int = 16,
        prefix: bytes = b"keybroker:replay:",
    ) -> None:
        if not isinstance(url, str) or not url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("Redis URL must start with redis://, rediss:// or unix://")
        redis_asyncio = import_redis("the redis replay cache")
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        self._timeout = timeout
        self._prefix = prefix
        self._pool = redis_asyncio.BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=timeout,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 1),
        )
        self._client = redis_asyncio.Redis(connection_pool=self._pool, retry=Retry(NoBackoff(), 1))

    def __repr__(self) -> str:  # the URL may carry a password
        return "RedisReplayCache(...)"

    async def first_use(self, key: bytes, ttl: float) -> bool:
        """See :meth:`ReplayCache.first_use`."""
        name, px = self._prefix + check_key(key), ttl_ms(ttl)
        from redis.exceptions import RedisError

        try:
            async with asyncio.timeout(2 * self._timeout):
                result = await self._client.set(name, b"1", nx=True, px=px)
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("replay cache (redis) unavailable: %s", type(exc).__name__)
            raise ReplayCacheUnavailable() from exc
        return result is True

    async def release(self, key: bytes) -> None:
        """See :meth:`ReplayCache.release` (``DEL``)."""
        name = self._prefix + check_key(key)
        from redis.exceptions import RedisError

        try:
            async with asyncio.timeout(2 * self._timeout):
                await self._client.delete(name)
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("replay cache (redis) unavailable: %s", type(exc).__name__)
            raise ReplayCacheUnavailable() from exc

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self._client.aclose()
        with contextlib.suppress(Exception):
            await self._pool.aclose()
