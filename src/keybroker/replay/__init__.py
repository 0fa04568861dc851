"""The replay cache: a verified signature is accepted once, then refused until it expires.
In memory (:class:`~keybroker.replay.cache.MemoryReplayCache`), in Redis, or shared by the
worker processes of one host through the supervisor (:mod:`~keybroker.replay.shared`).

May import: the foundation modules and ``kms.errors``.
"""

from keybroker.replay.cache import ReplayCache, ReplayCacheUnavailable, replay_cache_from_config

__all__ = ["ReplayCache", "ReplayCacheUnavailable", "replay_cache_from_config"]
