"""Wangsu through keybroker, both schemes, to an upstream that checks the REAL credential.

* AK/SK (``CNC-HMAC-SHA256``): ``wangsu-sdk-python``'s own signer makes the requests with the
  PROXY key; the upstream recomputes with the SDK's ``AkSkAuth.get_signature``.
* API-key (Basic over the date): no installable SDK signs it, so requests are made and checked
  by the documentation-based reference implementation of ``tests/signers/wangsu_upstream.py``.
  That scheme signs only the date, so a changed body or query cannot be detected; what the
  proxy adds is the clock-skew window: a stale or future date is refused.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from keybroker.credentials import Credential
from keybroker.secret import Secret
from keybroker.settings import Config, Endpoint
from tests import logscan
from tests.proxy.harness import proxy_running
from tests.signers.wangsu_upstream import (
    UpstreamURL,
    docs_authorization,
    docs_date,
    sdk_aksk_headers,
    wangsu_upstream,
)


@dataclass
class Ws:
    proxy_url: str
    upstream: UpstreamURL
    proxy_user: str
    proxy_key: str


@pytest.fixture(scope="module")
def ws() -> Iterator[Ws]:
    real_user, real_key = "wsreal" + secrets.token_hex(4), secrets.token_urlsafe(24)
    proxy_user, proxy_key = "wsproxy" + secrets.token_hex(4), secrets.token_urlsafe(24)
    logscan.register(real_key, proxy_key)
    with wangsu_upstream(real_user, real_key) as upstream:
        endpoint = Endpoint(
            cloud_account_name="wangsu-main",
            vendor="wangsu",
            proxy=Credential(proxy_user, Secret(proxy_key)),
            real=Credential(real_user, Secret(real_key)),
            upstream=str(upstream),
        )
        with proxy_running(Config(endpoints=[endpoint])) as (url, _):
            yield Ws(url, upstream, proxy_user, proxy_key)


def _headers(
    ws: Ws,
    *,
    user: str | None = None,
    key: str | None = None,
    when: datetime | None = None,
    algorithm: str = "sha1",
    date_header: str = "Date",
) -> dict[str, str]:
    date = docs_date(when)
    auth = docs_authorization(user or ws.proxy_user, key or ws.proxy_key, date, algorithm)
    return {date_header: date, "Authorization": auth, "Accept": "application/json"}


# --------------------------------------------------------------------------- native mode


@pytest.mark.parametrize("algorithm", ["sha1", "sha256"])
@pytest.mark.parametrize("date_header", ["Date", "x-cnc-date"])
def test_native_call_passes(ws: Ws, algorithm: str, date_header: str) -> None:
    headers = _headers(ws, algorithm=algorithm, date_header=date_header)
    headers["Content-Type"] = "application/json"
    r = requests.post(
        f"{ws.proxy_url}/api/report/domainbandwidth?x=1",
        headers=headers,
        data=b'{"domain":"a.example"}',
        timeout=10,
    )
    assert r.status_code == 200, r.text
    echo: dict[str, Any] = r.json()
    assert echo["algorithm"] == algorithm and echo["path"] == "/api/report/domainbandwidth"
    assert echo["body"] == '{"domain":"a.example"}'


@pytest.mark.parametrize(
    ("kwargs", "status"),
    [
        ({"key": "wrong-key"}, 401),
        ({"user": "nobody"}, 404),
        ({"when": datetime.now(UTC) - timedelta(hours=2)}, 401),
        ({"when": datetime.now(UTC) + timedelta(hours=2)}, 401),
    ],
    ids=["wrong-secret", "wrong-user", "stale-date", "future-date"],
)
def test_native_refusals_never_reach_upstream(ws: Ws, kwargs: dict[str, Any], status: int) -> None:
    before = ws.upstream.hits
    r = requests.get(f"{ws.proxy_url}/api/domain", headers=_headers(ws, **kwargs), timeout=10)
    assert r.status_code == status, r.text
    assert ws.upstream.hits == before


# --------------------------------------------------------------------------- key-proxy mode


def _platform_call(ws: Ws, headers: dict[str, str]) -> requests.Response:
    headers = {
        **headers,
        "X-Mcdn-Origin-Uri": "https://open.chinanetcenter.com/api/domain?page=1",
        "X-Mcdn-Cloud-Account-Name": "wangsu-main",
        "X-Mcdn-Kept-Headers": "authorization,date,x-cnc-date,accept",
        "X-Origin-Host": "open.chinanetcenter.com",
    }
    return requests.get(ws.proxy_url + "/ignored", headers=headers, timeout=10)


def test_keyproxy_mode_passes(ws: Ws) -> None:
    r = _platform_call(ws, _headers(ws))
    assert r.status_code == 200, r.text
    assert r.json()["path"] == "/api/domain" and r.json()["query"] == "page=1"
    assert "X-Mcdn-Proxy-Version" in r.headers


@pytest.mark.parametrize(
    ("kwargs", "status", "code"),
    [
        ({"key": "wrong-key"}, 401, "Proxy.ValidateCredentialErr"),
        ({"user": "nobody"}, 401, "Proxy.ValidateCredentialErr"),
        ({"when": datetime.now(UTC) - timedelta(hours=2)}, 401, "Proxy.RequestExpired"),
        ({"garble": True}, 400, "Proxy.MalformedSignature"),
    ],
    ids=["wrong-secret", "wrong-user", "stale-date", "malformed"],
)
def test_keyproxy_mode_refusals(ws: Ws, kwargs: dict[str, Any], status: int, code: str) -> None:
    before = ws.upstream.hits
    garble = kwargs.pop("garble", False)
    headers = _headers(ws, **kwargs)
    if garble:
        headers["Authorization"] = "Basic not-base64!"
    r = _platform_call(ws, headers)
    assert r.status_code == status, r.text
    assert r.json()["ResponseMetadata"]["Error"]["Code"] == code
    assert ws.upstream.hits == before


# --------------------------------------------------------------------------- AK/SK scheme


def _aksk(
    ws: Ws,
    method: str,
    uri: str,
    host: str,
    body: str | None = None,
    *,
    sk: str | None = None,
    ak: str | None = None,
    timestamp: int | None = None,
) -> dict[str, str]:
    headers = sdk_aksk_headers(
        method, uri, host, body, ak or ws.proxy_user, sk or ws.proxy_key, timestamp
    )
    headers.pop("Host")  # requests sends the Host of the URL, which is what was signed
    return headers


@pytest.mark.parametrize(
    ("method", "uri", "body"),
    [
        ("GET", "/api/v1/domain?name=a%20b", None),
        ("POST", "/api/v1/refresh", '{"u":["x"]}'),
        ("PUT", "/api/v1/config/1", "{}"),
        ("DELETE", "/api/v1/d/2", None),
    ],
)
def test_native_aksk_sdk_call_passes(ws: Ws, method: str, uri: str, body: str | None) -> None:
    host = ws.proxy_url.removeprefix("http://")
    headers = _aksk(ws, method, uri, host, body)
    r = requests.request(method, ws.proxy_url + uri, headers=headers, data=body, timeout=10)
    assert r.status_code == 200, r.text
    assert r.json()["algorithm"] == "CNC-HMAC-SHA256"
    assert r.json()["path"] == uri.partition("?")[0]


@pytest.mark.parametrize(
    ("kwargs", "status"),
    [
        ({"sk": "wrong"}, 401),
        ({"ak": "nobody"}, 404),
        ({"timestamp": 1_000_000_000}, 401),
        ({"tamper": True}, 401),
    ],
    ids=["wrong-secret", "wrong-key", "stale", "tampered-body"],
)
def test_native_aksk_refusals(ws: Ws, kwargs: dict[str, Any], status: int) -> None:
    before = ws.upstream.hits
    tamper = kwargs.pop("tamper", False)
    host = ws.proxy_url.removeprefix("http://")
    headers = _aksk(ws, "POST", "/api/v1/refresh", host, '{"a":1}', **kwargs)
    body = '{"a":2}' if tamper else '{"a":1}'
    r = requests.post(ws.proxy_url + "/api/v1/refresh", headers=headers, data=body, timeout=10)
    assert r.status_code == status, r.text
    assert ws.upstream.hits == before


@pytest.mark.parametrize("case", ["ok", "wrong-secret", "tampered-query"])
def test_keyproxy_aksk(ws: Ws, case: str) -> None:
    before = ws.upstream.hits
    headers = _aksk(
        ws,
        "GET",
        "/api/v1/domain?page=1",
        "open.chinanetcenter.com",
        sk="wrong" if case == "wrong-secret" else None,
    )
    query = "page=2" if case == "tampered-query" else "page=1"
    headers.update(
        {
            "X-Mcdn-Origin-Uri": f"https://open.chinanetcenter.com/api/v1/domain?{query}",
            "X-Mcdn-Cloud-Account-Name": "wangsu-main",
            "X-Mcdn-Kept-Headers": "authorization,x-cnc-accesskey,x-cnc-timestamp,"
            "x-cnc-auth-method,content-type,accept",
        }
    )
    r = requests.get(ws.proxy_url + "/ignored", headers=headers, timeout=10)
    if case == "ok":
        assert r.status_code == 200, r.text
        assert r.json()["query"] == "page=1"
    else:
        assert r.status_code == 401, r.text
        assert r.json()["ResponseMetadata"]["Error"]["Code"] == "Proxy.ValidateCredentialErr"
        assert ws.upstream.hits == before
