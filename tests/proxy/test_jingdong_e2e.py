"""JD Cloud through keybroker: the vendor SDKs sign with PROXY credentials (jdcloud-sdk's
VmClient with JDCLOUD3, jdcloud-apim-sdk-core's client with JDCLOUD2); the upstream recomputes
the signature with the same SDKs and the REAL secret."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests
from jdcloud_apim_sdk.core.config import Config as V2Config
from jdcloud_apim_sdk.core.credential import Credential as V2Credential
from jdcloud_apim_sdk.core.jdcloudclient import JDCloudClient as V2Client
from jdcloud_apim_sdk.core.logger import Logger as V2Logger
from jdcloud_apim_sdk.simplerequest import SimpleRequest
from jdcloud_sdk.core.config import Config as V3Config
from jdcloud_sdk.core.credential import Credential as V3Credential
from jdcloud_sdk.core.logger import Logger as V3Logger
from jdcloud_sdk.services.vm.apis.DescribeInstancesRequest import (
    DescribeInstancesParameters,
    DescribeInstancesRequest,
)
from jdcloud_sdk.services.vm.client.VmClient import VmClient

from keybroker.credentials import Credential
from keybroker.secret import Secret
from keybroker.settings import Config, Endpoint
from tests import logscan
from tests.proxy.harness import proxy_running
from tests.signers.jingdong_upstream import UpstreamURL, jingdong_upstream, sdk_sign


@dataclass
class Jd:
    proxy_url: str
    upstream: UpstreamURL
    proxy_ak: str
    proxy_sk: str

    @property
    def endpoint(self) -> str:
        return self.proxy_url.removeprefix("http://")


@pytest.fixture(scope="module")
def jd() -> Iterator[Jd]:
    real_ak, real_sk = "JDC_REAL_" + secrets.token_hex(8), secrets.token_urlsafe(30)
    proxy_ak, proxy_sk = "JDC_PROXY_" + secrets.token_hex(8), secrets.token_urlsafe(30)
    logscan.register(real_sk, proxy_sk)
    with jingdong_upstream(real_ak, real_sk) as upstream:
        cfg = Config(
            endpoints=[
                Endpoint(
                    cloud_account_name="jd-main",
                    vendor="jingdong",
                    proxy=Credential(proxy_ak, Secret(proxy_sk)),
                    real=Credential(real_ak, Secret(real_sk)),
                    upstream=str(upstream),
                )
            ]
        )
        with proxy_running(cfg) as (url, _):
            yield Jd(url, upstream, proxy_ak, proxy_sk)


def _vm_client(jd: Jd, sk: str | None = None, ak: str | None = None) -> VmClient:
    cred = V3Credential(ak or jd.proxy_ak, sk or jd.proxy_sk)
    return VmClient(cred, V3Config(jd.endpoint, scheme="http"), V3Logger(0))


# --------------------------------------------------------------------------- native mode


def test_native_jdcloud3_sdk_call_passes(jd: Jd) -> None:
    resp = _vm_client(jd).send(DescribeInstancesRequest(DescribeInstancesParameters("cn-north-1")))
    assert resp.error is None
    result: Any = resp.result
    assert result["path"] == "/v1/regions/cn-north-1/instances"
    assert result["algorithm"] == "JDCLOUD3-HMAC-SHA256"
    assert result["access_key"].startswith("JDC_REAL_")


class _Params:
    regionId = "cn-north-1"


def test_native_jdcloud2_sdk_post_passes(jd: Jd) -> None:
    client = V2Client(
        V2Credential(jd.proxy_ak, jd.proxy_sk),
        V2Config(jd.endpoint, "http"),
        "vm",
        "1.0",
        V2Logger(0),
    )
    request = SimpleRequest("/v1/regions/cn-north-1/instances/i-1:startInstance", "POST")
    request.parameters = _Params()
    resp = client.send(request)
    assert resp.status_code == 200, resp.text
    result = resp.json()["result"]
    assert result["algorithm"] == "JDCLOUD2-HMAC-SHA256"
    assert result["path"] == "/v1/regions/cn-north-1/instances/i-1:startInstance"


def test_native_wrong_secret_is_401_and_never_reaches_upstream(jd: Jd) -> None:
    before = jd.upstream.hits
    resp = _vm_client(jd, sk="wrong-secret").send(
        DescribeInstancesRequest(DescribeInstancesParameters("cn-north-1"))
    )
    assert resp.error is None or resp.error.code != 200  # the SDK does not raise on 401
    assert jd.upstream.hits == before
    raw = _raw_native(jd, sk="wrong-secret")
    assert raw.status_code == 401, raw.text


def test_native_unknown_access_key_is_404(jd: Jd) -> None:
    before = jd.upstream.hits
    assert _raw_native(jd, ak="JDC_UNKNOWN").status_code == 404
    assert jd.upstream.hits == before


def _raw_native(jd: Jd, *, sk: str | None = None, ak: str | None = None) -> requests.Response:
    url = f"{jd.proxy_url}/v1/regions/cn-north-1/instances?pageSize=5"
    headers = {"Content-Type": "application/json"}
    sdk_sign(
        "JDCLOUD2-HMAC-SHA256",
        "GET",
        url,
        headers,
        "",
        ak or jd.proxy_ak,
        sk or jd.proxy_sk,
        region="cn-north-1",
        service="vm",
        x_date=_now(),
        nonce=secrets.token_hex(8),
    )
    return requests.get(url, headers=headers, timeout=10)


def _now() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


def test_malformed_authorization_is_400(jd: Jd) -> None:
    before = jd.upstream.hits
    headers = {
        "Authorization": f"JDCLOUD2-HMAC-SHA256 Credential={jd.proxy_ak}/20240101/cn-north-1, "
        "SignedHeaders=host, Signature=00",
        "x-jdcloud-date": "20240101T000000Z",
    }
    r = requests.get(jd.proxy_url + "/v1/x", headers=headers, timeout=10)
    assert r.status_code == 400, r.text
    assert r.json()["ResponseMetadata"]["Error"]["Code"] == "Proxy.MalformedSignature"
    assert jd.upstream.hits == before


# --------------------------------------------------------------------------- key-proxy mode


def _platform_call(
    jd: Jd, *, sk: str | None = None, body: str = '{"instanceId": "i-1"}', tamper: str = ""
) -> requests.Response:
    origin = "https://vm.jdcloud-api.com/v1/regions/cn-north-1/instances/i-1:stopInstance?b=2&a=1"
    headers = {"Content-Type": "application/json"}
    sdk_sign(
        "JDCLOUD2-HMAC-SHA256",
        "POST",
        origin,
        headers,
        body,
        jd.proxy_ak,
        sk or jd.proxy_sk,
        region="cn-north-1",
        service="vm",
        x_date=_now(),
        nonce=secrets.token_hex(8),
    )
    headers.update(
        {
            "X-Mcdn-Origin-Uri": origin.replace("a=1", "a=3") if tamper == "query" else origin,
            "X-Mcdn-Cloud-Account-Name": "jd-main",
            "X-Mcdn-Kept-Headers": "authorization,x-jdcloud-date,x-jdcloud-nonce,content-type",
            "X-Origin-Host": "vm.jdcloud-api.com",
        }
    )
    sent = body + " " if tamper == "body" else body
    return requests.post(jd.proxy_url + "/anything", headers=headers, data=sent, timeout=10)


def test_keyproxy_mode_passes(jd: Jd) -> None:
    r = _platform_call(jd)
    assert r.status_code == 200, r.text
    result = r.json()["result"]
    assert result["query"] == "b=2&a=1"
    assert result["body_sha256"] == hashlib.sha256(b'{"instanceId": "i-1"}').hexdigest()


@pytest.mark.parametrize("case", ["wrong-secret", "body", "query"])
def test_keyproxy_mode_refusals(jd: Jd, case: str) -> None:
    before = jd.upstream.hits
    r = _platform_call(jd, sk="nope") if case == "wrong-secret" else _platform_call(jd, tamper=case)
    assert r.status_code == 401, r.text
    assert r.json()["ResponseMetadata"]["Error"]["Code"] == "Proxy.ValidateCredentialErr"
    assert jd.upstream.hits == before
