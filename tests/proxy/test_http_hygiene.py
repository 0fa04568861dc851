"""Protocol hygiene of the proxy's port: connection caps and idle shedding, the client
allow-list at accept, one copy of every header a signer reads, and the proxy's own request id.

Real proxy, real sockets; the refusals are watched through ``Proxy.on_refuse``."""

from __future__ import annotations

import logging
import secrets
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keybroker.proxy.checks import SINGLETON_HEADERS
from keybroker.settings import Config, HttpConfig, SecurityConfig
from tests import logscan
from tests.proxy.conftest import aws_endpoint
from tests.proxy.harness import ProxyThread
from tests.proxy.platform import sign_aws
from tests.proxy.recording_upstream import recording_upstream

STS = "https://sts.us-east-1.amazonaws.com/"
AK, SK, REAL_SK = "AKIDPROXYHYGIENE0001", secrets.token_urlsafe(24), secrets.token_urlsafe(24)
logscan.register(SK, REAL_SK)
PING = b"GET /ping HTTP/1.1\r\nHost: proxy\r\n\r\n"


@contextmanager
def _proxy(
    upstream: str = "http://127.0.0.1:9", *, http: HttpConfig | None = None, cidrs: list[str] = []
) -> Iterator[tuple[int, ProxyThread, list[tuple[str | None, str]]]]:
    ep = aws_endpoint("acct", AK, SK, "AKIAREALHYGIENE00001", REAL_SK, upstream)
    cfg = Config(
        http=http or HttpConfig(),
        security=SecurityConfig(allowed_client_cidrs=list(cidrs)),
        endpoints=[ep],
    )
    pt = ProxyThread(cfg)
    refusals: list[tuple[str | None, str]] = []
    pt.proxy.on_refuse = lambda source, reason: refusals.append((source, reason))  # type: ignore[method-assign]
    pt.start()
    try:
        yield pt.proxy.ports[0], pt, refusals
    finally:
        pt.stop()


def _connect(port: int, source: str = "127.0.0.1") -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((source, 0))
    sock.settimeout(10)
    sock.connect(("127.0.0.1", port))
    return sock


def _exchange(sock: socket.socket, data: bytes) -> bytes:
    """Send ``data`` and read one answer (until its Content-Length is complete or EOF)."""
    sock.sendall(data)
    out = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return out
        if not chunk:
            return out
        out += chunk
        head, sep, body = out.partition(b"\r\n\r\n")
        if sep:
            length = [
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            ]
            if length and len(body) >= length[0]:
                return out


def _ping(port: int, source: str = "127.0.0.1") -> bytes:
    with _connect(port, source) as sock:
        return _exchange(sock, PING)


# ------------------------------------------------------------------ the allow-list, at accept


def test_a_client_outside_allowed_cidrs_is_closed_at_accept() -> None:
    with _proxy(cidrs=["127.0.0.2/32"]) as (port, _, refusals):
        started = time.monotonic()
        with _connect(port, "127.0.0.1") as sock:
            sock.settimeout(5)
            # nothing sent yet: the server closes on its own, before reading anything
            try:
                first = sock.recv(1024)
            except ConnectionResetError:
                first = b""
        assert first == b"" and time.monotonic() - started < 5
        assert refusals == [("127.0.0.1", "client address not allowed")]
        assert _ping(port, "127.0.0.2").startswith(b"HTTP/1.1 200")


# ------------------------------------------------------------------ connection caps


def test_idle_sockets_over_the_caps_do_not_stop_an_allowed_clients_ping() -> None:
    http = HttpConfig(max_connections=64, max_connections_per_client=16)
    with _proxy(http=http) as (port, pt, refusals):
        held: list[socket.socket] = []
        try:
            # an attacker on ten addresses (one of them the real client's) holds idle sockets,
            # some with half a request head
            for i in range(300):
                sock = _connect(port, f"127.0.0.{3 + i % 10}" if i % 3 else "127.0.0.1")
                if i % 2:
                    sock.sendall(b"GET / HTTP/1.1\r\nHo")
                held.append(sock)
            time.sleep(0.2)
            assert pt.call(lambda: pt.proxy._server.limits.count) <= 64  # type: ignore[union-attr]
            for _ in range(20):
                started = time.monotonic()
                assert _ping(port).startswith(b"HTTP/1.1 200")
                assert time.monotonic() - started < 5
        finally:
            for sock in held:
                sock.close()
        # shedding an idle socket is no refusal: nobody was refused
        assert refusals == []


