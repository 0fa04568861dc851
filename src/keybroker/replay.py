"""The replay cache: a verified signature is accepted once, then refused until it expires.

The proxy calls :meth:`ReplayCache.first_use` after a signature verified and before the
request is forwarded, with a digest of the vendor and the signature (never the signature
itself) and a TTL covering the window in which that signature would still pass the freshness
check.  ``False`` means the signature was already used: a replay.

Backends, picked by ``Security.ReplayCache`` (:func:`replay_cache_from_config`):

* ``memory`` — :class:`MemoryReplayCache` in one process; with several worker processes the
  supervisor runs a :class:`SharedReplayServer` (a UNIX socket) and each worker talks to it
  through a :class:`SharedReplayClient`, so a signature is accepted once per machine;
* ``redis://``, ``rediss://``, ``unix://`` — :class:`RedisReplayCache` (``SET NX PX``), shared
  by several keybroker servers;
* ``off`` — no cache (``None``).

A backend that cannot answer raises :class:`ReplayCacheUnavailable` (HTTP 503): the proxy
fails closed rather than forwarding a request it cannot check.

Shared-cache wire format (one persistent connection per worker event loop, pipelined; the
answers come back in request order)::

    request  = key (32 bytes) || ttl in milliseconds (uint32, big endian, 1 .. MAX_TTL_MS)
    response = 0x01 (first use) | 0x00 (replay)

A request with an invalid TTL closes the connection.  Keys are never logged.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import heapq
import logging
import math
import os
import socket
import stat
import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, cast, runtime_checkable

from keybroker.config import SecurityConfig
from keybroker.errors import ConfigError, ProxyError

if TYPE_CHECKING:
    from types import TracebackType

__all__ = [
    "KEY_SIZE",
    "MAX_TTL_SECONDS",
    "MemoryReplayCache",
    "RedisReplayCache",
    "ReplayCache",
    "ReplayCacheUnavailable",
    "SharedReplayClient",
    "SharedReplayServer",
    "replay_cache_from_config",
]

log = logging.getLogger("keybroker.replay")

KEY_SIZE = 32  # a SHA-256 digest
MAX_TTL_SECONDS = 30 * 24 * 3600  # above any presigned-URL lifetime; fits uint32 milliseconds
_MAX_TTL_MS = MAX_TTL_SECONDS * 1000
_FRAME = struct.Struct(">32sI")
_FIRST, _REPLAY = b"\x01", b"\x00"


class ReplayCacheUnavailable(ProxyError):
    """The replay cache cannot answer (server down, timeout): the request is refused (503).

    The message is generic on purpose: it reaches the client; the cause is chained.
    """

    status = 503
    code = "Proxy.ServiceUnavailable"

    def __init__(self, message: str = "the replay cache is unavailable; retry later") -> None:
        super().__init__(message, retry_after=1)


@runtime_checkable
class ReplayCache(Protocol):
    """Records signature digests for a while; each is accepted once."""

    async def first_use(self, key: bytes, ttl: float) -> bool:
        """Atomically record ``key`` for ``ttl`` seconds: True the first time, False while it
        is recorded (a replay).

        Raises ``TypeError``/``ValueError`` for a key that is not 32 bytes or a TTL outside
        ``(0, MAX_TTL_SECONDS]``, and :class:`ReplayCacheUnavailable` when the backend cannot
        answer.
        """
        ...

    async def close(self) -> None:
        """Release connections; the cache is not used afterwards.  Raises nothing."""
        ...


def _check_key(key: bytes) -> bytes:
    if not isinstance(key, bytes):
        raise TypeError("replay key must be bytes")
    if len(key) != KEY_SIZE:
        raise ValueError(f"replay key must be a {KEY_SIZE}-byte digest")
    return key


def _ttl_ms(ttl: float) -> int:
    """TTL in whole milliseconds, rounded up so an entry never expires early."""
    if isinstance(ttl, bool) or not isinstance(ttl, int | float):
        raise TypeError("replay TTL must be a number of seconds")
    if not (math.isfinite(ttl) and 0 < ttl <= MAX_TTL_SECONDS):
        raise ValueError(f"replay TTL must be > 0 and <= {MAX_TTL_SECONDS} seconds")
    return max(1, math.ceil(ttl * 1000))


# ------------------------------------------------------------------ in process


class MemoryReplayCache:
    """An in-process cache: a dict of expiry times and a min-heap of (expiry, key).

    Expired entries are dropped from the top of the heap on every call, so the dict and the
    heap always hold the same, unexpired keys (O(log n) per call).  Memory is bounded by
    ``max_entries`` (about 200 bytes each).  When full, the entry closest to expiry is evicted:
    the proxy records only verified signatures, so filling the cache takes a flood of valid
    requests; refusing new ones would let that flood deny service to every account, while
    evicting loses protection only for the signature with the least time left.  Evictions are
    counted in ``evictions`` and logged (without keys) at most once a minute.

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
        return self.record(key, _ttl_ms(ttl) / 1000)

    def record(self, key: bytes, ttl: float) -> bool:
        """The synchronous core of :meth:`first_use`; ``ttl`` is trusted to be valid."""
        now = self._clock()
        self._expire(now)
        if _check_key(key) in self._expiry:
            return False
        if len(self._expiry) >= self.max_entries:
            self._evict(now)
        expiry = now + ttl
        self._expiry[key] = expiry
        heapq.heappush(self._heap, (expiry, key))
        return True

    async def close(self) -> None:
        self._expiry.clear()
        self._heap.clear()

    def _expire(self, now: float) -> None:
        heap, expiry = self._heap, self._expiry
        while heap and heap[0][0] <= now:
            del expiry[heapq.heappop(heap)[1]]

    def _evict(self, now: float) -> None:
        del self._expiry[heapq.heappop(self._heap)[1]]
        self.evictions += 1
        if self._warned_at is None or now - self._warned_at >= 60:
            self._warned_at = now
            log.warning(
                "replay cache full: evicting the entries closest to expiry",
                extra={"fields": {"max_entries": self.max_entries, "evictions": self.evictions}},
            )


