"""key-proxy's Forbidden flags, secure by default, and what happens when a user turns them off."""

from __future__ import annotations

import secrets

import boto3
import pytest
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError

from keybroker.settings import Config, ForbiddenConfig
from tests import logscan
from tests.proxy.conftest import aws_endpoint
from tests.proxy.harness import proxy_running
from tests.proxy.platform import send, sign_aws
from tests.proxy.recording_upstream import recording_upstream

STS = "https://sts.us-east-1.amazonaws.com/"


def _cfg(upstream: str, **flags: bool) -> tuple[Config, str, str]:
    ak, sk = "AKIDFLAG" + secrets.token_hex(6).upper(), secrets.token_urlsafe(24)
    real_sk = secrets.token_urlsafe(24)
    logscan.register(sk, real_sk)
    cfg = Config(
        forbidden=ForbiddenConfig(**flags),
        endpoints=[aws_endpoint("acct", ak, sk, "AKIAREAL0000FLAGS", real_sk, upstream)],
    )
    return cfg, ak, sk


def test_defaults_are_secure() -> None:
    f = ForbiddenConfig()
    assert f.forbidden_account_not_found and f.forbidden_proxy_credential_err


def _upstream_of_failures(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.__dict__["fields"]["upstream"]
        for r in caplog.records
        if r.getMessage().startswith("upstream request failed")
    ]


def test_bad_signature_with_flag_off_goes_to_the_vendor_never_upstream(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A forged signature is passed on as it came, but only to the vendor's public API host
    (unreachable here: no DNS), never to the account's Upstream."""
    with recording_upstream() as up:
        cfg, ak, _ = _cfg(up.url, forbidden_proxy_credential_err=False)
        with proxy_running(cfg) as (url, _):
            for method, body in (("GET", b""), ("POST", b"Action=DeleteUser"), ("DELETE", b"x")):
                origin = STS + "?Action=GetCallerIdentity"
                signed = sign_aws(method, origin, ak=ak, sk="wrong", service="sts", body=body)
                r = send(url, method, origin, signed, account="acct", body=body)
                assert r.status == 502, r.body
                assert r.json()["ResponseMetadata"]["Error"]["Code"] == "Proxy.NetworkErr"
            # the origin URI naming the Upstream (or any non-vendor host) is refused
            for origin in (up.url + "/", "http://127.0.0.1:1/", "https://evil.example/"):
                signed = sign_aws("POST", STS, ak=ak, sk="wrong", service="sts", body=b"x")
                r = send(url, "POST", origin, signed, account="acct", body=b"x")
                assert r.status in (400, 403), (origin, r.status)
    assert up.seen == []
    assert set(_upstream_of_failures(caplog)) == {"https://sts.us-east-1.amazonaws.com"}


def test_bad_signature_with_flag_off_never_goes_to_allowed_hosts() -> None:
    """``AllowedHosts`` widen where verified requests may go, not unverified ones."""
    with recording_upstream() as up:
        cfg, ak, _ = _cfg("", forbidden_proxy_credential_err=False)
        cfg.endpoints[0].upstream = None
        cfg.endpoints[0].allowed_hosts = ["localhost", "127.0.0.1"]
        origin = up.url.replace("127.0.0.1", "localhost") + "/"
        with proxy_running(cfg) as (url, _):
            signed = sign_aws("PUT", origin, ak=ak, sk="wrong", service="sts", body=b"x")
            r = send(url, "PUT", origin, signed, account="acct", body=b"x")
    assert r.status == 403, r.body
    assert up.seen == []


def test_bad_native_signature_with_flag_off_never_goes_to_upstream(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Native mode: boto3 with a wrong secret; the request goes to the public endpoint for
    the signature's service and region, not the Upstream."""
    with recording_upstream() as up:
        cfg, ak, _ = _cfg(up.url, forbidden_proxy_credential_err=False)
        with proxy_running(cfg) as (url, _):
            s3 = boto3.client(
                "s3",
                endpoint_url=url,
                region_name="eu-west-1",
                aws_access_key_id=ak,
                aws_secret_access_key="wrong",
                config=BotoConfig(retries={"max_attempts": 1}, s3={"addressing_style": "path"}),
            )
            with pytest.raises(ClientError):
                s3.delete_object(Bucket="victim", Key="k")
    assert up.seen == []
    assert set(_upstream_of_failures(caplog)) == {"https://s3.eu-west-1.amazonaws.com"}


def test_bad_signature_with_flag_on_never_reaches_upstream() -> None:
    with recording_upstream() as up:
        cfg, ak, _ = _cfg(up.url)
        signed = sign_aws("GET", STS, ak=ak, sk="wrong", service="sts")
        with proxy_running(cfg) as (url, _):
            r = send(url, "GET", STS, signed, account="acct")
    assert r.status == 401
    assert up.seen == []


def test_unknown_account_with_flag_off_goes_only_to_vendor_domains() -> None:
    with recording_upstream() as up:
        cfg, ak, sk = _cfg(up.url, forbidden_account_not_found=False)
        with proxy_running(cfg) as (url, _):
            for origin in (
                "http://169.254.169.254/latest/meta-data/iam/",
                "http://127.0.0.1:1/",
                "https://2130706433/",
                "https://0x7f.0.0.1/",
                "https://[::ffff:127.0.0.1]/",
                "https://metadata.google.internal/",
                "https://evil.example/amazonaws.com",
                "https://amazonaws.com.evil.example/",
                up.url + "/",
            ):
                signed = sign_aws("GET", STS, ak=ak, sk=sk, service="sts")
                r = send(url, "GET", origin, signed, account="ghost")
                assert r.status in (400, 403), (origin, r.status)
                assert r.headers["X-Mcdn-Proxy-Status"] == "Failed"
    assert up.seen == []


def test_unknown_account_with_flag_on_is_404() -> None:
    with recording_upstream() as up:
        cfg, ak, sk = _cfg(up.url)
        with proxy_running(cfg) as (url, _):
            signed = sign_aws("GET", STS, ak=ak, sk=sk, service="sts")
            r = send(url, "GET", STS, signed, account="ghost")
    assert r.status == 404
    assert r.json()["ResponseMetadata"]["Error"]["Code"] == "Proxy.CloudAccountNotFound"
