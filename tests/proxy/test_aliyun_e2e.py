"""Alibaba Cloud through keybroker: the vendor SDKs (the tea OpenAPI client for ACS3 and RPC v2,
aliyun-python-sdk-core's AcsClient for RPC) sign with PROXY credentials; the upstream recomputes
the signature with the REAL secret using the tea SDK's own signing functions."""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
import requests
from alibabacloud_tea_openapi import exceptions as tea_errors
from alibabacloud_tea_openapi import models as tea_models
from alibabacloud_tea_openapi.client import Client as TeaClient
from aliyunsdkcore.acs_exception.exceptions import ServerException
from aliyunsdkcore.auth.composer import rpc_signature_composer
from aliyunsdkcore.client import AcsClient
from aliyunsdkcore.request import CommonRequest
from darabonba.runtime import RuntimeOptions

from keybroker.credentials import Credential
from keybroker.secret import Secret
from keybroker.settings import Config, Endpoint
from tests import logscan
from tests.proxy.harness import proxy_running
from tests.signers.aliyun_upstream import (
    UpstreamURL,
    aliyun_upstream,
    core_clock,
    sdk_acs3_authorization,
)

ORIGIN = "ecs.cn-hangzhou.aliyuncs.com"
FORM = "application/x-www-form-urlencoded"


@dataclass
class Aliyun:
    proxy_url: str
    upstream: UpstreamURL
    proxy_ak: str
    proxy_sk: str
    real_ak: str


@pytest.fixture(scope="module")
def aliyun() -> Iterator[Aliyun]:
    real_ak, real_sk = "LTAIREAL" + secrets.token_hex(8), secrets.token_urlsafe(30)
    token = "CAIS" + secrets.token_urlsafe(24)
    proxy_ak, proxy_sk = "LTAIPROXY" + secrets.token_hex(8), secrets.token_urlsafe(30)
    logscan.register(real_sk, proxy_sk, token)
    with aliyun_upstream(real_ak, real_sk, token) as upstream:
        cfg = Config(
            endpoints=[
                Endpoint(
                    cloud_account_name="aliyun-main",
                    vendor="aliyun",
                    proxy=Credential(proxy_ak, Secret(proxy_sk)),
                    real=Credential(real_ak, Secret(real_sk), Secret(token)),
                    upstream=str(upstream),
                )
            ]
        )
        with proxy_running(cfg) as (url, _):
            yield Aliyun(url, upstream, proxy_ak, proxy_sk, real_ak)


# --------------------------------------------------------------------------- native mode


def _tea(a: Aliyun, *, sk: str | None = None, ak: str | None = None, v2: bool = False) -> Any:
    config = tea_models.Config(
        access_key_id=ak or a.proxy_ak,
        access_key_secret=sk or a.proxy_sk,
        endpoint=urlsplit(a.proxy_url).netloc,
        protocol="http",
        signature_algorithm="v2" if v2 else None,
    )
    params = tea_models.Params(
        action="DescribeInstances", version="2014-05-26", protocol="HTTP", pathname="/",
        method="POST", auth_type="AK", style="RPC", req_body_type="formData", body_type="json",
    )  # fmt: skip
    request = tea_models.OpenApiRequest(
        query={"RegionId": "cn-hangzhou", "InstanceName": "web 01+ü"},
        body={"Tag.1.Key": "env", "Tag.1.Value": "a b"},
    )
    return TeaClient(config).call_api(params, request, RuntimeOptions(autoretry=False))


def _core(a: Aliyun, method: str, *, sk: str | None = None) -> dict[str, Any]:
    client = AcsClient(a.proxy_ak, sk or a.proxy_sk, "cn-hangzhou", auto_retry=False)
    request = CommonRequest(
        domain=urlsplit(a.proxy_url).netloc, version="2014-05-26", action_name="DescribeRegions"
    )
    request.set_protocol_type("http")
    request.set_method(method)
    request.add_query_param("Name", "a b+c/ü")
    if method == "POST":
        request.add_body_params("Tag.1.Key", "x y")
    answer: dict[str, Any] = json.loads(client.do_action_with_exception(request))
    return answer


@pytest.mark.parametrize("v2", [False, True], ids=["acs3", "rpc-v2"])
def test_native_mode_tea_client_passes(aliyun: Aliyun, v2: bool) -> None:
    echo = _tea(aliyun, v2=v2)["body"]["Echo"]
    assert echo["scheme"] == ("rpc" if v2 else "acs3")
    assert echo["access_key"] == aliyun.real_ak != aliyun.proxy_ak
    assert echo["security_token"] is True
    assert echo["action"] == "DescribeInstances"


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_native_mode_core_client_passes(aliyun: Aliyun, method: str) -> None:
    echo = _core(aliyun, method)["Echo"]
    assert (echo["scheme"], echo["method"]) == ("rpc", method)
    assert "Name=a%20b%2Bc%2F%C3%BC" in echo["query"]


