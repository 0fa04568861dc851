"""Per-account concurrency limits: at most ``MaxConcurrentRequests`` in flight per account.

Above the limit a request is refused at once with 503 ``Proxy.TooManyRequests`` and a
``Retry-After`` — queueing would only move the overload into the proxy's memory.

Where the count lives (``Security.RateLimitStore``):

* ``memory`` — in each worker process (event-loop confined, no lock, no I/O); with N workers an
  account can have up to N x the limit in flight on one server;
* ``redis://...`` — one count for every process and server sharing that Redis: a sorted set
  per account of in-flight request ids scored by start time (entries older than the upstream
  timeout are dropped, so a crashed process cannot leak slots forever), updated atomically by
  a small Lua script.  Redis unavailable means 503 (fail closed), like the replay cache.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from keybroker.errors import ServiceUnavailable, TooManyRequests
from keybroker.settings import Endpoint, SecurityConfig

__all__ = ["AccountLimits", "RedisSlots", "limits_from_config"]

log = logging.getLogger("keybroker.limits")

_ACQUIRE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1] - ARGV[4])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
redis.call('PEXPIRE', KEYS[1], math.floor(ARGV[4] * 1000))
return 1
"""


class RedisSlots:
    """In-flight counts shared through Redis (see the module docstring)."""

    def __init__(self, url: str, *, stale_after: float, timeout: float = 1.0) -> None:
        from keybroker.replay.cache import import_redis

        redis_asyncio = import_redis("the redis concurrency limit")
        self._stale = stale_after
        self._timeout = timeout
        self._client: Any = redis_asyncio.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout
        )
        self._acquire = self._client.register_script(_ACQUIRE)

    def __repr__(self) -> str:  # the URL may carry a password
        return "RedisSlots(...)"

    async def acquire(self, account: str, limit: int) -> str | None:
        """A slot id, or ``None`` when the account is at its limit."""
        member = uuid.uuid4().hex
        key = f"keybroker:inflight:{account}"
        got = await self._call(
            self._acquire(keys=[key], args=[time.time(), member, limit, self._stale])
        )
        return member if got == 1 else None

    async def release(self, account: str, member: str) -> None:
        with contextlib.suppress(ServiceUnavailable):
            await self._call(self._client.zrem(f"keybroker:inflight:{account}", member))

    async def _call(self, awaitable: Any) -> Any:
        from redis.exceptions import RedisError

        try:
            async with asyncio.timeout(2 * self._timeout):
                return await awaitable
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("rate-limit store (redis) unavailable: %s", type(exc).__name__)
            raise ServiceUnavailable(
                "the rate-limit store is unavailable; retry later", retry_after=1
            ) from exc

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self._client.aclose()


class AccountLimits:
    """In-flight counters by account name: in this process, or in Redis when ``shared``."""

    def __init__(self, shared: RedisSlots | None = None) -> None:
        self._inflight: dict[str, int] = {}
        self._shared = shared

    def inflight(self, account: str) -> int:
        return self._inflight.get(account, 0)

    @property
    def local(self) -> bool:
        """Counted in this process: :meth:`enter` / :meth:`leave` may be used instead of
        :meth:`slot`."""
        return self._shared is None

    def enter(self, endpoint: Endpoint) -> None:
        """Take one of ``endpoint``'s slots (local counts only); raises ``TooManyRequests``."""
        name = endpoint.cloud_account_name
        current = self._inflight.get(name, 0)
        limit = endpoint.max_concurrent_requests
        if limit is not None and current >= limit:
            raise _full(name, limit)
        self._inflight[name] = current + 1

    def leave(self, endpoint: Endpoint) -> None:
        """Give back the slot :meth:`enter` took."""
        name = endpoint.cloud_account_name
        left = self._inflight[name] - 1
        if left:
            self._inflight[name] = left
        else:
            del self._inflight[name]

    @contextlib.asynccontextmanager
    async def slot(self, endpoint: Endpoint) -> AsyncIterator[None]:
        """Hold one of ``endpoint``'s slots for the block; raises ``TooManyRequests`` if full."""
        limit = endpoint.max_concurrent_requests
        name = endpoint.cloud_account_name
        if limit is not None and self._shared is not None:
            member = await self._shared.acquire(name, limit)
            if member is None:
                raise _full(name, limit)
            try:
                yield
            finally:
                await self._shared.release(name, member)
            return
        self.enter(endpoint)
        try:
            yield
        finally:
            self.leave(endpoint)

    async def close(self) -> None:
        if self._shared is not None:
            await self._shared.close()


def _full(name: str, limit: int) -> TooManyRequests:
    return TooManyRequests(
        f"account {name!r} has {limit} requests in flight already", retry_after=1
    )


def limits_from_config(security: SecurityConfig, stale_after: float) -> AccountLimits:
    """``RateLimitStore`` (default: the replay cache's Redis when it is one, else memory)."""
    store = security.rate_limit_store or (
        security.replay_cache if security.replay_cache.startswith(("redis", "unix")) else "memory"
    )
    if store == "memory":
        return AccountLimits()
    return AccountLimits(RedisSlots(store, stale_after=stale_after))
