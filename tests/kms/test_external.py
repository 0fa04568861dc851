"""ExternalKMS with a real local AES-GCM key wrapper and real storages (memory, file, S3 on moto).

Races: 50 concurrent first calls in one event loop, and several processes sharing a directory,
must all end up with one stored DEK.
"""

from __future__ import annotations

import asyncio
import multiprocessing
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from keybroker.kms.backends.local import LocalKeyWrapper
from keybroker.kms.base import WrappedKey
from keybroker.kms.envelope import ConstellationBlob, KeybrokerEnvelope
from keybroker.kms.errors import IntegrityError
from keybroker.kms.external import ExternalKMS
from keybroker.kms.storage.file import FileStorage
from keybroker.kms.storage.memory import MemoryStorage

KEK = bytes(range(32))


class CountingWrapper(LocalKeyWrapper):
    """The real local wrapper, counting how many envelope keys it wrapped."""

    def __init__(self, key: bytes) -> None:
        super().__init__(key)
        self.wraps = 0

    async def wrap(self, plaintext: bytes, aad: bytes) -> WrappedKey:
        self.wraps += 1
        return await super().wrap(plaintext, aad)


@pytest.fixture
async def kms() -> AsyncIterator[ExternalKMS]:
    k = ExternalKMS(LocalKeyWrapper(KEK), MemoryStorage())
    yield k
    await k.close()


async def test_first_use_creates_then_reads(kms: ExternalKMS) -> None:
    dek = await kms.get_dek("key-1", 32)
    assert len(dek) == 32
    assert await kms.get_dek("key-1", 32) == dek
    assert await kms.get_dek("key-2", 32) != dek
    assert await kms.storage.list() == ["key-1", "key-2"]
    blob = await kms.storage.get("key-1")
    assert KeybrokerEnvelope.decode(blob, "key-1").dek_size == 32
    assert dek not in blob


async def test_survives_a_new_instance(tmp_path: Path) -> None:
    first = ExternalKMS(LocalKeyWrapper(KEK), FileStorage(tmp_path))
    dek = await first.get_dek("disk-1", 64)
    await first.close()
    second = ExternalKMS(LocalKeyWrapper.from_key_file(_key_file(tmp_path)), FileStorage(tmp_path))
    assert await second.get_dek("disk-1", 64) == dek
    await second.close()


def _key_file(tmp_path: Path) -> Path:
    path = tmp_path.parent / f"{tmp_path.name}.kek"
    path.write_bytes(KEK)
    return path


async def test_other_size_for_existing_id(kms: ExternalKMS) -> None:
    await kms.get_dek("k", 32)
    with pytest.raises(
        IntegrityError, match=r"^stored DEK for id 'k' is 32 bytes, not the requested 16$"
    ):
        await kms.get_dek("k", 16)


async def test_swapped_blobs_detected(kms: ExternalKMS) -> None:
    await kms.get_dek("a", 32)
    await kms.get_dek("b", 32)
    blob_a, blob_b = await kms.storage.get("a"), await kms.storage.get("b")
    await kms.storage.delete("a")
    await kms.storage.delete("b")
    await kms.storage.put("a", blob_b)
    await kms.storage.put("b", blob_a)
    with pytest.raises(IntegrityError, match="failed authentication"):
        await kms.get_dek("a", 32)


@pytest.mark.parametrize(
    ("dek_id", "size", "exc", "message"),
    [
        ("", 32, ValueError, "key id must not be empty"),
        ("../x", 32, ValueError, "must not end with"),
        ("k", 0, ValueError, "DEK size must be at least 1 byte"),
        ("k", 8161, ValueError, "DEK size must be at most 8160 bytes"),
        (5, 32, TypeError, "key id must be a str"),
    ],
)
async def test_validation_before_io(
    kms: ExternalKMS, dek_id: Any, size: int, exc: type[Exception], message: str
) -> None:
    with pytest.raises(exc, match=message):
        await kms.get_dek(dek_id, size)
    assert await kms.storage.list() == []


async def test_write_constellation_format_and_read_back() -> None:
    storage = MemoryStorage()
    writer = ExternalKMS(LocalKeyWrapper(KEK), storage, write_format="constellation")
    dek = await writer.get_dek("key-c", 32)
    blob = await storage.get("key-c")
    assert ConstellationBlob.decode(blob, "key-c").key_id == "1"
    assert writer.reads_legacy  # writing Constellation's format implies reading it
    assert await writer.get_dek("key-c", 32) == dek
    reader = ExternalKMS(LocalKeyWrapper(KEK), storage, legacy_blobs="read")
    assert await reader.get_dek("key-c", 32) == dek
    strict = ExternalKMS(LocalKeyWrapper(KEK), storage)  # the default reads only our envelope
    with pytest.raises(IntegrityError, match="in Constellation's format"):
        await strict.get_dek("key-c", 32)
    assert await storage.get("key-c") == blob  # and never replaces the stored blob


