"""The one conformance suite every Storage backend passes.

Use it by subclassing and providing an async fixture ``storage`` that yields a fresh, *empty*
storage (and closes it afterwards)::

    class TestS3Storage(StorageConformance):
        @pytest.fixture
        async def storage(self, moto_url): ...

The class name must not start with ``Test`` so pytest only collects the subclasses.
Rules checked here are the shared ones of :mod:`keybroker.kms.storage` (valid ids, blob sizes).
"""

from __future__ import annotations

import asyncio
import os
import threading
import tracemalloc
from collections.abc import Callable
from typing import Any

import pytest

from keybroker.kms.errors import DEKExists, DEKNotFound, IntegrityError
from keybroker.kms.storage import MAX_BLOB_BYTES, MAX_KEY_ID_BYTES, Storage

VALID_IDS = [
    "key-00000000-0000-0000-0000-000000000000",
    "a",
    "a/b/c",
    "dir/sub/key.v1",
    ".hidden",
    "a..b",
    "ünïcødé-ключ-鍵",
    "emoji-🔑",
    "spaces and + plus % percent ? query # hash",
    "x" * MAX_KEY_ID_BYTES,
    "é" * (MAX_KEY_ID_BYTES // 2),
]

INVALID_IDS = [
    ("", "key id must not be empty"),
    ("x" * (MAX_KEY_ID_BYTES + 1), f"key id must be at most {MAX_KEY_ID_BYTES} UTF-8 bytes"),
    ("é" * (MAX_KEY_ID_BYTES // 2 + 1), "UTF-8 bytes"),
    ("..", "must not end with '.'"),
    (".", "must not end with '.'"),
    ("../x", "must not end with '.'"),
    ("a/../b", "must not end with '.'"),
    ("a/./b", "must not end with '.'"),
    ("trailing.", "must not end with '.'"),
    ("/abs", "must not start or end with '/'"),
    ("dir/", "must not start or end with '/'"),
    ("a//b", "contain '//'"),
    ("a\\b", "backslash"),
    ("nul\x00", "control characters"),
    ("new\nline", "control characters"),
    ("c1\x85", "control characters"),
    ("surrogate\udc80", "lone surrogates"),
]


class StorageConformance:
    """Behaviour every :class:`Storage` must have."""

    async def test_is_a_storage(self, storage: Storage) -> None:
        assert isinstance(storage, Storage)

    async def test_get_missing_raises_dek_not_found(self, storage: Storage) -> None:
        with pytest.raises(DEKNotFound):
            await storage.get("missing")

    @pytest.mark.parametrize("size", [1, 2, 255, 4096, MAX_BLOB_BYTES])
    async def test_roundtrip_binary(self, storage: Storage, size: int) -> None:
        blob = os.urandom(size)
        await storage.put(f"size-{size}", blob)
        assert await storage.get(f"size-{size}") == blob

    async def test_all_byte_values_survive(self, storage: Storage) -> None:
        blob = bytes(range(256)) * 3 + b"\r\n\x00"
        await storage.put("bytes", blob)
        assert await storage.get("bytes") == blob

    async def test_empty_blob_rejected(self, storage: Storage) -> None:
        with pytest.raises(ValueError, match="blob must not be empty"):
            await storage.put("empty", b"")
        with pytest.raises(DEKNotFound):
            await storage.get("empty")

    async def test_oversized_blob_rejected(self, storage: Storage) -> None:
        with pytest.raises(ValueError, match=f"at most {MAX_BLOB_BYTES} bytes"):
            await storage.put("big", b"x" * (MAX_BLOB_BYTES + 1))
        with pytest.raises(DEKNotFound):
            await storage.get("big")

    async def test_put_existing_raises_and_keeps_original(self, storage: Storage) -> None:
        await storage.put("k", b"original")
        with pytest.raises(DEKExists):
            await storage.put("k", b"replacement")
        assert await storage.get("k") == b"original"

    async def test_delete(self, storage: Storage) -> None:
        await storage.put("gone", b"x")
        await storage.delete("gone")
        with pytest.raises(DEKNotFound):
            await storage.get("gone")
        assert await storage.list() == []
        await storage.put("gone", b"again")  # the id is free again
        assert await storage.get("gone") == b"again"

    async def test_delete_missing_raises_dek_not_found(self, storage: Storage) -> None:
        with pytest.raises(DEKNotFound):
            await storage.delete("never-there")

    async def test_list_empty(self, storage: Storage) -> None:
        assert await storage.list() == []
        assert await storage.list("any") == []

    async def test_list_sorted_with_prefixes(self, storage: Storage) -> None:
        ids = ["key-b", "key-a", "other", "key-a/sub", "kez", "ü-last", "Key-upper"]
        for i in ids:
            await storage.put(i, i.encode())
        assert await storage.list() == sorted(ids)
        assert await storage.list("key-") == ["key-a", "key-a/sub", "key-b"]
        assert await storage.list("key-a/") == ["key-a/sub"]
        assert await storage.list("ke") == ["key-a", "key-a/sub", "key-b", "kez"]
        assert await storage.list("nothing") == []

    @pytest.mark.parametrize("key_id", VALID_IDS)
    async def test_valid_ids_roundtrip_and_list(self, storage: Storage, key_id: str) -> None:
        await storage.put(key_id, b"v:" + key_id.encode())
        assert await storage.get(key_id) == b"v:" + key_id.encode()
        assert await storage.list() == [key_id]
        await storage.delete(key_id)
        assert await storage.list() == []

    async def test_similar_ids_are_distinct(self, storage: Storage) -> None:
        ids = ["a/b", "a%2Fb", "a_b", "a b", "A/b", "a+b"]
        for i in ids:
            await storage.put(i, i.encode())
        for i in ids:
            assert await storage.get(i) == i.encode()
        assert await storage.list() == sorted(ids)

    @pytest.mark.parametrize(("key_id", "message"), INVALID_IDS)
    async def test_invalid_ids_rejected(self, storage: Storage, key_id: str, message: str) -> None:
        with pytest.raises(ValueError, match=_escape(message)):
            await storage.put(key_id, b"x")
        with pytest.raises(ValueError, match=_escape(message)):
            await storage.get(key_id)
        with pytest.raises(ValueError, match=_escape(message)):
            await storage.delete(key_id)
        assert await storage.list() == []

    async def test_non_str_id_rejected(self, storage: Storage) -> None:
        with pytest.raises(TypeError, match="key id must be a str"):
            await storage.get(b"bytes-id")  # type: ignore[arg-type]

    async def test_concurrent_puts_exactly_one_wins(self, storage: Storage) -> None:
        blobs = [f"writer-{i}".encode() for i in range(50)]
        results = await asyncio.gather(
            *(storage.put("contended", b) for b in blobs), return_exceptions=True
        )
        winners = [b for b, r in zip(blobs, results, strict=True) if r is None]
        losers = [r for r in results if r is not None]
        assert len(winners) == 1, results
        assert all(isinstance(r, DEKExists) for r in losers), losers
        assert await storage.get("contended") == winners[0]

    async def test_close_is_idempotent(self, storage: Storage) -> None:
        await storage.put("k", b"v")
        await storage.close()
        await storage.close()


def _escape(text: str) -> str:
    import re

    return re.escape(text)


def threads_race_one_wins(store: Any) -> None:
    """One storage shared by threads that each run their own event loop (the SDK client is
    not bound to a loop): of six concurrent create-only puts, exactly one wins."""
    asyncio.run(store.open())
    barrier = threading.Barrier(6)
    outcomes: list[str] = []

    def worker(i: int) -> None:
        barrier.wait()
        try:
            asyncio.run(store.put("shared", f"t{i}".encode()))
            outcomes.append("won")
        except DEKExists:
            outcomes.append("lost")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["lost"] * 5 + ["won"]
    assert asyncio.run(store.get("shared")).startswith(b"t")
    asyncio.run(store.close())


# Larger than any blob by far; the read must stop near the limit, not buffer the object.
HUGE_OBJECT_BYTES = 24 * 1024 * 1024
READ_PEAK_LIMIT = 4 * 1024 * 1024


async def oversized_objects_refused(store: Any, plant: Callable[[str, bytes], None]) -> None:
    """Objects written at DEK ids behind the storage's back (``plant`` uses the service's own
    client) that exceed the blob limit: one byte over and 24 MiB over are both refused with
    the precise error by ``get`` and ``replace``, and refusing the huge one allocates far
    less than the object (it is never read whole)."""
    await store.open()
    plant("over-by-one", b"o" * (MAX_BLOB_BYTES + 1))
    plant("huge", b"h" * HUGE_OBJECT_BYTES)
    plant("at-limit", b"a" * MAX_BLOB_BYTES)
    assert await store.get("at-limit") == b"a" * MAX_BLOB_BYTES
    for key_id in ("over-by-one", "huge"):
        with pytest.raises(IntegrityError, match=f"larger than the {MAX_BLOB_BYTES}-byte blob"):
            await store.get(key_id)
        with pytest.raises(IntegrityError, match="blob limit"):
            await store.replace(key_id, b"old", b"new")
    tracemalloc.start()
    try:
        with pytest.raises(IntegrityError, match="blob limit"):
            await store.get("huge")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < READ_PEAK_LIMIT, f"refusing a {HUGE_OBJECT_BYTES}-byte object took {peak}"
