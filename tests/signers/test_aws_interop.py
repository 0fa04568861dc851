"""Interop with botocore's own signers, and end to end against a verifying moto server.

botocore signs with the proxy credential -> our parse + verify accept it; our resign with the
real credential -> botocore, signing the same request with the real credential at the same
time, produces the very same signature; and moto (which recomputes SigV4 with botocore for the
IAM user it knows) accepts what we re-signed.
"""

from __future__ import annotations

import datetime as _dt
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from botocore import auth as botoauth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from keybroker.errors import SignatureMismatch
from keybroker.signers.aws import SIGNER
from keybroker.signers.base import SigningRequest
from tests import servers
from tests.signers.test_aws_helpers import (
    body_of,
    botocore_clock,
    credential,
    from_botocore,
    to_botocore,
)

PROXY = Credentials("AKIAPROXYEXAMPLE", "proxy/secret+value")
PROXY_TOKEN = Credentials("AKIAPROXYEXAMPLE", "proxy/secret+value", "proxy-session-token")
SIGNED_AT = _dt.datetime(2024, 3, 4, 5, 6, 7, tzinfo=_dt.UTC)
NOW = SIGNED_AT + _dt.timedelta(seconds=42)

KMS_JSON = {"X-Amz-Target": "TrentService.Decrypt", "Content-Type": "application/x-amz-json-1.1"}
API = "https://abc.execute-api.us-west-2.amazonaws.com"
STS = "https://sts.us-west-2.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15"
S3_PUT = "https://bkt.s3.us-west-2.amazonaws.com/dir/a%20b%2Bc%21.txt?tagging"
S3_GET = "https://s3.us-west-2.amazonaws.com/bkt/k//x/../y?prefix=a%2Fb&list-type=2"

#: (botocore signer, service, method, url, headers, body)
HEADER_CASES = [
    (botoauth.SigV4Auth, "kms", "POST", "https://kms.us-west-2.amazonaws.com/", KMS_JSON, b"{}"),
    (botoauth.SigV4Auth, "execute-api", "GET", f"{API}/prod/%E2%9C%93/./z", {"X": " a  b "}, b""),
    (botoauth.SigV4Auth, "sts", "GET", STS, {}, b""),
    (botoauth.S3SigV4Auth, "s3", "PUT", S3_PUT, {"Content-Type": "text/plain"}, b"\x00\xff"),
    (botoauth.S3SigV4Auth, "s3", "GET", S3_GET, {"Range": "bytes=1-2"}, b""),
]
QUERY_CASES = [
    (botoauth.SigV4QueryAuth, "sts", "GET", STS, {}),
    (botoauth.SigV4QueryAuth, "execute-api", "GET", f"{API}/prod/%E2%9C%93/./z", {"X": "1"}),
    (botoauth.S3SigV4QueryAuth, "s3", "GET", S3_GET, {}),
    (botoauth.S3SigV4QueryAuth, "s3", "PUT", S3_PUT, {"Content-Type": "text/plain"}),
]


def _botocore_sign(
    req: AWSRequest,
    cls: Any,
    creds: Credentials,
    service: str,
    when: _dt.datetime,
    region: str = "us-west-2",
) -> None:
    if issubclass(cls, botoauth.SigV4QueryAuth):
        signer = cls(creds, service, region, 600)
    else:
        signer = cls(creds, service, region)
    with botocore_clock(when):
        signer.add_auth(req)


def _signature(req: SigningRequest) -> str:
    if "Authorization" in req.headers:
        return req.headers["Authorization"].rpartition("Signature=")[2]
    return dict(req.query_pairs())["X-Amz-Signature"]


@pytest.mark.parametrize("real_token", [None, "real-session-token"])
@pytest.mark.parametrize("proxy", [PROXY, PROXY_TOKEN], ids=["plain", "token"])
@pytest.mark.parametrize(("cls", "service", "method", "url", "headers", "body"), HEADER_CASES)
def test_header_auth_roundtrip(
    cls: Any,
    service: str,
    method: str,
    url: str,
    headers: dict[str, str],
    body: bytes,
    proxy: Credentials,
    real_token: str | None,
) -> None:
    signed = AWSRequest(method=method, url=url, headers=dict(headers), data=body)
    _botocore_sign(signed, cls, proxy, service, SIGNED_AT)
    req = from_botocore(signed)
    auth = SIGNER.parse(req)
    SIGNER.verify(req, auth, credential(proxy.access_key, proxy.secret_key, proxy.token), body)

    real = credential("AKIAREALEXAMPLE", "real/secret", real_token)
    up = req.copy()
    SIGNER.resign(up, auth, real, body, NOW)
    again = to_botocore(up, body, drop=("authorization",))
    creds = Credentials("AKIAREALEXAMPLE", "real/secret", real_token)
    _botocore_sign(again, cls, creds, service, NOW)
    assert str(again.headers["Authorization"]) == up.headers["Authorization"]


