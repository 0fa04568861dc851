"""A bounded in-process cache of DEKs in front of any :class:`~keybroker.kms.base.KMS`.

``CachedKMS(inner)`` answers ``get_dek(id, size)`` from memory when it can, so a hot id costs
no storage read and no cloud KMS call.  The cache is an LRU keyed by ``(id, size)`` with three
bounds: ``max_entries`` (the least recently used entry is dropped), ``max_age`` seconds since
the DEK was fetched, and optionally ``max_uses`` answers per fetch.  Concurrent misses for one
key share a single inner call (single-flight), so a cold start does not stampede the KMS.

Offline mode (``offline=True``): when refetching an *expired* entry fails with
``BackendError`` (the KMS or storage is unreachable), the old DEK is served anyway as long as
it is younger than ``offline_max_age``; every such answer is logged (without the id's key) and
counted in :attr:`CachedKMS.stats`.  Entries dropped by ``invalidate``, ``clear``, the LRU bound
or ``max_uses`` are never served again, online or offline.

Security trade-off: the cache holds plaintext DEKs in process memory for up to ``max_age`` (or
``offline_max_age``) seconds, trading exposure to a memory dump for availability and speed.
Entries are kept in ``bytearray`` buffers that are overwritten with zeros when an entry is
dropped and by :meth:`CachedKMS.clear`.  Copies handed to callers are immutable ``bytes``
that Python cannot wipe; that is the limit of what the cache can scrub.

The cache belongs to one event loop at a time for its single-flight: a miss on another loop
makes its own inner call (the entry table itself is guarded by a ``threading.Lock``).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from keybroker.kms.base import KMS
from keybroker.kms.errors import BackendError

__all__ = ["CacheStats", "CachedKMS"]

_log = logging.getLogger("keybroker.kms.cache")

_Key = tuple[str, int]


@dataclass(slots=True)
class CacheStats:
    """Counters since the cache was made.  ``coalesced``: misses that joined another caller's
    inner call; ``offline_hits``: expired DEKs served because the backend failed."""

    hits: int = 0
    misses: int = 0
    coalesced: int = 0
    evictions: int = 0
    offline_hits: int = 0


@dataclass(slots=True)
class _Entry:
    dek: bytearray
    fetched_at: float
    uses: int = 0

    def wipe(self) -> None:
        self.dek[:] = bytes(len(self.dek))


class CachedKMS:
    """An LRU of DEKs in front of ``inner``; see the module docstring.

    Raises ``ValueError`` for a bound that is not positive (or ``offline_max_age`` below
    ``max_age``), ``TypeError`` for an ``inner`` that is not a :class:`KMS`.
    """

    def __init__(
        self,
        inner: KMS,
        *,
        max_entries: int = 10_000,
        max_age: float = 300.0,
        max_uses: int | None = None,
        offline: bool = False,
        offline_max_age: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not isinstance(inner, KMS):
            raise TypeError("inner must be a KMS")
        _check_bounds(max_entries, max_age, max_uses, offline_max_age)
        self._inner = inner
        self._max_entries = max_entries
        self._max_age = float(max_age)
        self._max_uses = max_uses
        self._offline = offline
        self._offline_max_age = float(offline_max_age)
        self._clock = clock
        self._entries: OrderedDict[_Key, _Entry] = OrderedDict()
        self._inflight: dict[_Key, asyncio.Future[bytes]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._lock = threading.Lock()
        self._stats = CacheStats()

    @property
    def inner(self) -> KMS:
        return self._inner

    @property
    def stats(self) -> CacheStats:
        """A snapshot of the counters."""
        with self._lock:
            s = self._stats
            return CacheStats(s.hits, s.misses, s.coalesced, s.evictions, s.offline_hits)

    def __len__(self) -> int:
        return len(self._entries)

    async def get_dek(self, dek_id: str, dek_size: int) -> bytes:
        """The DEK, from the cache if a fresh entry exists, else from ``inner`` (one call per
        key however many callers miss at once).  Raises what ``inner.get_dek`` raises; in
        offline mode a ``BackendError`` is replaced by a still-acceptable expired entry."""
        key = (dek_id, dek_size)
        # Exact types only: True == 1 would otherwise find the size-1 entry, and a bad
        # argument must reach the inner KMS, which rejects it.
        if type(dek_id) is str and type(dek_size) is int:
            hit = self._fresh(key)
            if hit is not None:
                return hit
        return await self._miss(key)

    def invalidate(self, dek_id: str) -> None:
        """Forget ``dek_id`` (every size), wiping its buffers; an inner call already running
        for it no longer fills the cache.  Use after deleting or replacing the DEK."""
        with self._lock:
            for key in [k for k in self._entries if k[0] == dek_id]:
                self._entries.pop(key).wipe()
            for key in [k for k in self._inflight if k[0] == dek_id]:
                del self._inflight[key]

    def clear(self) -> None:
        """Forget every entry, overwriting each cached DEK buffer with zeros."""
        with self._lock:
            for entry in self._entries.values():
                entry.wipe()
            self._entries.clear()
            self._inflight.clear()

    async def close(self) -> None:
        """Clear the cache and close ``inner``; idempotent."""
        self.clear()
        await self._inner.close()

    def __repr__(self) -> str:
        return f"CachedKMS({self._inner!r}, entries={len(self._entries)})"

    # -- internals -------------------------------------------------------------------------

    def _fresh(self, key: _Key) -> bytes | None:
        """The cached DEK if its entry is within every bound (counting this use)."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            age = self._clock() - entry.fetched_at
            if age >= self._max_age:
                if not self._offline or age >= self._offline_max_age:
                    del self._entries[key]  # useless now: do not keep the key material
                    entry.wipe()
                    self._stats.evictions += 1
                return None
            entry.uses += 1
            if self._max_uses is not None and entry.uses >= self._max_uses:
                del self._entries[key]  # this is its last answer
                self._stats.evictions += 1
                dek = bytes(entry.dek)
                entry.wipe()
            else:
                self._entries.move_to_end(key)
                dek = bytes(entry.dek)
            self._stats.hits += 1
            return dek

    async def _miss(self, key: _Key) -> bytes:
        loop = asyncio.get_running_loop()
        with self._lock:
            self._stats.misses += 1
            shared = self._inflight.get(key)
            if shared is not None and shared.get_loop() is loop:
                self._stats.coalesced += 1
            else:
                shared = loop.create_future()
                # Retrieve the outcome even if every caller was cancelled (no asyncio warning).
                shared.add_done_callback(_consume)
                self._inflight[key] = shared
                task = loop.create_task(self._fetch(key, shared))
                self._tasks.add(task)  # a running task needs a strong reference
                task.add_done_callback(self._tasks.discard)
        # shield: a cancelled caller must not cancel the fetch the others are waiting on
        return await asyncio.shield(shared)

    async def _fetch(self, key: _Key, shared: asyncio.Future[bytes]) -> None:
        try:
            dek = await self._inner.get_dek(*key)
        except BackendError as exc:
            stale = self._offline_fallback(key)
            self._finish(key, shared)
            if stale is None:
                shared.set_exception(exc)
            else:
                shared.set_result(stale)
        except asyncio.CancelledError:
            self._finish(key, shared)
            shared.cancel()
            raise
        except Exception as exc:
            self._finish(key, shared)
            shared.set_exception(exc)
        else:
            self._store(key, shared, dek)
            shared.set_result(dek)

    def _finish(self, key: _Key, shared: asyncio.Future[bytes]) -> None:
        with self._lock:
            if self._inflight.get(key) is shared:
                del self._inflight[key]

    def _store(self, key: _Key, shared: asyncio.Future[bytes], dek: bytes) -> None:
        """Cache ``dek`` unless the key was invalidated while it was being fetched."""
        with self._lock:
            if self._inflight.get(key) is not shared:
                return  # invalidated (or cleared) meanwhile: answer the callers, cache nothing
            del self._inflight[key]
            old = self._entries.pop(key, None)
            if old is not None:
                old.wipe()
            self._entries[key] = _Entry(bytearray(dek), self._clock())
            while len(self._entries) > self._max_entries:
                _, evicted = self._entries.popitem(last=False)
                evicted.wipe()
                self._stats.evictions += 1

    def _offline_fallback(self, key: _Key) -> bytes | None:
        """An expired entry that offline mode may still serve, else ``None``."""
        if not self._offline:
            return None
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or self._clock() - entry.fetched_at >= self._offline_max_age:
                return None
            self._stats.offline_hits += 1
            dek = bytes(entry.dek)
        _log.warning(
            "KMS backend unavailable: serving a cached DEK past its max_age (offline mode)"
        )
        return dek


def _consume(future: asyncio.Future[bytes]) -> None:
    if not future.cancelled():
        future.exception()


def _check_bounds(
    max_entries: int, max_age: float, max_uses: int | None, offline_max_age: float
) -> None:
    if not isinstance(max_entries, int) or max_entries < 1:
        raise ValueError("max_entries must be an int of at least 1")
    if not max_age > 0:
        raise ValueError("max_age must be a positive number of seconds")
    if max_uses is not None and (not isinstance(max_uses, int) or max_uses < 1):
        raise ValueError("max_uses must be None or an int of at least 1")
    if not offline_max_age >= max_age:
        raise ValueError("offline_max_age must be at least max_age")
