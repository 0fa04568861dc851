"""The upstream pool through the whole proxy: an answer without a body whose server said
``Connection: close`` (moto/Werkzeug answers HEAD so) must not leave a dead connection in the
pool, and an upstream that breaks off before the first body byte gets the client a 502, never
a cut connection (a client retrying that request would be refused as a replay)."""

from __future__ import annotations

import http.client
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

import pytest
import requests
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from keybroker.settings import Config, HttpConfig
from tests import logscan
from tests.proxy.conftest import AwsSetup, aws_endpoint
from tests.proxy.harness import proxy_running
from tests.proxy.platform import send, sign_aws

STS = "https://sts.us-east-1.amazonaws.com/"
AK, SK = "AKIDPROXYPOOL0000001", secrets.token_urlsafe(24)
REAL_SK = secrets.token_urlsafe(24)
logscan.register(SK, REAL_SK)


def _s3_request(aws: AwsSetup, method: str, path: str) -> tuple[int, dict[str, str], bytes]:
    """One SigV4 request, as an unmodified client sends it, on a new client connection."""
    url = aws.proxy_url + path
    req = AWSRequest(method=method, url=url, headers={"X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD"})
    S3SigV4Auth(Credentials(aws.proxy_ak, aws.proxy_sk), "s3", "us-east-1").add_auth(req)
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.netloc, timeout=10)
    try:
        conn.request(method, path, headers=dict(req.headers.items()))
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


def test_head_then_get_through_moto_does_not_hang(aws: AwsSetup) -> None:
    """s3cmd's download: HEAD, then GET, each on its own client connection."""
    s3 = aws.real_client("s3")
    s3.create_bucket(Bucket="pool-head")
    s3.put_object(Bucket="pool-head", Key="k", Body=b"0123456789")
    for _ in range(3):
        started = time.monotonic()
        status, headers, _ = _s3_request(aws, "HEAD", "/pool-head/k")
        assert status == 200 and headers["Content-Length"] == "10"
        status, _, body = _s3_request(aws, "GET", "/pool-head/k")
        assert (status, body) == (200, b"0123456789")
        s3.delete_object(Bucket="pool-head", Key="gone")  # 204 (with close) in between
        status, _, body = _s3_request(aws, "GET", "/pool-head/k")
        assert (status, body) == (200, b"0123456789")
        assert time.monotonic() - started < 3.0


@contextmanager
def _breaks_off(answer: bytes) -> Iterator[str]:
    """Reads each request, writes ``answer`` (a head promising more), then closes."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    stop = threading.Event()

    def serve() -> None:
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except TimeoutError:
                continue
            with conn:
                conn.recv(65536)
                conn.sendall(answer)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.getsockname()[1]}"
    finally:
        stop.set()
        t.join(5)
        srv.close()


@pytest.mark.slow
def test_upstream_breaking_off_before_the_body_is_a_502() -> None:
    for answer in (
        b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nb\r\n",
    ):
        with _breaks_off(answer) as up:
            real = aws_endpoint("acct", AK, SK, "AKIAREALPOOL00000001", REAL_SK, up)
            with proxy_running(Config(http=HttpConfig(), endpoints=[real])) as (url, _):
                signed = sign_aws(
                    "GET", STS + "?Action=GetCallerIdentity", ak=AK, sk=SK, service="sts"
                )
                r = send(url, "GET", STS + "?Action=GetCallerIdentity", signed, account="acct")
        assert r.status == 502, answer
        meta = r.json()["ResponseMetadata"]
        assert meta["Error"]["Code"] == "Proxy.NetworkErr"
        assert meta["RequestId"] == "platform-req-1"


class _Cutter:
    """Answers each request with ``answer[:cut]`` and closes (a server dying mid-answer)."""

    def __init__(self) -> None:
        self.answer = b""
        self.cut = 0

    def __call__(self, conn: socket.socket) -> None:
        conn.recv(65536)
        conn.sendall(self.answer[: self.cut])


@contextmanager
def _serving(handler: _Cutter) -> Iterator[str]:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    stop = threading.Event()

    def serve() -> None:
        srv.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except TimeoutError:
                continue
            with conn:
                handler(conn)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.getsockname()[1]}"
    finally:
        stop.set()
        t.join(5)
        srv.close()


@pytest.fixture(scope="module")
def cutter() -> Iterator[tuple[_Cutter, str]]:
    handler = _Cutter()
    with _serving(handler) as up:
        real = aws_endpoint("acct", AK, SK, "AKIAREALPOOL00000001", REAL_SK, up)
        with proxy_running(Config(http=HttpConfig(), endpoints=[real])) as (url, _):
            yield handler, url


def _answer(body: bytes, chunked: bool, sizes: list[int]) -> tuple[bytes, int]:
    """The whole answer, and the offset of its first body byte."""
    if not chunked:
        head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body)
        return head + body, len(head)
    out, pos, first = bytearray(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"), 0, -1
    for size in sizes:
        piece = body[pos : pos + size]
        if not piece:
            break
        out += b"%x;e=1\r\n" % len(piece)
        first = len(out) if first < 0 else first
        out += piece + b"\r\n"
        pos += len(piece)
    out += b"0\r\nX-Trailer: 1\r\n\r\n"
    return bytes(out), first if first >= 0 else len(out)


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@example(body=b"whole", chunked=False, sizes=[1], where=1.0)
@example(body=b"whole", chunked=True, sizes=[2, 3], where=1.0)
@example(body=b"cut", chunked=True, sizes=[3], where=0.5)
@given(
    body=st.binary(min_size=1, max_size=300),
    chunked=st.booleans(),
    sizes=st.lists(st.integers(1, 120), min_size=1, max_size=6),
    where=st.floats(0, 1),
)
def test_an_answer_cut_anywhere_is_one_answer_never_a_short_one(
    cutter: tuple[_Cutter, str], body: bytes, chunked: bool, sizes: list[int], where: float
) -> None:
    """Cut before the first body byte: a 502 (nothing reached the client yet). Cut after it:
    the client's connection is cut (never a short body presented as complete)."""
    handler, url = cutter
    answer, first = _answer(body, chunked, sizes)
    handler.answer, handler.cut = answer, int(where * len(answer))
    signed = sign_aws("GET", STS + "?Action=GetCallerIdentity", ak=AK, sk=SK, service="sts")
    try:
        r = send(url, "GET", STS + "?Action=GetCallerIdentity", signed, account="acct")
    except requests.exceptions.RequestException:
        assert handler.cut > first, "cut before the body: nothing was sent, a 502 was due"
        return
    if handler.cut <= first:
        assert r.status == 502, (handler.cut, first)
        assert r.json()["ResponseMetadata"]["Error"]["Code"] == "Proxy.NetworkErr"
    else:
        assert r.status == 200 and r.body == body  # only the whole answer is an answer