def test_default_caps_hold_against_many_idle_sockets_from_one_address() -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 2048 and (hard == resource.RLIM_INFINITY or hard >= 2048):
        resource.setrlimit(resource.RLIMIT_NOFILE, (2048, hard))  # both ends live here
    with _proxy() as (port, pt, _):
        held = []
        try:
            for _ in range(700):  # well past the per-client cap, both ends in this process
                held.append(_connect(port))
            time.sleep(0.2)
            count = pt.call(lambda: pt.proxy._server.limits.count)  # type: ignore[union-attr]
            assert count <= HttpConfig().max_connections_per_client
            assert _ping(port).startswith(b"HTTP/1.1 200")
        finally:
            for sock in held:
                sock.close()


@pytest.mark.slow
def test_busy_connections_are_not_shed_the_new_one_is_refused() -> None:
    http = HttpConfig(max_connections=3, max_connections_per_client=3)
    with recording_upstream(delay=3.0) as up, _proxy(up.url, http=http) as (port, _, refusals):
        busy = []
        for _ in range(3):
            sock = _connect(port)
            signed = sign_aws("GET", STS, ak=AK, sk=SK, service="sts")
            sock.sendall(_keyproxy_head("GET", signed))
            busy.append(sock)
        time.sleep(1.0)  # all three are being answered (at the slow upstream)
        with _connect(port) as late:
            late.settimeout(5)
            with suppress(ConnectionResetError):
                assert late.recv(1024) == b""
        assert refusals == [("127.0.0.1", "too many connections from this client")]
        for sock in busy:
            with sock:
                assert _exchange(sock, b"").startswith(b"HTTP/1.1 200")


# ------------------------------------------------------------------ duplicate headers


def _keyproxy_head(method: str, signed: dict[str, str], extra: bytes = b"") -> bytes:
    lines = [f"{method} / HTTP/1.1", "Host: proxy"]
    lines += [f"{k}: {v}" for k, v in signed.items() if k.lower() != "host"]
    lines += [
        f"X-Mcdn-Origin-Uri: {STS}",
        "X-Mcdn-Cloud-Account-Name: acct",
        "X-Mcdn-Kept-Headers: " + ",".join(k for k in signed if k.lower() != "host"),
    ]
    return "\r\n".join(lines).encode() + b"\r\n" + extra + b"\r\n"


def _status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


@pytest.fixture(scope="module")
def hygiene_proxy() -> Iterator[int]:
    with recording_upstream() as up, _proxy(up.url) as (port, _, _):
        yield port


_SPELLINGS = st.sampled_from([str.lower, str.upper, str.title, lambda s: s])


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    name=st.sampled_from(sorted(SINGLETON_HEADERS - {"expect"})),
    first=_SPELLINGS,
    second=_SPELLINGS,
    value=st.sampled_from(["", "x", "20260101T000000Z", "AWS4-HMAC-SHA256 Credential=x"]),
    native=st.booleans(),
)
def test_a_second_copy_of_a_singleton_header_is_400(
    hygiene_proxy: int, name: str, first, second, value: str, native: bool
) -> None:  # type: ignore[no-untyped-def]
    signed = sign_aws("GET", STS, ak=AK, sk=SK, service="sts")
    if native:
        head = "GET / HTTP/1.1\r\nHost: sts.us-east-1.amazonaws.com\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in signed.items() if k.lower() != "host"
        )
        data = head.encode()
    else:
        data = _keyproxy_head("GET", signed)[:-2]
    data += f"{first(name)}: {value}\r\n{second(name)}: {value}\r\n\r\n".encode()
    with _connect(hygiene_proxy) as sock:
        answer = _exchange(sock, data)
    assert _status(answer) == 400, answer[:300]
    assert b"appears more than once" in answer and name.encode() in answer.lower()


def test_the_same_request_with_one_copy_is_served(hygiene_proxy: int) -> None:
    signed = sign_aws("GET", STS, ak=AK, sk=SK, service="sts")
    with _connect(hygiene_proxy) as sock:
        assert _status(_exchange(sock, _keyproxy_head("GET", signed))) == 200


