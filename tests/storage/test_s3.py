"""S3Storage against a real moto server: the conformance suite plus S3-specific behaviour."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote

import boto3
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keybroker.kms import from_uris
from keybroker.kms.errors import BackendError, DEKExists, KMSConfigError
from keybroker.kms.registry import storage_from_uri
from keybroker.kms.storage.s3 import S3Storage
from keybroker.kms.uri import parse_uri
from keybroker.secret import Secret
from tests.storage.cloud_servers import AwsKeys, moto_auth_enforced
from tests.storage.conformance import (
    StorageConformance,
    oversized_objects_refused,
    threads_race_one_wins,
)


def new_bucket() -> str:
    return f"kb-{uuid.uuid4().hex}"


def admin(moto_url: str, region: str = "us-east-1") -> object:
    """A plain boto3 client to look at moto's state independently of the code under test."""
    return boto3.client(
        "s3",
        endpoint_url=moto_url,
        region_name=region,
        aws_access_key_id="admin",
        aws_secret_access_key="admin",
    )


SESSION = boto3.Session()  # shared: loading the S3 model for every test is slow


def explicit(moto_url: str, bucket: str, region: str = "us-east-1", **kw: object) -> S3Storage:
    return S3Storage(
        bucket,
        session=SESSION,
        region=region,
        endpoint=moto_url,
        access_key_id="testing",
        secret_access_key=Secret("testing"),
        **kw,  # type: ignore[arg-type]
    )


def uri(moto_url: str, bucket: str, keys: AwsKeys, region: str = "us-east-1") -> str:
    return (
        f"storage://aws?bucket={bucket}&region={region}&accessKeyID={keys.access_key_id}"
        f"&accessKey={quote(keys.secret_access_key, safe='')}&endpoint={quote(moto_url, safe='')}"
    )


class TestS3Storage(StorageConformance):
    @pytest.fixture
    async def storage(self, moto_url: str) -> AsyncIterator[S3Storage]:
        s = explicit(moto_url, new_bucket())
        yield s
        await s.close()


# -- bucket creation --------------------------------------------------------------------------


@pytest.mark.parametrize("region", ["us-east-1", "eu-central-1", "ap-southeast-2"])
async def test_bucket_created_on_first_use_in_its_region(moto_url: str, region: str) -> None:
    bucket = new_bucket()
    s = explicit(moto_url, bucket, region)
    client = admin(moto_url, region)
    assert bucket not in {b["Name"] for b in client.list_buckets()["Buckets"]}  # type: ignore[attr-defined]
    await s.put("k", b"v")
    location = client.get_bucket_location(Bucket=bucket)["LocationConstraint"]  # type: ignore[attr-defined]
    # S3 reports us-east-1 as "no constraint"
    assert location == (None if region == "us-east-1" else region)
    assert client.get_object(Bucket=bucket, Key="k")["Body"].read() == b"v"  # type: ignore[attr-defined]
    await s.close()


async def test_open_creates_bucket_and_is_idempotent(moto_url: str) -> None:
    bucket = new_bucket()
    s = explicit(moto_url, bucket, "eu-west-1")
    await s.open()
    await s.open()
    admin(moto_url).head_bucket(Bucket=bucket)  # type: ignore[attr-defined]
    await s.close()


async def test_existing_bucket_and_objects_are_used(moto_url: str) -> None:
    bucket = new_bucket()
    client = admin(moto_url)
    client.create_bucket(Bucket=bucket)  # type: ignore[attr-defined]
    client.put_object(Bucket=bucket, Key="pre", Body=b"stored before")  # type: ignore[attr-defined]
    s = explicit(moto_url, bucket)
    assert await s.get("pre") == b"stored before"
    with pytest.raises(DEKExists):
        await s.put("pre", b"other")
    await s.close()


async def test_oversized_objects_are_refused_unread(moto_url: str) -> None:
    """Objects past the blob limit planted at DEK ids: refused by their Content-Length, the
    24 MiB one never read."""
    bucket = new_bucket()
    s = explicit(moto_url, bucket)

    def plant(key: str, data: bytes) -> None:
        admin(moto_url).put_object(Bucket=bucket, Key=key, Body=data)  # type: ignore[attr-defined]

    await oversized_objects_refused(s, plant)
    await s.close()


