"""Presigned (query-string) SigV4 URLs made by boto3 with the proxy key, re-signed by keybroker."""

from __future__ import annotations

import secrets
from urllib.parse import parse_qs, urlsplit

import requests

from tests.proxy.conftest import AwsSetup


def _botocore_presigned_signature(url: str, host: str, ak: str, sk: str) -> str:
    """Recompute a presigned URL's signature with botocore's own SigV4 query signer."""
    from botocore.auth import S3SigV4QueryAuth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    parts = urlsplit(url)
    q = parse_qs(parts.query)
    kept = "&".join(p for p in parts.query.split("&") if not p.startswith("X-Amz-Signature="))
    req = AWSRequest(method="GET", url=f"http://{host}{parts.path}?{kept}", headers={"Host": host})
    req.context["timestamp"] = q["X-Amz-Date"][0]
    auth = S3SigV4QueryAuth(
        Credentials(ak, sk), "s3", "us-east-1", expires=int(q["X-Amz-Expires"][0])
    )
    return str(auth.signature(auth.string_to_sign(req, auth.canonical_request(req)), req))


def test_presigned_get_is_resigned_with_the_real_key() -> None:
    """moto answers 500 to presigned URLs under auth enforcement (see testing.md), so the
    upstream here records the URL and botocore recomputes its signature with the real key."""
    import boto3
    from botocore.config import Config as BotoConfig

    from keybroker.settings import Config
    from tests.proxy.conftest import aws_endpoint
    from tests.proxy.harness import proxy_running
    from tests.proxy.recording_upstream import recording_upstream

    real_ak, real_sk = "AKIAREALPRESIGN00001", secrets.token_urlsafe(30)
    proxy_ak, proxy_sk = "AKIDPROXYPRESIGN0001", secrets.token_urlsafe(30)
    from tests import logscan

    logscan.register(real_sk, proxy_sk)
    with recording_upstream() as up:
        cfg = Config(endpoints=[aws_endpoint("pre", proxy_ak, proxy_sk, real_ak, real_sk, up.url)])
        with proxy_running(cfg) as (purl, _):
            s3 = boto3.client(
                "s3",
                endpoint_url=purl,
                region_name="us-east-1",
                aws_access_key_id=proxy_ak,
                aws_secret_access_key=proxy_sk,
                config=BotoConfig(signature_version="s3v4", s3={"addressing_style": "path"}),
            )
            url = s3.generate_presigned_url(
                "get_object", Params={"Bucket": "bkt", "Key": "a b.txt"}, ExpiresIn=300
            )
            r = requests.get(url, timeout=10)
    assert r.status_code == 200, r.text
    (seen,) = up.seen
    got = parse_qs(urlsplit(seen.path_qs).query)
    assert got["X-Amz-Credential"][0].startswith(real_ak + "/")
    host = up.url.removeprefix("http://")
    expected = _botocore_presigned_signature(seen.path_qs, host, real_ak, real_sk)
    assert got["X-Amz-Signature"][0] == expected
    assert proxy_sk not in seen.path_qs and proxy_ak not in seen.path_qs


def test_presigned_with_wrong_secret_is_refused(aws: AwsSetup) -> None:
    url = aws.client("s3", secret="wrong").generate_presigned_url(
        "get_object", Params={"Bucket": "whatever", "Key": "a.txt"}, ExpiresIn=300
    )
    r = requests.get(url, timeout=10)
    assert r.status_code == 401


def test_presigned_expiry_is_enforced(aws: AwsSetup) -> None:
    import datetime as dt

    from keybroker.settings import Config
    from tests.proxy.conftest import aws_endpoint
    from tests.proxy.harness import proxy_running

    url = aws.client("s3").generate_presigned_url(
        "get_object", Params={"Bucket": "b", "Key": "k"}, ExpiresIn=60
    )
    q = parse_qs(urlsplit(url).query)
    signed_at = dt.datetime.strptime(q["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
    cfg = Config(
        endpoints=[
            aws_endpoint(
                "aws-main", aws.proxy_ak, aws.proxy_sk, aws.real_ak, aws.real_sk, aws.moto_url
            )
        ]
    )
    with proxy_running(cfg, clock=lambda: signed_at + dt.timedelta(seconds=61)) as (purl, _):
        r = requests.get(url.replace(aws.proxy_url, purl), timeout=10)
    assert r.status_code == 401
    assert "Proxy.RequestExpired" in r.text
