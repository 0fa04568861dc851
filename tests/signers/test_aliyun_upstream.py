"""Over real sockets: the vendor SDKs' own clients (the tea OpenAPI client for ACS3 and RPC v2,
aliyun-python-sdk-core's AcsClient for RPC) and keybroker's re-signed requests, against the
signature-checking upstream of ``aliyun_upstream``."""

from __future__ import annotations

import http.client
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import pytest
from alibabacloud_tea_openapi import exceptions as tea_errors
from alibabacloud_tea_openapi import models as tea_models
from alibabacloud_tea_openapi.client import Client as TeaClient
from aliyunsdkcore.acs_exception.exceptions import ServerException
from aliyunsdkcore.auth.credentials import StsTokenCredential
from aliyunsdkcore.client import AcsClient
from aliyunsdkcore.request import CommonRequest
from darabonba.runtime import RuntimeOptions

from keybroker.credentials import Credential
from keybroker.secret import Secret
from keybroker.signers.aliyun import SIGNER
from keybroker.signers.base import SigningRequest
from tests import logscan
from tests.signers.aliyun_upstream import Seen, UpstreamURL, aliyun_upstream

REAL = Credential("LTAIrealUP", Secret("real-upstream-secret"), Secret("real-up-token"))
PROXY = Credential("LTAIproxyUP", Secret("proxy-upstream-secret"))


@pytest.fixture(scope="module")
def upstream() -> Iterator[UpstreamURL]:
    logscan.register(*REAL.secrets(), *PROXY.secrets())
    # aliyunsdkcore logs every request's parameters (an STS token among them) at debug level;
    # these tests call it directly with the real token, which keybroker would never do.
    sdk_log = logging.getLogger("aliyunsdkcore")
    level = sdk_log.level
    sdk_log.setLevel(logging.INFO)
    token = REAL.access_token.reveal() if REAL.access_token else None
    try:
        with aliyun_upstream(REAL.access_key, REAL.secret_key.reveal(), token) as url:
            yield url
    finally:
        sdk_log.setLevel(level)


def tea(url: str, cred: Credential, algorithm: str | None = None) -> TeaClient:
    token = cred.access_token.reveal() if cred.access_token else None
    config = tea_models.Config(
        access_key_id=cred.access_key,
        access_key_secret=cred.secret_key.reveal(),
        security_token=token,
        endpoint=urlsplit(url).netloc,
        protocol="http",
        signature_algorithm=algorithm,
    )
    return TeaClient(config)


def tea_call(client: TeaClient, *, style: str = "RPC", method: str = "POST") -> dict[str, Any]:
    params = tea_models.Params(
        action="DescribeRegions", version="2014-05-26", protocol="HTTP", pathname="/",
        method=method, auth_type="AK", style=style, req_body_type="formData", body_type="json",
    )  # fmt: skip
    request = tea_models.OpenApiRequest(
        query={"RegionId": "cn-hangzhou", "Name": "a b+c/ü"}, body={"Tag.1.Key": "x y"}
    )
    result: dict[str, Any] = client.call_api(params, request, RuntimeOptions(autoretry=False))
    return result


def core_client(url: str, cred: Credential) -> tuple[AcsClient, str]:
    if cred.access_token:
        sts = StsTokenCredential(
            cred.access_key, cred.secret_key.reveal(), cred.access_token.reveal()
        )
        client = AcsClient(region_id="cn-hangzhou", credential=sts, auto_retry=False)
    else:
        client = AcsClient(
            cred.access_key, cred.secret_key.reveal(), "cn-hangzhou", auto_retry=False
        )
    return client, urlsplit(url).netloc


def core_call(client: AcsClient, domain: str, method: str) -> dict[str, Any]:
    request = CommonRequest(domain=domain, version="2014-05-26", action_name="DescribeRegions")
    request.set_protocol_type("http")
    request.set_method(method)
    request.add_query_param("Name", "a b+c/ü")
    if method == "POST":
        request.add_body_params("Tag.1.Key", "x y")
    answer: dict[str, Any] = json.loads(client.do_action_with_exception(request))
    return answer