# ------------------------------------------------------------------ Redis


def _import_redis() -> Any:
    try:
        import redis.asyncio as redis_asyncio
    except ImportError as exc:
        from keybroker.kms.errors import MissingExtra

        raise MissingExtra(
            "the redis replay cache needs redis-py: install keybroker[redis]"
        ) from exc
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
        redis_asyncio = _import_redis()
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
        name, px = self._prefix + _check_key(key), _ttl_ms(ttl)
        from redis.exceptions import RedisError

        try:
            async with asyncio.timeout(2 * self._timeout):
                result = await self._client.set(name, b"1", nx=True, px=px)
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("replay cache (redis) unavailable: %s", type(exc).__name__)
            raise ReplayCacheUnavailable() from exc
        return result is True

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self._client.aclose()
        with contextlib.suppress(Exception):
            await self._pool.aclose()


# ------------------------------------------------------------------ shared by worker processes


class _ServerProtocol(asyncio.Protocol):
    """One worker's connection: decode whole frames, answer each batch with one write."""

    def __init__(self, cache: MemoryReplayCache, live: set[_ServerProtocol]) -> None:
        self._cache, self._live = cache, live
        self._buf = bytearray()
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's stream transports are not asyncio.Transport subclasses, only look-alikes
        self._transport = cast(asyncio.Transport, transport)
        self._live.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._live.discard(self)

    # A worker that stops reading its answers must not make the server buffer without bound.
    def pause_writing(self) -> None:
        if self._transport is not None:
            self._transport.pause_reading()

    def resume_writing(self) -> None:
        if self._transport is not None:
            self._transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        whole = len(buf) - len(buf) % _FRAME.size
        if whole:
            frames = bytes(buf[:whole])
            del buf[:whole]
            self._answer(frames)

    def _answer(self, frames: bytes) -> None:
        out = bytearray()
        for key, ttl_ms in _FRAME.iter_unpack(frames):
            if not 0 < ttl_ms <= _MAX_TTL_MS:
                log.warning("shared replay cache: bad request; closing the connection")
                self.close(out)
                return
            out += _FIRST if self._cache.record(key, ttl_ms / 1000) else _REPLAY
        assert self._transport is not None
        self._transport.write(out)

    def close(self, last: bytes | bytearray = b"") -> None:
        if self._transport is not None:
            if last:
                self._transport.write(last)
            self._transport.close()


