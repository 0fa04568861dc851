"""SSRF: no signed request ever leaves for a non-public address, whatever the spelling."""

from __future__ import annotations

import asyncio
import secrets
import socket

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from keybroker.http.netguard import DestinationRefused, GuardedResolver, is_public_address
from keybroker.settings import Config
from tests import logscan
from tests.proxy.conftest import aws_endpoint
from tests.proxy.harness import proxy_running
from tests.proxy.platform import send, sign_aws
from tests.proxy.recording_upstream import recording_upstream
from tests.servers import app_in_thread, free_port

AK, SK, REAL_SK = "AKIDPROXYSSRF0000001", secrets.token_urlsafe(24), secrets.token_urlsafe(24)
logscan.register(SK, REAL_SK)


def _cfg(upstream: str | None, allowed: list[str] | None = None) -> Config:
    ep = aws_endpoint("acct", AK, SK, "AKIAREALSSRF00000001", REAL_SK, upstream or "")
    ep.upstream = upstream
    ep.allowed_hosts = allowed or []
    return Config(endpoints=[ep])


def test_allowed_name_resolving_to_loopback_is_refused_after_resolution() -> None:
    """``localhost`` is allowed by name here, but resolves (really, via the system resolver)
    to a loopback address: the signed request never leaves."""
    port = free_port()
    origin = f"https://localhost:{port}/?Action=GetCallerIdentity"
    with proxy_running(_cfg(None, ["localhost"])) as (url, _):
        signed = sign_aws("GET", origin, ak=AK, sk=SK, service="sts")
        r = send(url, "GET", origin, signed, account="acct")
    assert r.status == 403, r.body
    assert "public address" in r.json()["ResponseMetadata"]["Error"]["Message"]


def test_explicit_upstream_on_loopback_is_trusted() -> None:
    with recording_upstream() as up:
        explicit = up.url.replace("127.0.0.1", "localhost")
        with proxy_running(_cfg(explicit)) as (url, _):
            origin = "https://sts.us-east-1.amazonaws.com/?Action=GetCallerIdentity"
            signed = sign_aws("GET", origin, ak=AK, sk=SK, service="sts")
            assert send(url, "GET", origin, signed, account="acct").status == 200
    assert len(up.seen) == 1


@pytest.mark.parametrize(
    "host",
    [
        "2130706433",
        "0177.0.0.1",
        "0x7f.0.0.1",
        "0x7f000001",
        "127.1",
        "[::ffff:127.0.0.1]",
        "[::1]",
        "169.254.169.254",
        "[fd00:ec2::254]",
        "10.0.0.1",
    ],
)
def test_ip_literal_spellings_are_never_vendor_hosts(host: str) -> None:
    origin = f"https://{host}/?Action=GetCallerIdentity"
    with proxy_running(_cfg(None, [".amazonaws.com"])) as (url, _):
        try:
            signed = sign_aws("GET", origin, ak=AK, sk=SK, service="sts")
        except Exception:  # botocore cannot sign some spellings; sign for a vendor host
            signed = sign_aws("GET", "https://sts.amazonaws.com/", ak=AK, sk=SK, service="sts")
        r = send(url, "GET", origin, signed, account="acct")
    assert r.status in (400, 401, 403)
    assert r.headers["X-Mcdn-Proxy-Status"] == "Failed"


def test_redirects_are_passed_back_never_followed() -> None:
    from aiohttp import web

    seen: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(request.path)
        # a metadata address in Location: neither the proxy nor the (non-following) test
        # client may go there
        raise web.HTTPFound("http://169.254.169.254/latest/meta-data/")

    port = free_port()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    with (
        app_in_thread(app, port, what="redirecting upstream"),
        proxy_running(_cfg(f"http://127.0.0.1:{port}")) as (url, _),
    ):
        origin = "https://sts.us-east-1.amazonaws.com/?Action=GetCallerIdentity"
        signed = sign_aws("GET", origin, ak=AK, sk=SK, service="sts")
        r = send(url, "GET", origin, signed, account="acct")
    assert r.status == 302
    assert r.headers["Location"] == "http://169.254.169.254/latest/meta-data/"
    assert seen == ["/"]


class _Static(AbstractResolver):
    """A DNS stand-in answering fixed addresses (no DNS server runs here): it exercises the
    guard on the addresses a name resolves to, including ones attackers choose."""

    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            ResolveResult(hostname=host, host=a, port=port, family=socket.AF_INET, proto=0, flags=0)
            for a in self.table[host]
        ]

    async def close(self) -> None:
        return None


@pytest.mark.parametrize(
    ("answers", "ok"),
    [
        (["52.94.236.248"], True),
        (["127.0.0.1"], False),
        (["169.254.169.254"], False),
        (["100.100.100.200"], False),
        (["10.1.2.3"], False),
        (["192.168.0.1"], False),
        (["::ffff:127.0.0.1"], False),
        (["fe80::1"], False),
        (["0.0.0.0"], False),
        (["224.0.0.1"], False),
        (["10.0.0.1", "52.94.236.248"], True),  # only the public answer is used
    ],
)
def test_guarded_resolver(answers: list[str], ok: bool) -> None:
    async def run() -> list[str]:
        guard = GuardedResolver(_Static({"api.example.amazonaws.com": answers}))
        return [r["host"] for r in await guard.resolve("api.example.amazonaws.com", 443)]

    if ok:
        got = asyncio.run(run())
        assert got and all(is_public_address(a) for a in got)
    else:
        with pytest.raises(DestinationRefused):
            asyncio.run(run())


@pytest.mark.parametrize(
    "path",
    ["/../admin", "/%2e%2e/admin", "/%2E./admin", "/a/..%2f..%2fadmin", "/..;/admin", "/..%5cx"],
)
def test_signed_request_cannot_leave_the_upstream_path_prefix(path: str) -> None:
    """A correctly signed request whose path climbs out of ``Upstream``'s prefix is refused
    before anything is sent; one that stays inside goes under the prefix."""
    with recording_upstream() as up, proxy_running(_cfg(up.url + "/gw/aws")) as (url, _):
        origin = "https://sts.us-east-1.amazonaws.com" + path
        signed = sign_aws("GET", origin, ak=AK, sk=SK, service="sts")
        r = send(url, "GET", origin, signed, account="acct")
        assert r.status == 403, r.body
        assert "path prefix" in r.json()["ResponseMetadata"]["Error"]["Message"]
        inside = "https://sts.us-east-1.amazonaws.com/a/../b"
        signed = sign_aws("GET", inside, ak=AK, sk=SK, service="sts")
        assert send(url, "GET", inside, signed, account="acct").status == 200
    assert [s.path_qs for s in up.seen] == ["/gw/aws/a/../b"]


@pytest.mark.parametrize(
    "host",
    [
        "my-lb-1234567890.us-east-1.elb.amazonaws.com",
        "ec2-203-0-113-25.compute-1.amazonaws.com",
        "abc123.execute-api.us-east-1.amazonaws.com",
        "bucket.s3-website-us-east-1.amazonaws.com",
    ],
)
def test_customer_controlled_vendor_hosts_never_get_the_real_signature(host: str) -> None:
    origin = f"https://{host}/?Action=GetCallerIdentity"
    with proxy_running(_cfg(None)) as (url, _):
        signed = sign_aws("GET", origin, ak=AK, sk=SK, service="sts")
        r = send(url, "GET", origin, signed, account="acct")
    assert r.status == 403, r.body
    assert "public aws API endpoint" in r.json()["ResponseMetadata"]["Error"]["Message"]
