"""Huawei Cloud through keybroker: the huaweicloudsdkcore client (native mode) or a platform
signing with the SDK's signer (key-proxy mode) uses PROXY credentials; the upstream recomputes
the signature with the REAL secret using the SDK's own algorithm."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
import requests
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException

from keybroker.credentials import Credential
from keybroker.secret import Secret
from keybroker.settings import Config, Endpoint
from tests import logscan
from tests.proxy.harness import proxy_running
from tests.signers.huawei_upstream import PROJECT, UpstreamURL, huawei_upstream, sdk_sign
from tests.signers.test_huawei_upstream import sdk_call, sdk_client

ORIGIN_HOST = "ecs.cn-north-4.myhuaweicloud.com"
ORIGIN_PATH = f"/v1/{PROJECT}/cloudservers"


@dataclass
class Hw:
    proxy_url: str
    upstream: UpstreamURL
    proxy: Credential
    real: Credential


@pytest.fixture(scope="module")
def hw() -> Iterator[Hw]:
    real = Credential("HPUAREAL" + secrets.token_hex(6).upper(), Secret(secrets.token_urlsafe(30)),
                      Secret(secrets.token_urlsafe(40)))  # fmt: skip
    proxy = Credential(
        "HPUAPROXY" + secrets.token_hex(6).upper(), Secret(secrets.token_urlsafe(30))
    )
    logscan.register(*real.secrets(), *proxy.secrets())
    token = real.access_token.reveal() if real.access_token else None
    with huawei_upstream(real.access_key, real.secret_key.reveal(), token) as upstream:
        endpoint = Endpoint(
            cloud_account_name="hw-main",
            vendor="huawei",
            proxy=proxy,
            real=real,
            upstream=str(upstream),
        )
        with proxy_running(Config(endpoints=[endpoint])) as (url, _):
            yield Hw(url, upstream, proxy, real)


def _with_secret(cred: Credential, secret: str) -> Credential:
    return Credential(cred.access_key, Secret(secret))


# --------------------------------------------------------------------------- native mode


def test_native_mode_sdk_call_passes(hw: Hw) -> None:
    echo = sdk_call(sdk_client(hw.proxy_url, hw.proxy))
    assert echo["access_key"] == hw.real.access_key
    assert echo["query"] == "limit=5&name=a%20b"
    assert echo["security_token"] == hw.real.access_token.reveal()  # type: ignore[union-attr]


def test_native_mode_get_and_form_calls_pass(hw: Hw) -> None:
    client = sdk_client(hw.proxy_url, hw.proxy)
    echo = sdk_call(client, "GET", body="", query=[("marker", "ü/1"), ("limit", 2)])
    assert echo["method"] == "GET"
    # A form body: the SDK signs UNSIGNED-PAYLOAD; the proxy streams it without buffering.
    form = {"headers": {"Content-Type": "application/x-www-form-urlencoded"}}
    echo = sdk_call(client, "POST", body={"a": "1", "b": "x y"}, **form)
    assert echo["body_sha256"] == hashlib.sha256(b"a=1&b=x+y").hexdigest()


@pytest.mark.parametrize("case", ["wrong-secret", "wrong-access-key"])
def test_native_mode_refusals_never_reach_upstream(hw: Hw, case: str) -> None:
    before = hw.upstream.hits
    if case == "wrong-secret":
        cred, status = _with_secret(hw.proxy, "wrong-proxy-secret"), 401
    else:
        cred, status = Credential("HPUAUNKNOWN", hw.proxy.secret_key), 404
    with pytest.raises(ClientRequestException) as err:
        sdk_call(sdk_client(hw.proxy_url, cred))
    assert err.value.status_code == status
    assert hw.upstream.hits == before


# --------------------------------------------------------------------------- key-proxy mode


def _platform_call(
    hw: Hw,
    *,
    cred: Credential | None = None,
    body: bytes = b'{"server":{"name":"n"}}',
    tamper_body: bool = False,
    tamper_query: bool = False,
    authorization: str | None = None,
    when: datetime | None = None,
) -> requests.Response:
    query = [("limit", "10"), ("name", "a b")]
    signed, _ = sdk_sign(cred or hw.proxy, host=ORIGIN_HOST, path=ORIGIN_PATH, query=query,
                         body=body.decode(), when=when)  # fmt: skip
    headers = {k: v for k, v in signed.headers.items() if k.lower() != "host"}
    if authorization is not None:
        headers["Authorization"] = authorization
    kept = ",".join(k.lower() for k in headers)
    sent_query = signed.query.replace("10", "11") if tamper_query else signed.query
    headers.update(
        {
            "X-Mcdn-Origin-Uri": f"https://{ORIGIN_HOST}{signed.path}?{sent_query}",
            "X-Mcdn-Cloud-Account-Name": "hw-main",
            "X-Mcdn-Kept-Headers": kept,
            "X-Origin-Host": ORIGIN_HOST,
            "X-Mcdn-Vendor-Name": "huawei",
        }
    )
    sent = body + b" " if tamper_body else body
    return requests.post(hw.proxy_url + "/ignored", headers=headers, data=sent, timeout=10)


def test_keyproxy_mode_passes(hw: Hw) -> None:
    r = _platform_call(hw)
    assert r.status_code == 200, r.text
    echo = r.json()
    assert echo["access_key"] == hw.real.access_key
    assert echo["path"] == ORIGIN_PATH
    assert echo["body_sha256"] == hashlib.sha256(b'{"server":{"name":"n"}}').hexdigest()
    assert "X-Mcdn-Proxy-Version" in r.headers


@pytest.mark.parametrize(
    ("case", "status", "code"),
    [
        ("wrong-secret", 401, "Proxy.ValidateCredentialErr"),
        ("wrong-access-key", 401, "Proxy.ValidateCredentialErr"),
        ("tampered-body", 401, "Proxy.ValidateCredentialErr"),
        ("tampered-query", 401, "Proxy.ValidateCredentialErr"),
        ("too-old", 401, "Proxy.RequestExpired"),
        ("malformed", 400, "Proxy.MalformedSignature"),
        ("garbage", 400, "Proxy.MalformedSignature"),
    ],
)
def test_keyproxy_mode_refusals(hw: Hw, case: str, status: int, code: str) -> None:
    before = hw.upstream.hits
    options: dict[str, dict[str, object]] = {
        "wrong-secret": {"cred": _with_secret(hw.proxy, "nope")},
        "wrong-access-key": {"cred": Credential("HPUAOTHER", hw.proxy.secret_key)},
        "tampered-body": {"tamper_body": True},
        "tampered-query": {"tamper_query": True},
        "too-old": {"when": datetime.now(UTC) - timedelta(hours=2)},
        "malformed": {"authorization": "SDK-HMAC-SHA256 Access=AK, SignedHeaders=host"},
        "garbage": {"authorization": "SDK-HMAC-SHA256 ,,=,==;Signature=zz"},
    }
    r = _platform_call(hw, **options[case])  # type: ignore[arg-type]
    assert r.status_code == status, r.text
    assert r.json()["ResponseMetadata"]["Error"]["Code"] == code
    assert hw.upstream.hits == before
