"""Baishan through keybroker: requests carrying the PROXY token (in the query, as documented,
or in a JSON body, as in the documentation's samples) reach an upstream that accepts only the
REAL token.  Baishan publishes no SDK: requests are built as its documentation shows.

A static token signs nothing, so a changed body or query cannot be detected (and a captured
token can be replayed at will); what is checked is the token itself.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import requests

from keybroker.credentials import Credential
from keybroker.secret import Secret
from keybroker.settings import Config, Endpoint
from tests import logscan
from tests.proxy.harness import proxy_running
from tests.signers.baishan_upstream import UpstreamURL, baishan_upstream, with_token


@dataclass
class Bs:
    proxy_url: str
    upstream: UpstreamURL
    proxy_token: str


@pytest.fixture(scope="module")
def bs() -> Iterator[Bs]:
    real_token, proxy_token = secrets.token_hex(16), secrets.token_hex(16)
    logscan.register(real_token, proxy_token)
    with baishan_upstream(real_token) as upstream:
        endpoint = Endpoint(
            cloud_account_name="baishan-main",
            vendor="baishan",
            proxy=Credential("", Secret(proxy_token)),
            real=Credential("", Secret(real_token)),
            upstream=str(upstream),
        )
        with proxy_running(Config(endpoints=[endpoint])) as (url, _):
            yield Bs(url, upstream, proxy_token)


# --------------------------------------------------------------------------- native mode


def test_native_query_token_is_not_logged(bs: Bs) -> None:
    """A natively addressed ``?token=`` must not reach any log.  The marker is not a configured
    token (so this run's secret scan stays meaningful); the request is refused with 404."""
    marker = "unregistered-marker-" + secrets.token_hex(8)
    r = requests.get(f"{bs.proxy_url}/v2/domain/list?token={marker}", timeout=10)
    assert r.status_code == 404, r.text
    assert marker not in logscan.ALL_LOG.read_text(encoding="utf-8", errors="replace")


def test_native_json_body_token_passes(bs: Bs) -> None:
    body = {"domains": "a.example", "config": ["referer"], "token": bs.proxy_token}
    r = requests.post(f"{bs.proxy_url}/v2/domain/config", json=body, timeout=10)
    assert r.status_code == 200, r.text
    sent = json.loads(r.json()["data"]["body"])
    assert sent["domains"] == "a.example" and sent["config"] == ["referer"]
    assert sent["token"] != bs.proxy_token


def test_native_unknown_token_is_404_and_never_forwarded(bs: Bs) -> None:
    before = bs.upstream.hits
    r = requests.get(f"{bs.proxy_url}/v2/domain/list?token=not-a-known-token", timeout=10)
    assert r.status_code == 404, r.text
    assert bs.upstream.hits == before


def test_native_no_credential_is_401(bs: Bs) -> None:
    before = bs.upstream.hits
    r = requests.get(f"{bs.proxy_url}/v2/domain/list?page=1", timeout=10)
    assert r.status_code == 401, r.text
    assert bs.upstream.hits == before


# --------------------------------------------------------------------------- key-proxy mode


def _platform_call(bs: Bs, query: str, body: bytes | None = None) -> requests.Response:
    headers = {
        "X-Mcdn-Origin-Uri": f"https://cdn.api.baishan.com/v2/domain/config?{query}",
        "X-Mcdn-Cloud-Account-Name": "baishan-main",
        "X-Mcdn-Kept-Headers": "content-type",
        "X-Origin-Host": "cdn.api.baishan.com",
    }
    if body is not None:
        headers["Content-Type"] = "application/json"
    return requests.post(bs.proxy_url + "/ignored", headers=headers, data=body, timeout=10)


def test_keyproxy_mode_passes(bs: Bs) -> None:
    r = _platform_call(bs, with_token([("domains", "a.example")], bs.proxy_token))
    assert r.status_code == 200, r.text
    assert r.json()["data"]["params"] == [["domains", "a.example"]]
    assert "X-Mcdn-Proxy-Version" in r.headers


def test_keyproxy_mode_json_body_passes(bs: Bs) -> None:
    body = json.dumps({"domains": "a.example", "token": bs.proxy_token}).encode()
    r = _platform_call(bs, "", body)
    assert r.status_code == 200, r.text


@pytest.mark.parametrize(
    ("query", "status", "code"),
    [
        ("token=wrong-token&domains=a", 401, "Proxy.ValidateCredentialErr"),
        ("domains=a", 400, "Proxy.MalformedSignature"),
        ("token=a&token=b", 400, "Proxy.MalformedSignature"),
    ],
    ids=["wrong-token", "no-token", "two-tokens"],
)
def test_keyproxy_mode_refusals(bs: Bs, query: str, status: int, code: str) -> None:
    before = bs.upstream.hits
    r = _platform_call(bs, query)
    assert r.status_code == status, r.text
    assert r.json()["ResponseMetadata"]["Error"]["Code"] == code
    assert bs.upstream.hits == before