def send(url: str, req: SigningRequest) -> tuple[int, dict[str, Any]]:
    conn = http.client.HTTPConnection(urlsplit(url).netloc, timeout=10)
    try:
        skip = ("host", "content-length", "transfer-encoding")  # http.client sets them
        headers = {k: v for k, v in req.headers.items() if k.lower() not in skip}
        target = req.path + (f"?{req.query}" if req.query else "")
        conn.request(req.method, target, body=req.body, headers=headers)
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def as_request(seen: Seen) -> SigningRequest:
    method, path, query, headers, body = seen
    return SigningRequest(method, headers["Host"], path, query, headers.copy(), "http", body)


# --------------------------------------------------------------------------- the SDKs


def test_tea_acs3_accepted_with_real_creds(upstream: UpstreamURL) -> None:
    answer = tea_call(tea(upstream, REAL))
    echo = answer["body"]["Echo"]
    assert (echo["scheme"], echo["access_key"]) == ("acs3", REAL.access_key)
    assert echo["security_token"] is True


def test_tea_rpc_v2_and_core_accepted_with_real_creds(upstream: UpstreamURL) -> None:
    assert tea_call(tea(upstream, REAL, "v2"))["body"]["Echo"]["scheme"] == "rpc"
    client, domain = core_client(upstream, REAL)
    for method in ("GET", "POST"):
        echo = core_call(client, domain, method)["Echo"]
        assert (echo["scheme"], echo["method"]) == ("rpc", method)


def test_sdks_refused_with_other_creds(upstream: UpstreamURL) -> None:
    with pytest.raises(tea_errors.ClientException) as tea_exc:
        tea_call(tea(upstream, PROXY))
    assert tea_exc.value.status_code == 403
    client, domain = core_client(upstream, PROXY)
    with pytest.raises(ServerException) as core_exc:
        core_call(client, domain, "GET")
    assert core_exc.value.get_http_status() == 403


# --------------------------------------------------------------------------- through our code


def _capture(upstream: UpstreamURL, call: Any) -> SigningRequest:
    """What an SDK really sent with the proxy credentials (the upstream refuses it)."""
    before = len(upstream.seen)
    with pytest.raises((tea_errors.ClientException, ServerException)):
        call()
    assert len(upstream.seen) == before + 1
    return as_request(upstream.seen[-1])


SDK_CALLS = {
    "tea-acs3-post": lambda u: tea_call(tea(u, PROXY)),
    "tea-acs3-get": lambda u: tea_call(tea(u, PROXY), method="GET"),
    "tea-rpc-v2": lambda u: tea_call(tea(u, PROXY, "v2")),
    "core-rpc-get": lambda u: core_call(*core_client(u, PROXY), "GET"),
    "core-rpc-post": lambda u: core_call(*core_client(u, PROXY), "POST"),
}


@pytest.mark.parametrize("name", list(SDK_CALLS))
def test_sdk_request_verified_resigned_and_accepted(upstream: UpstreamURL, name: str) -> None:
    """The SDK signs for the proxy creds; we verify, re-sign for the real ones; upstream: 200."""
    req = _capture(upstream, lambda: SDK_CALLS[name](upstream))
    auth = SIGNER.parse(req)
    SIGNER.verify(req, auth, PROXY, req.body)
    SIGNER.resign(req, auth, REAL, req.body, datetime.now(UTC))
    before = upstream.hits
    status, answer = send(upstream, req)
    assert status == 200, answer
    assert answer["Echo"]["access_key"] == REAL.access_key
    assert answer["Echo"]["security_token"] is True
    # Sent again, the same nonce is refused, as Alibaba Cloud refuses it.
    status, answer = send(upstream, req)
    assert (status, answer["Code"]) == (400, "SignatureNonceUsed")
    assert upstream.hits == before + 2


def test_resigned_request_with_changed_body_refused(upstream: UpstreamURL) -> None:
    req = _capture(upstream, lambda: tea_call(tea(upstream, PROXY)))
    auth = SIGNER.parse(req)
    SIGNER.resign(req, auth, REAL, req.body, datetime.now(UTC))
    req.body = (req.body or b"") + b"&x=1"
    status, answer = send(upstream, req)
    assert (status, answer["Code"]) == (403, "SignatureDoesNotMatch")
