"""Over real sockets: the Huawei SDK's own client and keybroker's re-signed requests against the
signature-checking upstream of ``huawei_upstream``."""

from __future__ import annotations

import hashlib
import http.client
import json
import types
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import pytest
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.client import Client, ClientBuilder
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkcore.http.http_config import HttpConfig
from huaweicloudsdkcore.sdk_response import SdkResponse

from keybroker.credentials import Credential
from keybroker.secret import Secret
from keybroker.signers.base import SigningRequest
from keybroker.signers.huawei import SIGNER
from tests.signers.huawei_upstream import PROJECT, UpstreamURL, huawei_upstream, sdk_sign

REAL = Credential("HPUAREALUP", Secret("real-upstream-secret"), Secret("hw-real-up-token"))
PROXY = Credential("HPUAPROXYUP", Secret("proxy-upstream-secret"))


class Echo(SdkResponse):
    """A response model the SDK can build (it needs one to hand back the body)."""

    openapi_types: dict[str, str] = {}


def sdk_client(url: str, cred: Credential) -> Client:
    """The SDK's generic client, pointed at ``url`` (no service package needed)."""
    basic = BasicCredentials(cred.access_key, cred.secret_key.reveal(), PROJECT)
    if cred.access_token:
        basic.with_security_token(cred.access_token.reveal())
    config = HttpConfig.get_default_config()
    client = (
        ClientBuilder(Client)
        .with_credentials(basic)
        .with_endpoints([url])
        .with_http_config(config)
        .build()
    )
    client.model_package = types.SimpleNamespace(Echo=Echo)
    return client


def sdk_call(client: Client, method: str = "POST", body: Any = None, **kw: Any) -> dict[str, Any]:
    resp = client.do_http_request(
        method,
        "/v1/{project_id}/cloudservers",
        path_params={},
        query_params=kw.pop("query", [("limit", 5), ("name", "a b")]),
        header_params=kw.pop("headers", {}),
        body=body if body is not None else {"server": {"name": "ünï"}},
        response_type="Echo",
        response_headers=[],
        collection_formats={},
        **kw,
    )
    assert resp.status_code == 200
    return resp.to_json_object()  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def upstream() -> Iterator[UpstreamURL]:
    token = REAL.access_token.reveal() if REAL.access_token else None
    with huawei_upstream(REAL.access_key, REAL.secret_key.reveal(), token) as url:
        yield url


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
    echo = sdk_call(sdk_client(upstream, REAL))
    assert echo["access_key"] == REAL.access_key
    assert echo["query"] == "limit=5&name=a%20b"


def test_sdk_client_refused_with_other_creds(upstream: UpstreamURL) -> None:
    with pytest.raises(ClientRequestException) as exc:
        sdk_call(sdk_client(upstream, PROXY))
    assert exc.value.status_code == 401


@pytest.mark.parametrize("content_type", ["application/json", "text/plain"])
def test_resigned_request_reaches_upstream(upstream: UpstreamURL, content_type: str) -> None:
    """SDK signs for the proxy creds; we verify, re-sign for the real ones; upstream says 200."""
    req, body = sdk_sign(PROXY, host="proxy.example:3888", query=[("a", "x y/z")],
                         content_type=content_type)  # fmt: skip
    auth = SIGNER.parse(req)
    SIGNER.verify(req, auth, PROXY, body)

    before = upstream.hits
    status, _ = send(upstream, req, body)  # the proxy's own signature: refused
    assert status == 401

    req.host = urlsplit(upstream).netloc
    SIGNER.resign(req, auth, REAL, body, datetime.now(UTC))
    status, echo = send(upstream, req, body)
    assert status == 200, echo
    assert echo["access_key"] == REAL.access_key
    assert echo["security_token"] == "hw-real-up-token"
    assert echo["body_sha256"] == hashlib.sha256(body).hexdigest()
    assert upstream.hits == before + 2

    if content_type == "application/json":  # the body is signed: a change is refused
        status, _ = send(upstream, req, body + b" ")
        assert status == 401
