"""from_uris: every URI mistake is refused with an exact message before any side effect."""

from __future__ import annotations

import base64
import uuid
from pathlib import Path

import boto3
import pytest

from keybroker.kms import ClusterKMS, ExternalKMS, LocalKeyWrapper, from_uris
from keybroker.kms.errors import KMSConfigError, MissingExtra
from keybroker.kms.registry import (
    _EXTRAS,
    _WRAPPERS,
    register_wrapper,
    storage_names,
    wrapper_names,
)
from keybroker.kms.storage.memory import MemoryStorage

ZERO = base64.urlsafe_b64encode(bytes(32)).decode()
STRONG = base64.urlsafe_b64encode(bytes(range(32))).decode()
SALT = base64.urlsafe_b64encode(bytes(range(32, 64))).decode()
CLUSTER = f"kms://cluster-kms?key={STRONG}&salt={SALT}"  # the third Constellation vector


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "kek"
    path.write_bytes(bytes(range(32)))
    path.chmod(0o600)
    return path


@pytest.mark.parametrize("storage", [None, "storage://no-store", "storage://no-store?"])
async def test_cluster_kms(storage: str | None) -> None:
    kms = from_uris(kms_uri=CLUSTER, storage_uri=storage)
    assert isinstance(kms, ClusterKMS)
    dek = await kms.get_dek("key-clusterID", 32)
    assert dek.hex() == "128c164378fe8767f998fbdfe4b4d6463ec5ae1b664ea5999bc27417607ae9b6"