@pytest.mark.parametrize("version", ["1.1", "1.0"])
@pytest.mark.parametrize("second", ["Host", "host", "HOST", "hOsT"])
@pytest.mark.parametrize("value", ["proxy", "other.example", ""])
def test_two_host_headers_are_400(
    hygiene_proxy: int, version: str, second: str, value: str
) -> None:
    data = f"GET /ping HTTP/{version}\r\nHost: proxy\r\n{second}: {value}\r\n\r\n".encode()
    with _connect(hygiene_proxy) as sock:
        answer = _exchange(sock, data)
    assert _status(answer) == 400 and b"more than one Host header" in answer


def test_http11_without_host_is_400_and_http10_without_host_is_served(hygiene_proxy: int) -> None:
    with _connect(hygiene_proxy) as sock:
        answer = _exchange(sock, b"GET /ping HTTP/1.1\r\n\r\n")
    assert _status(answer) == 400 and b"needs a Host header" in answer
    with _connect(hygiene_proxy) as sock:
        assert _status(_exchange(sock, b"GET /ping HTTP/1.0\r\n\r\n")) == 200


# ------------------------------------------------------------------ request ids


def test_the_client_request_id_is_kept_beside_the_proxys_own(
    hygiene_proxy: int, caplog: pytest.LogCaptureFixture
) -> None:
    signed = sign_aws("GET", STS, ak=AK, sk="wrong-secret", service="sts")
    caplog.set_level(logging.INFO, logger="keybroker.access")
    seen = []
    for client_id in ("platform-7", "platform-7", "x" * 129, "tab\there"):
        extra = f"X-Mcdn-Request-Id: {client_id}\r\n".encode("latin-1")
        with _connect(hygiene_proxy) as sock:
            answer = _exchange(sock, _keyproxy_head("GET", signed, extra))
        head, _, body = answer.partition(b"\r\n\r\n")
        headers = dict(
            line.decode().split(": ", 1) for line in head.split(b"\r\n")[1:] if b": " in line
        )
        own = headers["X-Keybroker-Request-Id"]
        assert len(own) == 32 and int(own, 16) >= 0 and own not in seen
        seen.append(own)
        valid = client_id.isprintable() and len(client_id) <= 128
        # key-proxy's error answers echo the platform's id; an invalid one is not echoed
        echoed = client_id if valid else own
        assert headers["X-Mcdn-Request-Id"] == echoed
        assert f'"RequestId": "{echoed}"'.encode() in body
    lines = [r.fields for r in caplog.records if r.name == "keybroker.access"]  # type: ignore[attr-defined]
    assert [x["request_id"] for x in lines] == seen
    assert [x["client_request_id"] for x in lines] == ["platform-7", "platform-7", None, None]


def test_every_header_a_signer_reads_by_name_is_a_singleton() -> None:
    """A header a signer reads by its name (``headers.get("X")``, ``headers["X"]``,
    ``getall("X")``, or a ``*_HEADER(S)`` constant) must be in ``SINGLETON_HEADERS``: a
    signer added later cannot read a header that may come twice without this failing."""
    import re
    from pathlib import Path

    import keybroker.signers as pkg

    read = re.compile(r"""headers(?:\.get|\.getall|\.popall)?[\[(]\s*["']([A-Za-z0-9-]+)["']""")
    const = re.compile(r"""^_?[A-Z_]*HEADERS?\s*=\s*(\(.*?\)|["'][^"']+["'])""", re.M | re.S)
    names: set[str] = set()
    for path in Path(pkg.__file__).parent.glob("*.py"):
        text = path.read_text()
        names.update(m.lower() for m in read.findall(text))
        for value in const.findall(text):
            names.update(v.lower() for v in re.findall(r"""["']([A-Za-z0-9-]+)["']""", value))
    names -= {"host", "content-length"}  # the HTTP layer's own (one Host, llhttp's length)
    names = {n for n in names if not n.endswith("-")}  # prefixes such as "x-bce-"
    assert names, "the scan found nothing: the pattern no longer matches the signers"
    assert names - SINGLETON_HEADERS == set()
