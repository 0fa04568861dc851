"""AWS KMS key wrapper against a real moto server, driven by boto3.

The session moto server runs with signature checks off; the credential tests start a second
moto server of their own with SigV4 enforcement on.
"""

from __future__ import annotations

import base64
import dataclasses
import os
import sys
import urllib.parse
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from keybroker.kms import from_uris, wrapper_from_uri
from keybroker.kms.backends.aws import AAD_CONTEXT_KEY, AWSKMSWrapper
from keybroker.kms.base import WrappedKey
from keybroker.kms.envelope import WriteFormat
from keybroker.kms.errors import BackendError, IntegrityError, KMSConfigError, MissingExtra
from keybroker.kms.uri import parse_uri
from keybroker.secret import Secret
from tests import logscan, servers
from tests.kms.wrapper_conformance import KeyWrapperConformance

REGION = "eu-central-1"


def kms_client(url: str, key_id: str = "test", secret: str = "test") -> Any:
    return boto3.client(
        "kms",
        endpoint_url=url,
        region_name=REGION,
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
    )


def uri_for(url: str, key: str, *, key_id: str = "test", secret: str = "test") -> str:
    q = urllib.parse.quote
    return (
        f"kms://aws?region={REGION}&accessKeyID={q(key_id, safe='')}"
        f"&accessKey={q(secret, safe='')}&keyName={q(key, safe='')}&endpoint={q(url, safe='')}"
    )


def new_key(url: str, **kwargs: Any) -> dict[str, Any]:
    return dict(kms_client(url).create_key(**kwargs)["KeyMetadata"])


@pytest.fixture(scope="session")
def aws_key(moto_url: str) -> str:
    return str(new_key(moto_url, KeyUsage="ENCRYPT_DECRYPT")["KeyId"])


@pytest.fixture
async def wrapper(moto_url: str, aws_key: str) -> AsyncIterator[AWSKMSWrapper]:
    w = AWSKMSWrapper.from_uri(parse_uri(uri_for(moto_url, aws_key)))
    await w.open()
    yield w
    await w.close()


class TestAWSKMSConformance(KeyWrapperConformance):
    pass


# -- URI parsing ---------------------------------------------------------------------------


def test_uri_names_every_missing_parameter() -> None:
    with pytest.raises(KMSConfigError) as exc:
        AWSKMSWrapper.from_uri(parse_uri("kms://aws?region=us-east-1"))
    for name in ("accessKeyID", "accessKey", "keyName"):
        assert name in str(exc.value)


def test_uri_rejects_unknown_parameter() -> None:
    uri = uri_for("http://127.0.0.1:1", "k") + "&sessionToken=x"
    with pytest.raises(KMSConfigError, match="sessionToken"):
        AWSKMSWrapper.from_uri(parse_uri(uri))


def test_uri_secret_from_env_reference(moto_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KB_TEST_AWS_SECRET", raising=False)
    with pytest.raises(KMSConfigError, match="KB_TEST_AWS_SECRET"):
        AWSKMSWrapper.from_uri(parse_uri(uri_for(moto_url, "k", secret="env:KB_TEST_AWS_SECRET")))


def test_constructor_needs_both_credential_halves() -> None:
    with pytest.raises(KMSConfigError, match="together"):
        AWSKMSWrapper("k", region=REGION, access_key_id="AKIA")


def test_missing_boto3_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "boto3", None)  # makes `import boto3` raise ImportError
    with pytest.raises(MissingExtra, match=r"keybroker\[aws\]"):
        AWSKMSWrapper("k", region=REGION)


# -- behaviour against moto ----------------------------------------------------------------