def test_unknown_write_format() -> None:
    with pytest.raises(ValueError, match="write_format must be 'keybroker' or 'constellation'"):
        ExternalKMS(LocalKeyWrapper(KEK), MemoryStorage(), write_format="yaml")  # type: ignore[arg-type]


async def test_close_is_idempotent_and_final(kms: ExternalKMS) -> None:
    await kms.close()
    await kms.close()
    with pytest.raises(RuntimeError, match="closed"):
        await kms.get_dek("k", 32)


async def test_open_runs_wrapper_before_storage(tmp_path: Path) -> None:
    order: list[str] = []

    class Wrapper(LocalKeyWrapper):
        async def open(self) -> None:
            order.append("wrapper")

    class Store(FileStorage):
        async def open(self) -> None:
            order.append("storage")
            await super().open()

    kms = ExternalKMS(Wrapper(KEK), Store(tmp_path / "s"))
    await asyncio.gather(*(kms.get_dek(f"k{i}", 32) for i in range(5)))
    assert order == ["wrapper", "storage"]  # once each, wrapper first


async def test_fifty_concurrent_first_calls_one_dek(tmp_path: Path) -> None:
    """File storage does its I/O in threads, so the 50 calls really interleave: many of them
    find no DEK and create one, but only one is stored and every caller gets it."""
    wrapper = CountingWrapper(KEK)
    kms = ExternalKMS(wrapper, FileStorage(tmp_path))
    deks = await asyncio.gather(*(kms.get_dek("contended", 32) for _ in range(50)))
    assert len(set(deks)) == 1
    assert wrapper.wraps > 1, "the calls did not race; the test proves nothing"
    assert await kms.storage.list() == ["contended"]
    assert await kms.get_dek("contended", 32) == deks[0]
    await kms.close()


async def test_fifty_concurrent_first_calls_memory() -> None:
    storage = MemoryStorage()
    kmses = [ExternalKMS(LocalKeyWrapper(KEK), storage) for _ in range(50)]
    deks = await asyncio.gather(*(k.get_dek("contended", 32) for k in kmses))
    assert len(set(deks)) == 1
    assert await storage.list() == ["contended"]


_start: Any = None


def _init_worker(barrier: Any) -> None:
    global _start
    _start = barrier


def _process_worker(args: tuple[str, str, int]) -> tuple[list[str], int]:
    directory, key_hex, count = args
    wrapper = CountingWrapper(bytes.fromhex(key_hex))
    kms = ExternalKMS(wrapper, FileStorage(directory))

    async def run() -> list[str]:
        return [(await kms.get_dek(f"key-{i}", 32)).hex() for i in range(count)]

    _start.wait(timeout=30)  # all processes begin together, so first uses collide
    return asyncio.run(run()), wrapper.wraps


@pytest.mark.slow
def test_processes_agree_on_one_dek_per_id(tmp_path: Path) -> None:
    """Four processes ask for the same 30 new ids in the same order: whoever loses a race on an
    id must read the winner's DEK, so all four lists are identical."""
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(4)
    with ctx.Pool(4, initializer=_init_worker, initargs=(barrier,)) as pool:
        results = pool.map(_process_worker, [(str(tmp_path), KEK.hex(), 30)] * 4, chunksize=1)
    deks = [r[0] for r in results]
    assert all(d == deks[0] for d in deks)
    assert len(set(deks[0])) == 30
    assert sum(r[1] for r in results) > 30, "no id was raced; the test proves nothing"
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == sorted(f"key-{i}" for i in range(30))  # one file per id, no temp files


class _Recorder:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str]] = []

    def operation(self, backend: str, operation: str, outcome: str) -> None:
        self.seen.append((backend, operation, outcome))


async def test_every_get_dek_is_reported_to_the_observer() -> None:
    recorder = _Recorder()
    kms = ExternalKMS(LocalKeyWrapper(KEK), MemoryStorage(), observer=recorder)
    await kms.get_dek("key-1", 32)
    await kms.get_dek("key-1", 32)
    with pytest.raises(IntegrityError):
        await kms.get_dek("key-1", 16)
    await kms.close()
    assert recorder.seen == [
        ("local", "create", "ok"),
        ("local", "get", "ok"),
        ("local", "get", "IntegrityError"),
    ]