def test_native_mode_wrong_secret_is_401_and_never_reaches_upstream(aliyun: Aliyun) -> None:
    before = aliyun.upstream.hits
    with pytest.raises(tea_errors.ClientException) as tea_exc:
        _tea(aliyun, sk="wrong-proxy-secret")
    assert tea_exc.value.status_code == 401
    with pytest.raises(ServerException) as core_exc:
        _core(aliyun, "GET", sk="wrong-proxy-secret")
    assert core_exc.value.get_http_status() == 401
    assert aliyun.upstream.hits == before


def test_native_mode_unknown_access_key_is_404(aliyun: Aliyun) -> None:
    before = aliyun.upstream.hits
    with pytest.raises(tea_errors.ClientException) as exc:
        _tea(aliyun, ak="LTAIunknownKEY")
    assert exc.value.status_code == 404
    assert aliyun.upstream.hits == before


# --------------------------------------------------------------------------- key-proxy mode


def _control(kept: str, account: str = "aliyun-main", query: str = "") -> dict[str, str]:
    return {
        "X-Mcdn-Origin-Uri": f"https://{ORIGIN}/" + (f"?{query}" if query else ""),
        "X-Mcdn-Cloud-Account-Name": account,
        "X-Mcdn-Kept-Headers": kept,
        "X-Origin-Host": ORIGIN,
    }


def _rpc_platform(
    a: Aliyun,
    *,
    sk: str | None = None,
    ak: str | None = None,
    body: dict[str, str] | None = None,
    when: str = "",
) -> tuple[str, dict[str, str], bytes]:
    """A platform signs an RPC request for the origin URI (as aliyun-python-sdk-core does)."""
    params = {"Action": "DescribeRegions", "Version": "2014-05-26", "RegionId": "cn-hangzhou"}
    method = "POST" if body else "GET"
    with core_clock(when or _now(), secrets.token_hex(16)):
        url, _ = rpc_signature_composer.get_signed_url(
            params, ak or a.proxy_ak, sk or a.proxy_sk, "JSON", method, dict(body or {})
        )
    query = url.removeprefix("/?")
    return query, ({"Content-Type": FORM} if body else {}), urlencode(body or {}).encode()


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _acs3_platform(a: Aliyun, *, sk: str | None = None, body: bytes = b'{"A":1}') -> dict[str, str]:
    """A platform signs an ACS3 request for the origin host (as the tea SDK does)."""
    payload = hashlib.sha256(body).hexdigest()
    headers = {
        "host": ORIGIN,
        "x-acs-action": "DescribeInstances",
        "x-acs-version": "2014-05-26",
        "x-acs-date": _now(),
        "x-acs-signature-nonce": secrets.token_hex(16),
        "content-type": "application/json; charset=utf-8",
        "x-acs-content-sha256": payload,
    }
    query = {"RegionId": "cn-hangzhou"}
    headers["Authorization"] = sdk_acs3_authorization(
        "POST", "/", query, headers, payload, a.proxy_ak, sk or a.proxy_sk
    )
    del headers["host"]
    return headers


ACS3_KEPT = (
    "authorization,x-acs-action,x-acs-version,x-acs-date,x-acs-signature-nonce,"
    "content-type,x-acs-content-sha256"
)


@pytest.mark.parametrize("with_body", [False, True], ids=["get", "post-form"])
def test_keyproxy_mode_rpc_passes(aliyun: Aliyun, with_body: bool) -> None:
    body = {"Tag.1.Key": "a b"} if with_body else None
    query, headers, raw = _rpc_platform(aliyun, body=body)
    headers.update(_control("content-type", query=query))
    r = requests.request(
        "POST" if with_body else "GET", aliyun.proxy_url + "/ignored", headers=headers,
        data=raw or None, timeout=10,
    )  # fmt: skip
    assert r.status_code == 200, r.text
    echo = r.json()["Echo"]
    assert echo["access_key"] == aliyun.real_ak
    assert echo["body_sha256"] == hashlib.sha256(raw).hexdigest()
    assert "X-Mcdn-Proxy-Version" in r.headers


def test_keyproxy_mode_acs3_passes(aliyun: Aliyun) -> None:
    headers = {**_acs3_platform(aliyun), **_control(ACS3_KEPT, query="RegionId=cn-hangzhou")}
    r = requests.post(aliyun.proxy_url, headers=headers, data=b'{"A":1}', timeout=10)
    assert r.status_code == 200, r.text
    echo = r.json()["Echo"]
    assert (echo["scheme"], echo["access_key"]) == ("acs3", aliyun.real_ak)


