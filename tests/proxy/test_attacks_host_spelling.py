"""Attack on "the real key goes only to the vendor's public API host": a vendor host spelled
with a Unicode full stop.  In native mode Baidu (like Alibaba, Huawei and Akamai) sends the
request to its signed Host when that is a public API host.  ``abc\\uff0ecfc-execute...``
(U+FF0E between the first two labels) ends in ``.baidubce.com`` but is not matched by the
customer-host exclusion ``*.cfc-execute.*.baidubce.com``, whose labels are ASCII — and IDNA,
which the resolver and TLS apply, turns the full stop into a dot: the request, signed with the
real key, would go to the attacker's own function ``abc.cfc-execute.bj.baidubce.com``."""

from __future__ import annotations

import secrets
import socket
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from keybroker.credentials import Credential
from keybroker.http import netguard
from keybroker.proxy.hostscope import HostScope
from keybroker.secret import Secret
from keybroker.settings import Config, Endpoint
from keybroker.signers import get as get_signer
from tests import logscan
from tests.proxy.harness import proxy_running
from tests.signers.baidu_upstream import sdk_sign

FULLWIDTH, IDEOGRAPHIC, HALFWIDTH = "\uff0e", "\u3002", "\uff61"
PROXY = Credential("bceproxy" + secrets.token_hex(8), Secret(secrets.token_urlsafe(30)))
REAL = Credential("bcereal" + secrets.token_hex(8), Secret(secrets.token_urlsafe(30)))
logscan.register(*PROXY.secrets(), *REAL.secrets())


@pytest.fixture
def resolved(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The names the proxy tried to resolve (it never gets an answer: no network needed)."""
    names: list[str] = []

    async def resolve(self: object, host: str, port: int = 0, family: int = 0) -> list[object]:
        names.append(host)
        raise OSError("no network in this test")

    monkeypatch.setattr(netguard.GuardedResolver, "resolve", resolve)
    yield names


@pytest.mark.parametrize("dot", [FULLWIDTH, IDEOGRAPHIC, HALFWIDTH])
def test_unicode_full_stop_does_not_reach_a_customer_host(resolved: list[str], dot: str) -> None:
    host = f"abc{dot}cfc-execute.bj.baidubce.com"
    assert host.encode("idna") == b"abc.cfc-execute.bj.baidubce.com"  # what a resolver asks
    endpoint = Endpoint(cloud_account_name="bd", vendor="baidu", proxy=PROXY, real=REAL)
    with proxy_running(Config(endpoints=[endpoint])) as (url, _):
        signed, _ = sdk_sign(PROXY, method="GET", host=host, path="/v2/instance", body="")
        lines = [f"GET {signed.path} HTTP/1.1"]
        lines += [f"{k}: {v}" for k, v in signed.headers.items() if k.lower() != "content-length"]
        raw = ("\r\n".join(lines) + "\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").encode()
        parts = urlsplit(url)
        with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
            sock.sendall(raw)
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
    assert resolved == [], f"the proxy tried to connect to {resolved}"
    assert answer.startswith(b"HTTP/1.1 403"), answer[:200]


@pytest.mark.parametrize(
    ("vendor", "host"),
    [
        ("aws", f"abc123{FULLWIDTH}execute-api.us-east-1.amazonaws.com"),
        ("aws", f"my-lb{IDEOGRAPHIC}elb.amazonaws.com"),
        ("aliyun", f"x{HALFWIDTH}alb.aliyuncs.com"),
        ("huawei", f"b{FULLWIDTH}obs-website.cn-north-4.myhuaweicloud.com"),
        ("aws", "sts.us-east-1.amazonaws.com\u200b"),
        ("aws", "st\u017f.us-east-1.amazonaws.com"),
        ("aws", "x%2eelb.amazonaws.com"),
    ],
)
def test_vendor_hosts_are_plain_ascii(vendor: str, host: str) -> None:
    """Any character outside a DNS name's letters, digits, ``-``, ``_`` and ``.`` is refused,
    for every vendor: IDNA maps many of them onto ASCII after the scope was checked."""
    signer = get_signer(vendor)
    scope = HostScope(vendor, signer.public_domains, signer.excluded_hosts)
    assert not scope.allows(host)
    assert scope.allows(_PLAIN[vendor])


_PLAIN = {
    "aws": "sts.us-east-1.amazonaws.com",
    "aliyun": "ecs.cn-hangzhou.aliyuncs.com",
    "huawei": "ecs.cn-north-4.myhuaweicloud.com",
}


def _native_baidu(host: str) -> bytes:
    endpoint = Endpoint(cloud_account_name="bd", vendor="baidu", proxy=PROXY, real=REAL)
    with proxy_running(Config(endpoints=[endpoint])) as (url, _):
        signed, _ = sdk_sign(PROXY, method="GET", host=host, path="/v2/instance", body="")
        lines = [f"GET {signed.path} HTTP/1.1"]
        lines += [f"{k}: {v}" for k, v in signed.headers.items() if k.lower() != "content-length"]
        raw = ("\r\n".join(lines) + "\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").encode()
        parts = urlsplit(url)
        with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
            sock.sendall(raw)
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
    return answer


@pytest.mark.parametrize(
    "host",
    [
        "x#.baidubce.com",
        "x?.baidubce.com",
        "x\\.baidubce.com",
        "a@b.baidubce.com",
        "x y.baidubce.com",
        "bcc.bj.baidubce.com/x/.baidubce.com",
    ],
)
def test_malformed_signed_host_is_a_400_never_a_500(resolved: list[str], host: str) -> None:
    """A native request's Host becomes the destination: a Host that is no host name is the
    client's malformed input (400), not an internal error, and never a path prefix."""
    answer = _native_baidu(host)
    assert answer.startswith(b"HTTP/1.1 400"), answer[:300]
    assert resolved == []
