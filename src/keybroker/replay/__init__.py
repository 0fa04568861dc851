"""The replay cache: a verified signature is accepted once, then refused until it expires.
The contract is :mod:`~keybroker.replay.base`; the backends are in memory or in Redis
(:mod:`~keybroker.replay.cache`), or shared by the worker processes of one host through the
supervisor (:mod:`~keybroker.replay.shared`); :mod:`~keybroker.replay.factory` picks the one
the config names.

May import: the foundation modules and ``kms.errors``.
"""

from keybroker.replay.base import ReplayCache, ReplayCacheUnavailable
from keybroker.replay.factory import replay_cache_from_config

__all__ = ["ReplayCache", "ReplayCacheUnavailable", "replay_cache_from_config"]
