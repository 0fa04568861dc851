"""DEKs per second from the KMS, in process: the cluster KMS (HKDF, nothing stored), the
external KMS (local AES-GCM wrapper, memory storage) with and without the DEK cache.

When ``bench/kms_cache.py`` exists, its own output is run and kept beside these figures.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import subprocess
import sys
import time
from typing import Any

from keybroker.kms.backends.local import LocalKeyWrapper
from keybroker.kms.base import KMS
from keybroker.kms.cluster import ClusterKMS
from keybroker.kms.external import ExternalKMS
from keybroker.kms.storage.memory import MemoryStorage

__all__ = ["kms_rates"]

IDS = [f"bench-dek-{i}" for i in range(1000)]


async def _rate(kms: KMS, seconds: float) -> float:
    """get_dek calls per second over the ids in turn: the best of three runs sharing
    ``seconds`` (the best is the least disturbed by other work on the machine)."""
    for dek_id in IDS:  # warm: create the stored DEKs, fill a cache
        await kms.get_dek(dek_id, 32)
    return max([await _one_run(kms, seconds / 3) for _ in range(3)])


async def _one_run(kms: KMS, seconds: float) -> float:
    done = 0
    started = time.perf_counter()
    deadline = started + seconds
    while time.perf_counter() < deadline:
        for dek_id in IDS:
            await kms.get_dek(dek_id, 32)
        done += len(IDS)
    return done / (time.perf_counter() - started)


def _cached(inner: KMS) -> KMS | None:
    try:
        from keybroker.kms.cache import CachedKMS
    except ImportError:
        return None
    return CachedKMS(inner)


async def _measure(seconds: float) -> dict[str, Any]:
    out: dict[str, Any] = {}
    out["cluster_deks_per_s"] = round(
        await _rate(ClusterKMS(os.urandom(32), os.urandom(32)), seconds)
    )
    external = ExternalKMS(LocalKeyWrapper(os.urandom(32)), MemoryStorage())
    out["external_uncached_deks_per_s"] = round(await _rate(external, seconds))
    cached = _cached(ExternalKMS(LocalKeyWrapper(os.urandom(32)), MemoryStorage()))
    if cached is not None:
        out["external_cached_deks_per_s"] = round(await _rate(cached, seconds))
        await cached.close()
    await external.close()
    return out


def _script_output(timeout: float) -> str | None:
    """What ``python -m bench.kms_cache`` prints, when that script exists."""
    if importlib.util.find_spec("bench.kms_cache") is None:
        return None
    try:
        done = subprocess.run(
            [sys.executable, "-m", "bench.kms_cache"],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return f"bench.kms_cache did not finish within {timeout:.0f} s"
    return (done.stdout + done.stderr).strip()


def kms_rates(seconds: float, *, run_script: bool = True) -> dict[str, Any]:
    """The rates, and ``bench.kms_cache``'s output (``script``) when it exists."""
    out = asyncio.run(_measure(seconds))
    if run_script:
        script = _script_output(timeout=120)
        if script is not None:
            out["kms_cache_script"] = script
    return out