async def test_kek_version_is_the_key_arn_and_alias_works(moto_url: str, aws_key: str) -> None:
    arn = kms_client(moto_url).describe_key(KeyId=aws_key)["KeyMetadata"]["Arn"]
    alias = f"alias/kb-{os.urandom(4).hex()}"
    kms_client(moto_url).create_alias(AliasName=alias, TargetKeyId=aws_key)
    w = AWSKMSWrapper.from_uri(parse_uri(uri_for(moto_url, alias)))
    try:
        wrapped = await w.wrap(b"k" * 32, b"id")
        assert (wrapped.kek_id, wrapped.kek_version) == (alias, arn)
        assert await w.unwrap(wrapped, b"id") == b"k" * 32
    finally:
        await w.close()


async def test_aad_travels_as_encryption_context(moto_url: str, wrapper: AWSKMSWrapper) -> None:
    aad = b"\x00id=a\xff"
    wrapped = await wrapper.wrap(b"s" * 32, aad)
    context = {AAD_CONTEXT_KEY: base64.b64encode(aad).decode()}
    out = kms_client(moto_url).decrypt(CiphertextBlob=wrapped.ciphertext, EncryptionContext=context)
    assert out["Plaintext"] == b"s" * 32


async def test_old_blob_unwraps_after_rotation(moto_url: str) -> None:
    # moto records on-demand rotations but keeps one key material; real AWS keeps the old
    # material behind the same ARN.  Either way the recorded ARN must still unwrap.
    key = new_key(moto_url)
    w = AWSKMSWrapper.from_uri(parse_uri(uri_for(moto_url, key["KeyId"])))
    try:
        old = await w.wrap(b"o" * 32, b"x")
        kms_client(moto_url).rotate_key_on_demand(KeyId=key["KeyId"])
        new = await w.wrap(b"n" * 32, b"x")
        assert await w.unwrap(old, b"x") == b"o" * 32
        assert await w.unwrap(new, b"x") == b"n" * 32
    finally:
        await w.close()


async def test_blob_of_another_key_is_an_integrity_error(
    moto_url: str, wrapper: AWSKMSWrapper
) -> None:
    other = new_key(moto_url)
    w = AWSKMSWrapper.from_uri(parse_uri(uri_for(moto_url, other["KeyId"])))
    try:
        foreign = await w.wrap(b"f" * 32, b"x")
    finally:
        await w.close()
    # Same blob, but claimed to be ours: Decrypt with our ARN must refuse it.
    ours = (await wrapper.wrap(b"o" * 32, b"x")).kek_version
    with pytest.raises(IntegrityError):
        await wrapper.unwrap(dataclasses.replace(foreign, kek_version=ours), b"x")


async def test_disabled_key_is_refused_at_open(moto_url: str) -> None:
    key = new_key(moto_url)
    kms_client(moto_url).disable_key(KeyId=key["KeyId"])
    w = AWSKMSWrapper.from_uri(parse_uri(uri_for(moto_url, key["KeyId"])))
    with pytest.raises(KMSConfigError, match="Disabled"):
        await w.wrap(b"k" * 32, b"")
    await w.close()


async def test_missing_key_is_a_config_error(moto_url: str) -> None:
    w = AWSKMSWrapper.from_uri(parse_uri(uri_for(moto_url, "alias/does-not-exist")))
    with pytest.raises(KMSConfigError, match="does not exist"):
        await w.open()
    await w.close()


async def test_signing_key_is_refused(moto_url: str) -> None:
    key = new_key(moto_url, KeyUsage="SIGN_VERIFY", KeySpec="RSA_2048")
    w = AWSKMSWrapper.from_uri(parse_uri(uri_for(moto_url, key["KeyId"])))
    with pytest.raises(KMSConfigError, match=r"ENCRYPT_DECRYPT|SYMMETRIC_DEFAULT"):
        await w.open()
    await w.close()


async def test_unreachable_endpoint_is_a_backend_error() -> None:
    w = AWSKMSWrapper.from_uri(parse_uri(uri_for(f"http://127.0.0.1:{servers.free_port()}", "k")))
    with pytest.raises(BackendError, match="DescribeKey"):
        await w.open()
    await w.close()


