"""The replay cache ``Security.ReplayCache`` names (:func:`replay_cache_from_config`):

* ``memory`` — :class:`~keybroker.replay.cache.MemoryReplayCache` in one process; with several
  worker processes the supervisor runs a :class:`~keybroker.replay.shared.SharedReplayServer`
  (a UNIX socket) and each worker talks to it through a
  :class:`~keybroker.replay.shared.SharedReplayClient`, so a signature is accepted once per
  machine;
* ``redis://``, ``rediss://``, ``unix://`` — :class:`~keybroker.replay.cache.RedisReplayCache`
  (``SET NX PX``), shared by several keybroker servers;
* ``off`` — no cache (``None``).
"""

from __future__ import annotations

from keybroker.errors import ConfigError
from keybroker.replay.base import ReplayCache
from keybroker.replay.cache import MemoryReplayCache, RedisReplayCache
from keybroker.replay.shared import SharedReplayClient
from keybroker.settings import SecurityConfig

__all__ = ["replay_cache_from_config"]


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
        if shared_path is None:
            return MemoryReplayCache()
        return SharedReplayClient(shared_path)
    if isinstance(value, str) and value.startswith(("redis://", "rediss://", "unix://")):
        return RedisReplayCache(value)
    raise ConfigError("Security.ReplayCache: expected memory, off or a redis:// URL")