async def test_local_with_file_storage(key_file: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    kms = from_uris(
        kms_uri=f"kms://local?keyFile={key_file}", storage_uri=f"storage://file?path={store}"
    )
    assert isinstance(kms, ExternalKMS)
    assert isinstance(kms.wrapper, LocalKeyWrapper)
    assert not store.exists()  # nothing touched until first use
    dek = await kms.get_dek("key-1", 32)
    assert (store / "key-1").is_file()
    again = from_uris(
        kms_uri=f"kms://local?keyFile={key_file}", storage_uri=f"storage://file?path={store}"
    )
    assert await again.get_dek("key-1", 32) == dek
    await kms.close()
    await again.close()


async def test_write_format_option(key_file: Path) -> None:
    kms = from_uris(
        kms_uri=f"kms://local?keyFile={key_file}",
        storage_uri="storage://memory",
        write_format="constellation",
    )
    assert isinstance(kms, ExternalKMS)
    await kms.get_dek("k", 32)
    assert (await kms.storage.get("k")).startswith(b"{")


def test_registry_names() -> None:
    assert storage_names() == ["aws", "azure", "file", "gcp", "memory", "no-store"]
    assert wrapper_names() == [
        "aws",
        "azure",
        "cluster-kms",
        "gcp",
        "kmip",
        "local",
        "pkcs11",
        "vault",
    ]


@pytest.mark.parametrize(
    ("kms_uri", "storage_uri", "message"),
    [
        ("storage://memory", None, "kms_uri must be a kms:// URI, not storage://"),
        (CLUSTER, "kms://local", "storage_uri must be a storage:// URI, not kms://"),
        (
            CLUSTER,
            "storage://memory",
            "kms://cluster-kms derives keys and stores nothing: use storage://no-store",
        ),
        (
            CLUSTER,
            "storage://no-store?bucket=x",
            "storage://no-store: unknown parameter(s): bucket",
        ),
        ("kms://cluster-kms?key=" + ZERO, None, "kms://cluster-kms: missing parameter(s): salt"),
        (
            "kms://local?keyFile=/k",
            None,
            "kms://local stores wrapped DEKs: it needs a storage URI, not storage://no-store",
        ),
        (
            "kms://local?keyFile=/k",
            "storage://no-store",
            "kms://local stores wrapped DEKs: it needs a storage URI, not storage://no-store",
        ),
        (
            "kms://nosuch?x=1",
            "storage://memory",
            "kms://nosuch: unknown key-wrapping backend"
            " (known: aws, azure, cluster-kms, gcp, kmip, local, pkcs11, vault)",
        ),
        (
            "kms://local?keyFile=/k",
            "storage://ftp",
            "storage://ftp: unknown storage backend"
            " (known: aws, azure, file, gcp, memory, no-store)",
        ),
        ("kms://local", "storage://memory", "kms://local: missing parameter(s): keyFile"),
        (
            "kms://local?keyFile=/k&region=x",
            "storage://memory",
            "kms://local: unknown parameter(s): region",
        ),
        ("kms://local?keyFile=/k", "storage://file", "storage://file: missing parameter(s): path"),
        (
            "kms://local?keyFile=/k",
            "storage://memory?x=1",
            "storage://memory: unknown parameter(s): x",
        ),
        (
            "kms://aws?region=r&accessKeyID=i",
            "storage://memory",
            "kms://aws: missing parameter(s): accessKey, keyName",
        ),
        (
            "kms://gcp?projectID=p",
            "storage://memory",
            "kms://gcp: missing parameter(s): location, keyRing, credentialsPath, keyName",
        ),
        (
            "kms://local?keyFile=/k%zz",
            "storage://memory",
            "kms://local: parameter keyFile has a malformed %-escape",
        ),
    ],
)
def test_bad_uris_exact_messages(kms_uri: str, storage_uri: str | None, message: str) -> None:
    with pytest.raises(KMSConfigError) as info:
        from_uris(kms_uri=kms_uri, storage_uri=storage_uri)
    assert str(info.value) == message


def test_bad_kms_uri_checked_before_storage_uri(tmp_path: Path) -> None:
    with pytest.raises(KMSConfigError, match=r"^kms://local: missing parameter\(s\): keyFile$"):
        from_uris(kms_uri="kms://local", storage_uri="storage://file?bogus=1")


def test_unreadable_key_file_leaves_storage_untouched(tmp_path: Path) -> None:
    store = tmp_path / "store"
    with pytest.raises(KMSConfigError, match="cannot read keyFile"):
        from_uris(
            kms_uri=f"kms://local?keyFile={tmp_path / 'absent'}",
            storage_uri=f"storage://file?path={store}",
        )
    assert not store.exists()


def test_missing_sdk_is_missing_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(_WRAPPERS, "fakecloud", "")
    monkeypatch.setitem(_EXTRAS, "fakecloud", "")
    register_wrapper("fakecloud", "tests.kms.missing_sdk_backend:Wrapper", extra="fakecloud")
    with pytest.raises(MissingExtra) as info:
        from_uris(kms_uri="kms://fakecloud?a=1", storage_uri="storage://memory")
    assert str(info.value) == (
        "kms://fakecloud needs keybroker_test_absent_sdk: install keybroker[fakecloud]"
    )


def test_register_rejects_bad_target() -> None:
    with pytest.raises(ValueError, match="target must be 'module:Class'"):
        register_wrapper("x", "no_colon")


# -- against real AWS APIs (moto server): a bad key never creates the bucket -------------------

AWS_CREDS = "region=us-east-1&accessKeyID=testing&accessKey=testing"


def _s3(moto_url: str) -> object:
    return boto3.client(
        "s3",
        endpoint_url=moto_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


async def test_aws_wrong_key_creates_no_bucket(moto_url: str) -> None:
    bucket = f"kb-{uuid.uuid4().hex[:12]}"
    kms = from_uris(
        kms_uri=f"kms://aws?{AWS_CREDS}&keyName=alias/does-not-exist&endpoint={moto_url}",
        storage_uri=f"storage://aws?bucket={bucket}&{AWS_CREDS}&endpoint={moto_url}",
    )
    with pytest.raises(KMSConfigError):
        await kms.get_dek("key-1", 32)
    await kms.close()
    names = [b["Name"] for b in _s3(moto_url).list_buckets()["Buckets"]]  # type: ignore[attr-defined]
    assert bucket not in names


async def test_aws_end_to_end(moto_url: str) -> None:
    kms_client = boto3.client(
        "kms",
        endpoint_url=moto_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    key_id = kms_client.create_key()["KeyMetadata"]["KeyId"]
    bucket = f"kb-{uuid.uuid4().hex[:12]}"
    uris = {
        "kms_uri": f"kms://aws?{AWS_CREDS}&keyName={key_id}&endpoint={moto_url}",
        "storage_uri": f"storage://aws?bucket={bucket}&{AWS_CREDS}&endpoint={moto_url}",
    }
    kms = from_uris(**uris)
    dek = await kms.get_dek("key-disk", 32)
    await kms.close()
    other = from_uris(**uris)
    assert await other.get_dek("key-disk", 32) == dek
    await other.close()
    obj = _s3(moto_url).get_object(Bucket=bucket, Key="key-disk")  # type: ignore[attr-defined]
    assert obj["Body"].read()[:5] == b"KBDK\x01"


async def test_memory_storage_is_fresh_per_kms(key_file: Path) -> None:
    uris = {"kms_uri": f"kms://local?keyFile={key_file}", "storage_uri": "storage://memory"}
    a, b = from_uris(**uris), from_uris(**uris)
    assert isinstance(a, ExternalKMS) and isinstance(b, ExternalKMS)
    assert isinstance(a.storage, MemoryStorage) and a.storage is not b.storage
    assert await a.get_dek("k", 32) != await b.get_dek("k", 32)