def test_from_uri_creates_nothing(moto_url: str, moto_s3_keys: AwsKeys) -> None:
    bucket = new_bucket()
    S3Storage.from_uri(parse_uri(uri(moto_url, bucket, moto_s3_keys)))
    names = {b["Name"] for b in admin(moto_url).list_buckets()["Buckets"]}  # type: ignore[attr-defined]
    assert bucket not in names


# -- create-only writes -----------------------------------------------------------------------


async def test_put_sends_if_none_match(moto_url: str) -> None:
    """The precondition is enforced by the server, not by a read-before-write in our code:
    an object written behind our back is never overwritten."""
    bucket = new_bucket()
    s = explicit(moto_url, bucket)
    await s.open()
    admin(moto_url).put_object(Bucket=bucket, Key="k", Body=b"theirs")  # type: ignore[attr-defined]
    with pytest.raises(DEKExists):
        await s.put("k", b"ours")
    assert await s.get("k") == b"theirs"
    await s.close()


async def test_list_paginates(moto_url: str) -> None:
    s = explicit(moto_url, new_bucket(), page_size=2)
    ids = [f"k{i:02d}" for i in range(7)]
    for i in ids:
        await s.put(i, b"x")
    assert await s.list() == ids
    assert await s.list("k0") == ids
    await s.close()


# -- credentials ------------------------------------------------------------------------------


async def test_from_uri_uses_its_credentials(moto_url: str, moto_s3_keys: AwsKeys) -> None:
    bucket = new_bucket()
    s = S3Storage.from_uri(parse_uri(uri(moto_url, bucket, moto_s3_keys)))
    with moto_auth_enforced(moto_url):
        await s.put("k", b"v")
        assert await s.get("k") == b"v"
    await s.close()


async def test_wrong_secret_is_a_backend_error_without_the_secret(
    moto_url: str, moto_s3_keys: AwsKeys
) -> None:
    wrong = AwsKeys(moto_s3_keys.access_key_id, "not-the-secret+/x")
    s = S3Storage.from_uri(parse_uri(uri(moto_url, new_bucket(), wrong)))
    with moto_auth_enforced(moto_url), pytest.raises(BackendError) as err:
        await s.put("k", b"v")
    text = str(err.value)
    assert "HTTP 403" in text
    assert wrong.secret_access_key not in text
    await s.close()


