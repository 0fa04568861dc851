"""Attacks on ``Preset: read-only`` with operations that are *named* like reads but hand out
access outside the proxy: temporary AWS credentials (S3 Access Grants' ``GetDataAccess``,
GameLift's ``GetComputeAccess``), instance log-in secrets (GameLift ``GetInstanceAccess``,
Lightsail ``GetInstanceAccessDetails``), signed log-in URLs (Mainframe Modernization's
``GetSignedBluinsightsUrl``, the ECS consoles' ``DescribeInstanceVncUrl``), or that create
something (Cognito's ``GetId``).  A holder of a read-only proxy credential must not get any of
them forwarded — and, being writes, they are single use under the default replay rule."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest
import requests
from botocore.auth import S3SigV4Auth, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from keybroker.settings import Config, Policy
from keybroker.signers._read_actions import is_read_action
from tests import logscan
from tests.proxy.conftest import aws_endpoint
from tests.proxy.harness import proxy_running
from tests.proxy.recording_upstream import Recorder, recording_upstream

PROXY_AK, PROXY_SK = "AKIDPROXYATK" + secrets.token_hex(4).upper(), secrets.token_urlsafe(24)
REAL_AK, REAL_SK = "AKIDREALATK" + secrets.token_hex(4).upper(), secrets.token_urlsafe(24)
logscan.register(PROXY_SK, REAL_SK)


@pytest.fixture(scope="module")
def proxy() -> Iterator[tuple[str, Recorder]]:
    with recording_upstream() as rec:
        ep = aws_endpoint("ro-atk", PROXY_AK, PROXY_SK, REAL_AK, REAL_SK, rec.url)
        ep.policy = Policy(preset="read-only")
        with proxy_running(Config(endpoints=[ep])) as (url, _):
            yield url, rec


def _send(url: str, method: str, target: str, headers: dict[str, str], body: bytes,
          service: str) -> int:  # fmt: skip
    req = AWSRequest(method=method, url=url + target, data=body, headers=headers)
    auth = S3SigV4Auth if service == "s3" else SigV4Auth
    auth(Credentials(PROXY_AK, PROXY_SK), service, "us-east-1").add_auth(req)
    prepared = req.prepare()
    got = requests.request(method, prepared.url, headers=dict(prepared.headers), data=body,
                           timeout=30, allow_redirects=False)  # fmt: skip
    return got.status_code


def _json(target: str) -> dict[str, str]:
    return {"X-Amz-Target": target, "Content-Type": "application/x-amz-json-1.1"}


_ISSUERS = [
    pytest.param(
        "GET",
        "/v20180820/accessgrantsinstance/dataaccess?permission=READWRITE&target=s3%3A%2F%2Fb%2F%2A",
        {"x-amz-account-id": "123456789012"}, b"", "s3", id="s3control-GetDataAccess",
    ),
    pytest.param("POST", "/", _json("GameLift.GetComputeAccess"),
                 b'{"FleetId":"f","ComputeName":"c"}', "gamelift", id="gamelift-GetComputeAccess"),
    pytest.param("POST", "/", _json("GameLift.GetInstanceAccess"),
                 b'{"FleetId":"f","InstanceId":"i"}', "gamelift", id="gamelift-GetInstanceAccess"),
    pytest.param("POST", "/", _json("Lightsail_20161128.GetInstanceAccessDetails"),
                 b'{"instanceName":"i"}', "lightsail", id="lightsail-GetInstanceAccessDetails"),
    pytest.param("GET", "/signed-bi-url", {}, b"", "m2", id="m2-GetSignedBluinsightsUrl"),
    pytest.param("POST", "/", _json("AWSCognitoIdentityService.GetId"),
                 b'{"IdentityPoolId":"p"}', "cognito-identity", id="cognito-GetId"),
]  # fmt: skip


@pytest.mark.parametrize(("method", "target", "headers", "body", "service"), _ISSUERS)
def test_read_only_does_not_forward_access_issuing_reads(
    proxy: tuple[str, Recorder], method: str, target: str, headers: dict[str, str],
    body: bytes, service: str,
) -> None:  # fmt: skip
    url, rec = proxy
    before = len(rec.seen)
    status = _send(url, method, target, headers, body, service)
    assert rec.seen[before:] == [], "an access-issuing operation reached the upstream"
    assert status == 403


@pytest.mark.parametrize(
    "name",
    ["GetDataAccess", "GetComputeAccess", "GetInstanceAccess", "GetInstanceAccessDetails",
     "GetSignedBluinsightsUrl", "DescribeInstanceVncUrl", "GetId", "DescribeInstanceVncPasswd",
     "DescribeClusterKubeconfig", "DescribeClusterUserKubeconfig", "GetSecretValue",
     "BatchGetSecretValue"],
)  # fmt: skip
def test_access_issuing_names_are_not_reads(name: str) -> None:
    """The rule is shared by every vendor: Aliyun, Tencent and Volcengine ECS/CVM name their
    console log-in URL ``DescribeInstanceVncUrl``; Tencent TKE and Alibaba ACK hand out a
    cluster's kubeconfig (client certificate or token) under a Describe name; AWS Secrets
    Manager and Alibaba KMS hand out stored credentials with ``GetSecretValue``."""
    assert not is_read_action(name)


def test_real_reads_still_pass(proxy: tuple[str, Recorder]) -> None:
    """Not vacuous: reads of the same services and similar names go through."""
    url, rec = proxy
    cases = [
        ("GET", "/v20180820/accesspoint/ap", {"x-amz-account-id": "123456789012"}, b"", "s3"),
        ("POST", "/", _json("Lightsail_20161128.GetInstance"), b'{"instanceName":"i"}',
         "lightsail"),
        ("POST", "/", _json("GameLift.DescribeFleetAttributes"), b"{}", "gamelift"),
    ]  # fmt: skip
    for method, target, headers, body, service in cases:
        before = len(rec.seen)
        assert _send(url, method, target, headers, body, service) == 200
        assert len(rec.seen) == before + 1


def test_s3_control_without_its_account_header_is_not_an_object_read(
    proxy: tuple[str, Recorder],
) -> None:
    """S3 Control names the account in its host as well as in ``x-amz-account-id``: without
    the header, ``GET /v20180820/accessgrantsinstance/dataaccess`` on an s3-control host was
    read as S3's GetObject (a read) and forwarded by a read-only account."""
    url, rec = proxy
    before = len(rec.seen)
    target = "/v20180820/accessgrantsinstance/dataaccess?permission=READWRITE&target=s3%3A%2F%2Fb"
    req = AWSRequest(method="GET", url=url + target)
    req.headers["Host"] = "123456789012.s3-control.us-east-1.amazonaws.com"
    S3SigV4Auth(Credentials(PROXY_AK, PROXY_SK), "s3", "us-east-1").add_auth(req)
    prepared = req.prepare()
    got = requests.get(prepared.url, headers=dict(prepared.headers), timeout=30,
                       allow_redirects=False)  # fmt: skip
    assert rec.seen[before:] == []
    assert got.status_code == 403


