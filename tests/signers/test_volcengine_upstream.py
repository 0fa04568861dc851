"""Over real sockets: the SDK's own client and keybroker's re-signed requests against the
signature-checking upstream of ``volc_upstream``."""

from __future__ import annotations

import hashlib
import http.client
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
import volcenginesdkcore
from multidict import CIMultiDict
from volcenginesdkcore.rest import ApiException
from volcenginesdkcore.signv4 import SignerV4
from volcenginesdkcore.universal import UniversalApi, UniversalInfo

from keybroker.credentials import Credential
from keybroker.secret import Secret
from keybroker.signers.base import SigningRequest
from keybroker.signers.volcengine import SIGNER
from tests.signers.volc_upstream import UpstreamURL, volc_upstream

REAL = Credential("AKLTrealUP", Secret("real-upstream-secret"), Secret("real-up-token"))
PROXY = Credential("AKLTproxyUP", Secret("proxy-upstream-secret"))


@pytest.fixture(scope="session")
def upstream() -> Iterator[UpstreamURL]:
    token = REAL.access_token.reveal() if REAL.access_token else None
    with volc_upstream(REAL.access_key, REAL.secret_key.reveal(), token) as url:
        yield url


def sdk_client(url: str, cred: Credential) -> UniversalApi:
    conf = volcenginesdkcore.Configuration()
    conf.ak, conf.sk, conf.region = cred.access_key, cred.secret_key.reveal(), "cn-beijing"
    conf.session_token = cred.access_token.reveal() if cred.access_token else None
    conf.host, conf.scheme, conf.auto_retry = urlsplit(url).netloc, "http", False
    return UniversalApi(volcenginesdkcore.ApiClient(conf))


INFO = UniversalInfo(
    method="POST", service="iam", version="2018-01-01", action="ListUsers",
    content_type="application/json",
)  # fmt: skip


def send(url: str, req: SigningRequest, body: bytes) -> tuple[int, dict[str, Any]]:
    conn = http.client.HTTPConnection(urlsplit(url).netloc, timeout=10)
    try:
        headers = {k: v for k, v in req.headers.items() if k.lower() != "host"}
        target = req.path + (f"?{req.query}" if req.query else "")
        conn.request(req.method, target, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def test_sdk_client_accepted_with_real_creds(upstream: UpstreamURL) -> None:
    result = sdk_client(upstream, REAL).do_call(INFO, {"Limit": 3})
    assert result["access_key"] == REAL.access_key
    assert result["query"] == "Action=ListUsers&Version=2018-01-01"


def test_sdk_client_refused_with_other_creds(upstream: UpstreamURL) -> None:
    with pytest.raises(ApiException) as exc:
        sdk_client(upstream, PROXY).do_call(INFO, {"Limit": 3})
    assert exc.value.status == 403


def test_resigned_request_reaches_upstream(upstream: UpstreamURL) -> None:
    """SDK signs for the proxy creds; we verify, re-sign for the real ones; upstream says 200."""
    host = urlsplit(upstream).netloc
    body = '{"Limit": 3, "Name": "ünï"}'
    query = [("Action", "ListUsers"), ("Version", "2018-01-01"), ("Filter", "a b/c")]
    headers = {"Host": "proxy.example:3888", "Content-Type": "application/json"}
    SignerV4.sign("/", "POST", headers, body, None, query, PROXY.access_key,
                  PROXY.secret_key.reveal(), "cn-beijing", "iam")  # fmt: skip
    req = SigningRequest("POST", "proxy.example:3888", "/", urlencode(query), CIMultiDict(headers))
    auth = SIGNER.parse(req)
    SIGNER.verify(req, auth, PROXY, None)

    before = upstream.hits
    status, _ = send(upstream, req, body.encode())  # the proxy's own signature: refused
    assert status == 403

    req.host = host
    SIGNER.resign(req, auth, REAL, body.encode(), datetime.now(UTC))
    status, answer = send(upstream, req, body.encode())
    assert status == 200, answer
    echo = answer["Result"]
    assert echo["access_key"] == REAL.access_key
    assert echo["security_token"] == "real-up-token"
    assert echo["body_sha256"] == hashlib.sha256(body.encode()).hexdigest()
    assert upstream.hits == before + 2

    status, _ = send(upstream, req, body.encode() + b" ")  # body changed after signing
    assert status == 403


def test_resigned_presigned_url_reaches_upstream(upstream: UpstreamURL) -> None:
    qs = SignerV4.sign_url("/", "GET", [("Action", "ListUsers"), ("Version", "2018-01-01")],
                           PROXY.access_key, PROXY.secret_key.reveal(), "cn-beijing", "iam",
                           None, "proxy.example")  # fmt: skip
    req = SigningRequest("GET", "proxy.example", "/", qs)
    auth = SIGNER.parse(req)
    SIGNER.verify(req, auth, PROXY, None)
    req.host = urlsplit(upstream).netloc
    SIGNER.resign(req, auth, REAL, None, datetime.now(UTC))
    status, answer = send(upstream, req, b"")
    assert status == 200, answer
    assert answer["Result"]["access_key"] == REAL.access_key


def test_hits_count_every_request(upstream: UpstreamURL) -> None:
    before = upstream.hits
    status, _ = send(upstream, SigningRequest("GET", "x", "/", "Action=A"), b"")
    assert status == 403
    assert upstream.hits == before + 1
