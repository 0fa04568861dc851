"""MemoryStorage passes the conformance suite, and is safe across threads."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator

import pytest

from keybroker.kms.errors import DEKExists, KMSConfigError
from keybroker.kms.registry import storage_from_uri
from keybroker.kms.storage.memory import MemoryStorage
from keybroker.kms.uri import parse_uri
from tests.storage.conformance import StorageConformance


class TestMemoryStorage(StorageConformance):
    @pytest.fixture
    async def storage(self) -> AsyncIterator[MemoryStorage]:
        s = MemoryStorage()
        yield s
        await s.close()


def test_from_uri() -> None:
    assert isinstance(storage_from_uri(parse_uri("storage://memory")), MemoryStorage)


def test_from_uri_rejects_parameters() -> None:
    with pytest.raises(KMSConfigError, match=r"^storage://memory: unknown parameter\(s\): path$"):
        storage_from_uri(parse_uri("storage://memory?path=/x"))


def test_threads_with_own_loops_exactly_one_wins() -> None:
    """Eight threads, each with its own event loop, race on one id."""
    store = MemoryStorage()
    barrier = threading.Barrier(8)
    outcomes: list[str] = []

    def worker(i: int) -> None:
        barrier.wait()
        try:
            asyncio.run(store.put("shared", f"t{i}".encode()))
            outcomes.append("won")
        except DEKExists:
            outcomes.append("lost")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["lost"] * 7 + ["won"]
