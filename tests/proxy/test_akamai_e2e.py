"""Akamai through keybroker: edgegrid-python's EdgeGridAuth signs with PROXY credentials; the
upstream recomputes the signature with edgegrid-python and the REAL credential."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests
from akamai.edgegrid import EdgeGridAuth

from keybroker.credentials import Credential
from keybroker.secret import Secret
from keybroker.settings import Config, Endpoint
from tests import logscan
from tests.proxy.harness import proxy_running
from tests.signers.akamai_upstream import UpstreamURL, akamai_upstream

ORIGIN_HOST = "akab-origin0001.luna.akamaiapis.net"


def _cred(client_token: str, access_token: str, client_secret: str) -> Credential:
    return Credential(
        "",
        Secret(""),
        access_token=Secret(access_token),
        client_token=Secret(client_token),
        client_secret=Secret(client_secret),
    )


@dataclass
class Akamai:
    proxy_url: str
    upstream: UpstreamURL
    proxy: dict[str, str]

    def auth(self, **override: str) -> EdgeGridAuth:
        return EdgeGridAuth(**{**self.proxy, **override})


@pytest.fixture(scope="module")
def akamai() -> Iterator[Akamai]:
    real = {
        "client_token": "akab-real-ct-" + secrets.token_hex(6),
        "access_token": "akab-real-at-" + secrets.token_hex(6),
        "client_secret": secrets.token_urlsafe(32),
    }
    proxy = {
        "client_token": "akab-proxy-ct-" + secrets.token_hex(6),
        "access_token": "akab-proxy-at-" + secrets.token_hex(6),
        "client_secret": secrets.token_urlsafe(32),
    }
    logscan.register(*real.values(), proxy["client_secret"])
    with akamai_upstream(**real) as upstream:
        cfg = Config(
            endpoints=[
                Endpoint(
                    cloud_account_name="akamai-main",
                    vendor="akamai",
                    proxy=_cred(**proxy),
                    real=_cred(**real),
                    upstream=str(upstream),
                ),
                Endpoint(  # no Upstream: natively addressed requests need an Akamai Host
                    cloud_account_name="akamai-no-upstream",
                    vendor="akamai",
                    proxy=_cred("akab-second-ct", "akab-second-at", proxy["client_secret"]),
                    real=_cred(**real),
                ),
            ]
        )
        with proxy_running(cfg) as (url, _):
            yield Akamai(url, upstream, proxy)


def _error_code(r: requests.Response) -> str:
    body: Any = r.json()
    return str(body["ResponseMetadata"]["Error"]["Code"])


# --------------------------------------------------------------------------- native mode


def test_native_get_passes(akamai: Akamai) -> None:
    with requests.Session() as s:
        s.auth = akamai.auth()
        r = s.get(akamai.proxy_url + "/papi/v1/groups", params={"contractId": "ctr 1"}, timeout=10)
    assert r.status_code == 200, r.text
    echo = r.json()
    assert echo["path"] == "/papi/v1/groups" and echo["query"] == "contractId=ctr+1"
    assert echo["client_token"].startswith("akab-real-ct-")


def test_native_post_body_passes(akamai: Akamai) -> None:
    body = b'{"objects": ["https://www.example.com/"]}'
    with requests.Session() as s:
        s.auth = akamai.auth()
        r = s.post(
            akamai.proxy_url + "/ccu/v3/invalidate/url/production",
            data=body,
            headers={"Content-Type": "application/json"},
            timeout=10,
        )
    assert r.status_code == 200, r.text
    assert r.json()["body_sha256"] == hashlib.sha256(body).hexdigest()


def test_native_wrong_secret_is_401_and_never_reaches_upstream(akamai: Akamai) -> None:
    before = akamai.upstream.hits
    with requests.Session() as s:
        s.auth = akamai.auth(client_secret="wrong-secret")
        r = s.get(akamai.proxy_url + "/papi/v1/groups", timeout=10)
    assert r.status_code == 401, r.text
    assert akamai.upstream.hits == before


@pytest.mark.parametrize("field", ["access_token", "client_token"])
def test_native_wrong_token(akamai: Akamai, field: str) -> None:
    before = akamai.upstream.hits
    with requests.Session() as s:
        s.auth = akamai.auth(**{field: "akab-unknown"})
        r = s.get(akamai.proxy_url + "/papi/v1/groups", timeout=10)
    assert r.status_code == (401 if field == "access_token" else 404), r.text
    assert akamai.upstream.hits == before


def test_native_without_upstream_needs_an_akamai_host(akamai: Akamai) -> None:
    """The host is signed: a client that signed for the proxy's own address cannot be
    forwarded anywhere without an Upstream (and nothing is sent)."""
    before = akamai.upstream.hits
    with requests.Session() as s:
        s.auth = akamai.auth(client_token="akab-second-ct", access_token="akab-second-at")
        r = s.get(akamai.proxy_url + "/papi/v1/groups", timeout=10)
    assert r.status_code == 400, r.text
    assert "Upstream" in r.json()["ResponseMetadata"]["Error"]["Message"]
    assert akamai.upstream.hits == before


def test_malformed_authorization_is_400(akamai: Akamai) -> None:
    before = akamai.upstream.hits
    r = requests.get(
        akamai.proxy_url + "/x",
        timeout=10,
        headers={"Authorization": "EG1-HMAC-SHA256 client_token=a;signature=x"},
    )
    assert r.status_code == 400, r.text
    assert _error_code(r) == "Proxy.MalformedSignature"
    assert akamai.upstream.hits == before


# --------------------------------------------------------------------------- key-proxy mode


def _platform_call(
    a: Akamai,
    *,
    body: bytes = b'{"objects": [1]}',
    secret: str | None = None,
    tamper: str = "",
) -> requests.Response:
    origin = f"https://{ORIGIN_HOST}/ccu/v3/delete/cpcode/production?x=1"
    prepared = requests.Request(
        "POST",
        origin,
        data=body,
        headers={"Content-Type": "application/json"},
        auth=a.auth(**({"client_secret": secret} if secret else {})),
    ).prepare()
    headers = {
        "Authorization": prepared.headers["Authorization"],
        "Content-Type": "application/json",
        "X-Mcdn-Origin-Uri": origin.replace("x=1", "x=2") if tamper == "query" else origin,
        "X-Mcdn-Cloud-Account-Name": "akamai-main",
        "X-Mcdn-Kept-Headers": "authorization,content-type",
        "X-Origin-Host": ORIGIN_HOST,
    }
    sent = body + b" " if tamper == "body" else body
    return requests.post(a.proxy_url + "/ignored", headers=headers, data=sent, timeout=10)


def test_keyproxy_mode_passes(akamai: Akamai) -> None:
    r = _platform_call(akamai)
    assert r.status_code == 200, r.text
    echo = r.json()
    assert (echo["path"], echo["query"]) == ("/ccu/v3/delete/cpcode/production", "x=1")
    assert echo["body_sha256"] == hashlib.sha256(b'{"objects": [1]}').hexdigest()


@pytest.mark.parametrize("case", ["wrong-secret", "body", "query"])
def test_keyproxy_mode_refusals(akamai: Akamai, case: str) -> None:
    before = akamai.upstream.hits
    if case == "wrong-secret":
        r = _platform_call(akamai, secret="not-the-proxy-secret")
    else:
        r = _platform_call(akamai, tamper=case)
    assert r.status_code == 401, r.text
    assert _error_code(r) == "Proxy.ValidateCredentialErr"
    assert akamai.upstream.hits == before


def test_keyproxy_yaml_config_keys_work(akamai: Akamai) -> None:
    """key-proxy's ClientToken/AccessToken/ClientSecret keys, read from YAML verbatim."""
    from keybroker.config.loader import loads

    secret = secrets.token_urlsafe(24)
    logscan.register(secret)
    text = f"""
Endpoints:
  - CloudAccountName: from-yaml
    Vendor: akamai
    Upstream: "{akamai.upstream}"
    Credentials:
      Proxy: {{ClientToken: akab-yaml-ct, AccessToken: akab-yaml-at, ClientSecret: "{secret}"}}
      Real: {{ClientToken: akab-yaml-real, AccessToken: akab-yaml-real-at, ClientSecret: rcsyaml}}
"""
    with proxy_running(loads(text)) as (url, _), requests.Session() as s:
        s.auth = EdgeGridAuth("akab-yaml-ct", secret, "akab-yaml-at")
        r = s.get(url + "/papi/v1/groups", timeout=10)
    # the upstream holds another real credential: it refuses, but only after keybroker
    # verified the proxy signature and re-signed with the YAML's real client token
    assert r.status_code == 401, r.text
    assert "ResponseMetadata" not in r.json() and r.json()["title"] == "Not authorized"