def _refusal(aliyun: Aliyun, case: str) -> requests.Response:
    if case.startswith("acs3"):
        headers = _acs3_platform(aliyun, sk="nope" if case == "acs3-wrong-secret" else None)
        headers.update(_control(ACS3_KEPT, query="RegionId=cn-hangzhou"))
        body = b'{"A":2}' if case == "acs3-tampered-body" else b'{"A":1}'
        if case == "acs3-malformed":
            headers["Authorization"] = "ACS3-HMAC-SHA256 Credential=x,Signature=zz"
        return requests.post(aliyun.proxy_url, headers=headers, data=body, timeout=10)
    form = case == "rpc-tampered-body"
    query, headers, _ = _rpc_platform(
        aliyun,
        sk="nope" if case == "rpc-wrong-secret" else None,
        ak="LTAIotherKEY" if case == "rpc-wrong-access-key" else None,
        body={"A": "1"} if form else None,
    )
    if case == "rpc-tampered-query":
        query = query.replace("cn-hangzhou", "cn-beijing")
    if case == "rpc-malformed":
        query = query.replace("SignatureMethod=HMAC-SHA1", "SignatureMethod=MD5")
    if case == "rpc-expired":
        query, _, _ = _rpc_platform(aliyun, when="2020-01-01T00:00:00Z")
    account = "nobody" if case == "rpc-unknown-account" else "aliyun-main"
    headers.update(_control("content-type", account, query))
    data = b"A=2" if form else None
    return requests.request("POST" if form else "GET", aliyun.proxy_url, headers=headers,
                            data=data, timeout=10)  # fmt: skip


REFUSALS = {
    "rpc-wrong-secret": (401, "Proxy.ValidateCredentialErr"),
    "rpc-wrong-access-key": (401, "Proxy.ValidateCredentialErr"),
    "rpc-tampered-query": (401, "Proxy.ValidateCredentialErr"),
    "rpc-tampered-body": (401, "Proxy.ValidateCredentialErr"),
    "rpc-malformed": (400, "Proxy.MalformedSignature"),
    "rpc-expired": (401, "Proxy.RequestExpired"),
    "rpc-unknown-account": (404, "Proxy.CloudAccountNotFound"),
    "acs3-wrong-secret": (401, "Proxy.ValidateCredentialErr"),
    "acs3-tampered-body": (401, "Proxy.ValidateCredentialErr"),
    "acs3-malformed": (400, "Proxy.MalformedSignature"),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_keyproxy_mode_refusals(aliyun: Aliyun, case: str) -> None:
    before = aliyun.upstream.hits
    r = _refusal(aliyun, case)
    status, code = REFUSALS[case]
    assert r.status_code == status, r.text
    assert r.json()["ResponseMetadata"]["Error"]["Code"] == code
    assert aliyun.upstream.hits == before


def test_keyproxy_mode_signed_time_window(aliyun: Aliyun) -> None:
    old = (datetime.now(UTC) - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    query, headers, _ = _rpc_platform(aliyun, when=old)
    headers.update(_control("", query=query))
    r = requests.get(aliyun.proxy_url, headers=headers, timeout=10)
    assert r.status_code == 401


@pytest.mark.parametrize("client", ["tea-rpc-v2", "tea-acs3", "core"])
def test_native_mode_bodies_past_the_detection_bound_pass(aliyun: Aliyun, client: str) -> None:
    """Only the first few KiB of a body are read before its account is known: real SDK calls
    whose form body is far longer still pass (the credential is in the query, a header or the
    body's first bytes)."""
    big = "x" * (64 * 1024)
    if client == "core":
        sdk = AcsClient(aliyun.proxy_ak, aliyun.proxy_sk, "cn-hangzhou", auto_retry=False)
        request = CommonRequest(
            domain=urlsplit(aliyun.proxy_url).netloc,
            version="2014-05-26",
            action_name="DescribeRegions",
        )
        request.set_protocol_type("http")
        request.set_method("POST")
        request.add_body_params("Description", big)
        echo = json.loads(sdk.do_action_with_exception(request))["Echo"]
    else:
        config = tea_models.Config(
            access_key_id=aliyun.proxy_ak,
            access_key_secret=aliyun.proxy_sk,
            endpoint=urlsplit(aliyun.proxy_url).netloc,
            protocol="http",
            signature_algorithm="v2" if client == "tea-rpc-v2" else None,
        )
        params = tea_models.Params(
            action="DescribeInstances", version="2014-05-26", protocol="HTTP", pathname="/",
            method="POST", auth_type="AK", style="RPC", req_body_type="formData", body_type="json",
        )  # fmt: skip
        body = {"Description": big, "Tag.1.Key": "env"}
        request_ = tea_models.OpenApiRequest(query={"RegionId": "cn-hangzhou"}, body=body)
        answer = TeaClient(config).call_api(params, request_, RuntimeOptions(autoretry=False))
        echo = answer["body"]["Echo"]
    assert echo["access_key"] == aliyun.real_ak