async def test_env_vars_do_not_override_uri(
    moto_url: str, moto_s3_keys: AwsKeys, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    bogus = {
        "AWS_ACCESS_KEY_ID": "AKIABOGUSBOGUSBOGUS0",
        "AWS_SECRET_ACCESS_KEY": "bogus-secret",
        "AWS_SESSION_TOKEN": "bogus-token",
        "AWS_DEFAULT_REGION": "sa-east-1",
        "AWS_REGION": "sa-east-1",
        "AWS_PROFILE": "no-such-profile",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
        "AWS_ENDPOINT_URL_S3": "http://127.0.0.1:9",
        "AWS_CONFIG_FILE": str(tmp_path / "missing-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "missing-credentials"),
    }
    client = admin(moto_url)  # built before the environment turns hostile
    for name, value in bogus.items():
        monkeypatch.setenv(name, value)
    bucket = new_bucket()
    s = S3Storage.from_uri(parse_uri(uri(moto_url, bucket, moto_s3_keys, "eu-west-2")))
    assert s.region == "eu-west-2"
    with moto_auth_enforced(moto_url):
        await s.put("k", b"v")
        assert await s.get("k") == b"v"
    assert client.get_bucket_location(Bucket=bucket)["LocationConstraint"] == "eu-west-2"  # type: ignore[attr-defined]
    await s.close()


def test_env_endpoint_ignored_without_uri_endpoint(
    moto_s3_keys: AwsKeys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9")
    s = S3Storage.from_uri(
        parse_uri(
            f"storage://aws?bucket=b&region=eu-west-1&accessKeyID={moto_s3_keys.access_key_id}"
            f"&accessKey={quote(moto_s3_keys.secret_access_key, safe='')}"
        )
    )
    assert s._client.meta.endpoint_url == "https://s3.eu-west-1.amazonaws.com"


async def test_default_chain_reads_shared_files(
    moto_url: str, moto_s3_keys: AwsKeys, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The Go README's way: credentials and region from ~/.aws/credentials and ~/.aws/config."""
    aws = tmp_path / ".aws"
    aws.mkdir()
    (aws / "credentials").write_text(
        "[default]\n"
        f"aws_access_key_id = {moto_s3_keys.access_key_id}\n"
        f"aws_secret_access_key = {moto_s3_keys.secret_access_key}\n"
    )
    (aws / "config").write_text("[default]\nregion = eu-north-1\noutput = json\n")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                 "AWS_REGION", "AWS_DEFAULT_REGION"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(aws / "credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(aws / "config"))
    bucket = new_bucket()
    s = S3Storage(bucket, endpoint=moto_url)
    assert s.region == "eu-north-1"
    with moto_auth_enforced(moto_url):
        await s.put("k", b"v")
        assert await s.get("k") == b"v"
    await s.close()


async def test_default_chain_with_wrong_file_secret_fails(
    moto_url: str, moto_s3_keys: AwsKeys, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    creds = tmp_path / "credentials"
    creds.write_text(
        f"[default]\naws_access_key_id = {moto_s3_keys.access_key_id}\n"
        "aws_secret_access_key = wrong\n"
    )
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(creds))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    s = S3Storage(new_bucket(), region="us-east-1", endpoint=moto_url)
    with moto_auth_enforced(moto_url), pytest.raises(BackendError, match="HTTP 403"):
        await s.get("k")
    await s.close()


async def test_explicit_boto3_session(moto_url: str, moto_s3_keys: AwsKeys) -> None:
    session = boto3.Session(
        aws_access_key_id=moto_s3_keys.access_key_id,
        aws_secret_access_key=moto_s3_keys.secret_access_key,
        region_name="ca-central-1",
    )
    s = S3Storage(new_bucket(), session=session, endpoint=moto_url)
    assert s.region == "ca-central-1"
    with moto_auth_enforced(moto_url):
        await s.put("k", b"v")
    await s.close()


async def test_explicit_client(moto_url: str) -> None:
    bucket = new_bucket()
    s = S3Storage(bucket, client=admin(moto_url))
    await s.put("k", b"v")
    assert admin(moto_url).get_object(Bucket=bucket, Key="k")["Body"].read() == b"v"  # type: ignore[attr-defined]
    await s.close()


async def test_secret_reference_from_env(
    moto_url: str, moto_s3_keys: AwsKeys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KB_TEST_S3_SECRET", moto_s3_keys.secret_access_key)
    s = S3Storage.from_uri(
        parse_uri(
            f"storage://aws?bucket={new_bucket()}&region=us-east-1"
            f"&accessKeyID={moto_s3_keys.access_key_id}&accessKey=env:KB_TEST_S3_SECRET"
            f"&endpoint={moto_url}"
        )
    )
    with moto_auth_enforced(moto_url):
        await s.put("k", b"v")
    await s.close()


# -- configuration errors ---------------------------------------------------------------------


def test_from_uri_names_every_missing_parameter() -> None:
    with pytest.raises(KMSConfigError) as err:
        S3Storage.from_uri(parse_uri("storage://aws?bucket=b"))
    assert str(err.value) == "storage://aws: missing parameter(s): region, accessKeyID, accessKey"


def test_from_uri_rejects_unknown_parameters() -> None:
    with pytest.raises(KMSConfigError, match=r"unknown parameter\(s\): sessionToken"):
        S3Storage.from_uri(
            parse_uri("storage://aws?bucket=b&region=r&accessKeyID=a&accessKey=s&sessionToken=t")
        )


def test_constructor_argument_errors() -> None:
    with pytest.raises(KMSConfigError) as err:
        S3Storage("", access_key_id="a", page_size=0)
    assert str(err.value) == (
        "S3 storage: bucket is empty; access_key_id and secret_access_key must be given "
        "together; page_size must be between 1 and 1000"
    )


async def test_unreachable_endpoint_is_a_backend_error() -> None:
    from tests.servers import free_port

    s = explicit(f"http://127.0.0.1:{free_port()}", new_bucket())
    with pytest.raises(BackendError, match=r"^S3 HeadBucket failed: EndpointConnectionError$"):
        await s.get("k")
    await s.close()


async def test_closed_storage_refuses(moto_url: str) -> None:
    s = explicit(moto_url, new_bucket())
    await s.close()
    with pytest.raises(BackendError, match="closed"):
        await s.get("k")


# -- through the registry and the KMS ---------------------------------------------------------


def test_registry_builds_s3_storage(moto_url: str, moto_s3_keys: AwsKeys) -> None:
    built = storage_from_uri(parse_uri(uri(moto_url, new_bucket(), moto_s3_keys)))
    assert isinstance(built, S3Storage)


def test_validate_uri_checks_parameters_only() -> None:
    S3Storage.validate_uri(parse_uri("storage://aws?bucket=b&region=r&accessKeyID=a&accessKey=s"))
    with pytest.raises(KMSConfigError, match=r"^storage://aws: parameter endpoint is empty$"):
        S3Storage.validate_uri(
            parse_uri("storage://aws?bucket=b&region=r&accessKeyID=a&accessKey=s&endpoint=")
        )


async def test_external_kms_keeps_deks_in_s3(moto_url: str, moto_s3_keys: AwsKeys) -> None:
    """Constellation's set-up end to end: AWS KMS (moto) wraps, S3 (moto) stores; concurrent
    first requests for one id all get the one stored DEK."""
    kms_client = boto3.client(
        "kms",
        endpoint_url=moto_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    key_arn = kms_client.create_key()["KeyMetadata"]["Arn"]
    bucket = new_bucket()
    kms = from_uris(
        kms_uri=(
            f"kms://aws?region=us-east-1&accessKeyID=testing&accessKey=testing"
            f"&keyName={quote(key_arn, safe='')}&endpoint={quote(moto_url, safe='')}"
        ),
        storage_uri=uri(moto_url, bucket, moto_s3_keys),
    )
    deks = await asyncio.gather(*(kms.get_dek("key-shared", 32) for _ in range(10)))
    assert len(set(deks)) == 1 and len(deks[0]) == 32
    stored = admin(moto_url).list_objects_v2(Bucket=bucket)["Contents"]  # type: ignore[attr-defined]
    assert [o["Key"] for o in stored] == ["key-shared"]
    assert await kms.get_dek("key-shared", 32) == deks[0]
    assert await kms.get_dek("key-other", 32) != deks[0]
    await kms.close()


@pytest.mark.slow
@settings(max_examples=200, deadline=None)
@given(region=st.text(min_size=1, max_size=40), endpoint=st.text(min_size=1, max_size=60))
def test_fuzz_uri_values_build_or_fail_cleanly(region: str, endpoint: str) -> None:
    """Whatever the region and endpoint say, from_uri builds a client or raises KMSConfigError
    (never a botocore traceback)."""
    text = (
        f"storage://aws?bucket=b&region={quote(region, safe='')}&accessKeyID=a"
        f"&accessKey=s&endpoint={quote(endpoint, safe='')}"
    )
    with contextlib.suppress(KMSConfigError):
        S3Storage.from_uri(parse_uri(text))


def test_threads_with_own_event_loops_exactly_one_wins(moto_url: str) -> None:
    threads_race_one_wins(explicit(moto_url, new_bucket()))


def test_repr_names_bucket_not_secrets(moto_url: str, moto_s3_keys: AwsKeys) -> None:
    s = S3Storage.from_uri(parse_uri(uri(moto_url, "my-bucket", moto_s3_keys, "eu-west-1")))
    assert repr(s) == "S3Storage(bucket='my-bucket', region='eu-west-1')"


def test_missing_sdk_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib
    import sys

    from keybroker.kms.errors import MissingExtra

    monkeypatch.setitem(sys.modules, "boto3", None)  # its import now fails
    monkeypatch.delitem(sys.modules, "keybroker.kms.storage.s3")
    with pytest.raises(MissingExtra, match=r"install keybroker\[aws\]$"):
        importlib.import_module("keybroker.kms.storage.s3")
