"""Over real sockets: the Baidu SDK's own clients and keybroker's re-signed requests against the
signature-checking upstream of ``baidu_upstream``."""

from __future__ import annotations

import gc
import hashlib
import http.client
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import pytest
from baidubce import protocol
from baidubce.auth.bce_credentials import BceCredentials
from baidubce.bce_client_configuration import BceClientConfiguration
from baidubce.exception import BceHttpClientError
from baidubce.services.bos.bos_client import BosClient
from baidubce.services.vpc.vpc_client import VpcClient

from keybroker.credentials import Credential
from keybroker.secret import Secret
from keybroker.signers.baidu import SIGNER
from keybroker.signers.base import SigningRequest
from tests.signers.baidu_upstream import UpstreamURL, baidu_upstream, sdk_sign

REAL = Credential("bcerealup", Secret("real-upstream-secret"))
REAL_TOKEN = Credential("bcerealup", Secret("real-upstream-secret"), Secret("bd-real-up-token"))
PROXY = Credential("bceproxyup", Secret("proxy-upstream-secret"))


def sdk_config(url: str, cred: Credential) -> BceClientConfiguration:
    """An SDK configuration for ``url`` (plain HTTP, no retries)."""
    from baidubce.retry.retry_policy import NoRetryPolicy

    token = cred.access_token.reveal_bytes() if cred.access_token else None
    return BceClientConfiguration(
        credentials=BceCredentials(cred.access_key.encode(), cred.secret_key.reveal_bytes()),
        endpoint=urlsplit(url).netloc.encode(),
        protocol=protocol.HTTP,
        security_token=token,
        retry_policy=NoRetryPolicy(),
    )


#: bce-python-sdk never closes its connection after a successful call (its send_request
#: returns without conn.close()); the socket is freed, with a ResourceWarning, when collected.
SDK_LEAKS_SOCKETS = pytest.mark.filterwarnings(
    "ignore::ResourceWarning", "ignore::pytest.PytestUnraisableExceptionWarning"
)


def collect_leaked_sockets() -> None:
    """Free the SDK's unclosed sockets now, inside the test that leaked them."""
    gc.collect()


def status_of(exc: BceHttpClientError) -> int:
    return int(exc.last_error.status_code)


@pytest.fixture(scope="module")
def upstream() -> Iterator[UpstreamURL]:
    with baidu_upstream(REAL.access_key, REAL.secret_key.reveal()) as url:
        yield url


def send(url: str, req: SigningRequest, body: bytes) -> tuple[int, dict[str, Any]]:
    conn = http.client.HTTPConnection(urlsplit(url).netloc, timeout=10)
    try:
        headers = {k: v for k, v in req.headers.items() if k.lower() != "host"}
        target = req.path + (f"?{req.query}" if req.query else "")
        conn.request(req.method, target, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


@SDK_LEAKS_SOCKETS
def test_sdk_clients_accepted_with_real_creds(upstream: UpstreamURL) -> None:
    VpcClient(sdk_config(upstream, REAL)).create_vpc("n a", "192.168.0.0/16", client_token="c1")
    BosClient(sdk_config(upstream, REAL)).put_object_from_string(b"bkt", b"d/a b.txt", "hello")
    collect_leaked_sockets()
    assert upstream.echoes[-2]["query"] == "clientToken=c1"
    assert upstream.echoes[-1]["path"] == "/bkt/d/a%20b.txt"


def test_sdk_client_refused_with_other_creds(upstream: UpstreamURL) -> None:
    with pytest.raises(BceHttpClientError) as exc:
        VpcClient(sdk_config(upstream, PROXY)).list_vpcs(max_keys=1)
    assert status_of(exc.value) == 403


def test_resigned_request_reaches_upstream(upstream: UpstreamURL) -> None:
    """SDK signs for the proxy creds; we verify, re-sign for the real ones; upstream says 200."""
    req, body = sdk_sign(PROXY, host="proxy.example:3888", params={"a": "x y/z"})
    auth = SIGNER.parse(req)
    SIGNER.verify(req, auth, PROXY, body)

    before = upstream.hits
    status, _ = send(upstream, req, body)  # the proxy's own signature: refused
    assert status == 403

    req.host = urlsplit(upstream).netloc
    SIGNER.resign(req, auth, REAL, body, datetime.now(UTC))
    status, echo = send(upstream, req, body)
    assert status == 200, echo
    assert echo["access_key"] == REAL.access_key
    assert echo["body_sha256"] == hashlib.sha256(body).hexdigest()
    assert upstream.hits == before + 2


def test_resigned_token_is_checked() -> None:
    with baidu_upstream(REAL.access_key, REAL.secret_key.reveal(), "bd-real-up-token") as url:
        req, body = sdk_sign(PROXY, method="GET", body="")
        auth = SIGNER.parse(req)
        req.host = urlsplit(url).netloc
        SIGNER.resign(req, auth, REAL, body, datetime.now(UTC))
        assert send(url, req, body)[0] == 403  # no token: refused
        SIGNER.resign(req, SIGNER.parse(req), REAL_TOKEN, body, datetime.now(UTC))
        status, echo = send(url, req, body)
        assert status == 200, echo
        assert echo["security_token"] == "bd-real-up-token"