def _refuse_live_socket(path: str) -> None:
    """A socket file another server still listens on must not be stolen (asyncio would
    unlink it); a stale one is removed by asyncio."""
    with contextlib.suppress(FileNotFoundError):
        if not stat.S_ISSOCK(os.stat(path).st_mode):
            raise ValueError(f"replay socket path exists and is not a socket: {path}")
        with socket.socket(socket.AF_UNIX) as probe:
            try:
                probe.connect(path)
            except OSError:
                return
        raise ValueError(f"another replay server is listening on {path}")


class SharedReplayServer:
    """The supervisor's side of the shared ``memory`` cache: a UNIX-socket server holding a
    :class:`MemoryReplayCache`.  Start it before the workers, in a loop (``await start()``) or
    in a thread of its own (``start_thread()``).  The socket is made owner-only (0600); put it
    in a private directory.

    ``start`` raises ``ValueError`` if ``path`` is a non-socket file or a live server's
    socket, ``OSError`` if it cannot bind.
    """

    def __init__(self, path: str, cache: MemoryReplayCache | None = None) -> None:
        self.path = path
        self.cache = cache if cache is not None else MemoryReplayCache()
        self._server: asyncio.AbstractServer | None = None
        self._live: set[_ServerProtocol] = set()
        self._thread: threading.Thread | None = None
        self._thread_loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        _refuse_live_socket(self.path)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_unix_server(
            lambda: _ServerProtocol(self.cache, self._live), self.path
        )
        os.chmod(self.path, 0o600)

    async def close(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for proto in list(self._live):
            proto.close()
        await self._server.wait_closed()
        self._server = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    async def __aenter__(self) -> SharedReplayServer:
        await self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def start_thread(self) -> None:
        """Serve from a daemon thread with its own event loop (callable from inside a running
        loop too); returns once listening.  Raises what :meth:`start` raises."""
        started: concurrent.futures.Future[asyncio.AbstractEventLoop] = concurrent.futures.Future()
        self._thread = threading.Thread(
            target=self._thread_main, args=(started,), name="keybroker-replay", daemon=True
        )
        self._thread.start()
        try:
            self._thread_loop = started.result()
        except BaseException:
            self._thread.join()
            self._thread = None
            raise

    def stop_thread(self) -> None:
        """Stop the thread started by :meth:`start_thread`; the socket is removed."""
        loop, thread = self._thread_loop, self._thread
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        self._thread_loop = self._thread = None

    def _thread_main(self, started: concurrent.futures.Future[asyncio.AbstractEventLoop]) -> None:
        loop = asyncio.new_event_loop()
        try:
            try:
                loop.run_until_complete(self.start())
            except BaseException as exc:
                started.set_exception(exc)
                return
            started.set_result(loop)
            loop.run_forever()
            loop.run_until_complete(self.close())
        finally:
            loop.close()


class _ClientProtocol(asyncio.Protocol):
    """Answers arrive in request order: each byte settles the oldest pending future."""

    def __init__(self) -> None:
        self.pending: deque[asyncio.Future[bool]] = deque()
        self.transport: asyncio.Transport | None = None
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop: a look-alike

    def data_received(self, data: bytes) -> None:
        if len(data) > len(self.pending):
            log.warning("shared replay cache: unexpected answer; reconnecting")
            self.abort()
            return
        for answer in data:
            fut = self.pending.popleft()
            if not fut.done():  # a timed-out caller has gone
                fut.set_result(answer == 1)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        while self.pending:
            fut = self.pending.popleft()
            if not fut.done():
                fut.set_exception(ReplayCacheUnavailable())

    def abort(self) -> None:
        self.lost = True
        if self.transport is not None:
            self.transport.abort()


class SharedReplayClient:
    """A worker's side of the shared ``memory`` cache (see the module docstring for the wire
    format).  Connects lazily, one connection per event loop, reconnects after a failure;
    a call that cannot be answered within ``timeout`` seconds raises
    :class:`ReplayCacheUnavailable` (a request in flight when the connection drops is not
    retried: its key may already be recorded)."""

    def __init__(self, path: str, *, timeout: float = 1.0) -> None:
        self.path = path
        self._timeout = timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._proto: _ClientProtocol | None = None
        self._lock: asyncio.Lock | None = None

    async def first_use(self, key: bytes, ttl: float) -> bool:
        """See :meth:`ReplayCache.first_use`."""
        frame = _FRAME.pack(_check_key(key), _ttl_ms(ttl))
        proto = await self._connection()
        fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        proto.pending.append(fut)
        assert proto.transport is not None
        proto.transport.write(frame)
        try:
            async with asyncio.timeout(self._timeout):
                return await fut
        except TimeoutError as exc:
            proto.abort()  # a stuck server: start afresh on the next call
            raise ReplayCacheUnavailable() from exc

    async def close(self) -> None:
        if self._proto is not None and self._proto.transport is not None:
            self._proto.transport.close()
        self._proto = None

    async def _connection(self) -> _ClientProtocol:
        proto, loop = self._proto, asyncio.get_running_loop()
        if proto is not None and not proto.lost and self._loop is loop:
            return proto
        if self._loop is not loop or self._lock is None:
            self._drop_other_loop_connection()
            self._loop, self._lock, self._proto = loop, asyncio.Lock(), None
        async with self._lock:
            if self._proto is None or self._proto.lost:
                self._proto = await self._connect(loop)
            return self._proto

    def _drop_other_loop_connection(self) -> None:
        """A connection belongs to the loop that made it: close it there, if that loop lives."""
        old, transport = self._loop, self._proto.transport if self._proto else None
        if old is not None and transport is not None and not old.is_closed():
            with contextlib.suppress(RuntimeError):
                old.call_soon_threadsafe(transport.close)

    async def _connect(self, loop: asyncio.AbstractEventLoop) -> _ClientProtocol:
        try:
            async with asyncio.timeout(self._timeout):
                _, proto = await loop.create_unix_connection(_ClientProtocol, self.path)
        except (OSError, TimeoutError) as exc:
            log.warning("shared replay cache unreachable: %s", type(exc).__name__)
            raise ReplayCacheUnavailable() from exc
        return proto


# ------------------------------------------------------------------ configuration


def replay_cache_from_config(
    security: SecurityConfig, *, shared_path: str | None
) -> ReplayCache | None:
    """The cache ``Security.ReplayCache`` names: ``None`` for ``off``; for ``memory`` a
    :class:`MemoryReplayCache`, or a :class:`SharedReplayClient` when the supervisor serves one
    at ``shared_path``; a :class:`RedisReplayCache` for a Redis URL.

    Raises ``ConfigError`` for any other value and ``MissingExtra`` without redis-py.
    """
    value = security.replay_cache
    if value == "off":
        return None
    if value == "memory":
        return MemoryReplayCache() if shared_path is None else SharedReplayClient(shared_path)
    if isinstance(value, str) and value.startswith(("redis://", "rediss://", "unix://")):
        return RedisReplayCache(value)
    raise ConfigError("Security.ReplayCache: expected memory, off or a redis:// URL")