@pytest.mark.parametrize(
    ("method", "host", "path", "action"),
    [
        ("GET", "s3-control.us-east-1.amazonaws.com",
         "/v20180820/accessgrantsinstance/dataaccess", "GetDataAccess"),
        ("DELETE", "s3-control.us-east-1.amazonaws.com", "/v20180820/bucket/b", "DeleteBucket"),
        ("DELETE", "1.s3-control.us-east-1.amazonaws.com", "/v20180820/accesspoint/ap",
         "DeleteAccessPoint"),
        ("GET", "s3-control.us-east-1.amazonaws.com", "/v20180820/no/such/op", None),
        ("DELETE", "b.s3.us-east-1.amazonaws.com", "/v20180820/bucket/b", "DeleteObject"),
    ],
)  # fmt: skip
def test_s3_control_paths_are_never_object_keys(
    method: str, host: str, path: str, action: str | None
) -> None:
    from multidict import CIMultiDict

    from keybroker.signers.aws import SIGNER
    from keybroker.signers.base import ParsedAuth, SigningRequest

    query = "permission=READ&target=x" if "dataaccess" in path else ""
    req = SigningRequest(method, host, path, query, CIMultiDict())
    assert SIGNER.operation(req, ParsedAuth("a", service="s3"), b"").action == action