@pytest.mark.parametrize("real_token", [None, "real-session-token"])
@pytest.mark.parametrize(("cls", "service", "method", "url", "headers"), QUERY_CASES)
def test_presigned_roundtrip(
    cls: Any,
    service: str,
    method: str,
    url: str,
    headers: dict[str, str],
    real_token: str | None,
) -> None:
    signed = AWSRequest(method=method, url=url, headers=dict(headers))
    _botocore_sign(signed, cls, PROXY_TOKEN, service, SIGNED_AT)
    req = from_botocore(signed)
    auth = SIGNER.parse(req)
    assert auth.in_query and auth.expires == 600
    proxy = credential(PROXY_TOKEN.access_key, PROXY_TOKEN.secret_key, PROXY_TOKEN.token)
    SIGNER.verify(req, auth, proxy, b"")

    real = credential("AKIAREALEXAMPLE", "real/secret", real_token)
    up = req.copy()
    SIGNER.resign(up, auth, real, b"", NOW)
    # botocore presigns the request as it was before any auth parameter was added
    again = AWSRequest(method=method, url=url, headers=dict(headers))
    creds = Credentials("AKIAREALEXAMPLE", "real/secret", real_token)
    _botocore_sign(again, cls, creds, service, NOW)
    assert _signature(from_botocore(again)) == _signature(up)


def test_tampering_after_botocore_signed_is_caught() -> None:
    url = "https://kms.us-west-2.amazonaws.com/"
    signed = AWSRequest(method="POST", url=url, headers=KMS_JSON, data=b"{}")
    _botocore_sign(signed, botoauth.SigV4Auth, PROXY, "kms", SIGNED_AT)
    req = from_botocore(signed)
    auth = SIGNER.parse(req)
    proxy = credential(PROXY.access_key, PROXY.secret_key)
    SIGNER.verify(req, auth, proxy, body_of(signed))
    with pytest.raises(SignatureMismatch):
        SIGNER.verify(req, auth, proxy, b'{"x":1}')


# -- end to end: moto verifies what we re-signed ----------------------------------------------


@pytest.fixture(scope="module")
def moto_enforcing() -> Iterator[tuple[str, str, str]]:
    with servers.moto_enforcing() as found:
        yield found


def _send(req: SigningRequest, body: bytes) -> int:
    headers = {k: v for k, v in req.headers.items() if k.lower() != "host"}
    wire = urllib.request.Request(req.url(), data=body or None, method=req.method, headers=headers)
    try:
        with urllib.request.urlopen(wire, timeout=10) as resp:  # loopback moto server
            resp.read()
            return int(resp.status)
    except urllib.error.HTTPError as err:
        err.read()
        return int(err.code)


def _through_proxy(
    url: str, method: str, service: str, body: bytes, real: Any, headers: dict[str, str]
) -> int:
    """Sign as a client would (proxy key), verify and re-sign as the proxy does, then send."""
    signed = AWSRequest(method=method, url=url, headers=dict(headers), data=body)
    cls = botoauth.S3SigV4Auth if service == "s3" else botoauth.SigV4Auth
    _botocore_sign(signed, cls, PROXY, service, _dt.datetime.now(_dt.UTC), "us-east-1")
    req = from_botocore(signed)
    auth = SIGNER.parse(req)
    SIGNER.verify(req, auth, credential(PROXY.access_key, PROXY.secret_key), body)
    up = req.copy()
    SIGNER.resign(up, auth, real, body, _dt.datetime.now(_dt.UTC))
    return _send(up, body)


def test_moto_accepts_resigned_s3_and_kms_requests(moto_enforcing: tuple[str, str, str]) -> None:
    url, access_key, secret_key = moto_enforcing
    real = credential(access_key, secret_key)
    ct = {"Content-Type": "text/plain"}
    assert _through_proxy(f"{url}/interop-bkt", "PUT", "s3", b"", real, {}) == 200
    assert _through_proxy(f"{url}/interop-bkt/a%20b.txt", "PUT", "s3", b"hi", real, ct) == 200
    assert _through_proxy(f"{url}/interop-bkt/a%20b.txt", "GET", "s3", b"", real, {}) == 200
    kms = {"X-Amz-Target": "TrentService.ListKeys", "Content-Type": "application/x-amz-json-1.1"}
    assert _through_proxy(f"{url}/", "POST", "kms", b"{}", real, kms) == 200


def test_moto_rejects_a_wrong_real_secret(moto_enforcing: tuple[str, str, str]) -> None:
    url, access_key, _ = moto_enforcing
    wrong = credential(access_key, "not-the-real-secret")
    assert _through_proxy(f"{url}/interop-bkt", "PUT", "s3", b"", wrong, {}) == 403
