"""Tencent Cloud through keybroker: ``tencentcloud-sdk-python-common``'s ``CommonClient`` signs
with PROXY credentials (TC3-HMAC-SHA256 and the v1 HmacSHA1/HmacSHA256 parameters); the
upstream recomputes every signature with the SDK's own algorithm and the REAL secret, and
requires the real account's temporary-credential token."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException

from keybroker.credentials import Credential
from keybroker.secret import Secret
from keybroker.settings import Config, Endpoint
from tests import logscan
from tests.proxy.harness import proxy_running
from tests.signers.tencent_upstream import UpstreamURL, sdk_client, sdk_signed, tencent_upstream

ORIGIN_HOST = "cvm.tencentcloudapi.com"
TC3_KEPT = "authorization,content-type,x-tc-action,x-tc-timestamp,x-tc-version,x-tc-region"


@dataclass
class Setup:
    proxy_url: str
    upstream: UpstreamURL
    proxy_ak: str
    proxy_sk: str


@pytest.fixture(scope="module")
def tc() -> Iterator[Setup]:
    real_ak, real_sk = "AKIDREAL" + secrets.token_hex(8), secrets.token_urlsafe(30)
    real_token = "tok-" + secrets.token_urlsafe(20)
    proxy_ak, proxy_sk = "AKIDPROXY" + secrets.token_hex(8), secrets.token_urlsafe(30)
    logscan.register(real_sk, real_token, proxy_sk)
    with tencent_upstream(real_ak, real_sk, real_token) as upstream:
        cfg = Config(
            endpoints=[
                Endpoint(
                    cloud_account_name="tencent-main",
                    vendor="tencent",
                    proxy=Credential(proxy_ak, Secret(proxy_sk)),
                    real=Credential(real_ak, Secret(real_sk), Secret(real_token)),
                    upstream=str(upstream),
                )
            ]
        )
        with proxy_running(cfg) as (url, _):
            yield Setup(url, upstream, proxy_ak, proxy_sk)


SCHEMES = [("TC3-HMAC-SHA256", "POST"), ("TC3-HMAC-SHA256", "GET"),
           ("HmacSHA1", "POST"), ("HmacSHA256", "GET")]  # fmt: skip


@pytest.mark.parametrize(("scheme", "method"), SCHEMES)
def test_native_mode_sdk_call_passes(tc: Setup, scheme: str, method: str) -> None:
    client = sdk_client(tc.proxy_url.removeprefix("http://"), tc.proxy_ak, tc.proxy_sk,
                        method=method, sign_method=scheme)  # fmt: skip
    result: Any = client.call_json("DescribeInstances", {"Limit": 1, "Name": "a b+c/ü"})
    echo = result["Response"]["Echo"]
    assert echo["secret_id"] != tc.proxy_ak and echo["token_present"]
    assert echo["scheme"] == ("tc3" if scheme.startswith("TC3") else "v1")
    assert echo["method"] == method


@pytest.mark.parametrize(("scheme", "method"), SCHEMES)
def test_native_mode_wrong_secret_is_refused_before_upstream(
    tc: Setup, scheme: str, method: str
) -> None:
    before = tc.upstream.hits
    client = sdk_client(tc.proxy_url.removeprefix("http://"), tc.proxy_ak, "wrong",
                        method=method, sign_method=scheme)  # fmt: skip
    with pytest.raises(TencentCloudSDKException) as err:
        client.call_json("DescribeInstances", {})
    assert "Proxy.ValidateCredentialErr" in str(err.value)
    assert tc.upstream.hits == before


def test_native_mode_unknown_secret_id_is_404(tc: Setup) -> None:
    client = sdk_client(tc.proxy_url.removeprefix("http://"), "AKIDUNKNOWN", "x")
    with pytest.raises(TencentCloudSDKException) as err:
        client.call_json("DescribeInstances", {})
    assert "Proxy.CloudAccountNotFound" in str(err.value)


def _platform(
    s: Setup,
    scheme: str = "TC3-HMAC-SHA256",
    *,
    sk: str | None = None,
    tamper: bool = False,
    kept: str = TC3_KEPT,
) -> requests.Response:
    """Sign for the origin URI like the platform would, and send through the proxy."""
    client = sdk_client(ORIGIN_HOST, s.proxy_ak, sk or s.proxy_sk, sign_method=scheme)
    req = sdk_signed(client, "DescribeInstances", {"Limit": 1}, int(time.time()))
    headers = dict(req.headers)
    headers.update(
        {
            "X-Mcdn-Origin-Uri": f"https://{ORIGIN_HOST}/",
            "X-Mcdn-Cloud-Account-Name": "tencent-main",
            "X-Mcdn-Kept-Headers": kept,
            "X-Origin-Host": ORIGIN_HOST,
        }
    )
    body = req.body or b""
    sent = body.replace(b"Limit", b"Limjt") if tamper else body
    return requests.post(s.proxy_url + "/whatever", headers=headers, data=sent, timeout=10)


@pytest.mark.parametrize("scheme", ["TC3-HMAC-SHA256", "HmacSHA256"])
def test_keyproxy_mode_passes(tc: Setup, scheme: str) -> None:
    r = _platform(tc, scheme, kept=TC3_KEPT if scheme.startswith("TC3") else "content-type")
    assert r.status_code == 200, r.text
    assert r.json()["Response"]["Echo"]["secret_id"] != tc.proxy_ak


@pytest.mark.parametrize("scheme", ["TC3-HMAC-SHA256", "HmacSHA1"])
@pytest.mark.parametrize("case", ["wrong-secret", "tampered-body"])
def test_keyproxy_mode_refusals(tc: Setup, scheme: str, case: str) -> None:
    before = tc.upstream.hits
    kept = TC3_KEPT if scheme.startswith("TC3") else "content-type"
    r = _platform(tc, scheme, sk="nope" if case == "wrong-secret" else None,
                  tamper=case == "tampered-body", kept=kept)  # fmt: skip
    assert r.status_code == 401, r.text
    assert r.json()["ResponseMetadata"]["Error"]["Code"] == "Proxy.ValidateCredentialErr"
    assert tc.upstream.hits == before


@pytest.mark.parametrize(
    "auth",
    [
        "TC3-HMAC-SHA256 Credential=AKID/2024-01-01/cvm, SignedHeaders=content-type;host, "
        "Signature=00",
        "TC3-HMAC-SHA256 garbage",
    ],
)
def test_malformed_authorization_is_400(tc: Setup, auth: str) -> None:
    headers = {
        "Authorization": auth,
        "Content-Type": "application/json",
        "X-TC-Timestamp": str(int(time.time())),
        "X-Mcdn-Origin-Uri": f"https://{ORIGIN_HOST}/",
        "X-Mcdn-Cloud-Account-Name": "tencent-main",
        "X-Mcdn-Kept-Headers": "authorization,content-type,x-tc-timestamp",
    }
    before = tc.upstream.hits
    r = requests.post(tc.proxy_url, headers=headers, data=b"{}", timeout=10)
    assert r.status_code == 400, r.text
    assert r.json()["ResponseMetadata"]["Error"]["Code"] == "Proxy.MalformedSignature"
    assert tc.upstream.hits == before


def test_stale_timestamp_is_refused(tc: Setup) -> None:
    client = sdk_client(ORIGIN_HOST, tc.proxy_ak, tc.proxy_sk)
    req = sdk_signed(client, "DescribeInstances", {}, int(time.time()) - 3600)
    headers = {
        **dict(req.headers),
        "X-Mcdn-Origin-Uri": f"https://{ORIGIN_HOST}/",
        "X-Mcdn-Cloud-Account-Name": "tencent-main",
        "X-Mcdn-Kept-Headers": TC3_KEPT,
    }
    r = requests.post(tc.proxy_url, headers=headers, data=req.body, timeout=10)
    assert r.status_code == 401, r.text
    assert r.json()["ResponseMetadata"]["Error"]["Code"] == "Proxy.RequestExpired"
