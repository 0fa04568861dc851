"""Attack on "a captured request can't make it change anything": Tencent's SDK signs only
``content-type;host`` — ``X-TC-Action`` is outside the TC3 signature.  Under the default
``mutating`` rule a read is not single use, so its signature was never remembered: whoever
captured a ``DescribeInstances`` could resend it with ``X-TC-Action: TerminateInstances``, a
write the replay cache had never seen, and the proxy re-signed it with the real key.  A read's
use is now remembered (reads still repeat), and a write with a signature already used is a
replay."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator

import pytest
import requests

from keybroker.credentials import Credential
from keybroker.secret import Secret
from keybroker.settings import Config, Endpoint
from tests import logscan
from tests.proxy.harness import proxy_running
from tests.proxy.recording_upstream import Recorder, recording_upstream
from tests.signers.tencent_upstream import sdk_client, sdk_signed

ORIGIN_HOST = "cvm.tencentcloudapi.com"
PROXY = Credential("AKIDproxy" + secrets.token_hex(8), Secret(secrets.token_urlsafe(30)))
REAL = Credential("AKIDreal" + secrets.token_hex(8), Secret(secrets.token_urlsafe(30)))
logscan.register(*PROXY.secrets(), *REAL.secrets())


@pytest.fixture
def proxy() -> Iterator[tuple[str, Recorder]]:
    with recording_upstream() as rec:
        ep = Endpoint(cloud_account_name="tc", vendor="tencent", proxy=PROXY, real=REAL,
                      upstream=rec.url)  # fmt: skip
        with proxy_running(Config(endpoints=[ep]), replay=True) as (url, _):
            yield url, rec


def _send(url: str, headers: dict[str, str], body: bytes) -> requests.Response:
    sent = dict(headers)
    sent.update({
        "X-Mcdn-Origin-Uri": f"https://{ORIGIN_HOST}/",
        "X-Mcdn-Cloud-Account-Name": "tc",
        "X-Mcdn-Kept-Headers": ",".join(k.lower() for k in headers),
    })  # fmt: skip
    return requests.post(url + "/", headers=sent, data=body, timeout=10)


def test_a_captured_read_cannot_come_back_as_a_write(proxy: tuple[str, Recorder]) -> None:
    url, rec = proxy
    client = sdk_client(ORIGIN_HOST, PROXY.access_key, PROXY.secret_key.reveal())
    req = sdk_signed(client, "DescribeInstances", {"InstanceIds": ["ins-1"]}, int(time.time()))
    assert "x-tc-action" not in req.headers["Authorization"].lower()  # the SDK leaves it out
    headers, body = dict(req.headers), req.body or b""
    assert _send(url, headers, body).status_code == 200
    assert _send(url, headers, body).status_code == 200  # a read may repeat
    forged = {**headers, "X-TC-Action": "TerminateInstances"}
    r = _send(url, forged, body)
    actions = [s.headers.get("X-TC-Action") for s in rec.seen]
    assert "TerminateInstances" not in actions, "a captured read went upstream as a write"
    assert r.status_code == 401, r.text
    assert r.json()["ResponseMetadata"]["Error"]["Code"] == "Proxy.Replay"


@pytest.mark.xfail(
    strict=True,
    reason="X-TC-Action is outside the Tencent SDK's TC3 signature: whoever intercepts a read "
    "before it is used can send it first as another action, once",
)
def test_an_intercepted_read_cannot_be_used_first_as_a_write(
    proxy: tuple[str, Recorder],
) -> None:
    url, rec = proxy
    client = sdk_client(ORIGIN_HOST, PROXY.access_key, PROXY.secret_key.reveal())
    req = sdk_signed(client, "DescribeInstances", {"InstanceIds": ["ins-1"]}, int(time.time()))
    headers, body = dict(req.headers), req.body or b""
    _send(url, {**headers, "X-TC-Action": "TerminateInstances"}, body)
    actions = [s.headers.get("X-TC-Action") for s in rec.seen]
    assert "TerminateInstances" not in actions
