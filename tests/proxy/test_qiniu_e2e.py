"""Qiniu through keybroker: the ``qiniu`` SDK signs with PROXY credentials (QBox and Qiniu
schemes); the upstream recomputes the signature with the REAL secret using the SDK's code.

Native mode works with ``Upstream`` set: neither scheme names the Qiniu host it is meant for.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
import requests
from qiniu import Auth, QiniuMacAuth, http
from qiniu.services.cdn.manager import CdnManager

from keybroker.credentials import Credential
from keybroker.secret import Secret
from keybroker.settings import Config, Endpoint
from tests import logscan
from tests.proxy.harness import proxy_running
from tests.signers.qiniu_upstream import UpstreamURL, qiniu_upstream

ORIGIN = "https://rs.qiniuapi.com"


@dataclass
class Qn:
    proxy_url: str
    upstream: UpstreamURL
    proxy_ak: str
    proxy_sk: str
    real_ak: str


@pytest.fixture(scope="module")
def qn() -> Iterator[Qn]:
    real_ak, real_sk = "QNREAL" + secrets.token_hex(8), secrets.token_urlsafe(30)
    proxy_ak, proxy_sk = "QNPROXY" + secrets.token_hex(8), secrets.token_urlsafe(30)
    logscan.register(real_sk, proxy_sk)
    with qiniu_upstream(real_ak, real_sk) as upstream:
        endpoint = Endpoint(
            cloud_account_name="qiniu-main",
            vendor="qiniu",
            proxy=Credential(proxy_ak, Secret(proxy_sk)),
            real=Credential(real_ak, Secret(real_sk)),
            upstream=str(upstream),
        )
        with proxy_running(Config(endpoints=[endpoint])) as (url, _):
            yield Qn(url, upstream, proxy_ak, proxy_sk, real_ak)


# --------------------------------------------------------------------------- native mode


def test_native_qbox_form_post(qn: Qn) -> None:
    auth = Auth(qn.proxy_ak, qn.proxy_sk)
    ret, info = http._post_with_auth(f"{qn.proxy_url}/batch", {"op": "/stat/YTpi"}, auth)
    assert info.status_code == 200, info.text_body
    assert ret["scheme"] == "QBox" and ret["access_key"] == qn.real_ak
    assert ret["body"] == "op=%2Fstat%2FYTpi"


def test_native_cdn_manager_json_post(qn: Qn) -> None:
    cdn = CdnManager(Auth(qn.proxy_ak, qn.proxy_sk))
    cdn.server = qn.proxy_url
    ret, info = cdn.refresh_urls(["http://cdn.example/a.txt"])
    assert info.status_code == 200, info.text_body
    assert ret["path"] == "/v2/tune/refresh"
    assert json.loads(ret["body"])["urls"] == ["http://cdn.example/a.txt"]


@pytest.mark.parametrize("dated", [True, False], ids=["dated", "undated"])
def test_native_qiniu_mac_get(qn: Qn, dated: bool) -> None:
    mac = QiniuMacAuth(qn.proxy_ak, qn.proxy_sk, disable_qiniu_timestamp_signature=not dated)
    ret, info = http._get_with_qiniu_mac(f"{qn.proxy_url}/v2/query", {"bucket": "b c"}, mac)
    assert info.status_code == 200, info.text_body
    assert ret["scheme"] == "Qiniu" and ret["query"] == "bucket=b+c"
    assert (ret["x_qiniu_date"] is not None) is dated


def test_native_qiniu_mac_json_post(qn: Qn) -> None:
    mac = QiniuMacAuth(qn.proxy_ak, qn.proxy_sk)
    body = {"mobile": "123", "params": {"code": "ü"}}
    ret, info = http._post_with_qiniu_mac_and_headers(
        f"{qn.proxy_url}/v1/message",
        json.dumps(body, ensure_ascii=False).encode(),
        mac,
        {"Content-Type": "application/json"},
    )
    assert info.status_code == 200, info.text_body
    assert json.loads(ret["body"]) == body


@pytest.mark.parametrize("case", ["wrong-secret", "wrong-access-key"])
def test_native_refusals_never_reach_upstream(qn: Qn, case: str) -> None:
    before = qn.upstream.hits
    ak, sk = (qn.proxy_ak, "wrong") if case == "wrong-secret" else ("QNunknown", qn.proxy_sk)
    _, info = http._post_with_auth(f"{qn.proxy_url}/batch", {"op": "x"}, Auth(ak, sk))
    assert info.status_code == (401 if case == "wrong-secret" else 404), info.text_body
    assert qn.upstream.hits == before


# --------------------------------------------------------------------------- key-proxy mode


def _platform_call(
    qn: Qn,
    scheme: str = "QBox",
    *,
    sk: str | None = None,
    ak: str | None = None,
    tamper: str | None = None,
    authorization: str | None = None,
) -> requests.Response:
    path_query = "/move/YTpi/YTpj?force=true"
    body = "op=%2Fstat%2FYTpi"
    form = "application/x-www-form-urlencoded"
    url = ORIGIN + path_query
    if scheme == "QBox":
        token = Auth(ak or qn.proxy_ak, sk or qn.proxy_sk).token_of_request(url, body, form)
        headers = {"Authorization": f"QBox {token}"}
    else:
        mac = QiniuMacAuth(ak or qn.proxy_ak, sk or qn.proxy_sk)
        headers = {"X-Qiniu-Date": datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")}
        token = mac.token_of_request("POST", "rs.qiniuapi.com", url,
                                     mac.qiniu_headers(headers), form, body)  # fmt: skip
        headers["Authorization"] = f"Qiniu {token}"
    if authorization is not None:
        headers["Authorization"] = authorization
    origin = ORIGIN + ("/move/YTpi/YTpk?force=true" if tamper == "query" else path_query)
    headers.update(
        {
            "Content-Type": form,
            "X-Mcdn-Origin-Uri": origin,
            "X-Mcdn-Cloud-Account-Name": "qiniu-main",
            "X-Mcdn-Kept-Headers": "authorization,content-type,x-qiniu-date",
            "X-Origin-Host": "rs.qiniuapi.com",
        }
    )
    sent = body + "&op=x" if tamper == "body" else body
    return requests.post(qn.proxy_url + "/anything", headers=headers, data=sent, timeout=10)


@pytest.mark.parametrize("scheme", ["QBox", "Qiniu"])
def test_keyproxy_mode_passes(qn: Qn, scheme: str) -> None:
    r = _platform_call(qn, scheme)
    assert r.status_code == 200, r.text
    echo: dict[str, Any] = r.json()
    assert echo["scheme"] == scheme and echo["access_key"] == qn.real_ak
    assert echo["path"] == "/move/YTpi/YTpj" and echo["query"] == "force=true"
    assert "X-Mcdn-Proxy-Version" in r.headers


@pytest.mark.parametrize(
    ("case", "status", "code"),
    [
        ("wrong-secret", 401, "Proxy.ValidateCredentialErr"),
        ("wrong-access-key", 401, "Proxy.ValidateCredentialErr"),
        ("tampered-body", 401, "Proxy.ValidateCredentialErr"),
        ("tampered-query", 401, "Proxy.ValidateCredentialErr"),
        ("malformed", 400, "Proxy.MalformedSignature"),
    ],
)
@pytest.mark.parametrize("scheme", ["QBox", "Qiniu"])
def test_keyproxy_mode_refusals(qn: Qn, scheme: str, case: str, status: int, code: str) -> None:
    before = qn.upstream.hits
    kwargs: dict[str, Any] = {
        "wrong-secret": {"sk": "nope"},
        "wrong-access-key": {"ak": "QNother"},
        "tampered-body": {"tamper": "body"},
        "tampered-query": {"tamper": "query"},
        "malformed": {"authorization": f"{scheme} {qn.proxy_ak}"},
    }[case]
    r = _platform_call(qn, scheme, **kwargs)
    assert r.status_code == status, r.text
    assert r.json()["ResponseMetadata"]["Error"]["Code"] == code
    assert qn.upstream.hits == before
