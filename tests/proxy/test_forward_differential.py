"""What keybroker forwards means to the upstream what it meant to keybroker: no smuggling in
either direction.

Signed S3 requests (SigV4 by botocore with the proxy key) are framed in generated ways —
``Content-Length`` or chunked with odd chunk sizes, extensions and trailers, header names in
other cases, bodies that look like requests, several requests pipelined on one connection —
and sent to a real proxy whose ``Upstream`` is a raw-socket server parsing with h11 (strict).
Every request the client sent must arrive exactly once, in order, with its body byte for
byte, as one well-framed message; nothing else may arrive (no request hidden in a body or
after one), and the client gets exactly one answer per request.
"""

from __future__ import annotations

import secrets
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import h11
import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keybroker.settings import Config
from tests import logscan
from tests.proxy.conftest import aws_endpoint
from tests.proxy.harness import proxy_running

AK, SK, REAL_SK = "AKIDPROXYDIFF0000001", secrets.token_urlsafe(24), secrets.token_urlsafe(24)
logscan.register(SK, REAL_SK)
HOST = "diff-bucket.s3.us-east-1.amazonaws.com"


@dataclass
class Upstream:
    """A raw-socket upstream: h11 parses every connection; each request is answered ``ok``."""

    port: int = 0
    requests: list[tuple[str, str, dict[str, str], bytes]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def serve(self, listener: socket.socket) -> None:
        while True:
            try:
                sock, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=self._connection, args=(sock,), daemon=True).start()

    def _connection(self, sock: socket.socket) -> None:
        conn = h11.Connection(h11.SERVER)
        current: h11.Request | None = None
        body = b""
        with sock:
            while True:
                try:
                    event = conn.next_event()
                except h11.RemoteProtocolError as exc:
                    with self.lock:
                        self.errors.append(str(exc))
                    return
                if event is h11.NEED_DATA:
                    try:
                        data = sock.recv(65536)
                    except OSError:
                        return
                    conn.receive_data(data)
                    if not data:
                        return
                elif isinstance(event, h11.Request):
                    current, body = event, b""
                elif isinstance(event, h11.Data):
                    body += bytes(event.data)
                elif isinstance(event, h11.EndOfMessage):
                    assert current is not None
                    headers = {k.decode(): v.decode("latin-1") for k, v in current.headers}
                    with self.lock:
                        self.requests.append(
                            (current.method.decode(), current.target.decode(), headers, body)
                        )
                    sock.sendall(
                        conn.send(h11.Response(status_code=200, headers=[("content-length", "2")]))
                        + conn.send(h11.Data(data=b"ok"))
                        + conn.send(h11.EndOfMessage())
                    )
                    if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                        return
                    conn.start_next_cycle()
                else:  # ConnectionClosed, PAUSED
                    return


@pytest.fixture(scope="module")
def setup() -> Iterator[tuple[int, Upstream]]:
    up = Upstream()
    listener = socket.create_server(("127.0.0.1", 0))
    up.port = listener.getsockname()[1]
    threading.Thread(target=up.serve, args=(listener,), daemon=True).start()
    ep = aws_endpoint(
        "acct", AK, SK, "AKIAREALDIFF00000001", REAL_SK, f"http://127.0.0.1:{up.port}"
    )
    try:
        with proxy_running(Config(endpoints=[ep])) as (url, _):
            yield int(url.rsplit(":", 1)[1]), up
    finally:
        listener.close()


def _signed_head(key: str, body: bytes, unsigned: bool) -> list[tuple[str, str]]:
    headers = {"X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD"} if unsigned else {}
    req = AWSRequest(method="PUT", url=f"https://{HOST}/{key}", data=body, headers=headers)
    S3SigV4Auth(Credentials(AK, SK), "s3", "us-east-1").add_auth(req)
    return [(k, v) for k, v in req.headers.items() if k.lower() not in ("content-length",)]


