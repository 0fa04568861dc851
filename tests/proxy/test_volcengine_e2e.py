"""Volcengine through keybroker: the volcengine SDK signs with PROXY credentials; the upstream
recomputes the signature with the REAL secret using the SDK's own algorithm."""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests
import volcenginesdkcore
from volcenginesdkcore.rest import ApiException
from volcenginesdkcore.signv4 import SignerV4
from volcenginesdkcore.universal import UniversalApi, UniversalInfo

from keybroker.credentials import Credential
from keybroker.secret import Secret
from keybroker.settings import Config, Endpoint
from tests import logscan
from tests.proxy.harness import proxy_running
from tests.signers.volc_upstream import UpstreamURL, volc_upstream


@dataclass
class Volc:
    proxy_url: str
    upstream: UpstreamURL
    proxy_ak: str
    proxy_sk: str


@pytest.fixture(scope="module")
def volc() -> Iterator[Volc]:
    real_ak, real_sk = "AKLTREAL" + secrets.token_hex(8), secrets.token_urlsafe(30)
    proxy_ak, proxy_sk = "AKLTPROXY" + secrets.token_hex(8), secrets.token_urlsafe(30)
    logscan.register(real_sk, proxy_sk)
    with volc_upstream(real_ak, real_sk) as upstream:
        cfg = Config(
            endpoints=[
                Endpoint(
                    cloud_account_name="volc-main",
                    vendor="volcengine",
                    proxy=Credential(proxy_ak, Secret(proxy_sk)),
                    real=Credential(real_ak, Secret(real_sk)),
                    upstream=str(upstream),
                )
            ]
        )
        with proxy_running(cfg) as (url, _):
            yield Volc(url, upstream, proxy_ak, proxy_sk)


def _sdk(v: Volc, sk: str | None = None) -> UniversalApi:
    conf = volcenginesdkcore.Configuration()
    conf.ak, conf.sk, conf.region = v.proxy_ak, sk or v.proxy_sk, "cn-beijing"
    conf.host = v.proxy_url.removeprefix("http://")
    conf.scheme = "http"
    return UniversalApi(volcenginesdkcore.ApiClient(conf))


def test_native_mode_sdk_call_passes(volc: Volc) -> None:
    api = _sdk(volc)
    info = UniversalInfo(
        method="POST",
        service="iam",
        version="2018-01-01",
        action="ListUsers",
        content_type="application/json",
    )
    result: Any = api.do_call(info, {"Limit": 10})
    assert result["access_key"] != volc.proxy_ak
    assert "Action=ListUsers" in result["query"]


def test_native_mode_get_call_passes(volc: Volc) -> None:
    api = _sdk(volc)
    info = UniversalInfo(
        method="GET",
        service="ecs",
        version="2020-04-01",
        action="DescribeInstances",
        content_type="application/x-www-form-urlencoded",
    )
    result: Any = api.do_call(info, {"MaxResults": 5, "Name": "a b+c/ü"})
    assert "MaxResults=5" in result["query"]


def test_native_mode_wrong_secret_is_401_and_never_reaches_upstream(volc: Volc) -> None:
    before = volc.upstream.hits
    api = _sdk(volc, sk="wrong-proxy-secret")
    info = UniversalInfo(
        method="POST",
        service="iam",
        version="2018-01-01",
        action="ListUsers",
        content_type="application/json",
    )
    with pytest.raises(ApiException) as err:
        api.do_call(info, {})
    assert err.value.status == 401
    assert volc.upstream.hits == before


def _platform_call(
    v: Volc,
    *,
    sk: str | None = None,
    body: bytes = b'{"Limit":1}',
    tamper: bool = False,
    kept: str = "authorization,x-date,content-type,x-content-sha256",
) -> requests.Response:
    origin_host = "open.volcengineapi.com"
    query = [("Action", "ListUsers"), ("Version", "2018-01-01")]
    headers = {"Content-Type": "application/json", "Host": origin_host}
    SignerV4.sign(
        "/",
        "POST",
        headers,
        body.decode(),
        None,
        query,
        v.proxy_ak,
        sk or v.proxy_sk,
        "cn-beijing",
        "iam",
        None,
    )
    headers.pop("Host")
    headers.update(
        {
            "X-Mcdn-Origin-Uri": f"https://{origin_host}/?Action=ListUsers&Version=2018-01-01",
            "X-Mcdn-Cloud-Account-Name": "volc-main",
            "X-Mcdn-Kept-Headers": kept,
            "X-Origin-Host": origin_host,
        }
    )
    sent = body + b" " if tamper else body
    return requests.post(v.proxy_url + "/whatever", headers=headers, data=sent, timeout=10)


def test_keyproxy_mode_passes(volc: Volc) -> None:
    r = _platform_call(volc)
    assert r.status_code == 200, r.text
    assert r.json()["Result"]["body_sha256"] == hashlib.sha256(b'{"Limit":1}').hexdigest()
    assert "X-Mcdn-Proxy-Version" in r.headers


def test_keyproxy_mode_kept_list_with_spaces(volc: Volc) -> None:
    r = _platform_call(volc, kept="Authorization, X-Date , content-type,x-content-sha256")
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("case", ["wrong-secret", "tampered-body"])
def test_keyproxy_mode_refusals(volc: Volc, case: str) -> None:
    before = volc.upstream.hits
    r = _platform_call(
        volc, sk="nope" if case == "wrong-secret" else None, tamper=case == "tampered-body"
    )
    assert r.status_code == 401, r.text
    assert r.json()["ResponseMetadata"]["Error"]["Code"] == "Proxy.ValidateCredentialErr"
    assert volc.upstream.hits == before


def test_three_part_credential_is_400_not_500(volc: Volc) -> None:
    headers = {
        "Authorization": f"HMAC-SHA256 Credential={volc.proxy_ak}/20240101/cn-beijing, "
        "SignedHeaders=host;x-date, Signature=00",
        "X-Date": "20240101T000000Z",
        "X-Mcdn-Origin-Uri": "https://open.volcengineapi.com/?Action=ListUsers&Version=2018-01-01",
        "X-Mcdn-Cloud-Account-Name": "volc-main",
        "X-Mcdn-Kept-Headers": "authorization,x-date",
    }
    r = requests.get(volc.proxy_url, headers=headers, timeout=10)
    assert r.status_code == 400, r.text
    assert json.loads(r.text)["ResponseMetadata"]["Error"]["Code"] == "Proxy.MalformedSignature"
