"""The policy decides on what the vendor will execute: unmodified SDKs through the proxy, in
front of moto enforcing signatures, try to pass a write off as a read with a header or a
parameter the vendor ignores; the write is refused and moto shows nothing changed."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSRequest
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError
from botocore.parsers import ResponseParserError

from keybroker.credentials import Credential
from keybroker.secret import Secret
from keybroker.settings import Config, Endpoint, Policy
from tests import logscan
from tests.proxy.conftest import AwsSetup, aws_endpoint
from tests.proxy.harness import proxy_running
from tests.proxy.platform import send, sign_aws

Start = Callable[[Policy], str]


@pytest.fixture
def proxy_with(aws: AwsSetup) -> Iterator[Start]:
    """A proxy for one aws account (upstream: moto) with the given policy."""
    stack: list[Any] = []

    def start(rules: Policy) -> str:
        ep = aws_endpoint(
            "acct", aws.proxy_ak, aws.proxy_sk, aws.real_ak, aws.real_sk, aws.moto_url
        )
        ep.policy = rules
        cm = proxy_running(Config(endpoints=[ep]))
        url, _ = cm.__enter__()
        stack.append(cm)
        return url

    yield start
    for cm in stack:
        cm.__exit__(None, None, None)


def _client(aws: AwsSetup, url: str, service: str, hook: Any = None) -> Any:
    client = boto3.client(
        service,
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id=aws.proxy_ak,
        aws_secret_access_key=aws.proxy_sk,
        config=BotoConfig(retries={"max_attempts": 1}, s3={"addressing_style": "path"}),
    )
    if hook is not None:
        client.meta.events.register("before-sign", hook)
    return client


def _target(value: str) -> Any:
    def hook(request: AWSRequest, **_: Any) -> None:
        request.headers["X-Amz-Target"] = value

    return hook


def _query(extra: str) -> Any:
    def hook(request: AWSRequest, **_: Any) -> None:
        request.url += ("&" if "?" in request.url else "?") + extra

    return hook


def _refused(call: Callable[[], Any], code: str = "Proxy.Forbidden") -> str:
    with pytest.raises(ClientError) as err:
        call()
    assert err.value.response["Error"]["Code"] == code, err.value.response
    return str(err.value.response["Error"]["Message"])


def _status(call: Callable[[], Any]) -> int:
    """The status of a refusal an SDK may not parse (S3 with an X-Amz-Target gets the JSON
    error shape that header asks for)."""
    with pytest.raises(ClientError) as err:
        call()
    return int(err.value.response["ResponseMetadata"]["HTTPStatusCode"])


def test_read_only_s3_target_header_does_not_make_a_write_a_read(
    aws: AwsSetup, proxy_with: Start
) -> None:
    bucket = f"kb-bypass-{secrets.token_hex(4)}"
    real = aws.real_client("s3")
    real.create_bucket(Bucket=bucket)
    real.put_object(Bucket=bucket, Key="k", Body=b"kept")
    url = proxy_with(Policy(preset="read-only"))
    s3 = _client(aws, url, "s3", _target("S3.GetObject"))
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"kept"
    assert _status(lambda: s3.delete_object(Bucket=bucket, Key="k")) == 403
    assert _status(lambda: s3.put_object(Bucket=bucket, Key="k", Body=b"evil")) == 403
    # DELETE /bucket/key?Action=GetObject: S3 reads no Action
    s3q = _client(aws, url, "s3", _query("Action=GetObject"))
    assert "DELETE" in _refused(lambda: s3q.delete_object(Bucket=bucket, Key="k"))
    assert real.get_object(Bucket=bucket, Key="k")["Body"].read() == b"kept"


def test_ec2_describe_target_does_not_terminate(aws: AwsSetup, proxy_with: Start) -> None:
    real = aws.real_client("ec2")
    image = real.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    instance = real.run_instances(ImageId=image, MinCount=1, MaxCount=1)["Instances"][0]
    ident = instance["InstanceId"]
    url = proxy_with(Policy(actions=["ec2:Describe*"]))
    ec2 = _client(aws, url, "ec2", _target("ec2.DescribeInstances"))
    assert ec2.describe_instances(InstanceIds=[ident])["Reservations"]
    # the X-Amz-Target asks for the JSON error shape, which EC2's parser cannot read
    with pytest.raises(ResponseParserError, match="ec2:TerminateInstances"):
        ec2.terminate_instances(InstanceIds=[ident])
    # Action=DescribeInstances in the query and TerminateInstances in the body: refused
    ec2q = _client(aws, url, "ec2", _query("Action=DescribeInstances"))
    _refused(lambda: ec2q.terminate_instances(InstanceIds=[ident]), "Proxy.MalformedRequest")
    state = real.describe_instances(InstanceIds=[ident])["Reservations"][0]["Instances"][0]
    assert state["State"]["Name"] in ("pending", "running")
    real.terminate_instances(InstanceIds=[ident])


def test_key_proxy_s3logs_delete_is_delete_bucket(aws: AwsSetup) -> None:
    """``DELETE /`` on ``s3logs.s3.amazonaws.com`` deletes the bucket ``s3logs``: routing and
    policy read the same address.  Refused before anything leaves the proxy."""
    ep = Endpoint(
        "logs",
        "aws",
        Credential(aws.proxy_ak, Secret(aws.proxy_sk)),
        Credential(aws.real_ak, Secret(aws.real_sk)),
        policy=Policy(actions=["s3:List*", "s3:Get*"]),
    )
    origin = "https://s3logs.s3.amazonaws.com/"
    with proxy_running(Config(endpoints=[ep])) as (url, _):
        signed = sign_aws("DELETE", origin, ak=aws.proxy_ak, sk=aws.proxy_sk, service="s3")
        got = send(url, "DELETE", origin, signed, account="logs")
        assert got.status == 403
        error = got.json()["ResponseMetadata"]["Error"]
        assert (error["Code"], "s3:DeleteBucket" in error["Message"]) == ("Proxy.Forbidden", True)


# -- real SDK calls -> the operation the SDK names ---------------------------------------------

# (client, method, params); a deny-everything policy names the classified action
AWS_CALLS: list[tuple[str, str, dict[str, Any]]] = [
    ("s3", "put_object", {"Bucket": "b", "Key": "k", "Body": b"x"}),
    ("s3", "get_object", {"Bucket": "b", "Key": "k"}),
    ("s3", "delete_object", {"Bucket": "b", "Key": "k"}),
    ("s3", "list_objects_v2", {"Bucket": "b"}),
    ("s3", "list_buckets", {}),
    ("s3", "copy_object", {"Bucket": "b", "Key": "k", "CopySource": "a/c"}),
    ("s3", "create_multipart_upload", {"Bucket": "b", "Key": "k"}),
    ("s3", "upload_part", {"Bucket": "b", "Key": "k", "UploadId": "u", "PartNumber": 1}),
    ("s3", "abort_multipart_upload", {"Bucket": "b", "Key": "k", "UploadId": "u"}),
    ("ec2", "describe_instances", {}),
    ("ec2", "terminate_instances", {"InstanceIds": ["i-1"]}),
    ("ec2", "run_instances", {"ImageId": "ami-1", "MinCount": 1, "MaxCount": 1}),
    ("sts", "get_caller_identity", {}),
    (
        "sts",
        "assume_role",
        {"RoleArn": "arn:aws:iam::123456789012:role/r", "RoleSessionName": "s1"},
    ),
    ("dynamodb", "get_item", {"TableName": "t", "Key": {"k": {"S": "v"}}}),
    ("dynamodb", "delete_table", {"TableName": "t"}),
    ("kms", "list_keys", {}),
    ("kms", "schedule_key_deletion", {"KeyId": "k"}),
]


@pytest.fixture(scope="module")
def deny_all(aws: AwsSetup) -> Iterator[str]:
    ep = aws_endpoint("deny", aws.proxy_ak, aws.proxy_sk, aws.real_ak, aws.real_sk, aws.moto_url)
    ep.policy = Policy(actions=["nothing:Nothing"])
    with proxy_running(Config(endpoints=[ep])) as (url, _):
        yield url


@pytest.mark.parametrize(("service", "method", "params"), AWS_CALLS)
def test_aws_sdk_calls_are_classified_by_their_sdk_name(
    aws: AwsSetup, deny_all: str, service: str, method: str, params: dict[str, Any]
) -> None:
    client = _client(aws, deny_all, service)
    name = client.meta.method_to_api_mapping[method]
    signing = client.meta.service_model.signing_name
    message = _refused(lambda: getattr(client, method)(**params))
    assert f"'{signing}:{name}'" in message


VOLC_CALLS = [
    ("iam", "ListUsers", "2018-01-01"),
    ("iam", "CreateUser", "2018-01-01"),
    ("iam", "DeleteUser", "2018-01-01"),
    ("ecs", "DescribeInstances", "2020-04-01"),
    ("ecs", "DeleteInstance", "2020-04-01"),
    ("vpc", "DescribeVpcs", "2020-04-01"),
]


def test_volcengine_sdk_calls_are_classified_by_their_sdk_name() -> None:
    import volcenginesdkcore
    from volcenginesdkcore.rest import ApiException
    from volcenginesdkcore.universal import UniversalApi, UniversalInfo

    from tests.signers.volc_upstream import volc_upstream

    real_ak, real_sk = "AKLTREALCLS" + secrets.token_hex(4), secrets.token_urlsafe(24)
    proxy_ak, proxy_sk = "AKLTPROXYCLS" + secrets.token_hex(4), secrets.token_urlsafe(24)
    logscan.register(real_sk, proxy_sk)
    with volc_upstream(real_ak, real_sk) as up:
        ep = Endpoint(
            "volc",
            "volcengine",
            Credential(proxy_ak, Secret(proxy_sk)),
            Credential(real_ak, Secret(real_sk)),
            upstream=str(up),
            policy=Policy(actions=["nothing:Nothing"]),
        )
        with proxy_running(Config(endpoints=[ep])) as (url, _):
            for service, action, version in VOLC_CALLS:
                conf = volcenginesdkcore.Configuration()
                conf.ak, conf.sk, conf.region = proxy_ak, proxy_sk, "cn-beijing"
                conf.host, conf.scheme = url.removeprefix("http://"), "http"
                api = UniversalApi(volcenginesdkcore.ApiClient(conf))
                info = UniversalInfo(
                    method="POST",
                    service=service,
                    version=version,
                    action=action,
                    content_type="application/json",
                )
                with pytest.raises(ApiException) as err:
                    api.do_call(info, {})
                assert err.value.status == 403
                assert f"'{service}:{action}'" in str(err.value.body)
            assert up.hits == 0
