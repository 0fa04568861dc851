"""Attack on "a signed request that changes something is executed once": the upstream
connection pool re-sends a GET whose pooled connection closed before any answer byte (the
keep-alive race), treating GET as safe.  RPC APIs take mutating actions over GET (EC2's
``GET /?Action=RunInstances``, Alibaba's and Kingsoft's RPC): the upstream may have executed
the first copy before the connection dropped, and then executes the second.  Only an operation
the signer knows to be read-only may be sent again."""

from __future__ import annotations

import secrets
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from keybroker.settings import Config
from tests import logscan
from tests.proxy.conftest import aws_endpoint
from tests.proxy.harness import proxy_running

PROXY_AK, PROXY_SK = "AKIDPROXYRTY" + secrets.token_hex(4).upper(), secrets.token_urlsafe(24)
REAL_AK, REAL_SK = "AKIDREALRTY" + secrets.token_hex(4).upper(), secrets.token_urlsafe(24)
logscan.register(PROXY_SK, REAL_SK)


@contextmanager
def dropping_upstream() -> Iterator[tuple[str, list[str]]]:
    """Answers every request, except that the first request naming RunInstances is read
    (and recorded) and its connection closed without an answer byte."""
    seen: list[str] = []
    dropped = threading.Event()
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve(conn: socket.socket) -> None:
        with conn:
            buf = b""
            while True:
                while b"\r\n\r\n" not in buf:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                head, _, buf = buf.partition(b"\r\n\r\n")
                line = head.split(b"\r\n", 1)[0].decode()
                seen.append(line)
                if "RunInstances" in line and not dropped.is_set():
                    dropped.set()
                    return  # processed, then the connection drops: no answer byte
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    def accept() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{port}", seen
    finally:
        listener.close()


def _get(url: str, query: str) -> requests.Response:
    req = AWSRequest(method="GET", url=f"{url}/?{query}")
    SigV4Auth(Credentials(PROXY_AK, PROXY_SK), "ec2", "us-east-1").add_auth(req)
    prepared = req.prepare()
    return requests.get(prepared.url, headers=dict(prepared.headers), timeout=30)


def test_a_mutating_get_is_not_sent_twice_when_its_connection_drops() -> None:
    with dropping_upstream() as (up, seen):
        ep = aws_endpoint("rty", PROXY_AK, PROXY_SK, REAL_AK, REAL_SK, up)
        with proxy_running(Config(endpoints=[ep])) as (url, _):
            # a read fills the pool with a kept-alive connection
            assert _get(url, "Action=DescribeInstances&Version=2016-11-15").status_code == 200
            got = _get(
                url, "Action=RunInstances&ImageId=ami-1&MaxCount=1&MinCount=1&Version=2016-11-15"
            )
    launches = [line for line in seen if "RunInstances" in line]
    assert len(launches) == 1, f"RunInstances reached the upstream {len(launches)} times"
    assert got.status_code == 502


def test_a_read_is_still_retried_on_a_fresh_connection() -> None:
    """Not vacuous, and the retry is kept where it is harmless: a read whose pooled connection
    dropped is answered from a new connection."""
    with dropping_upstream() as (up, seen):
        ep = aws_endpoint("rty", PROXY_AK, PROXY_SK, REAL_AK, REAL_SK, up)
        with proxy_running(Config(endpoints=[ep])) as (url, _):
            assert _get(url, "Action=DescribeInstances&Version=2016-11-15").status_code == 200
            # the upstream drops the first RunInstances-named request: here a read's tag
            got = _get(
                url, "Action=DescribeInstances&Filter.1.Name=RunInstances&Version=2016-11-15"
            )
    assert got.status_code == 200
    assert len([line for line in seen if "RunInstances" in line]) == 2
