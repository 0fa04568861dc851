"""key-proxy's Forbidden flags, secure by default, and what happens when a user turns them off."""

from __future__ import annotations

import secrets

from keybroker.config import Config, ForbiddenConfig
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


def test_bad_signature_with_flag_off_is_passed_on_as_it_came() -> None:
    with recording_upstream() as up:
        cfg, ak, _ = _cfg(up.url, forbidden_proxy_credential_err=False)
        signed = sign_aws(
            "GET", STS + "?Action=GetCallerIdentity", ak=ak, sk="wrong", service="sts"
        )
        with proxy_running(cfg) as (url, _):
            r = send(url, "GET", STS + "?Action=GetCallerIdentity", signed, account="acct")
    assert r.status == 200
    assert len(up.seen) == 1
    # exactly the platform's own (invalid) signature: never one the proxy computed
    assert up.seen[0].headers["Authorization"] == signed["Authorization"]
    assert up.seen[0].headers["X-Amz-Date"] == signed["X-Amz-Date"]


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
