"""Attack on read-only with S3 Express One Zone: ``CreateSession`` (``GET /?session`` on a
directory bucket) hands out session credentials — read-write by default — for the bucket.  On
the zonal endpoint ``bucket--usw2-az1--x-s3.s3express-usw2-az1.us-west-2.amazonaws.com`` the
address parser did not know the ``s3express-<zone>`` label, read the request as path style
with no bucket, and classified it as ``ListBuckets``, a read: a read-only account forwarded
it and the platform got credentials that work without the proxy."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest
from multidict import CIMultiDict

from keybroker.http import netguard
from keybroker.settings import Config, Policy
from keybroker.signers.aws import SIGNER
from keybroker.signers.base import ParsedAuth, SigningRequest
from keybroker.signers.s3_address import parse_s3_address
from tests import logscan
from tests.proxy.conftest import aws_endpoint
from tests.proxy.harness import proxy_running
from tests.proxy.platform import send, sign_aws

AK, SK, REAL_SK = "AKIDPROXYEXPRESS0001", secrets.token_urlsafe(24), secrets.token_urlsafe(24)
logscan.register(SK, REAL_SK)
ZONAL = "bk--usw2-az1--x-s3.s3express-usw2-az1.us-west-2.amazonaws.com"


@pytest.fixture
def resolved(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    names: list[str] = []

    async def resolve(self: object, host: str, port: int = 0, family: int = 0) -> list[object]:
        names.append(host)
        raise OSError("no network in this test")

    monkeypatch.setattr(netguard.GuardedResolver, "resolve", resolve)
    yield names


def test_read_only_does_not_forward_create_session_on_a_zonal_endpoint(
    resolved: list[str],
) -> None:
    ep = aws_endpoint("express", AK, SK, "AKIAREALEXPRESS00001", REAL_SK, "")
    ep.upstream = None
    ep.policy = Policy(preset="read-only")
    origin = f"https://{ZONAL}/?session"
    with proxy_running(Config(endpoints=[ep])) as (url, _):
        signed = sign_aws("GET", origin, ak=AK, sk=SK, service="s3express", region="us-west-2")
        r = send(url, "GET", origin, signed, account="express")
    assert resolved == [], "CreateSession was on its way to S3 Express"
    assert r.status == 403, r.body


@pytest.mark.parametrize(
    ("host", "path", "query", "action", "bucket"),
    [
        (ZONAL, "/", "session", "CreateSession", "bk--usw2-az1--x-s3"),
        (ZONAL.replace("s3express-", "s3express-fips-"), "/", "session", "CreateSession",
         "bk--usw2-az1--x-s3"),
        (ZONAL, "/k", "", "GetObject", "bk--usw2-az1--x-s3"),
        (ZONAL, "/", "list-type=2", "ListObjectsV2", "bk--usw2-az1--x-s3"),
        ("s3express-control.us-west-2.amazonaws.com", "/bk--usw2-az1--x-s3", "", "CreateBucket",
         "bk--usw2-az1--x-s3"),
    ],
)  # fmt: skip
def test_s3_express_addresses(host: str, path: str, query: str, action: str, bucket: str) -> None:
    method = "PUT" if action == "CreateBucket" else "GET"
    req = SigningRequest(method, host, path, query, CIMultiDict())
    assert SIGNER.operation(req, ParsedAuth("a", service="s3express"), b"").action == action
    assert parse_s3_address(host, path).bucket == bucket


OUTPOSTS = "ap-123456789012.op-01ac5d28a6a232904.s3-outposts.us-west-2.amazonaws.com"


@pytest.mark.parametrize(
    ("method", "path", "action"),
    [("DELETE", "/k", "DeleteObject"), ("PUT", "/k", "PutObject"), ("GET", "/k", "GetObject")],
)
def test_s3_outposts_access_point_hosts_name_their_object(
    method: str, path: str, action: str
) -> None:
    """An Outposts access point host was read as path style: ``DELETE /k`` there was
    DeleteBucket of a bucket ``k`` — past a rule denying ``s3:DeleteObject``."""
    req = SigningRequest(method, OUTPOSTS, path, "", CIMultiDict())
    assert SIGNER.operation(req, ParsedAuth("a", service="s3-outposts"), b"").action == action


def test_deny_delete_object_holds_on_an_outposts_access_point(resolved: list[str]) -> None:
    ep = aws_endpoint("outposts", AK, SK, "AKIAREALEXPRESS00001", REAL_SK, "")
    ep.upstream = None
    ep.policy = Policy(deny_actions=["s3*:DeleteObject"])
    origin = f"https://{OUTPOSTS}/k"
    with proxy_running(Config(endpoints=[ep])) as (url, _):
        signed = sign_aws("DELETE", origin, ak=AK, sk=SK, service="s3-outposts",
                          region="us-west-2")  # fmt: skip
        r = send(url, "DELETE", origin, signed, account="outposts")
    assert resolved == []
    assert r.status == 403, r.body
