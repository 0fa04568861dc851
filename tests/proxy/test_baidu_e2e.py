"""Baidu AI Cloud through keybroker: bce-python-sdk clients (native mode) or a platform signing
with the SDK's signer (key-proxy mode) use PROXY credentials; the upstream recomputes the
authentication string with the REAL secret using the SDK's own algorithm."""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import pytest
import requests
from baidubce.exception import BceHttpClientError
from baidubce.services.bos.bos_client import BosClient
from baidubce.services.vpc.vpc_client import VpcClient

from keybroker.credentials import Credential
from keybroker.secret import Secret
from keybroker.settings import Config, Endpoint
from tests import logscan
from tests.proxy.harness import proxy_running
from tests.signers.baidu_upstream import UpstreamURL, baidu_upstream, sdk_sign
from tests.signers.test_baidu_upstream import (
    SDK_LEAKS_SOCKETS,
    collect_leaked_sockets,
    sdk_config,
)

ORIGIN_HOST = "bcc.bj.baidubce.com"


@dataclass
class Bd:
    proxy_url: str
    upstream: UpstreamURL
    proxy: Credential
    real: Credential


@pytest.fixture(scope="module")
def bd() -> Iterator[Bd]:
    real = Credential("bcereal" + secrets.token_hex(8), Secret(secrets.token_urlsafe(30)),
                      Secret(secrets.token_urlsafe(40)))  # fmt: skip
    proxy = Credential("bceproxy" + secrets.token_hex(8), Secret(secrets.token_urlsafe(30)))
    logscan.register(*real.secrets(), *proxy.secrets())
    token = real.access_token.reveal() if real.access_token else None
    with baidu_upstream(real.access_key, real.secret_key.reveal(), token) as upstream:
        endpoint = Endpoint(
            cloud_account_name="bd-main",
            vendor="baidu",
            proxy=proxy,
            real=real,
            upstream=str(upstream),
        )
        with proxy_running(Config(endpoints=[endpoint])) as (url, _):
            yield Bd(url, upstream, proxy, real)


def _with_secret(cred: Credential, secret: str) -> Credential:
    return Credential(cred.access_key, Secret(secret))


# --------------------------------------------------------------------------- native mode


@SDK_LEAKS_SOCKETS
def test_native_mode_sdk_calls_pass(bd: Bd) -> None:
    vpc = VpcClient(sdk_config(bd.proxy_url, bd.proxy))
    vpc.create_vpc("n a", "192.168.0.0/16", client_token="c-1")
    echo = bd.upstream.echoes[-1]
    assert echo["access_key"] == bd.real.access_key
    assert echo["security_token"] == bd.real.access_token.reveal()  # type: ignore[union-attr]
    assert echo["query"] == "clientToken=c-1"
    vpc.list_vpcs(marker="m/1", max_keys=3)
    assert bd.upstream.echoes[-1]["method"] == "GET"
    # BOS signs Content-MD5: the proxy buffers the body and checks it.
    BosClient(sdk_config(bd.proxy_url, bd.proxy)).put_object_from_string(
        b"bkt", "d/ü.txt".encode(), "hi"
    )
    assert bd.upstream.echoes[-1]["body_sha256"] == hashlib.sha256(b"hi").hexdigest()
    collect_leaked_sockets()


@SDK_LEAKS_SOCKETS
def test_native_mode_presigned_url_passes(bd: Bd) -> None:
    config = sdk_config(bd.proxy_url, bd.proxy)
    url = BosClient(config).generate_pre_signed_url(b"bkt", b"a b.txt", expiration_in_seconds=60)
    r = requests.get(url.decode(), timeout=10)
    assert r.status_code == 200, r.text
    assert r.json()["path"] == "/bkt/a%20b.txt"
    assert r.json()["access_key"] == bd.real.access_key
    collect_leaked_sockets()


@SDK_LEAKS_SOCKETS
@pytest.mark.parametrize(
    ("case", "status", "code"),
    [("wrong-secret", 401, "Proxy.ValidateCredentialErr"),
     ("wrong-access-key", 404, "Proxy.CloudAccountNotFound")],
)  # fmt: skip
def test_native_mode_refusals_never_reach_upstream(
    bd: Bd, case: str, status: int, code: str
) -> None:
    before = bd.upstream.hits
    if case == "wrong-secret":
        cred = _with_secret(bd.proxy, "wrong-proxy-secret")
    else:
        cred = Credential("bceunknown", bd.proxy.secret_key)
    # The SDK refuses the answer; the status is checked on the same request sent by hand.
    with pytest.raises(BceHttpClientError):
        VpcClient(sdk_config(bd.proxy_url, cred)).list_vpcs(max_keys=1)
    signed, _ = sdk_sign(cred, method="GET", host=urlsplit(bd.proxy_url).netloc,
                         path="/v1/vpc", params={"maxKeys": "1"}, body="")  # fmt: skip
    url = f"{bd.proxy_url}{signed.path}?{signed.query}"
    r = requests.get(url, headers=dict(signed.headers), timeout=10)
    assert r.status_code == status, r.text
    assert code in r.text
    assert bd.upstream.hits == before
    collect_leaked_sockets()


