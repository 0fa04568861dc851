"""boto3 with PROXY credentials -> keybroker -> moto enforcing SigV4 with the REAL key."""

from __future__ import annotations

import secrets

import pytest
from botocore.exceptions import ClientError

from tests.proxy.conftest import AwsSetup


def test_sts_get_caller_identity_is_the_real_user(aws: AwsSetup) -> None:
    ident = aws.client("sts").get_caller_identity()
    assert ident["Arn"].endswith(":user/keybroker-real")


def test_s3_bucket_put_get_list(aws: AwsSetup) -> None:
    s3 = aws.client("s3")
    bucket = f"kb-{secrets.token_hex(4)}"
    s3.create_bucket(Bucket=bucket)
    body = secrets.token_bytes(200_000)
    s3.put_object(Bucket=bucket, Key="dir/obj.bin", Body=body)
    got = s3.get_object(Bucket=bucket, Key="dir/obj.bin")["Body"].read()
    assert got == body
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert keys == ["dir/obj.bin"]
    # what the real account sees is the same object
    real = aws.real_client("s3").get_object(Bucket=bucket, Key="dir/obj.bin")["Body"].read()
    assert real == body


def test_kms_encrypt_decrypt(aws: AwsSetup) -> None:
    kms = aws.client("kms")
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    ct = kms.encrypt(KeyId=key_id, Plaintext=b"hold your own key")["CiphertextBlob"]
    assert kms.decrypt(CiphertextBlob=ct)["Plaintext"] == b"hold your own key"


def test_wrong_proxy_secret_is_refused_and_never_reaches_moto(aws: AwsSetup) -> None:
    bucket = f"kb-denied-{secrets.token_hex(4)}"
    s3 = aws.client("s3", secret="not-the-proxy-secret")
    with pytest.raises(ClientError) as err:
        s3.create_bucket(Bucket=bucket)
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 401
    assert err.value.response["Error"]["Code"] == "Proxy.ValidateCredentialErr"
    real = aws.real_client("s3")
    names = [b["Name"] for b in real.list_buckets()["Buckets"]]
    assert bucket not in names


def test_unknown_access_key_gets_404(aws: AwsSetup) -> None:
    sts = aws.client("sts", access_key="AKIDUNKNOWN000000000")
    with pytest.raises(ClientError) as err:
        sts.get_caller_identity()
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    assert err.value.response["Error"]["Code"] == "Proxy.CloudAccountNotFound"


def test_proxy_secret_never_works_directly_on_moto(aws: AwsSetup) -> None:
    # sanity: moto really enforces signatures, so a pass above proves re-signing
    import boto3

    direct = boto3.client(
        "sts",
        endpoint_url=aws.moto_url,
        region_name="us-east-1",
        aws_access_key_id=aws.real_ak,
        aws_secret_access_key=aws.proxy_sk,
    )
    with pytest.raises(ClientError) as err:
        direct.get_caller_identity()
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_native_errors_parse_in_json_protocol_sdks(aws: AwsSetup) -> None:
    kms = aws.client("kms", secret="wrong")
    with pytest.raises(ClientError) as err:
        kms.list_keys()
    assert err.value.response["Error"]["Code"] == "Proxy.ValidateCredentialErr"
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 401
