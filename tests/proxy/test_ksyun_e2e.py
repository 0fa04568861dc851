"""Kingsoft Cloud through keybroker: Kingsoft's SDK (``ksyun``, signing with
``requests-aws4auth``) uses PROXY credentials; the upstream recomputes the signature with the
REAL secret using the same signer.  An AWS account (moto enforcing SigV4) shares the proxy:
both vendors' requests are SigV4, told apart by the account of the proxy access key."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
import requests
from ksyun.common import credential
from ksyun.common.common_client import CommonClient
from ksyun.common.exception.ksyun_sdk_exception import KsyunSDKException
from ksyun.common.profile.client_profile import ClientProfile
from ksyun.common.profile.http_profile import HttpProfile
from requests_aws4auth import AWS4Auth

from keybroker.credentials import Credential
from keybroker.secret import Secret
from keybroker.settings import Config, Endpoint
from tests import logscan
from tests.proxy.harness import proxy_running
from tests.signers.ksyun_upstream import UpstreamURL, ksyun_upstream

ORIGIN = "https://iam.api.ksyun.com/?Action=ListUsers&Version=2015-11-01"


@dataclass
class Setup:
    proxy_url: str
    upstream: UpstreamURL
    proxy_ak: str
    proxy_sk: str
    aws_ak: str
    aws_sk: str


@pytest.fixture(scope="module")
def ks(moto_auth: tuple[str, str, str]) -> Iterator[Setup]:
    moto_url, moto_ak, moto_sk = moto_auth
    real_ak, real_sk = "AKLTREAL" + secrets.token_hex(8), secrets.token_urlsafe(30)
    proxy_ak, proxy_sk = "AKLTPROXY" + secrets.token_hex(8), secrets.token_urlsafe(30)
    aws_ak, aws_sk = "AKIDKSAWS" + secrets.token_hex(6).upper(), secrets.token_urlsafe(30)
    logscan.register(real_sk, proxy_sk, aws_sk)
    with ksyun_upstream(real_ak, real_sk) as upstream:
        cfg = Config(
            endpoints=[
                Endpoint(
                    cloud_account_name="ksyun-main",
                    vendor="ksyun",
                    proxy=Credential(proxy_ak, Secret(proxy_sk)),
                    real=Credential(real_ak, Secret(real_sk)),
                    upstream=str(upstream),
                ),
                Endpoint(
                    cloud_account_name="aws-next-door",
                    vendor="aws",
                    proxy=Credential(aws_ak, Secret(aws_sk)),
                    real=Credential(moto_ak, Secret(moto_sk)),
                    upstream=moto_url,
                ),
            ]
        )
        with proxy_running(cfg) as (url, _):
            yield Setup(url, upstream, proxy_ak, proxy_sk, aws_ak, aws_sk)


def _sdk(s: Setup, method: str = "POST", sk: str | None = None) -> CommonClient:
    http = HttpProfile(endpoint=s.proxy_url.removeprefix("http://"), protocol="http",
                       reqMethod=method)  # fmt: skip
    cred = credential.Credential(s.proxy_ak, sk or s.proxy_sk)
    return CommonClient(
        "iam", "2015-11-01", cred, "cn-beijing-6", profile=ClientProfile(httpProfile=http)
    )


@pytest.mark.parametrize("method", ["POST", "GET"])
def test_native_mode_sdk_call_passes(ks: Setup, method: str) -> None:
    result: Any = json.loads(_sdk(ks, method).call("ListUsers", {"Marker": "a b+c/ü"}))
    echo = result["Echo"]
    assert echo["access_key"] != ks.proxy_ak and echo["service"] == "iam"
    assert echo["method"] == method
    if method == "GET":
        assert "Marker=a%20b%2Bc%2F%C3%BC" in echo["query"]  # "+" re-sent as "%20"


def test_native_mode_json_call_passes(ks: Setup) -> None:
    result: Any = json.loads(_sdk(ks).call_json("ListUsers", {"MaxItems": 3}))
    assert result["Echo"]["query"] == "Action=ListUsers&Version=2015-11-01"


def test_aws_account_on_the_same_proxy_works_natively(ks: Setup) -> None:
    before = ks.upstream.hits
    sts = boto3.client("sts", endpoint_url=ks.proxy_url, region_name="us-east-1",
                       aws_access_key_id=ks.aws_ak, aws_secret_access_key=ks.aws_sk)  # fmt: skip
    assert sts.get_caller_identity()["Arn"].endswith(":user/keybroker-real")
    assert ks.upstream.hits == before  # went to moto, not to the Kingsoft upstream
    assert json.loads(_sdk(ks).call("ListUsers", {}))["Echo"]["service"] == "iam"


def test_native_mode_wrong_secret_is_refused_before_upstream(ks: Setup) -> None:
    before = ks.upstream.hits
    with pytest.raises(KsyunSDKException) as err:
        _sdk(ks, sk="wrong-proxy-secret").call("ListUsers", {})
    assert "Proxy.ValidateCredentialErr" in str(err.value)
    assert ks.upstream.hits == before


def _signed_post(ak: str, sk: str, url: str, body: bytes) -> dict[str, str]:
    prepared = requests.Request(
        "POST", url, data=body, headers={"Content-Type": "application/x-www-form-urlencoded"}
    ).prepare()
    AWS4Auth(ak, sk, "cn-beijing-6", "iam")(prepared)
    return {k: v for k, v in prepared.headers.items() if k.lower() != "content-length"}


def test_native_mode_unknown_key_is_404(ks: Setup) -> None:
    headers = _signed_post("AKLTUNKNOWN", "x", ks.proxy_url + "/", b"Action=ListUsers")
    r = requests.post(ks.proxy_url + "/", data=b"Action=ListUsers", headers=headers, timeout=10)
    assert r.status_code == 404, r.text


def _platform(
    s: Setup, *, sk: str | None = None, body: bytes = b"MaxItems=1", tamper: bool = False
) -> requests.Response:
    headers = _signed_post(s.proxy_ak, sk or s.proxy_sk, ORIGIN, body)
    headers.update(
        {
            "X-Mcdn-Origin-Uri": ORIGIN,
            "X-Mcdn-Cloud-Account-Name": "ksyun-main",
            "X-Mcdn-Kept-Headers": "authorization,x-amz-date,x-amz-content-sha256,content-type",
            "X-Origin-Host": "iam.api.ksyun.com",
        }
    )
    sent = body + b"&x=1" if tamper else body
    return requests.post(s.proxy_url + "/anything", headers=headers, data=sent, timeout=10)


def test_keyproxy_mode_passes(ks: Setup) -> None:
    r = _platform(ks)
    assert r.status_code == 200, r.text
    echo = r.json()["Echo"]
    assert echo["query"] == "Action=ListUsers&Version=2015-11-01" and echo["service"] == "iam"


@pytest.mark.parametrize("case", ["wrong-secret", "tampered-body"])
def test_keyproxy_mode_refusals(ks: Setup, case: str) -> None:
    before = ks.upstream.hits
    r = _platform(ks, sk="nope" if case == "wrong-secret" else None, tamper=case != "wrong-secret")
    assert r.status_code == 401, r.text
    assert ks.upstream.hits == before


def test_malformed_authorization_is_400(ks: Setup) -> None:
    headers = {
        "Authorization": f"AWS4-HMAC-SHA256 Credential={ks.proxy_ak}/20240101/cn-beijing-6, "
        "SignedHeaders=host, Signature=00",
        "X-Amz-Date": "20240101T000000Z",
        "X-Mcdn-Origin-Uri": ORIGIN,
        "X-Mcdn-Cloud-Account-Name": "ksyun-main",
        "X-Mcdn-Kept-Headers": "authorization,x-amz-date",
    }
    before = ks.upstream.hits
    r = requests.get(ks.proxy_url, headers=headers, timeout=10)
    assert r.status_code == 400, r.text
    assert r.json()["ResponseMetadata"]["Error"]["Code"] == "Proxy.MalformedSignature"
    assert ks.upstream.hits == before