# --------------------------------------------------------------------------- key-proxy mode


def _platform_call(
    bd: Bd,
    *,
    cred: Credential | None = None,
    body: bytes = b'{"name":"vpc-1"}',
    tamper_body: bytes | None = None,
    tamper_query: bool = False,
    authorization: str | None = None,
    when: datetime | None = None,
    expiration: int = 1800,
    md5: bool = False,
) -> requests.Response:
    extra = {"content-md5": base64.b64encode(hashlib.md5(body).digest()).decode()} if md5 else {}
    signed, _ = sdk_sign(cred or bd.proxy, host=ORIGIN_HOST, path="/v1/vpc",
                         params={"clientToken": "c 1"}, body=body.decode(), when=when,
                         expiration=expiration, headers=extra)  # fmt: skip
    headers = {k: v for k, v in signed.headers.items() if k.lower() != "host"}
    if authorization is not None:
        headers["Authorization"] = authorization
    kept = ",".join(k.lower() for k in headers)
    sent_query = signed.query.replace("c%201", "c%202") if tamper_query else signed.query
    headers.update(
        {
            "X-Mcdn-Origin-Uri": f"https://{ORIGIN_HOST}{signed.path}?{sent_query}",
            "X-Mcdn-Cloud-Account-Name": "bd-main",
            "X-Mcdn-Kept-Headers": kept,
            "X-Origin-Host": ORIGIN_HOST,
            "X-Mcdn-Vendor-Name": "baidu",
        }
    )
    sent = tamper_body if tamper_body is not None else body
    return requests.post(bd.proxy_url + "/ignored", headers=headers, data=sent, timeout=10)


def test_keyproxy_mode_passes(bd: Bd) -> None:
    for md5 in (False, True):
        r = _platform_call(bd, md5=md5)
        assert r.status_code == 200, r.text
        echo = r.json()
        assert echo["access_key"] == bd.real.access_key
        assert echo["path"] == "/v1/vpc" and echo["query"] == "clientToken=c%201"
        assert echo["body_sha256"] == hashlib.sha256(b'{"name":"vpc-1"}').hexdigest()


def test_keyproxy_mode_honours_the_signed_validity_period(bd: Bd) -> None:
    """The period is part of the signature: a day-long one is still good two hours later."""
    r = _platform_call(bd, when=datetime.now(UTC) - timedelta(hours=2), expiration=86400)
    assert r.status_code == 200, r.text


def test_unsigned_body_of_same_length_is_not_detected(bd: Bd) -> None:
    """A known limit of bce-auth-v1: without Content-MD5 (or x-bce-content-sha256) the body is
    not signed; only its length is (Content-Length is a default signed header)."""
    r = _platform_call(bd, tamper_body=b'{"name":"vpc-2"}')
    assert r.status_code == 200, r.text
    assert r.json()["body_sha256"] == hashlib.sha256(b'{"name":"vpc-2"}').hexdigest()


@pytest.mark.parametrize(
    ("case", "status", "code"),
    [
        ("wrong-secret", 401, "Proxy.ValidateCredentialErr"),
        ("wrong-access-key", 401, "Proxy.ValidateCredentialErr"),
        ("tampered-body-length", 401, "Proxy.ValidateCredentialErr"),
        ("tampered-body-md5", 401, "Proxy.ValidateCredentialErr"),
        ("tampered-query", 401, "Proxy.ValidateCredentialErr"),
        ("expired", 401, "Proxy.RequestExpired"),
        ("future", 401, "Proxy.RequestExpired"),
        ("malformed", 400, "Proxy.MalformedSignature"),
        ("never-expires", 400, "Proxy.MalformedSignature"),
    ],
)
def test_keyproxy_mode_refusals(bd: Bd, case: str, status: int, code: str) -> None:
    before = bd.upstream.hits
    options: dict[str, dict[str, object]] = {
        "wrong-secret": {"cred": _with_secret(bd.proxy, "nope")},
        "wrong-access-key": {"cred": Credential("bceother", bd.proxy.secret_key)},
        "tampered-body-length": {"tamper_body": b'{"name":"vpc-10"}'},
        "tampered-body-md5": {"tamper_body": b'{"name":"vpc-2"}', "md5": True},
        "tampered-query": {"tamper_query": True},
        "expired": {"when": datetime.now(UTC) - timedelta(hours=1)},
        "future": {"when": datetime.now(UTC) + timedelta(hours=1)},
        "malformed": {"authorization": "bce-auth-v1/ak/2024-01-01T00:00:00Z/1800/x"},
        "never-expires": {"authorization": f"bce-auth-v1/{bd.proxy.access_key}/"
                          f"2024-01-01T00:00:00Z/-1//{'a' * 64}"},
    }  # fmt: skip
    r = _platform_call(bd, **options[case])  # type: ignore[arg-type]
    assert r.status_code == status, r.text
    assert r.json()["ResponseMetadata"]["Error"]["Code"] == code
    assert bd.upstream.hits == before
