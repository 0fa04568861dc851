"""What every replay cache is: a verified signature is accepted once, then refused until it
expires.

The proxy calls :meth:`ReplayCache.first_use` after a signature verified and before the
request is forwarded, with a digest of the vendor and the signature (never the signature
itself) and a TTL covering the window in which that signature would still pass the freshness
check.  ``False`` means the signature was already used: a replay.  When the request then
provably never reached the upstream, the proxy calls :meth:`ReplayCache.release`, so the
client's identical retry is not refused.

A backend that cannot answer raises :class:`ReplayCacheUnavailable` (HTTP 503): the proxy
fails closed rather than forwarding a request it cannot check.  :func:`check_key` and
:func:`ttl_ms` are the argument checks every backend applies.
"""

from __future__ import annotations

import math
from typing import Protocol, runtime_checkable

from keybroker.errors import ProxyError

__all__ = [
    "KEY_SIZE",
    "MAX_TTL_SECONDS",
    "ReplayCache",
    "ReplayCacheUnavailable",
    "check_key",
    "ttl_ms",
]

KEY_SIZE = 32  # a SHA-256 digest
MAX_TTL_SECONDS = 30 * 24 * 3600  # above any presigned-URL lifetime; fits uint32 milliseconds


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

    async def release(self, key: bytes) -> None:
        """Forget ``key``: the request it recorded provably never reached the upstream, so an
        identical retry is not a replay.  Forgetting a key not recorded does nothing.

        Raises what :meth:`first_use` raises for a bad key, and
        :class:`ReplayCacheUnavailable` when the backend cannot answer.
        """
        ...

    async def close(self) -> None:
        """Release connections; the cache is not used afterwards.  Raises nothing."""
        ...


def check_key(key: bytes) -> bytes:
    """``key`` if it is a digest of the right size.  Raises ``TypeError``, ``ValueError``."""
    if not isinstance(key, bytes):
        raise TypeError("replay key must be bytes")
    if len(key) != KEY_SIZE:
        raise ValueError(f"replay key must be a {KEY_SIZE}-byte digest")
    return key


def ttl_ms(ttl: float) -> int:
    """TTL in whole milliseconds, rounded up so an entry never expires early.  Raises
    ``TypeError``, ``ValueError`` for a TTL outside ``(0, MAX_TTL_SECONDS]``."""
    if isinstance(ttl, bool) or not isinstance(ttl, int | float):
        raise TypeError("replay TTL must be a number of seconds")
    if not (math.isfinite(ttl) and 0 < ttl <= MAX_TTL_SECONDS):
        raise ValueError(f"replay TTL must be > 0 and <= {MAX_TTL_SECONDS} seconds")
    return max(1, math.ceil(ttl * 1000))
