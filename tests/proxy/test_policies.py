"""Per-account policies through real SDKs (boto3 and the volcengine SDK), against real upstreams."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError

from keybroker.credentials import Credential
from keybroker.secret import Secret
from keybroker.settings import Config, Policy, SecurityConfig
from tests import logscan
from tests.proxy.conftest import AwsSetup, aws_endpoint
from tests.proxy.harness import proxy_running


def _client(url: str, service: str, ak: str, sk: str, region: str = "us-east-1"):  # type: ignore[no-untyped-def]
    return boto3.client(
        service,
        endpoint_url=url,
        region_name=region,
        aws_access_key_id=ak,
        aws_secret_access_key=sk,
        config=BotoConfig(retries={"max_attempts": 1}, s3={"addressing_style": "path"}),
    )


@pytest.fixture
def proxy_with(aws: AwsSetup) -> Iterator:  # type: ignore[type-arg]
    """Start a proxy for one aws account with the given policy / extras."""
    stack = []

    def start(policy: Policy | None = None, **extra):  # type: ignore[no-untyped-def]
        security = extra.pop("security", None)
        ep = aws_endpoint(
            "acct", aws.proxy_ak, aws.proxy_sk, aws.real_ak, aws.real_sk, aws.moto_url
        )
        if policy is not None:
            ep.policy = policy
        for key, value in extra.items():
            setattr(ep, key, value)
        cfg = Config(endpoints=[ep], security=security or SecurityConfig())
        cm = proxy_running(cfg)
        url, _ = cm.__enter__()
        stack.append(cm)
        return url

    yield start
    for cm in stack:
        cm.__exit__(None, None, None)


def _denied(fn, code: str = "Proxy.Forbidden") -> str:  # type: ignore[no-untyped-def]
    with pytest.raises(ClientError) as err:
        fn()
    assert err.value.response["Error"]["Code"] == code, err.value.response
    return str(err.value.response["Error"]["Message"])


def test_read_only_preset(aws: AwsSetup, proxy_with) -> None:  # type: ignore[no-untyped-def]
    url = proxy_with(Policy(preset="read-only"))
    sts = _client(url, "sts", aws.proxy_ak, aws.proxy_sk)
    assert sts.get_caller_identity()["Arn"].endswith("keybroker-real")
    s3 = _client(url, "s3", aws.proxy_ak, aws.proxy_sk)
    s3.list_buckets()
    bucket = f"kb-ro-{secrets.token_hex(4)}"
    assert "read-only" in _denied(lambda: s3.create_bucket(Bucket=bucket))
    assert bucket not in [b["Name"] for b in aws.real_client("s3").list_buckets()["Buckets"]]
    kms = _client(url, "kms", aws.proxy_ak, aws.proxy_sk)
    kms.list_keys()
    _denied(lambda: kms.create_key())


def test_action_globs_and_denies(aws: AwsSetup, proxy_with) -> None:  # type: ignore[no-untyped-def]
    bucket = f"kb-act-{secrets.token_hex(4)}"
    real = aws.real_client("s3")
    real.create_bucket(Bucket=bucket)
    real.put_object(Bucket=bucket, Key="k", Body=b"v")
    url = proxy_with(
        Policy(actions=["s3:GetObject", "s3:List*", "sts:Get*"], deny_actions=["s3:ListBuckets"])
    )
    s3 = _client(url, "s3", aws.proxy_ak, aws.proxy_sk)
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"v"
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 1
    assert "s3:ListBuckets" in _denied(lambda: s3.list_buckets())
    assert "s3:PutObject" in _denied(lambda: s3.put_object(Bucket=bucket, Key="x", Body=b"y"))
    assert "s3:DeleteObject" in _denied(lambda: s3.delete_object(Bucket=bucket, Key="k"))
    _client(url, "sts", aws.proxy_ak, aws.proxy_sk).get_caller_identity()
    assert "kms" in _denied(lambda: _client(url, "kms", aws.proxy_ak, aws.proxy_sk).list_keys())


def test_services_and_regions(aws: AwsSetup, proxy_with) -> None:  # type: ignore[no-untyped-def]
    url = proxy_with(Policy(services=["sts"], regions=["us-east-1"]))
    _client(url, "sts", aws.proxy_ak, aws.proxy_sk).get_caller_identity()
    assert "eu-west-1" in _denied(
        lambda: _client(url, "sts", aws.proxy_ak, aws.proxy_sk, "eu-west-1").get_caller_identity()
    )
    assert "'s3'" in _denied(lambda: _client(url, "s3", aws.proxy_ak, aws.proxy_sk).list_buckets())


def test_source_cidrs(aws: AwsSetup, proxy_with) -> None:  # type: ignore[no-untyped-def]
    url = proxy_with(Policy(source_cidrs=["10.0.0.0/8"]))
    _denied(lambda: _client(url, "sts", aws.proxy_ak, aws.proxy_sk).get_caller_identity())
    url = proxy_with(Policy(source_cidrs=["10.0.0.0/8", "127.0.0.0/8"]))
    _client(url, "sts", aws.proxy_ak, aws.proxy_sk).get_caller_identity()


def test_global_client_allow_list(aws: AwsSetup, proxy_with) -> None:  # type: ignore[no-untyped-def]
    """Checked as a connection is accepted: a client outside is closed before anything is
    read (tests/proxy/test_http_hygiene.py has the timing; a keep-alive connection a reload
    shut out still gets key-proxy's 403 per request)."""
    import requests

    url = proxy_with(security=SecurityConfig(allowed_client_cidrs=["192.0.2.0/24"]))
    with pytest.raises(requests.ConnectionError):
        requests.get(url + "/?Action=GetCallerIdentity", timeout=5)
    url = proxy_with(security=SecurityConfig(allowed_client_cidrs=["192.0.2.0/24", "127.0.0.1/32"]))
    _client(url, "sts", aws.proxy_ak, aws.proxy_sk).get_caller_identity()


def test_rotation_two_proxy_credentials_and_expiry(aws: AwsSetup, proxy_with) -> None:  # type: ignore[no-untyped-def]
    new_ak, new_sk = "AKIDPROXYNEW" + secrets.token_hex(4).upper(), secrets.token_urlsafe(24)
    old_ak, old_sk = "AKIDPROXYOLD" + secrets.token_hex(4).upper(), secrets.token_urlsafe(24)
    logscan.register(new_sk, old_sk)
    past = datetime.now(UTC) - timedelta(minutes=1)
    url = proxy_with(
        additional_proxies=[
            Credential(new_ak, Secret(new_sk)),
            Credential(old_ak, Secret(old_sk), expires_at=past),
        ]
    )
    for ak, sk in ((aws.proxy_ak, aws.proxy_sk), (new_ak, new_sk)):
        assert _client(url, "sts", ak, sk).get_caller_identity()["Arn"].endswith("keybroker-real")
    msg = _denied(
        lambda: _client(url, "sts", old_ak, old_sk).get_caller_identity(),
        "Proxy.ValidateCredentialErr",
    )
    assert "expired" in msg
    # a credential of one account cannot be used with another's secret
    _denied(
        lambda: _client(url, "sts", new_ak, aws.proxy_sk).get_caller_identity(),
        "Proxy.ValidateCredentialErr",
    )


def test_per_account_body_limit(aws: AwsSetup, proxy_with) -> None:  # type: ignore[no-untyped-def]
    url = proxy_with(max_body_bytes=1000)
    kms = _client(url, "kms", aws.proxy_ak, aws.proxy_sk)
    with pytest.raises(ClientError) as err:
        kms.encrypt(KeyId="alias/x", Plaintext=b"x" * 2000)
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 413
    assert replace(Policy()) == Policy()


def test_volcengine_policy_through_the_sdk() -> None:
    import volcenginesdkcore
    from volcenginesdkcore.rest import ApiException
    from volcenginesdkcore.universal import UniversalApi, UniversalInfo

    from keybroker.settings import Endpoint
    from tests.signers.volc_upstream import volc_upstream

    real_ak, real_sk = "AKLTREALPOL" + secrets.token_hex(4), secrets.token_urlsafe(24)
    proxy_ak, proxy_sk = "AKLTPROXYPOL" + secrets.token_hex(4), secrets.token_urlsafe(24)
    logscan.register(real_sk, proxy_sk)
    policy = Policy(actions=["iam:List*", "ecs:Describe*"], regions=["cn-beijing"])
    with volc_upstream(real_ak, real_sk) as up:
        ep = Endpoint(
            "volc",
            "volcengine",
            Credential(proxy_ak, Secret(proxy_sk)),
            Credential(real_ak, Secret(real_sk)),
            upstream=str(up),
            policy=policy,
        )
        with proxy_running(Config(endpoints=[ep])) as (url, _):

            def call(action: str, service: str = "iam", region: str = "cn-beijing") -> object:
                conf = volcenginesdkcore.Configuration()
                conf.ak, conf.sk, conf.region = proxy_ak, proxy_sk, region
                conf.host, conf.scheme = url.removeprefix("http://"), "http"
                api = UniversalApi(volcenginesdkcore.ApiClient(conf))
                info = UniversalInfo(
                    method="POST",
                    service=service,
                    version="2018-01-01",
                    action=action,
                    content_type="application/json",
                )
                return api.do_call(info, {})

            call("ListUsers")
            call("DescribeInstances", service="ecs")
            hits = up.hits
            for action, region in (("CreateUser", "cn-beijing"), ("ListUsers", "cn-shanghai")):
                with pytest.raises(ApiException) as err:
                    call(action, region=region)
                assert err.value.status == 403
                assert "Proxy.Forbidden" in str(err.value.body)
            assert up.hits == hits  # refused requests never reach the upstream
