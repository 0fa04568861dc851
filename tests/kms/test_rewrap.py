"""Bulk rewrap after a KEK rotation: compare-and-swap ``replace`` on every storage that has it
(memory, file, moto S3, fake-gcs-server, Azurite) and a rewrap run on each, idempotence,
failures, the state file, readers during a rewrap.  Runs killed half way and resumed are in
test_rewrap_resume.py."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from google.auth.credentials import AnonymousCredentials

from keybroker.kms.backends.local import LocalKeyWrapper
from keybroker.kms.envelope import seal_dek
from keybroker.kms.errors import DEKNotFound, IntegrityError
from keybroker.kms.external import ExternalKMS
from keybroker.kms.rewrap import RewrapProgress, inspect_blob, rewrap_all
from keybroker.kms.storage.azure_blob import AzureBlobStorage
from keybroker.kms.storage.file import FileStorage
from keybroker.kms.storage.gcs import GCSStorage
from keybroker.kms.storage.memory import MemoryStorage
from keybroker.kms.storage.s3 import S3Storage
from keybroker.secret import Secret
from tests.storage.cloud_servers import Azurite

REGION = "eu-west-1"


# -- compare-and-swap replace ----------------------------------------------------------------


def s3_storage(moto_url: str) -> S3Storage:
    return S3Storage(
        f"kb-{uuid.uuid4().hex}",
        region=REGION,
        endpoint=moto_url,
        access_key_id="t",
        secret_access_key=Secret("t"),
    )


def gcs_storage(url: str) -> GCSStorage:
    anonymous = AnonymousCredentials()  # type: ignore[no-untyped-call]
    return GCSStorage(
        f"kb-{uuid.uuid4().hex}", project="test-project", credentials=anonymous, endpoint=url
    )


def azure_storage(server: Azurite) -> AzureBlobStorage:
    return AzureBlobStorage(
        f"kb-{uuid.uuid4().hex}",
        connection_string=Secret(server.connection_string),
        ca_file=str(server.ca_path),
    )


def _emulated(*names: str) -> list[Any]:
    """Storage params served by an emulator (moto, fake-gcs-server, Azurite): marked so."""
    return [pytest.param(name, marks=pytest.mark.emulator) for name in names]


@pytest.fixture(params=["memory", "file", *_emulated("s3", "gcs", "azure")])
async def storage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    if request.param == "memory":
        s: Any = MemoryStorage()
    elif request.param == "file":
        s = FileStorage(tmp_path / "store")
    elif request.param == "s3":
        s = s3_storage(request.getfixturevalue("moto_url"))
    elif request.param == "gcs":
        s = gcs_storage(request.getfixturevalue("fake_gcs_url"))
    else:
        s = azure_storage(request.getfixturevalue("azurite"))
    yield s
    await s.close()


async def test_replace_swaps_only_the_expected_blob(storage: Any) -> None:
    await storage.put("k", b"old")
    assert await storage.replace("k", b"old", b"new") is True
    assert await storage.get("k") == b"new"
    assert await storage.replace("k", b"old", b"newer") is False  # stale expectation
    assert await storage.get("k") == b"new"
    assert await storage.list() == ["k"]  # no temporary file or lock shows up as an id


async def test_replace_missing_and_bad_arguments(storage: Any) -> None:
    with pytest.raises(DEKNotFound):
        await storage.replace("absent", b"a", b"b")
    with pytest.raises(DEKNotFound):
        await storage.get("absent")  # replace never creates
    with pytest.raises(ValueError, match="blob must not be empty"):
        await storage.replace("absent", b"a", b"")
    with pytest.raises(ValueError, match="key id must not be empty"):
        await storage.replace("", b"a", b"b")


async def test_concurrent_replacers_exactly_one_wins(storage: Any) -> None:
    await storage.put("race", b"v0")
    results = await asyncio.gather(*(storage.replace("race", b"v0", b"n%d" % i) for i in range(8)))
    assert results.count(True) == 1
    assert await storage.get("race") == b"n%d" % results.index(True)


@pytest.mark.parametrize("storage", _emulated("gcs", "azure"), indirect=True)
async def test_a_write_after_the_read_makes_replace_lose(storage: Any) -> None:
    """GCS and Azure Blob read the blob with its generation / ETag, compare, then upload on
    that precondition: a write or delete in between (the storage's own synchronous calls, run
    after its read) makes the upload fail, so fake-gcs-server and Azurite honour
    ifGenerationMatch and If-Match, and replace never creates the blob."""
    read = storage._read
    await storage.put("k", b"old")

    def read_then_overwrite(key_id: str) -> Any:
        got = read(key_id)
        storage._delete(key_id)
        storage._put(key_id, b"theirs")
        return got

    storage._read = read_then_overwrite
    assert await storage.replace("k", b"old", b"new") is False
    assert await storage.get("k") == b"theirs"

    def read_then_delete(key_id: str) -> Any:
        got = read(key_id)
        storage._delete(key_id)
        return got

    storage._read = read_then_delete
    with contextlib.suppress(DEKNotFound):  # Azure may answer 404 rather than 412
        assert await storage.replace("k", b"theirs", b"new") is False
    with pytest.raises(DEKNotFound):
        await storage.get("k")


async def test_s3_replace_of_an_object_whose_etag_is_not_its_md5(moto_url: str) -> None:
    """A multipart upload's ETag is not the MD5 of the bytes: the fast If-Match guess fails
    and replace must fall back to reading and comparing."""
    s = s3_storage(moto_url)
    try:
        await s.open()
        s3 = boto3.client(
            "s3",
            endpoint_url=moto_url,
            region_name=REGION,
            aws_access_key_id="t",
            aws_secret_access_key="t",
        )
        upload = s3.create_multipart_upload(Bucket=s.bucket, Key="mp")
        part = s3.upload_part(
            Bucket=s.bucket, Key="mp", UploadId=upload["UploadId"], PartNumber=1, Body=b"old"
        )
        s3.complete_multipart_upload(
            Bucket=s.bucket,
            Key="mp",
            UploadId=upload["UploadId"],
            MultipartUpload={"Parts": [{"ETag": part["ETag"], "PartNumber": 1}]},
        )
        assert s3.head_object(Bucket=s.bucket, Key="mp")["ETag"].endswith('-1"')
        assert await s.replace("mp", b"other", b"new") is False
        assert await s.replace("mp", b"old", b"new") is True
        assert await s.get("mp") == b"new"
    finally:
        await s.close()


async def test_rewrap_on_every_storage(storage: Any, tmp_path: Path) -> None:
    """A few DEKs, the local KEK rotated, one rewrap: every DEK unchanged, now under "2"."""
    key = tmp_path / "kek"
    key.write_bytes(os.urandom(32))
    kms = ExternalKMS(LocalKeyWrapper.from_key_file(key), storage)
    originals = await seed(kms, 12)
    assert await kms.wrapper.rotate() == "2"  # type: ignore[attr-defined]
    report = await rewrap_all(kms, concurrency=4)
    assert (report.rewrapped, report.skipped, report.failed) == (12, 0, 0)
    await check_all(kms, originals, "2")
    assert await storage.list() == sorted(originals)
    again = await rewrap_all(kms)
    assert (again.rewrapped, again.skipped, again.failed) == (0, 12, 0)


# -- rewrap on memory storage ----------------------------------------------------------------


async def seed(kms: ExternalKMS, count: int, *, fmt: Any = "keybroker") -> dict[str, bytes]:
    """Store ``count`` random DEKs (concurrently); return id -> DEK."""
    originals = {f"key-{i:05d}": os.urandom(32) for i in range(count)}
    sem = asyncio.Semaphore(16)

    async def one(key_id: str, dek: bytes) -> None:
        async with sem:
            await kms.storage.put(key_id, await seal_dek(kms.wrapper, key_id, dek, fmt=fmt))

    await asyncio.gather(*(one(k, d) for k, d in originals.items()))
    return originals


async def check_all(kms: ExternalKMS, originals: dict[str, bytes], version: str) -> None:
    """Every stored blob is on ``version`` and opens to its original DEK."""
    sem = asyncio.Semaphore(16)

    async def one(key_id: str, dek: bytes) -> None:
        async with sem:
            _, stored_version, _ = inspect_blob(await kms.storage.get(key_id), key_id)
            assert stored_version == version, key_id
            assert await kms.get_dek(key_id, len(dek)) == dek, key_id

    await asyncio.gather(*(one(k, d) for k, d in originals.items()))


@pytest.fixture
async def local_kms(tmp_path: Path) -> AsyncIterator[ExternalKMS]:
    key = tmp_path / "kek"
    key.write_bytes(os.urandom(32))
    kms = ExternalKMS(LocalKeyWrapper.from_key_file(key), MemoryStorage())
    yield kms
    await kms.close()


async def test_rewrap_then_rerun_skips_everything(local_kms: ExternalKMS) -> None:
    originals = await seed(local_kms, 200)
    wrapper: Any = local_kms.wrapper
    assert await wrapper.rotate() == "2"
    seen: list[RewrapProgress] = []

    report = await rewrap_all(local_kms, progress=seen.append, concurrency=4)
    assert (report.rewrapped, report.skipped, report.failed, report.total) == (200, 0, 0, 200)
    assert report.kek_version == "2" and report.resumed_after is None
    assert [p.done for p in seen] == list(range(1, 201)) and seen[-1].total == 200
    await check_all(local_kms, originals, "2")

    again = await rewrap_all(local_kms)
    assert (again.rewrapped, again.skipped, again.failed) == (0, 200, 0)


async def test_rewrap_migrates_a_legacy_store_to_bound_blobs(local_kms: ExternalKMS) -> None:
    """Constellation-format blobs (already on the newest KEK version) are upgraded to our
    envelope by a rewrap with the migration setting, and refused (left as they are) without."""
    bound = await seed(local_kms, 30)
    legacy = {f"old-{k}": v for k, v in (await seed_constellation(local_kms, 40)).items()}
    before = {k: await local_kms.storage.get(k) for k in legacy}

    refused = await rewrap_all(local_kms)  # the default: legacy blobs are not read
    assert (refused.rewrapped, refused.skipped, refused.failed) == (0, 30, 40)
    assert {k for k, _ in refused.failures} == set(legacy)
    assert all("Constellation's format" in why for _, why in refused.failures)
    assert {k: await local_kms.storage.get(k) for k in legacy} == before

    migrating = ExternalKMS(local_kms.wrapper, local_kms.storage, legacy_blobs="read")
    report = await rewrap_all(migrating)
    assert (report.rewrapped, report.skipped, report.failed) == (40, 30, 0)
    for key_id in legacy:
        assert inspect_blob(await local_kms.storage.get(key_id), key_id)[0] == "keybroker"
    await check_all(local_kms, bound | legacy, "1")  # the strict KMS reads every id now
    again = await rewrap_all(migrating)
    assert (again.rewrapped, again.skipped, again.failed) == (0, 70, 0)
    # and each upgraded blob is bound to its id: moved, it no longer opens
    await local_kms.storage.put("moved", await local_kms.storage.get("old-key-00000"))
    with pytest.raises(IntegrityError):
        await migrating.get_dek("moved", 32)


async def seed_constellation(kms: ExternalKMS, count: int) -> dict[str, bytes]:
    originals = {f"key-{i:05d}": os.urandom(32) for i in range(count)}
    for key_id, dek in originals.items():
        blob = await seal_dek(kms.wrapper, f"old-{key_id}", dek, fmt="constellation")
        await kms.storage.put(f"old-{key_id}", blob)
    return originals


async def test_prefix_limits_the_walk(local_kms: ExternalKMS) -> None:
    originals = await seed(local_kms, 20)
    await local_kms.storage.put("other", await seal_dek(local_kms.wrapper, "other", b"o" * 16))
    await local_kms.wrapper.rotate()  # type: ignore[attr-defined]
    report = await rewrap_all(local_kms, prefix="key-")
    assert (report.rewrapped, report.total) == (20, 20)
    await check_all(local_kms, originals, "2")
    assert inspect_blob(await local_kms.storage.get("other"), "other")[1] == "1"


async def test_a_bad_blob_fails_alone_and_the_state_stops_before_it(
    local_kms: ExternalKMS, tmp_path: Path
) -> None:
    originals = await seed(local_kms, 30)
    good = await local_kms.storage.get("key-00010")
    await local_kms.storage.delete("key-00010")
    await local_kms.storage.put("key-00010", good[:-1] + bytes([good[-1] ^ 1]))  # tampered
    await local_kms.wrapper.rotate()  # type: ignore[attr-defined]
    state = tmp_path / "state.json"

    report = await rewrap_all(local_kms, state_path=state, concurrency=1)
    assert (report.rewrapped, report.failed) == (29, 1)
    assert report.failures[0][0] == "key-00010"
    assert "failed authentication" in report.failures[0][1]
    doc = json.loads(state.read_text())  # kept: the run did not finish cleanly
    assert doc["last_done"] == "key-00009" and doc["kek_version"] == "2"

    # Repaired, the next run resumes after the watermark and finishes the job.
    await local_kms.storage.delete("key-00010")
    await local_kms.storage.put("key-00010", good)
    again = await rewrap_all(local_kms, state_path=state)
    assert again.resumed_after == "key-00009"
    assert (again.rewrapped, again.skipped, again.failed) == (1, 19, 0)
    assert not state.exists()  # removed after a clean finish
    await check_all(local_kms, originals, "2")


async def test_state_file_checks(local_kms: ExternalKMS, tmp_path: Path) -> None:
    await seed(local_kms, 3)
    state = tmp_path / "state.json"
    state.write_text("not json")
    with pytest.raises(ValueError, match=r"state\.json is not a keybroker rewrap state file$"):
        await rewrap_all(local_kms, state_path=state)
    doc = {"keybroker_rewrap_state": 1, "prefix": "x", "kek_version": "1", "last_done": "a"}
    state.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match=r"is for prefix 'x', not ''$"):
        await rewrap_all(local_kms, state_path=state)
    # A state for an older KEK version is ignored: everything is walked again.
    state.write_text(json.dumps({**doc, "prefix": "", "kek_version": "0", "last_done": "key-9"}))
    report = await rewrap_all(local_kms, state_path=state)
    assert report.resumed_after is None and report.total == 3


async def test_storage_without_replace_is_refused(tmp_path: Path) -> None:
    class CreateOnly:
        def __init__(self) -> None:
            self._inner = MemoryStorage()

        async def get(self, key_id: str) -> bytes:
            return await self._inner.get(key_id)

        async def put(self, key_id: str, data: bytes) -> None:
            await self._inner.put(key_id, data)

        async def delete(self, key_id: str) -> None:
            await self._inner.delete(key_id)

        async def list(self, prefix: str = "") -> list[str]:
            return await self._inner.list(prefix)

        async def close(self) -> None:
            pass

    kms = ExternalKMS(LocalKeyWrapper(os.urandom(32)), CreateOnly())
    with pytest.raises(TypeError, match=r"has no compare-and-swap replace\(\): cannot rewrap$"):
        await rewrap_all(kms)
    with pytest.raises(ValueError, match="concurrency must be an int from 1 to 256"):
        await rewrap_all(kms, concurrency=0)


@pytest.mark.slow
async def test_readers_see_the_same_dek_throughout_a_rewrap(tmp_path: Path) -> None:
    key = tmp_path / "kek"
    key.write_bytes(os.urandom(32))
    kms = ExternalKMS(LocalKeyWrapper.from_key_file(key), FileStorage(tmp_path / "store"))
    originals = await seed(kms, 400)
    await kms.wrapper.rotate()  # type: ignore[attr-defined]
    ids = list(originals)
    versions_seen: set[str] = set()
    done = asyncio.Event()

    async def reader() -> None:
        while not done.is_set():
            key_id = random.choice(ids)
            blob = await kms.storage.get(key_id)
            versions_seen.add(inspect_blob(blob, key_id)[1])
            assert await kms.get_dek(key_id, 32) == originals[key_id]

    readers = [asyncio.create_task(reader()) for _ in range(4)]
    report = await rewrap_all(kms, concurrency=8)
    done.set()
    await asyncio.gather(*readers)
    assert report.rewrapped == 400
    assert versions_seen == {"1", "2"}  # reads really overlapped the rewrap
    assert await kms.storage.list() == sorted(ids)  # no id was ever re-created
    await kms.close()
