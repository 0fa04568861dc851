"""Malformed requests get a 4xx in key-proxy's error JSON, never a 500."""

from __future__ import annotations

import socket

import pytest
import requests

from tests.proxy.conftest import AwsSetup
from tests.proxy.platform import send, sign_aws

STS = "https://sts.us-east-1.amazonaws.com/"


def _assert_keyproxy_error(r: requests.Response, status: int, code: str | None = None) -> None:
    assert r.status_code == status, r.text
    meta = r.json()["ResponseMetadata"]
    assert meta["RequestId"]
    assert meta["Error"]["Message"]
    if code:
        assert meta["Error"]["Code"] == code
    assert r.headers["X-Mcdn-Proxy-Status"] == "Failed"


def _kp_headers(**extra: str) -> dict[str, str]:
    h = {
        "X-Mcdn-Origin-Uri": STS,
        "X-Mcdn-Cloud-Account-Name": "aws-main",
        "X-Mcdn-Kept-Headers": "authorization,x-amz-date",
    }
    h.update(extra)
    return h


@pytest.mark.parametrize(
    "authorization",
    [
        "",
        "AWS4-HMAC-SHA256",
        "AWS4-HMAC-SHA256 Credential=",
        "AWS4-HMAC-SHA256 Credential=AKID/20240101/us-east-1/sts, SignedHeaders=host, Signature=00",
        "AWS4-HMAC-SHA256 Credential=AKID/notadate/us-east-1/sts/aws4_request, "
        "SignedHeaders=host, Signature=zz",
        "AWS4-HMAC-SHA256 Credential=AKID/20240101/us-east-1/sts/aws4_request, "
        "SignedHeaders=, Signature=ab",
        "Basic dXNlcjpwYXNz",
        "AWS4-HMAC-SHA256 " + "A" * 5000,
    ],
)
def test_garbled_authorization_keyproxy_mode(aws: AwsSetup, authorization: str) -> None:
    r = requests.get(
        aws.proxy_url,
        headers=_kp_headers(Authorization=authorization, **{"X-Amz-Date": "20240101T000000Z"}),
        timeout=10,
    )
    assert 400 <= r.status_code < 500
    _assert_keyproxy_error(r, r.status_code)


def test_missing_authorization_native_mode(aws: AwsSetup) -> None:
    r = requests.post(aws.proxy_url + "/", data=b"Action=GetCallerIdentity", timeout=10)
    _assert_keyproxy_error(r, 401, "Proxy.ValidateCredentialErr")


@pytest.mark.parametrize("date", ["yesterday", "20240101", "99999999T999999Z", ""])
def test_bad_dates(aws: AwsSetup, date: str) -> None:
    signed = sign_aws("GET", STS, ak=aws.proxy_ak, sk=aws.proxy_sk, service="sts")
    signed["X-Amz-Date"] = date
    r = send(aws.proxy_url, "GET", STS, signed, account="aws-main")
    assert r.status in (400, 401), r.body
    assert r.headers["X-Mcdn-Proxy-Status"] == "Failed"


@pytest.mark.parametrize(
    ("shift", "ok"),
    [(-3600, False), (-901, False), (-899, True), (899, True), (901, False), (3600, False)],
)
def test_clock_skew_window(aws: AwsSetup, shift: int, ok: bool) -> None:
    """The proxy's (injected) clock reads ``signed_at - shift``: a negative shift makes the
    request that old, a positive one makes it come from the future.  Window: 900 s."""
    import datetime as dt

    from keybroker.settings import Config
    from tests.proxy.conftest import aws_endpoint
    from tests.proxy.harness import proxy_running

    signed = sign_aws(
        "POST",
        STS,
        ak=aws.proxy_ak,
        sk=aws.proxy_sk,
        service="sts",
        body=b"Action=GetCallerIdentity&Version=2011-06-15",
        headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
    )
    signed_at = dt.datetime.strptime(signed["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
    cfg = Config(
        endpoints=[
            aws_endpoint(
                "aws-main", aws.proxy_ak, aws.proxy_sk, aws.real_ak, aws.real_sk, aws.moto_url
            )
        ]
    )
    with proxy_running(cfg, clock=lambda: signed_at - dt.timedelta(seconds=shift)) as (url, _):
        r = send(
            url,
            "POST",
            STS,
            signed,
            account="aws-main",
            body=b"Action=GetCallerIdentity&Version=2011-06-15",
        )
    if ok:
        assert r.status == 200, r.body
    else:
        assert r.status == 401
        assert r.json()["ResponseMetadata"]["Error"]["Code"] == "Proxy.RequestExpired"


def _raw(url: str, raw: bytes) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(raw)
        chunks = []
        while True:
            data = s.recv(65536)
            if not data:
                break
            chunks.append(data)
            if b"\r\n\r\n" in b"".join(chunks) and b"}}" in b"".join(chunks):
                break
    return b"".join(chunks)


def test_non_utf8_header_is_400(aws: AwsSetup) -> None:
    raw = (
        b"GET / HTTP/1.1\r\nHost: x\r\nX-Mcdn-Origin-Uri: "
        + STS.encode()
        + b"\r\nX-Mcdn-Cloud-Account-Name: aws-main\r\nX-Mcdn-Kept-Headers: authorization,x-bad\r\n"
        b"X-Bad: \xff\xfe\xfd\r\nConnection: close\r\n\r\n"
    )
    reply = _raw(aws.proxy_url, raw)
    status = int(reply.split(b" ", 2)[1])
    assert 400 <= status < 500, reply[:200]
    assert b"ResponseMetadata" in reply


def test_huge_headers_are_431(aws: AwsSetup) -> None:
    r = requests.get(
        aws.proxy_url,
        headers=_kp_headers(**{f"X-Pad-{i}": "p" * 1000 for i in range(30)}),
        timeout=10,
    )
    _assert_keyproxy_error(r, 431, "Proxy.HeadersTooLarge")


def test_health_endpoints(aws: AwsSetup) -> None:
    assert requests.get(aws.proxy_url + "/ping", timeout=5).text == "pong"
    assert requests.get(aws.proxy_url + "/healthz", timeout=5).json() == {"status": "ok"}
    assert requests.get(aws.proxy_url + "/readyz", timeout=5).json() == {"status": "ready"}


@pytest.mark.parametrize("origin", ["http://[", "https://[::1/x", "http://a]b/"])
def test_unbalanced_brackets_in_origin_uri_are_400(aws: AwsSetup, origin: str) -> None:
    r = requests.get(
        aws.proxy_url, headers=_kp_headers(**{"X-Mcdn-Origin-Uri": origin}), timeout=10
    )
    assert r.status_code == 400, r.text
    _assert_keyproxy_error(r, 400, "Proxy.MalformedRequest")
