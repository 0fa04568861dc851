"""Micro benchmark: DEKs per second from the cluster KMS, an external KMS (memory storage and
the local wrapper) without a cache, and the same behind :class:`CachedKMS`.

    python -m bench.kms_cache [--n 50000] [--ids 1000]

Each run asks for ``n`` DEKs, cycling over ``ids`` ids that were fetched once beforehand (so
the external KMS reads and unwraps a stored blob and the cache answers every call).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time

from keybroker.kms.backends.local import LocalKeyWrapper
from keybroker.kms.base import KMS
from keybroker.kms.cache import CachedKMS
from keybroker.kms.cluster import ClusterKMS
from keybroker.kms.external import ExternalKMS
from keybroker.kms.storage.memory import MemoryStorage


async def rate(kms: KMS, n: int, ids: list[str]) -> float:
    for key_id in ids:  # warm: create the blobs, fill the cache
        await kms.get_dek(key_id, 32)
    start = time.perf_counter()
    for i in range(n):
        await kms.get_dek(ids[i % len(ids)], 32)
    return n / (time.perf_counter() - start)


async def main(n: int, id_count: int) -> None:
    ids = [f"key-{i:06d}" for i in range(id_count)]
    runs: list[tuple[str, KMS]] = [
        ("cluster KMS (HKDF)", ClusterKMS(os.urandom(32), os.urandom(32))),
        ("external, uncached", ExternalKMS(LocalKeyWrapper(os.urandom(32)), MemoryStorage())),
        (
            "external, CachedKMS",
            CachedKMS(ExternalKMS(LocalKeyWrapper(os.urandom(32)), MemoryStorage())),
        ),
    ]
    for name, kms in runs:
        print(f"{name:22s} {await rate(kms, n, ids):>12,.0f} DEKs/s")
        await kms.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50_000, help="DEKs per run")
    parser.add_argument("--ids", type=int, default=1000, help="distinct ids cycled over")
    args = parser.parse_args()
    asyncio.run(main(args.n, args.ids))