# -- credentials, against a moto server that checks signatures ------------------------------


@dataclasses.dataclass(frozen=True)
class AuthMoto:
    url: str
    key_id: str
    secret: str
    key: str


@pytest.fixture(scope="module")
def auth_moto(moto_auth: tuple[str, str, str]) -> AuthMoto:
    url, key_id, secret = moto_auth
    key = kms_client(url, key_id, secret).create_key()["KeyMetadata"]["KeyId"]
    return AuthMoto(url, key_id, secret, key)


async def test_wrong_secret_is_a_backend_error_without_the_secret(auth_moto: AuthMoto) -> None:
    wrong = "wrong+secret/" + os.urandom(8).hex()
    logscan.register(wrong)
    w = AWSKMSWrapper.from_uri(
        parse_uri(uri_for(auth_moto.url, auth_moto.key, key_id=auth_moto.key_id, secret=wrong))
    )
    with pytest.raises(BackendError) as exc:
        await w.open()
    assert wrong not in str(exc.value) and auth_moto.secret not in str(exc.value)
    await w.close()


async def test_uri_credentials_beat_environment(
    auth_moto: AuthMoto, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    bogus = (
        f"[default]\nregion = ap-south-1\nendpoint_url = http://127.0.0.1:{servers.free_port()}\n"
    )
    (tmp_path / "config").write_text(bogus)
    (tmp_path / "credentials").write_text("[default]\naws_access_key_id = AKIAFILE\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAENVIRONMENT0000")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "bogus-token")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "ap-south-1")
    monkeypatch.setenv("AWS_REGION", "ap-south-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{servers.free_port()}")
    monkeypatch.setenv("AWS_PROFILE", "no-such-profile")
    uri = uri_for(auth_moto.url, auth_moto.key, key_id=auth_moto.key_id, secret=auth_moto.secret)
    w = AWSKMSWrapper.from_uri(parse_uri(uri))
    try:
        wrapped = await w.wrap(b"e" * 32, b"aad")
        assert f":{REGION}:" in wrapped.kek_version  # the key was found in the URI's region
        assert await w.unwrap(wrapped, b"aad") == b"e" * 32
    finally:
        await w.close()


async def test_explicit_constructor_credentials(auth_moto: AuthMoto) -> None:
    w = AWSKMSWrapper(
        auth_moto.key,
        region=REGION,
        access_key_id=auth_moto.key_id,
        secret_access_key=Secret(auth_moto.secret),
        endpoint=auth_moto.url,
    )
    try:
        assert await w.unwrap(await w.wrap(b"c" * 16, b""), b"") == b"c" * 16
    finally:
        await w.close()


@pytest.mark.parametrize("fmt", ["keybroker", "constellation"])
async def test_external_kms_end_to_end(moto_url: str, aws_key: str, fmt: WriteFormat) -> None:
    uri = uri_for(moto_url, aws_key)
    built = wrapper_from_uri(parse_uri(uri))
    await built.close()
    assert isinstance(built, AWSKMSWrapper)
    kms = from_uris(kms_uri=uri, storage_uri="storage://memory", write_format=fmt)
    try:
        first = await kms.get_dek("key-a", 32)
        assert await kms.get_dek("key-a", 32) == first
        assert await kms.get_dek("key-b", 32) != first
    finally:
        await kms.close()


async def test_blob_without_encryption_context_unwraps_with_empty_aad(
    moto_url: str, aws_key: str, wrapper: AWSKMSWrapper
) -> None:
    # Constellation (go-kms-wrapping) encrypts with no encryption context at all.
    out = kms_client(moto_url).encrypt(KeyId=aws_key, Plaintext=b"c" * 32)
    wrapped = WrappedKey(aws_key, out["KeyId"], out["CiphertextBlob"])
    assert await wrapper.unwrap(wrapped, b"") == b"c" * 32
    with pytest.raises(IntegrityError):
        await wrapper.unwrap(wrapped, b"id")
