"""UCloud through keybroker: the ``ucloud-sdk-python3`` client signs with PROXY keys; the
upstream recomputes ``Signature`` with the REAL private key using the SDK's algorithm.

The parameters (and so the credential) travel in the form body: keybroker reads the body,
verifies, and rewrites ``PublicKey``/``Signature`` inside it.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import pytest
import requests
from ucloud.client import Client
from ucloud.core import exc
from ucloud.core.auth import Credential as SdkCredential
from ucloud.core.typesystem import encoder

from keybroker.credentials import Credential
from keybroker.secret import Secret
from keybroker.settings import Config, Endpoint
from tests import logscan
from tests.proxy.harness import proxy_running
from tests.signers.ucloud_upstream import UpstreamURL, ucloud_upstream


@dataclass
class UC:
    proxy_url: str
    upstream: UpstreamURL
    proxy_pk: str
    proxy_private: str
    real_pk: str


@pytest.fixture(scope="module")
def uc() -> Iterator[UC]:
    real_pk, real_private = "UCREAL" + secrets.token_hex(8), secrets.token_hex(20)
    proxy_pk, proxy_private = "UCPROXY" + secrets.token_hex(8), secrets.token_hex(20)
    logscan.register(real_private, proxy_private)
    with ucloud_upstream(real_pk, real_private) as upstream:
        endpoint = Endpoint(
            cloud_account_name="ucloud-main",
            vendor="ucloud",
            proxy=Credential(proxy_pk, Secret(proxy_private)),
            real=Credential(real_pk, Secret(real_private)),
            upstream=str(upstream),
        )
        with proxy_running(Config(endpoints=[endpoint])) as (url, _):
            yield UC(url, upstream, proxy_pk, proxy_private, real_pk)


def _client(uc: UC, *, pk: str | None = None, private: str | None = None) -> Client:
    return Client(
        {
            "region": "cn-bj2",
            "public_key": pk or uc.proxy_pk,
            "private_key": private or uc.proxy_private,
            "base_url": uc.proxy_url,
            "max_retries": 0,
        }
    )


# --------------------------------------------------------------------------- native mode


def test_native_sdk_call_passes(uc: UC) -> None:
    resp: dict[str, Any] = _client(uc).invoke(
        "DescribeUHostInstance", {"Limit": 10, "UHostIds": ["uhost-1", "uhost-2"], "Tag": "ü &"}
    )
    assert resp["Action"] == "DescribeUHostInstanceResponse"
    params = resp["Echo"]["params"]
    assert params["PublicKey"] == uc.real_pk
    assert params["UHostIds.1"] == "uhost-2" and params["Tag"] == "ü &"
    assert resp["Echo"]["in_body"] is True


@pytest.mark.parametrize(("case", "status"), [("wrong-secret", 401), ("wrong-key", 404)])
def test_native_refusals_never_reach_upstream(uc: UC, case: str, status: int) -> None:
    before = uc.upstream.hits
    client = _client(uc, private="0" * 40) if case == "wrong-secret" else _client(uc, pk="UCnobody")
    with pytest.raises(exc.UCloudException) as err:
        client.invoke("DescribeUHostInstance", {"Limit": 1})
    assert str(status) in str(err.value)
    assert uc.upstream.hits == before


def test_native_query_get_passes(uc: UC) -> None:
    flat = encoder.encode({"Action": "GetProjectList", "Region": "cn-bj2"})
    flat["Signature"] = SdkCredential(uc.proxy_pk, uc.proxy_private).verify_ac(flat)
    r = requests.get(f"{uc.proxy_url}/?{urlencode(flat)}", timeout=10)
    assert r.status_code == 200, r.text
    assert r.json()["Echo"]["params"]["PublicKey"] == uc.real_pk


# --------------------------------------------------------------------------- key-proxy mode


def _platform_call(
    uc: UC,
    *,
    private: str | None = None,
    pk: str | None = None,
    tamper: str | None = None,
    as_json: bool = False,
    body_override: bytes | None = None,
) -> requests.Response:
    params = {"Action": "DescribeUHostInstance", "Region": "cn-bj2", "Limit": 10}
    flat = encoder.encode(params)
    flat["Signature"] = SdkCredential(pk or uc.proxy_pk, private or uc.proxy_private).verify_ac(
        flat
    )
    if tamper == "body":
        flat["Limit"] = "100"
    ctype = "application/json" if as_json else "application/x-www-form-urlencoded"
    body = json.dumps(flat).encode() if as_json else urlencode(flat).encode()
    if body_override is not None:
        body = body_override
    origin = "https://api.ucloud.cn/" + ("?Limit=1" if tamper == "query" else "")
    headers = {
        "Content-Type": ctype,
        "X-Mcdn-Origin-Uri": origin,
        "X-Mcdn-Cloud-Account-Name": "ucloud-main",
        "X-Mcdn-Kept-Headers": "content-type",
        "X-Origin-Host": "api.ucloud.cn",
    }
    return requests.post(uc.proxy_url + "/x", headers=headers, data=body, timeout=10)


@pytest.mark.parametrize("as_json", [False, True], ids=["form", "json"])
def test_keyproxy_mode_passes(uc: UC, as_json: bool) -> None:
    r = _platform_call(uc, as_json=as_json)
    assert r.status_code == 200, r.text
    assert r.json()["Echo"]["params"]["PublicKey"] == uc.real_pk
    assert "X-Mcdn-Proxy-Version" in r.headers


@pytest.mark.parametrize(
    ("kwargs", "status", "code"),
    [
        ({"private": "f" * 40}, 401, "Proxy.ValidateCredentialErr"),
        ({"pk": "UCother"}, 401, "Proxy.ValidateCredentialErr"),
        ({"tamper": "body"}, 401, "Proxy.ValidateCredentialErr"),
        ({"tamper": "query"}, 400, "Proxy.MalformedSignature"),
        ({"body_override": b"PublicKey=x&Signature=nothex"}, 400, "Proxy.MalformedSignature"),
        ({"body_override": b"{broken", "as_json": True}, 400, "Proxy.MalformedSignature"),
    ],
    ids=["wrong-secret", "wrong-key", "tampered-body", "unsigned-query", "garbled", "bad-json"],
)
def test_keyproxy_mode_refusals(uc: UC, kwargs: dict[str, Any], status: int, code: str) -> None:
    before = uc.upstream.hits
    r = _platform_call(uc, **kwargs)
    assert r.status_code == status, r.text
    assert r.json()["ResponseMetadata"]["Error"]["Code"] == code
    assert uc.upstream.hits == before