@st.composite
def framed(draw: st.DrawFn, body: bytes) -> tuple[list[tuple[str, str]], bytes]:
    """Framing headers and the body as sent: Content-Length, or chunked (sizes, extensions,
    trailers as a client may send them)."""
    if draw(st.booleans()):
        name = draw(st.sampled_from(["Content-Length", "content-length", "CONTENT-LENGTH"]))
        return [(name, str(len(body)))], body
    name = draw(st.sampled_from(["Transfer-Encoding", "transfer-encoding", "TRANSFER-ENCODING"]))
    value = draw(st.sampled_from(["chunked", "Chunked", "CHUNKED"]))
    out, rest = b"", body
    while rest:
        n = draw(st.integers(1, len(rest)))
        size = draw(st.sampled_from([b"%x" % n, b"%X" % n, b"000%x" % n]))
        ext = draw(st.sampled_from([b"", b";a=b", b';name="v;x"', b";a=b;c=d"]))
        out += size + ext + b"\r\n" + rest[:n] + b"\r\n"
        rest = rest[n:]
    trailer = draw(st.sampled_from([b"", b"X-Trailer: t\r\n", b"X-Amz-Meta-A: b\r\n"]))
    return [(name, value)], out + b"0\r\n" + trailer + b"\r\n"


_BODIES = st.one_of(
    st.binary(max_size=3000),
    st.sampled_from(
        [b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n", b"0\r\n\r\nGET /s HTTP/1.1\r\n\r\n",
         b"\r\n\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"]
    ),
)  # fmt: skip


@st.composite
def conversation(draw: st.DrawFn) -> list[tuple[str, bytes, bytes]]:
    """1-3 signed requests as (key, body, bytes on the wire)."""
    out = []
    for i in range(draw(st.integers(1, 3))):
        body = draw(_BODIES)
        key = f"k{i}-{secrets.token_hex(4)}"
        headers = _signed_head(key, body, unsigned=draw(st.booleans()))
        framing, payload = draw(framed(body))
        headers = [("Host", HOST), *headers, *framing]
        head = f"PUT /{key} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers)
        out.append((key, body, head.encode() + b"\r\n" + payload))
    return out


def _answers(sock: socket.socket, count: int) -> list[int]:
    conn = h11.Connection(h11.CLIENT)
    statuses: list[int] = []
    for _ in range(count):  # h11 wants to have sent a request before it reads an answer
        conn.send(h11.Request(method="GET", target="/", headers=[("Host", "x")]))
        conn.send(h11.EndOfMessage())
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = sock.recv(65536)
                conn.receive_data(data)
                if not data:
                    return statuses
            elif isinstance(event, h11.Response):
                statuses.append(event.status_code)
            elif isinstance(event, h11.EndOfMessage):
                break
        if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
            return statuses
        conn.start_next_cycle()
    return statuses


@pytest.mark.slow
@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(talk=conversation())
def test_forwarded_requests_mean_what_they_meant_to_keybroker(
    setup: tuple[int, Upstream], talk: list[tuple[str, bytes, bytes]]
) -> None:
    port, up = setup
    with up.lock:
        up.requests.clear()
        up.errors.clear()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"".join(wire for _, _, wire in talk))
        statuses = _answers(sock, len(talk))
    assert statuses == [200] * len(talk), statuses
    with up.lock:
        seen, errors = list(up.requests), list(up.errors)
    assert errors == []
    assert [(m, t, b) for m, t, _, b in seen] == [("PUT", f"/{k}", b) for k, b, _ in talk]
    for _, _, headers, body in seen:
        framing = {k.lower() for k in headers} & {"content-length", "transfer-encoding"}
        assert len(framing) == 1, headers  # one framing, never both
        if "content-length" in framing:
            assert headers.get("content-length") == str(len(body))


def test_a_framing_field_in_the_trailers_is_refused_and_nothing_goes_upstream(
    setup: tuple[int, Upstream],
) -> None:
    """A ``Content-Length`` trailer (RFC 9110 6.5.1: framing never comes from trailers) is
    a 400 before the request is forwarded — h11 would ignore it, other servers may not."""
    port, up = setup
    with up.lock:
        up.requests.clear()
    headers = [("Host", HOST), *_signed_head("trailer", b"abc", False)]
    head = "PUT /trailer HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers)
    wire = head.encode() + b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(wire + b"Content-Length: 5\r\n\r\n")
        assert _answers(sock, 1) == [400]
    with up.lock:
        assert up.requests == []
